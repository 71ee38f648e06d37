"""Data-parallel training: two gloo processes on CPU take the steps one process takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from brickwork import BrickworkError
from brickwork.bricks import BrickRepository
from brickwork.training import TrainSettings, fit, seeded
from brickwork.training.distributed import local_share

SETTINGS = TrainSettings(steps=12, lr=0.05, batch_size=5, eval_every=4)


def _regression():
    """A linear model and 11 rows of a regression; the loss is the mean over the batch's rows."""
    generator = torch.Generator().manual_seed(1)
    with seeded(0):
        model = torch.nn.Linear(4, 3)
    x, y = torch.randn(11, 4, generator=generator), torch.randn(11, 3, generator=generator)
    rows = list(zip(x, y, strict=True))

    def loss(batch):
        inputs, targets = (torch.stack(t) for t in zip(*batch, strict=True))
        return torch.nn.functional.mse_loss(model(inputs), targets)

    def heldout():
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(model(x[:3] + 1), y[:3]))

    return model, rows, loss, heldout


def _train(rank: int, ranks: int, store: str, out: str) -> None:
    if ranks > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=ranks)
    model, rows, loss, heldout = _regression()
    result = fit(model, list(model.parameters()), rows, loss, heldout, SETTINGS, progress=False)
    if rank == 0:
        state = {k: v.tolist() for k, v in model.state_dict().items()}
        Path(out).write_text(json.dumps({"metrics": result.metrics(), "state": state}))
    if ranks > 1:
        dist.barrier()
        dist.destroy_process_group()


def _run(ranks: int, tmp_path: Path) -> dict:
    out = tmp_path / f"{ranks}.json"
    if ranks == 1:
        _train(0, 1, "", str(out))
    else:
        mp.spawn(_train, args=(ranks, str(tmp_path / "store"), str(out)), nprocs=ranks)
    return json.loads(out.read_text())


def test_two_gloo_processes_take_the_steps_of_one(tmp_path):
    one, two = _run(1, tmp_path), _run(2, tmp_path)
    for name, value in one["state"].items():
        torch.testing.assert_close(torch.tensor(two["state"][name]), torch.tensor(value))
    for key in ("heldout_loss_after", "train_loss_first", "train_loss_last", "best_step"):
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-5), key
    assert one["metrics"]["heldout_loss_after"] < one["metrics"]["heldout_loss_before"]


def test_a_rank_takes_its_rows_and_their_share_of_the_weight():
    batch = [[1], [2, 2], [3, 3, 3], [4]]
    tokens = len
    assert local_share(batch, tokens, 0, 1) == (batch, 1.0)
    assert local_share(batch, lambda b: sum(map(tokens, b)), 1, 2) == ([[2, 2], [4]], 3 / 7)
    with pytest.raises(BrickworkError, match="cannot be split over 3 processes"):
        local_share(batch[:2], tokens, 0, 3)


def test_torchrun_task_brick_reaches_the_held_out_loss_of_one_process(
    tiny_model_dirs, tiny_samples, tmp_path
):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(s.__dict__) + "\n" for s in tiny_samples))
    bin_dir = Path(sys.executable).parent
    train = ["-m", "brickwork", "train", "task", "--purpose", "p", "--data", str(data)]
    common = [*train, "--model", tiny_model_dirs["llama"], "--steps", "6", "--batch-size", "4"]
    common += ["--eval-every", "3", "--lr", "5e-3", "--quiet", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = [sys.executable, *common, "--name", "one", "--repo", str(tmp_path / "one")]
    subprocess.run(one, check=True, env=env)
    two = [bin_dir / "torchrun", "--standalone", "--nproc_per_node", "2", *common]
    two += ["--name", "two", "--repo", str(tmp_path / "two")]
    subprocess.run(two, check=True, env=env)
    single = BrickRepository(tmp_path / "one").get("one")
    parallel = BrickRepository(tmp_path / "two").get("two")
    assert [b["name"] for b in BrickRepository(tmp_path / "two").list()] == ["two"]
    assert (single.provenance["processes"], parallel.provenance["processes"]) == (1, 2)
    after = single.metrics["heldout_loss_after"]
    assert after < single.metrics["heldout_loss_before"]
    assert parallel.metrics["heldout_loss_after"] == pytest.approx(after, rel=0.01)
