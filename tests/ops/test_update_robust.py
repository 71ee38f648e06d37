"""Corrupt statistics caches heal themselves; an empty or non-finite edit is never saved."""

import pytest
import torch
from safetensors.torch import save_file

from brickwork import BrickworkError
from brickwork.data.edits import EditFact
from brickwork.models import load_model
from brickwork.ops.update.covariance import cache_path, layer_statistics
from brickwork.ops.update.store import delta_brick

FACT = EditFact(prompt="Paris is in France", subject="France", target_new="zq")


@pytest.fixture
def tiny(tiny_model_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("BRICKWORK_CACHE", str(tmp_path / "cache"))
    return load_model(tiny_model_dirs["llama"])


def _nan(path, stats):
    cov = stats["cov"].clone()
    cov[0, 0] = float("nan")
    save_file({"cov": cov, "inputs": stats["inputs"], "count": torch.tensor(5)}, str(path))


def _wrong_shape(path, stats):
    save_file({"cov": torch.eye(3), "inputs": stats["inputs"], "count": torch.tensor(5)}, str(path))


def _truncated(path, stats):
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize("damage", [_nan, _wrong_shape, _truncated])
def test_corrupt_covariance_cache_is_deleted_and_recomputed(tiny, damage, capsys):
    stats = layer_statistics(tiny, 0, tokens=50)
    path = cache_path(tiny, 0, 50)
    damage(path, stats)
    again = layer_statistics(tiny, 0, tokens=50)
    assert torch.equal(again["cov"], stats["cov"])
    err = capsys.readouterr().err
    assert err.count("warning: corrupt statistics cache") == 1 and len(err.splitlines()) == 1
    assert torch.isfinite(layer_statistics(tiny, 0, tokens=50)["cov"]).all()  # healed on disk
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("fill", [0.0, float("nan"), float("inf")])
def test_empty_or_non_finite_edit_is_refused(tiny, fill):
    u = torch.full((64, 1), fill)
    v = torch.full((1, 32), fill)
    with pytest.raises(BrickworkError, match="changes nothing|not finite"):
        delta_brick(tiny, "e", {0: (u, v)}, "rank_one", [FACT], {})


def test_unusable_cache_dir_computes_without_caching(
    tiny_model_dirs, tmp_path, monkeypatch, capsys
):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("BRICKWORK_CACHE", str(tmp_path / "file"))
    stats = layer_statistics(load_model(tiny_model_dirs["llama"]), 0, tokens=50)
    assert torch.isfinite(stats["cov"]).all()
    assert "warning: cannot cache statistics" in capsys.readouterr().err
