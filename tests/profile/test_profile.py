"""Streaming profiles: exact per-instance statistics, sharding by addition, safe storage."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from brickwork import BrickworkError, load_model
from brickwork.data import Sample
from brickwork.profile import (
    down_projection_norms,
    load_profile,
    merge_profiles,
    profile_model,
    record_activations,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def run(loaded, samples, **kwargs):
    return profile_model(loaded, samples, batch_size=3, progress=False, command="test", **kwargs)


def manual_instance_means(loaded, prompt):
    """Mean |activation| over the prompt's non-special tokens, computed alone (no padding)."""
    encoded = loaded.tokenizer(prompt, return_tensors="pt", return_special_tokens_mask=True)
    content = encoded.pop("special_tokens_mask")[0] == 0
    acts = record_activations(loaded.model, loaded.family, **encoded)
    return torch.stack([a[0, content].abs().mean(dim=0) for a in acts])


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "gpt2"])
def test_instance_means_ignore_padding_and_special_tokens(tiny_model_dirs, tiny_samples, family):
    loaded = load_model(tiny_model_dirs[family])
    profile = run(loaded, tiny_samples)
    t = profile.tensors
    assert profile.complete and t["instance_mean_abs"].shape == (len(tiny_samples), 2, 64)
    for row in (0, 5, 11):  # prompts of different lengths, batched with padding
        manual = manual_instance_means(loaded, tiny_samples[row].prompt)
        torch.testing.assert_close(t["instance_mean_abs"][row], manual, rtol=1e-5, atol=1e-6)
    bos_free = [len(s.prompt.encode()) for s in tiny_samples]  # byte tokenizer, <bos> excluded
    assert t["instance_tokens"].tolist() == bos_free


def test_sums_counts_and_histograms_agree(tiny_llama, tiny_samples):
    t = run(tiny_llama, tiny_samples, hist_stride=1).tensors
    functionalities = sorted({s.functionality for s in tiny_samples})
    for f, name in enumerate(functionalities):
        rows = [i for i, s in enumerate(tiny_samples) if s.functionality == name]
        weighted = (t["instance_mean_abs"][rows] * t["instance_tokens"][rows, None, None]).sum(0)
        torch.testing.assert_close(t["sum_abs"][f].float(), weighted, rtol=1e-5, atol=1e-5)
        assert t["token_count"][f] == t["instance_tokens"][rows].sum()
        per_layer = t["hist_activation"][f].sum(dim=1)
        assert per_layer.tolist() == [int(t["token_count"][f]) * 64] * 2
    # Every token's largest neuron lands in the top bin, so that bin counts >= one per token.
    assert (t["hist_activation"][:, :, -1].sum(0) >= t["token_count"].sum()).all()


def test_histogram_matches_a_direct_computation(tiny_llama):
    sample = Sample("one", "a single prompt of some length", "math")
    t = run(tiny_llama, [sample], hist_stride=1, bins=10).tensors
    manual = manual_tokens(tiny_llama, sample.prompt)
    for layer, tokens in enumerate(manual):
        normalized = tokens / tokens.max(dim=1, keepdim=True).values
        expected = torch.histc(normalized.clamp(max=1 - 1e-6), bins=10, min=0, max=1)
        assert t["hist_activation"][0, layer].tolist() == expected.long().tolist()


def manual_tokens(loaded, prompt):
    encoded = loaded.tokenizer(prompt, return_tensors="pt", return_special_tokens_mask=True)
    content = encoded.pop("special_tokens_mask")[0] == 0
    return [a[0, content].abs() for a in record_activations(loaded.model, loaded.family, **encoded)]


def test_down_norms_follow_each_layout(tiny_model_dirs):
    gpt2 = load_model(tiny_model_dirs["gpt2"])
    norms = down_projection_norms(gpt2.model, gpt2.family)
    expected = gpt2.model.transformer.h[1].mlp.c_proj.weight.norm(dim=1)  # Conv1D: [d_ff, d]
    torch.testing.assert_close(norms[1], expected)
    llama = load_model(tiny_model_dirs["llama"])
    expected = llama.model.model.layers[0].mlp.down_proj.weight.norm(dim=0)  # Linear: [d, d_ff]
    torch.testing.assert_close(down_projection_norms(llama.model, llama.family)[0], expected)


