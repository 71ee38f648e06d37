"""Emergent extraction: neuron sets from an analysis, balanced neuron groups, and the CLI."""

import json

import numpy as np
import pytest
import torch

from brickwork import BrickworkError
from brickwork.analysis import AnalysisSettings, analyze, save_analysis
from brickwork.bricks import BrickRepository
from brickwork.bricks.extract import balanced_kmeans, extract_bricks
from brickwork.cli import main


@pytest.fixture(scope="module")
def analysis_dir(tiny_llama, tiny_samples, tmp_path_factory):
    settings = AnalysisSettings(
        eval_per_functionality=1, curve_per_functionality=1, cett_tokens=16, fraction=0.1
    )
    analysis = analyze(tiny_llama, tiny_samples, settings=settings, progress=False)
    return save_analysis(analysis, tmp_path_factory.mktemp("analysis")), analysis


def test_balanced_kmeans_makes_equal_groups_and_finds_obvious_clusters():
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(0, 0.1, (8, 3)) + 5, rng.normal(0, 0.1, (8, 3)) - 5])
    assignment = balanced_kmeans(blobs, 2)
    assert np.bincount(assignment).tolist() == [8, 8]
    assert len(set(assignment[:8])) == 1 and assignment[0] != assignment[8]
    with pytest.raises(BrickworkError, match="equal groups"):
        balanced_kmeans(blobs, 3)


def test_extract_adds_neuron_sets_and_groups(analysis_dir, tiny_model_dirs, tmp_path):
    folder, analysis = analysis_dir
    repo = BrickRepository(tmp_path / "repo")
    summary = extract_bricks(folder, repo, n_groups=4, model=tiny_model_dirs["llama"])
    names = [m["name"] for m in repo.list()]
    assert len(names) == 3 * 2 + 2 * 2
    coding = repo.get("coding-neurons")
    assert torch.equal(coding.neuron_mask(), analysis.neuron_sets["top/0"])
    assert "FuncScore" in coding.spec["rule"] and "train split" in coding.spec["rule"]
    assert "ablation_ppl_increase_own" in coding.metrics
    assert "resident" in repo.get("coding-neurons-nonresident").spec["rule"]
    for method in ("weights", "coactivation"):
        group = repo.get(f"{method}-groups-layer01")
        assert group.kind == "neuron_group" and group.spec["group_sizes"] == [16] * 4
        shares = summary["groups"][method]["concentration_top2"]
        assert set(shares) == {"coding", "math", "writing"}
        assert all(0 < v["top_groups_share"] <= 1 for v in shares.values())
    assert all(
        base == analysis.results["provenance"]["model_fingerprint"]
        for base in (m["base_model"] for m in repo.list())
    )


def test_bricks_cli(analysis_dir, tiny_model_dirs, tmp_path, capsys):
    folder, _ = analysis_dir
    repo = str(tmp_path / "repo")
    assert (
        main(
            [
                "bricks",
                "extract",
                "--analysis",
                str(folder),
                "--repo",
                repo,
                "--groups",
                "4",
                "--methods",
                "coactivation",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["bricks", "list", "--repo", repo, "--purpose", "math"]) == 0
    assert "math-neurons" in capsys.readouterr().out
    assert main(["bricks", "show", "math-neurons", "--repo", repo]) == 0
    assert "kind:        neuron_set" in capsys.readouterr().out
    assert main(["bricks", "show", "math-neurons", "--repo", repo, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "neuron_set"
    assert main(["bricks", "verify", "--repo", repo]) == 0
    weights = tmp_path / "repo" / "bricks" / "math-neurons" / "weights.safetensors"
    weights.write_bytes(b"broken")
    assert main(["bricks", "verify", "--repo", repo]) == 2
    assert "DAMAGED math-neurons" in capsys.readouterr().out
    assert main(["bricks", "remove", "math-neurons", "--repo", repo]) == 0
    assert main(["bricks", "show", "--repo", repo]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "error: brickwork bricks show: the following arguments are required: NAME"
    )
    assert main(["bricks", "list", "--repo", str(tmp_path / "none")]) == 2
