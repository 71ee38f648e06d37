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


def test_generate_auto_trains_the_router_once_and_caches_it(
    tiny_model_dirs, tmp_path, monkeypatch, capsys
):
    from brickwork.configure import router as router_module

    monkeypatch.setenv("BRICKWORK_CACHE", str(tmp_path / "cache"))
    trained = []
    real_train = router_module.train_router
    monkeypatch.setattr(
        router_module, "train_router", lambda *a, **k: trained.append(1) or real_train(*a, **k)
    )
    model = tiny_model_dirs["llama"]
    command = ["generate", "--model", model, "--max-new-tokens", "2", "Hi"]
    assert main(command) == 0
    first = capsys.readouterr()
    assert "training the instruction router" in first.err and "router: " in first.out
    assert len(list((tmp_path / "cache" / "routers").glob("*.safetensors"))) == 1
    assert main(command) == 0
    second = capsys.readouterr()
    assert "training the instruction router" not in second.err
    assert trained == [1]
    assert second.out.split("---")[1] == first.out.split("---")[1]  # same routing, same trace


def test_generate_refuses_bad_budget_and_static_without_analysis(tiny_model_dirs, capsys):
    model = tiny_model_dirs["llama"]
    assert main(["generate", "--model", model, "--budget", "1.5", "Hi"]) == 2
    assert "budget" in capsys.readouterr().err
    assert (
        main(["generate", "--model", model, "--configure", "math", "--selection", "static", "Hi"])
        == 2
    )
    assert "--analysis" in capsys.readouterr().err
