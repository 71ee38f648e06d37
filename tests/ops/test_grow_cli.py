"""brickwork grow width|depth|experts|train on a tiny model directory, and clear errors."""

from __future__ import annotations

import json

from brickwork.cli import main
from brickwork.ops.grow import load_grown


def test_grow_then_train(tmp_path, tiny_model_dirs, capsys):
    model = tiny_model_dirs["llama"]
    assert (
        main(
            ["grow", "depth", "--model", model, "--positions", "1", "--out", str(tmp_path / "deep")]
        )
        == 0
    )
    assert (
        main(
            [
                "grow",
                "width",
                "--model",
                str(tmp_path / "deep"),
                "--layers",
                "0,2",
                "--neurons",
                "4",
                "--out",
                str(tmp_path / "wide"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "grow",
                "experts",
                "--model",
                model,
                "--layers",
                "1",
                "--experts",
                "2",
                "--out",
                str(tmp_path / "moe"),
            ]
        )
        == 0
    )
    wide = load_grown(tmp_path / "wide")
    assert [h["op"] for h in wide.history] == ["depth", "width"]
    assert wide.trainable_count() == 2 * 4 * 32 * 3
    data = tmp_path / "pairs.jsonl"
    rows = [
        {
            "id": f"r{i}",
            "prompt": f"say {i}",
            "functionality": "toy",
            "reference": "ok",
            "split": "test" if i < 3 else "train",
        }
        for i in range(10)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert (
        main(
            [
                "grow",
                "train",
                "--model",
                str(tmp_path / "wide"),
                "--data",
                str(data),
                "--steps",
                "3",
                "--eval-every",
                "3",
                "--batch-size",
                "2",
                "--quiet",
                "--out",
                str(tmp_path / "trained"),
            ]
        )
        == 0
    )
    assert "trained 768 grown parameters" in capsys.readouterr().out
    assert load_grown(tmp_path / "trained").history[-1]["op"] == "train"


def test_grow_errors_are_one_line(tmp_path, tiny_model_dirs, capsys):
    model = tiny_model_dirs["gpt2"]
    out = str(tmp_path / "x")
    assert (
        main(["grow", "width", "--model", model, "--layers", "7", "--neurons", "4", "--out", out])
        == 2
    )
    assert "error: layer index 7 is out of range" in capsys.readouterr().err
    assert (
        main(["grow", "width", "--model", model, "--layers", "0", "--neurons", "0", "--out", out])
        == 2
    )
    assert "must be a positive integer" in capsys.readouterr().err
    assert main(["grow", "train", "--model", model, "--data", "x.jsonl", "--out", out]) == 2
    assert "not a grown model directory" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