@pytest.mark.parametrize("count", [2, 3])
def test_shards_merge_into_the_whole(tiny_llama, tiny_samples, count):
    whole = run(tiny_llama, tiny_samples)
    shards = [run(tiny_llama, tiny_samples, shard=(i, count)) for i in range(count)]
    assert not any(s.complete for s in shards)
    merged = merge_profiles(shards)
    assert merged.complete
    for key, value in whole.tensors.items():
        if key == "sum_abs":  # float64 sums in another order
            torch.testing.assert_close(merged.tensors[key], value, rtol=1e-12, atol=1e-12)
        else:
            assert torch.equal(merged.tensors[key], value), key


def test_merge_refuses_overlaps_and_foreign_runs(tiny_llama, tiny_samples):
    half = run(tiny_llama, tiny_samples, shard=(0, 2))
    with pytest.raises(BrickworkError, match="more than one profile"):
        merge_profiles([half, half])
    other = run(tiny_llama, tiny_samples[:6], shard=(1, 2))
    with pytest.raises(BrickworkError, match="differ in dataset_hash"):
        merge_profiles([half, other])
    with pytest.raises(BrickworkError, match="nothing to merge"):
        merge_profiles([])


def test_memory_does_not_grow_with_prompt_length(tiny_llama):
    short = run(tiny_llama, [Sample("a", "hi", "x"), Sample("b", "yo", "y")])
    long = run(tiny_llama, [Sample("a", "hi " * 40, "x"), Sample("b", "yo " * 40, "y")])
    assert {k: v.shape for k, v in short.tensors.items()} == {
        k: v.shape for k, v in long.tensors.items()
    }


def test_empty_dataset_is_refused(tiny_llama):
    with pytest.raises(BrickworkError, match="empty"):
        run(tiny_llama, [])


def test_save_load_round_trip_is_exact(tiny_llama, tiny_samples, tmp_path):
    profile = run(tiny_llama, tiny_samples, shard=(1, 2))
    profile.save(tmp_path / "p")
    loaded = load_profile(tmp_path / "p")
    assert loaded.meta["model_fingerprint"] == tiny_llama.fingerprint
    assert loaded.meta["command"] == "test" and loaded.meta["shard"] == "1/2"
    assert loaded.tensors.keys() == profile.tensors.keys()
    for key, value in profile.tensors.items():
        assert torch.equal(loaded.tensors[key], value), key
    assert not list((tmp_path / "p").glob(".*tmp"))


def test_corrupt_or_missing_profiles_are_clear_errors(tiny_llama, tiny_samples, tmp_path):
    with pytest.raises(BrickworkError, match="not a profile directory"):
        load_profile(tmp_path / "missing")
    out = run(tiny_llama, tiny_samples).save(tmp_path / "p")
    data = (out / "profile.safetensors").read_bytes()
    (out / "profile.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(BrickworkError, match="corrupt"):
        load_profile(out)
    (out / "profile.json").write_text("{oops")
    with pytest.raises(BrickworkError, match="corrupt"):
        load_profile(out)


def test_failed_save_keeps_the_previous_profile(tiny_llama, tiny_samples, tmp_path, monkeypatch):
    out = run(tiny_llama, tiny_samples).save(tmp_path / "p")
    before = (out / "profile.json").read_text()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("brickwork.profile.store.save_file", broken_save)
    with pytest.raises(BrickworkError, match="cannot write .*disk full"):
        run(tiny_llama, tiny_samples[:3]).save(out)
    assert (out / "profile.json").read_text() == before
    load_profile(out)  # still whole and consistent


def test_torchrun_two_processes_equal_one(tiny_model_dirs, tiny_samples, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(s.__dict__) + "\n" for s in tiny_samples))
    bin_dir = Path(sys.executable).parent
    common = [
        "--model",
        tiny_model_dirs["llama"],
        "--data",
        str(data),
        "--batch-size",
        "3",
        "--quiet",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(
        [bin_dir / "brickwork", "profile", *common, "--out", tmp_path / "one"], check=True, env=env
    )
    subprocess.run(
        [
            bin_dir / "torchrun",
            "--standalone",
            "--nproc_per_node",
            "2",
            "--no-python",
            bin_dir / "brickwork",
            "profile",
            *common,
            "--out",
            tmp_path / "two",
        ],
        check=True,
        env=env,
    )
    one, two = load_profile(tmp_path / "one"), load_profile(tmp_path / "two")
    assert two.meta["world_size"] == 2 and two.complete
    for key, value in one.tensors.items():
        torch.testing.assert_close(two.tensors[key], value, rtol=1e-12, atol=0, msg=key)
