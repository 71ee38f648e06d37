"""results.json as records: every key read, old files read, and one clear error for bad files."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import save_file

from brickwork.analysis import AnalysisResults, load_analysis, load_results
from brickwork.errors import BrickworkError
from tests.report.synthetic import synthetic_results


def _write(folder, data) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(data), encoding="utf-8")


def test_records_carry_every_key():
    data = synthetic_results(seed=2)
    results = AnalysisResults.from_dict(data)
    assert results.to_dict() == data
    assert results.provenance.model_fingerprint == data["provenance"]["model_fingerprint"]
    assert results.sparsity.below == data["sparsity"]["below_0.2"]
    assert results.ablation.resident.count == 7
    assert results.ablation.summary.random_mean == data["ablation"]["summary"]["random_mean"]
    assert results.sparsity.cett.key(0.1) == "0.1" and results.sparsity.cett.key(1 / 10) == "0.1"


def test_results_without_the_later_optional_keys_still_read():
    """Keys a results file may lack (none written by analyze is missing; hand-made files)."""
    data = synthetic_results()
    for where, key in (("funcscore", "heldout_random"), ("ablation", "eval_samples")):
        data[where].pop(key, None)
    del data["format_version"]
    results = AnalysisResults.from_dict(data)
    assert results.funcscore.heldout_random is None and results.format_version == 1
    assert "heldout_random" not in results.to_dict()["funcscore"]


def _error(tmp_path, data) -> str:
    _write(tmp_path, data)
    with pytest.raises(BrickworkError) as info:
        load_results(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "results.json" in message
    return message


def test_a_missing_nested_key_is_named_by_its_path(tmp_path):
    data = copy.deepcopy(synthetic_results())
    del data["ablation"]["summary"]["random_mean"]
    assert "'ablation.summary.random_mean'" in _error(tmp_path, data)


@pytest.mark.parametrize(
    "where, key, value, expected",
    [
        (None, "n_layers", "2", "'n_layers' must be an integer"),
        (None, "n_layers", True, "'n_layers' must be an integer"),
        ("partition", "random_expected", "0.05", "'partition.random_expected' must be a number"),
        ("ablation", "matrix", {}, "'ablation.matrix' must be a JSON list"),
        ("ablation", "resident", [], "'ablation.resident' must be a JSON object"),
        (None, "format_version", 2, "upgrade brickwork"),
    ],
)
def test_a_mistyped_key_is_one_clear_error(tmp_path, where, key, value, expected):
    data = copy.deepcopy(synthetic_results())
    (data if where is None else data[where])[key] = value
    assert expected in _error(tmp_path, data)


def test_load_analysis_needs_the_scores_file(tmp_path):
    _write(tmp_path, synthetic_results())
    with pytest.raises(BrickworkError, match="no funcscores.safetensors"):
        load_analysis(tmp_path)
    (tmp_path / "funcscores.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(BrickworkError, match="cannot read"):
        load_analysis(tmp_path)


def test_load_analysis_reads_scores_and_sets(tmp_path):
    _write(tmp_path, synthetic_results())
    scores, top = torch.rand(3, 3, 8), torch.rand(3, 8) > 0.5
    tensors = {"funcscore": scores, "set/top/0": top.to(torch.uint8)}
    save_file(tensors, str(tmp_path / "funcscores.safetensors"))
    saved = load_analysis(tmp_path)
    assert torch.equal(saved.funcscores, scores) and saved.results.n_layers == 3
    assert list(saved.neuron_sets) == ["top/0"] and torch.equal(saved.neuron_sets["top/0"], top)
