"""analyze() end to end on a tiny model: every result present and shaped, bad profiles refused."""

import json

import pytest
import torch

from brickwork import BrickworkError, load_model
from brickwork.analysis import AnalysisSettings, analyze, load_analysis, load_results, save_analysis
from brickwork.data import Sample
from brickwork.profile import load_profile, profile_model
from brickwork.report import render_report

SETTINGS = AnalysisSettings(
    eval_per_functionality=1, curve_per_functionality=1, cett_tokens=32, fraction=0.1
)


@pytest.fixture(scope="module")
def analysis(tiny_llama, tiny_samples):
    return analyze(tiny_llama, tiny_samples, settings=SETTINGS, progress=False, command="test")


def test_results_cover_every_analysis(analysis, tiny_llama):
    r = analysis.results
    funcs = r["functionalities"]
    assert funcs == ["coding", "math", "writing"] and r["n_layers"] == 2 and r["d_ff"] == 64
    assert r["provenance"]["model_fingerprint"] == tiny_llama.fingerprint
    s = r["sparsity"]
    assert len(s["cdf"]["activation"]) == 2 and len(s["below_0.2"]["output"]) == 2
    assert s["masked"]["ratios"][0] == 0 and len(s["masked"]["loss"]["output"]["math"]) == 10
    assert set(s["cett"]["activated_ratio"]) == {"0.1", "0.2"}
    assert all(len(r["funcscore"]["per_layer"][f]["random_best"]) == 2 for f in funcs)
    a = r["ablation"]
    assert a["rows"] == [*funcs, "random"] and len(a["matrix"]) == 4
    assert all(len(row) == 3 for row in a["matrix"] + a["resident"]["matrix"])
    p = r["partition"]
    assert [p["matrix"][i][i] for i in range(3)] == [1.0, 1.0, 1.0]
    assert p["random_expected"] == pytest.approx(6 / 64)
    json.dumps(r)  # JSON-ready throughout


def test_selected_sets_have_the_requested_size(analysis):
    for name, mask in analysis.neuron_sets.items():
        if name.startswith("top") or name == "random":
            assert mask.sum(dim=1).tolist() == [6, 6], name  # 10% of 64, per layer
    assert analysis.funcscores.shape == (3, 2, 64)


def test_masked_curve_starts_at_the_unmasked_loss(analysis):
    baseline = analysis.results["ablation"]["baseline_ppl"]
    # The curve uses a subset of the ablation's samples: with one per functionality, the same one.
    for f, ppl in baseline.items():
        loss0 = analysis.results["sparsity"]["masked"]["loss"]["activation"][f][0]
        assert torch.tensor(loss0).exp().item() == pytest.approx(ppl, rel=1e-6)


def test_save_and_rerender(analysis, tmp_path):
    out = save_analysis(analysis, tmp_path / "run")
    assert (out / "results.json").is_file() and (out / "funcscores.safetensors").is_file()
    assert load_profile(out / "profile").complete
    written = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(analysis.results))  # written as analyze made it
    saved = load_analysis(out)
    assert saved.results.to_dict() == written  # the schema holds every key written
    assert torch.equal(saved.funcscores, analysis.funcscores)
    assert saved.neuron_sets.keys() == analysis.neuron_sets.keys()
    assert all(torch.equal(saved.neuron_sets[k], v) for k, v in analysis.neuron_sets.items())
    assert saved.profile().complete
    report = render_report(load_results(out), out)
    assert "coding" in report.read_text()


def test_profile_from_another_model_is_refused(tiny_model_dirs, tiny_llama, tiny_samples):
    other = profile_model(load_model(tiny_model_dirs["mistral"]), tiny_samples, progress=False)
    with pytest.raises(BrickworkError, match="another model"):
        analyze(tiny_llama, tiny_samples, settings=SETTINGS, profile=other, progress=False)


def test_profile_of_other_data_or_one_shard_is_refused(tiny_llama, tiny_samples):
    other = profile_model(tiny_llama, tiny_samples[1:], progress=False)
    with pytest.raises(BrickworkError, match="other data"):
        analyze(tiny_llama, tiny_samples, settings=SETTINGS, profile=other, progress=False)
    shard = profile_model(tiny_llama, tiny_samples, shard=(0, 2), progress=False)
    with pytest.raises(BrickworkError, match="one shard"):
        analyze(tiny_llama, tiny_samples, settings=SETTINGS, profile=shard, progress=False)


