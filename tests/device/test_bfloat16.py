"""The runtime floor in bfloat16 on the tiny llama: profile, analysis and brick training run end
to end without dtype errors, with float32 statistics, and agree with float32 where they should."""

import pytest
import torch

from brickwork import load_model
from brickwork.analysis import AnalysisSettings, analyze
from brickwork.bricks.train import LoraSettings, train_task_brick
from brickwork.data.sample import select_split
from brickwork.models.states import prompt_states
from brickwork.profile import profile_model

SETTINGS = AnalysisSettings(
    eval_per_functionality=1, curve_per_functionality=1, cett_tokens=32, fraction=0.1
)


@pytest.fixture(scope="module")
def bf16(tiny_model_dirs):
    return load_model(tiny_model_dirs["llama"], dtype="bfloat16")


def test_profile_in_bfloat16_keeps_float_statistics(bf16, tiny_llama, tiny_samples):
    low = profile_model(bf16, tiny_samples, progress=False, command="t")
    full = profile_model(tiny_llama, tiny_samples, progress=False, command="t")
    means = low.tensors["instance_mean_abs"]
    assert means.dtype == torch.float32 and low.tensors["sum_abs"].dtype == torch.float64
    assert low.meta["model_fingerprint"] == full.meta["model_fingerprint"]
    reference = full.tensors["instance_mean_abs"]
    assert means.shape == reference.shape
    assert torch.allclose(means, reference, rtol=0.1, atol=0.02)
    assert not torch.equal(means, reference)  # it did run in bfloat16


def test_analysis_in_bfloat16_runs_end_to_end(bf16, tiny_samples):
    result = analyze(bf16, tiny_samples, settings=SETTINGS, progress=False, command="t")
    assert result.funcscores.dtype == torch.float32 and result.funcscores.shape == (3, 2, 64)
    assert torch.isfinite(result.funcscores).all()
    matrix = result.results["ablation"]["matrix"]
    assert len(matrix) == 4 and all(all(v == v for v in row) for row in matrix)  # no NaN


def test_task_brick_trains_in_bfloat16(bf16, tiny_samples):
    train, heldout = select_split(tiny_samples, "train"), select_split(tiny_samples, "test")
    settings = LoraSettings(steps=8, lr=5e-3, batch_size=4, eval_every=4)
    brick = train_task_brick(bf16, train, heldout, "bf", "toy", settings=settings, progress=False)
    assert brick.base_model == bf16.fingerprint
    assert all(t.dtype == torch.float32 for t in brick.tensors.values())
    assert next(bf16.model.parameters()).dtype == torch.bfloat16  # the base is left as it was


def test_prompt_states_are_float32(bf16):
    states = prompt_states(bf16, ["hello there", "hi"], [0, 2], ("mean", "last"))
    assert all(s.dtype == torch.float32 and s.shape == (2, 32) for s in states.values())
