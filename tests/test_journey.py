"""The README's quick path as a new user runs it, on a tiny model: analyze, extract, train,
describe, retrieve, combine, edit, generate with bricks attached and configured. Each step must
work the first time, with nothing but the previous steps' outputs."""

from brickwork.cli import main
from tests.test_cli import write_data

SMALL = ["--eval-per-functionality", "1", "--curve-per-functionality", "1", "--quiet"]


def test_quick_path_end_to_end(tiny_model_dirs, tiny_samples, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BRICKWORK_CACHE", str(tmp_path / "cache"))
    model = ["--model", tiny_model_dirs["llama"]]
    repo = ["--repo", str(tmp_path / "bricks")]
    data = write_data(tmp_path / "d.jsonl", tiny_samples)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(s.prompt for s in tiny_samples if s.split == "train"))
    steps = [
        ["analyze", *model, "--data", data, "--out", str(tmp_path / "run"), *SMALL],
        ["bricks", "extract", "--analysis", str(tmp_path / "run"), *repo, "--groups", "4"],
        ["train", "task", *model, *repo, "--data", data, "--name", "a", "--purpose", "x"],
        ["train", "task", *model, *repo, "--data", data, "--name", "b", "--purpose", "y"],
        ["describe", "a", *model, *repo, "--prompts", str(prompts), "--description", "task a"],
        ["describe", "b", *model, *repo, "--prompts", str(prompts), "--description", "task b"],
        ["bricks", "retrieve", "print(1)", *model, *repo],
        ["combine", "ties", *repo, "--bricks", "a,b", "--name", "ab"],
        ["edit", *model, *repo, "--name", "e", "--fact", "Paris is in France"],
        ["generate", *model, *repo, "--brick", "ab", "--configure", "none", "Hello"],
        ["generate", *model, *repo, "--brick", "e", "--configure", "none", "Paris is in"],
        ["generate", *model, "--budget", "0.5", "--compare-dense", "print(1)"],
    ]
    edit_options = ["--subject", "France", "--new", "zq", "--layer", "1"]
    edit_options += ["--steps", "3", "--covariance", "identity"]
    steps[8] += edit_options
    for index, argv in enumerate(steps):
        argv = [*argv, "--steps", "2", "--quiet"] if argv[:2] == ["train", "task"] else argv
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 0, (index, argv, captured.err[-2000:])
        assert "Traceback" not in captured.err
    assert "dense" in captured.out and "router: " in captured.out


def test_a_trained_brick_is_retrievable_without_describe(
    tiny_model_dirs, tiny_samples, tmp_path, capsys
):
    from brickwork.bricks import BrickRepository
    from brickwork.ops.route import EMBEDDING_KEY

    model = ["--model", tiny_model_dirs["llama"]]
    repo = ["--repo", str(tmp_path / "bricks")]
    data = write_data(tmp_path / "d.jsonl", tiny_samples)
    train = ["train", "task", *model, *repo, "--data", data, "--steps", "2", "--quiet"]
    assert main([*train, "--name", "a", "--purpose", "write python code"]) == 0
    brick = BrickRepository(tmp_path / "bricks").get("a")
    assert brick.description == "write python code" and EMBEDDING_KEY in brick.tensors
    n_train = sum(s.split == "train" for s in tiny_samples)
    assert brick.spec["purpose_embedding"]["n_prompts"] == min(n_train, 256)
    capsys.readouterr()
    assert main(["bricks", "retrieve", "print(1)", *model, *repo]) == 0
    assert any(line.split()[2:3] == ["a"] for line in capsys.readouterr().out.splitlines())
