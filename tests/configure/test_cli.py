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
    assert _stable(second.out) == _stable(first.out)  # same routing, same answer and trace


def test_generate_refuses_bad_budget_and_static_without_analysis(tiny_model_dirs, capsys):
    model = tiny_model_dirs["llama"]
    assert main(["generate", "--model", model, "--budget", "1.5", "Hi"]) == 2
    assert "budget" in capsys.readouterr().err
    assert (
        main(["generate", "--model", model, "--configure", "math", "--selection", "static", "Hi"])
        == 2
    )
    assert "--analysis" in capsys.readouterr().err


def _stable(out: str) -> list[str]:
    """The output without its decode-speed line (timings vary)."""
    return [line for line in out.splitlines() if not line.startswith("decode:")]


def _generate(model, *extra):
    return ["generate", "--model", model, "--max-new-tokens", "4", *extra, "Hi there"]


def test_generate_controls_raw_sampling_and_dense_comparison(tiny_model_dirs, tmp_path, capsys):
    model = tiny_model_dirs["llama"]
    trace_file = tmp_path / "trace.json"
    command = _generate(model, "--configure", "math", "--compare-dense", "--trace", str(trace_file))
    assert main([*command, "--no-chat"]) == 0
    out = capsys.readouterr().out
    trace = json.loads(trace_file.read_text())
    assert trace["new_tokens"] == 4 and trace["dense_tokens_per_second"] > 0
    assert trace["dense_answer"] is not None and "dense" in out.splitlines()[-1]
    assert main([*command, "--chat"]) == 0
    capsys.readouterr()
    assert json.loads(trace_file.read_text())["dense_answer"] != trace["dense_answer"]  # template
    sampled = _generate(model, "--configure", "none", "--temperature", "5", "--top-p", "0.9")
    answers = []
    for seed in ("1", "1", "2"):
        assert main([*sampled, "--seed", seed, "--repetition-penalty", "1.2"]) == 0
        answers.append(capsys.readouterr().out.split("---")[0])
    assert answers[0] == answers[1] != answers[2]
    assert main([*sampled, "--top-p", "1.5"]) == 2


def test_generate_attaches_bricks_by_name(tiny_llama, tiny_model_dirs, tmp_path, capsys):
    from brickwork.bricks import BrickRepository, save_brick
    from tests.ops.test_combine import make_lora

    brick = make_lora(tiny_llama, "styled", 3)
    repo = BrickRepository(tmp_path / "repo")
    repo.add(brick)
    model = tiny_model_dirs["llama"]
    base = _generate(model, "--configure", "none")
    assert main([*base, "--brick", "styled", "--repo", str(repo.root)]) == 0
    by_name = capsys.readouterr().out
    assert "plugins: styled" in by_name
    assert main([*base, "--plugin", str(save_brick(brick, tmp_path / "dir"))]) == 0
    assert _stable(capsys.readouterr().out) == _stable(by_name)
    assert main(base) == 0
    assert capsys.readouterr().out.split("---")[0] != by_name.split("---")[0]
    assert main([*base, "--brick", "styled"]) == 2
    assert "needs --repo" in capsys.readouterr().err
    assert main([*base, "--brick", "nope", "--repo", str(repo.root)]) == 2