def test_data_without_both_splits_is_refused(tiny_llama):
    samples = [Sample(str(i), "p", "abc"[i % 3], "r", "train") for i in range(6)]
    with pytest.raises(BrickworkError, match="no test samples"):
        analyze(tiny_llama, samples, settings=SETTINGS, progress=False)


def test_global_selection_takes_the_share_of_all_neurons(tiny_llama, tiny_samples):
    settings = AnalysisSettings(
        eval_per_functionality=1,
        curve_per_functionality=1,
        cett_tokens=16,
        fraction=0.1,
        per_layer=False,
    )
    result = analyze(tiny_llama, tiny_samples, settings=settings, progress=False)
    assert result.results["ablation"]["selection"] == "global"
    assert all(int(result.neuron_sets[f"top/{f}"].sum()) == 13 for f in range(3))  # 10% of 128


def test_progress_announces_each_stage(tiny_llama, tiny_samples, capsys):
    first = analyze(tiny_llama, tiny_samples, settings=SETTINGS, progress=True)
    stages = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[stage")]
    assert [s.split("]")[0].split(",")[0] for s in stages] == [
        f"[stage {i}/4" for i in (1, 2, 3, 4)
    ]
    analyze(tiny_llama, tiny_samples, settings=SETTINGS, profile=first.profile, progress=True)
    again = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[stage")]
    assert len(again) == 3 and again[0].startswith("[stage 1/3") and "FuncScore" in again[0]


def test_per_sample_losses_reproduce_every_ablation_cell(analysis):
    a = analysis.results["ablation"]
    per = a["per_sample"]
    tokens = torch.tensor(per["tokens"], dtype=torch.float64)
    base = torch.tensor(per["baseline_nll"], dtype=torch.float64)
    funcs = a["columns"]
    rows = {name: a["matrix"][i] for i, name in enumerate(a["rows"])}
    rows.update({f"resident-excluded/{f}": a["resident"]["matrix"][i] for i, f in enumerate(funcs)})
    for name, expected in rows.items():
        nll = torch.tensor(per["nll"][name], dtype=torch.float64)
        for c, func in enumerate(funcs):
            of = torch.tensor([f == func for f in per["functionality"]])
            increase = torch.exp((nll[of].sum() - base[of].sum()) / tokens[of].sum()) - 1
            assert increase.item() == pytest.approx(expected[c], rel=1e-5, abs=1e-7), (name, func)
    seeds = a["random_seeds"]
    assert seeds["seeds"] == [0, 1, 2] and seeds["matrix"][0] == a["matrix"][-1]
    assert len(per["nll"]) == len(funcs) * 2 + 3  # top, resident-excluded, three random sets


def test_drilldown_holds_each_functionalitys_top_neurons_and_their_top_test_prompts(
    analysis, tiny_samples
):
    from brickwork.analysis.drilldown import NEURONS, PROMPTS

    d = analysis.results["drilldown"]
    scores, acts = analysis.funcscores, analysis.profile.tensors["instance_mean_abs"]
    test = {s.id: i for i, s in enumerate(tiny_samples) if s.split == "test"}
    assert d["split"] == "test" and d["chance"] == {f: 1 / 3 for f in ("coding", "math", "writing")}
    for f, name in enumerate(analysis.results["functionalities"]):
        listed = [(n["layer"], n["neuron"]) for n in d["neurons"][name]]
        best = scores[f].flatten().topk(NEURONS).indices.tolist()
        assert listed == [divmod(i, 64) for i in best]
        for n in d["neurons"][name]:
            assert n["funcscore"] == pytest.approx(float(scores[f, n["layer"], n["neuron"]]))
            ids = [p["id"] for p in n["prompts"]]
            assert len(ids) == PROMPTS and set(ids) <= set(test)  # held-out prompts only
            column = acts[list(test.values()), n["layer"], n["neuron"]]
            top = sorted(column.tolist(), reverse=True)[:PROMPTS]
            assert [p["activation"] for p in n["prompts"]] == pytest.approx(top)
