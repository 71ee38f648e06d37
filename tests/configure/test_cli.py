"""brickwork train-router / generate on a tiny model: answer plus trace, clear errors."""

import json

from brickwork.cli import main


def test_generate_dense_and_configured(tiny_model_dirs, tmp_path, capsys):
    model = tiny_model_dirs["llama"]
    assert (
        main(["generate", "--model", model, "--configure", "none", "--max-new-tokens", "3", "Hi"])
        == 0
    )
    out = capsys.readouterr().out
    assert "selection: none" in out and "plugins: none" in out
    trace_file = tmp_path / "trace.json"
    code = main(
        [
            "generate",
            "--model",
            model,
            "--configure",
            "math",
            "--budget",
            "0.25",
            "--max-new-tokens",
            "3",
            "--trace",
            str(trace_file),
            "Hi",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "neurons per layer: 16 16" in out
    trace = json.loads(trace_file.read_text())
    assert trace["functionality"] == "math" and trace["selection"] == "prompt"


def test_route_then_generate_auto(tiny_model_dirs, tmp_path, capsys):
    model = tiny_model_dirs["llama"]
    router = tmp_path / "router.safetensors"
    assert main(["train-router", "--model", model, "--out", str(router), "--quiet"]) == 0
    assert "test-split accuracy" in capsys.readouterr().out
    code = main(
        [
            "generate",
            "--model",
            model,
            "--router",
            str(router),
            "--budget",
            "0.5",
            "--max-new-tokens",
            "2",
            "print('hi')",
        ]
    )
    assert code == 0
    assert "router: " in capsys.readouterr().out


def test_generate_refuses_bad_budget_and_missing_router(tiny_model_dirs, capsys):
    model = tiny_model_dirs["llama"]
    assert main(["generate", "--model", model, "--budget", "1.5", "Hi"]) == 2
    assert "budget" in capsys.readouterr().err
    assert main(["generate", "--model", model, "Hi"]) == 2
    assert "needs a router" in capsys.readouterr().err
    assert (
        main(["generate", "--model", model, "--configure", "math", "--selection", "static", "Hi"])
        == 2
    )
    assert "--analysis" in capsys.readouterr().err
