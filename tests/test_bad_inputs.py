"""Bad input, run through the CLI in-process: exit status 2, exactly one ``error:`` line, no
traceback, and nothing already saved changed. Every row is one malformed input."""

import hashlib
import json
from pathlib import Path

import pytest
import torch

from brickwork.bricks import BrickRepository, neuron_set_brick, save_brick
from brickwork.bricks.plugins import steering_brick
from brickwork.cli import main
from brickwork.ops.grow import grow_width, save_grown
from tests.tiny import save_broken_model_copies

D_MODEL = 32  # the tiny llama's width (tests/tiny.py)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dirs):
    """A tiny model, a repository holding one brick, and malformed files beside them."""
    from brickwork.models import load_model

    root = tmp_path_factory.mktemp("bad_inputs")
    model = tiny_model_dirs["llama"]
    fingerprint = load_model(model).fingerprint
    repo = BrickRepository(root / "repo")
    repo.add(
        neuron_set_brick(
            "kept", "coding", fingerprint, torch.ones(2, 64, dtype=torch.bool), rule="test"
        )
    )
    (root / "a_file").write_text("not a directory")
    (root / "latin1.jsonl").write_bytes(b'{"id": "a", "prompt": "caf\xe9"}\n')
    (root / "router.safetensors").write_bytes(b"garbage, not a router")
    (root / "pos.txt").write_text("happy\nglad\n")
    (root / "neg.txt").write_text("sad\nangry\n")
    (root / "existing").mkdir()
    save_broken_model_copies(model, root)
    lockdir = BrickRepository(root / "lockdir")
    (lockdir.root / ".lock").mkdir()
    for name, vectors, layers in (
        ("wide", torch.ones(1, D_MODEL + 1), [0]),
        ("far", torch.ones(1, D_MODEL), [999]),
        ("nan", torch.full((1, D_MODEL), float("nan")), [0]),
        ("inf", torch.full((1, D_MODEL), float("inf")), [0]),
    ):
        brick = steering_brick(name, "x", fingerprint, torch.ones(1, vectors.shape[1]), layers)
        brick.tensors["vectors"] = vectors  # as a foreign tool might write it (built: refused)
        save_brick(brick, root / f"steer-{name}")
    grown = grow_width(load_model(model), [0], 8)
    grown.loaded.tokenizer = load_model(model).tokenizer
    save_grown(grown, root / "grown-width")
    return {"root": root, "model": model}


def _args(row, world):
    root, model = world["root"], world["model"]
    return [a.format(root=root, model=model) for a in row]


M = ["--model", "{model}"]
EDIT = ["edit", *M, "--fact", "Paris is in France", "--subject", "France", "--new", "zq"]
STEER = ["train", "steer", "--purpose", "p", "--positive", "{root}/pos.txt"]
STEER += ["--negative", "{root}/neg.txt", *M, "--repo", "{root}/repo"]
GENERATE = ["generate", "hello", *M, "--configure", "none", "--max-new-tokens", "2"]
CASES = {
    "repo is a file": ["bricks", "list", "--repo", "{root}/a_file"],
    "repo is not a repository": ["bricks", "show", "kept", "--repo", "{root}/existing"],
    "name with a newline": ["bricks", "show", "kept\n", "--repo", "{root}/repo"],
    "name with a path": ["bricks", "remove", "../repo", "--repo", "{root}/repo"],
    "remove a missing brick": ["bricks", "remove", "gone", "--repo", "{root}/repo"],
    ".lock is a directory": ["bricks", "remove", "kept", "--repo", "{root}/lockdir"],
    "extract without analysis": [
        "bricks",
        "extract",
        "--analysis",
        "{root}/no",
        "--repo",
        "{root}/new",
    ],
    "profile non-UTF-8 data": [
        "profile",
        *M,
        "--data",
        "{root}/latin1.jsonl",
        "--out",
        "{root}/p1",
    ],
    "profile --out a file": ["profile", *M, "--data", "builtin", "--out", "{root}/a_file"],
    "analyze non-UTF-8 data": [
        "analyze",
        *M,
        "--data",
        "{root}/latin1.jsonl",
        "--out",
        "{root}/a1",
    ],
    "analyze --fraction 2": [
        "analyze",
        *M,
        "--data",
        "builtin",
        "--out",
        "{root}/a2",
        "--fraction",
        "2",
    ],
    "analyze --fraction 0": [
        "analyze",
        *M,
        "--data",
        "builtin",
        "--out",
        "{root}/a3",
        "--fraction",
        "0",
    ],
    "analyze --cett-targets 1.5": [
        "analyze",
        *M,
        "--data",
        "builtin",
        "--out",
        "{root}/a4",
        "--cett-targets",
        "0.1,1.5",
    ],
    "estimate --batch-size 0": ["estimate", *M, "--batch-size", "0"],
    "estimate --seq-len -1": ["estimate", *M, "--seq-len", "-1"],
    "locate --ig-steps 0": [
        "locate",
        *M,
        "--fact",
        "Paris is in",
        "--answer",
        "x",
        "--ig-steps",
        "0",
    ],
    "train steer --purpose ''": [*STEER[:3], "", *STEER[4:], "--name", "s", "--layers", "0"],
    "analyze --out a file": ["analyze", *M, "--data", "builtin", "--out", "{root}/a_file"],
    "steer --layers a,b": [*STEER, "--name", "s", "--layers", "a,b"],
    "steer existing name": [*STEER, "--name", "kept", "--layers", "0"],
    "steer invalid name": [*STEER, "--name", "bad name", "--layers", "0"],
    "steer into read-only-lock repo": [
        *STEER[:-1],
        "{root}/lockdir",
        "--name",
        "s",
        "--layers",
        "0",
    ],
    "edit existing name": [*EDIT, "--repo", "{root}/repo", "--name", "kept"],
    "edit --out existing": [
        *EDIT,
        "--repo",
        "{root}/repo",
        "--name",
        "e2",
        "--out",
        "{root}/existing",
    ],
    "edit invalid name": [*EDIT, "--repo", "{root}/repo", "--name", "a/b"],
    "generate garbage router": [*GENERATE, "--router", "{root}/router.safetensors"],
    "generate --trace in a missing dir": [*GENERATE, "--trace", "{root}/nodir/trace.json"],
    "generate --trace onto a dir": [*GENERATE, "--trace", "{root}/existing"],
    "generate --max-new-tokens 0": [*GENERATE[:-1], "0"],
    "steering brick too wide": [*GENERATE, "--plugin", "{root}/steer-wide"],
    "steering brick layer 999": [*GENERATE, "--plugin", "{root}/steer-far"],
    "steering brick of NaN": [*GENERATE, "--plugin", "{root}/steer-nan"],
    "steering brick of inf": [*GENERATE, "--plugin", "{root}/steer-inf"],
    "steer --scale nan": [*STEER, "--name", "s", "--layers", "0", "--scale", "nan"],
    "steer --scale inf": [*STEER, "--name", "s", "--layers", "0", "--scale", "inf"],
    "--configure an unknown functionality": [*GENERATE[:4], "astrology"],
    "generate an empty instruction ''": ["generate", "", *M],
    "locate --answer '' (empty)": ["locate", *M, "--fact", "Paris is in", "--answer", ""],
    "edit eval --limit -1": ["edit", "eval", *M, "--limit", "-1"],
    "selection on a width-grown model": [
        "generate",
        "hello",
        "--model",
        "{root}/grown-width",
        "--configure",
        "coding",
    ],
    "generate an empty instruction": ["generate", "  ", *M],
    "profile --max-tokens 0": [
        "profile",
        *M,
        "--data",
        "builtin",
        "--out",
        "{root}/p2",
        "--max-tokens",
        "0",
    ],
    "locate --answer ''": ["locate", *M, "--fact", "Paris is in", "--answer", " "],
    "edit eval --limit 0": ["edit", "eval", *M, "--limit", "0"],
    "model without weights": [*GENERATE[:2], "--model", "{root}/noweights"],
    "model with only a .bin": [*GENERATE[:2], "--model", "{root}/binonly"],
    "model with truncated weights": [*GENERATE[:2], "--model", "{root}/truncated"],
    "unknown option": ["bricks", "list", "--repo", "{root}/repo", "--colour"],
}


def _snapshot(root: Path) -> dict:
    """Every file under the repository with a hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clean_error(case, world, capsys):
    root = world["root"]
    before = _snapshot(root / "repo")
    status = main(_args(CASES[case], world))
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert _snapshot(root / "repo") == before
    assert not (root / "new").exists()  # no empty repository made for a failed extract


def test_malformed_brick_json_leaves_the_rest_listed(world, capsys, tmp_path):
    repo = BrickRepository(tmp_path / "r")
    for name in ("a", "b"):
        repo.add(
            neuron_set_brick(
                name, "coding", "sha256:x", torch.ones(2, 4, dtype=torch.bool), rule="t"
            )
        )
    meta = json.loads((repo.bricks_dir / "a" / "brick.json").read_text())
    meta["kind"] = ["neuron_set"]
    (repo.bricks_dir / "a" / "brick.json").write_text(json.dumps(meta))
    assert main(["bricks", "list", "--repo", str(repo.root)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split() == ["name", "kind", "origin", "purpose"]
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["b"]
    assert "warning: skipped brick a" in err
    assert main(["bricks", "verify", "--repo", str(repo.root)]) == 2
    assert "DAMAGED a" in capsys.readouterr().out


def test_verify_reports_and_gc_removes_leftovers(tmp_path, capsys):
    repo = BrickRepository(tmp_path / "r")
    repo.add(
        neuron_set_brick("a", "coding", "sha256:x", torch.ones(2, 4, dtype=torch.bool), rule="t")
    )
    (repo.bricks_dir / ".a.x1.tmp").mkdir()
    assert main(["bricks", "verify", "--repo", str(repo.root)]) == 0
    assert "LEFTOVER .a.x1.tmp" in capsys.readouterr().out
    assert main(["bricks", "gc", "--repo", str(repo.root)]) == 0
    assert "deleted .a.x1.tmp" in capsys.readouterr().out
    assert repo.leftovers() == []


def test_show_writes_strict_json(tmp_path, capsys):
    repo = BrickRepository(tmp_path / "r")
    brick = neuron_set_brick(
        "a", "coding", "sha256:x", torch.ones(2, 4, dtype=torch.bool), rule="t"
    )
    brick.metrics = {"loss": float("inf")}
    repo.add(brick)
    assert main(["bricks", "show", "a", "--repo", str(repo.root), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))
    assert shown["metrics"] == {"loss": "inf"}


def test_locate_checks_its_brick_names_before_loading(world, capsys, tmp_path):
    """The model here cannot load: the error is about the name, so it came first."""
    repo = BrickRepository(tmp_path / "r")
    mask = torch.ones(2, 64, dtype=torch.bool)
    repo.add(neuron_set_brick("loc-trace", "coding", "sha256:x", mask, rule="t"))
    fact = ["--fact", "The capital of France is", "--subject", "France", "--answer", "Paris"]
    args = ["locate", "--model", str(world["root"] / "noweights"), *fact, "--method", "trace"]
    assert main([*args, "--repo", str(repo.root), "--name", "loc"]) == 2
    assert "a brick named 'loc-trace' is already in" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["linear", "--bricks", "kept,kept"], "--bricks names a brick twice"),
        (["task-arithmetic", "--bricks", "kept", "--scale", "nan"], "--scale must be a finite"),
        (["linear", "--bricks", "kept", "--scale", "nan"], "--scale must be a finite"),
    ],
)
def test_combine_refuses_a_repeated_brick_and_a_non_finite_option(world, capsys, args, message):
    repo = str(world["root"] / "repo")
    assert main(["combine", *args, "--name", "m", "--repo", repo]) == 2
    assert message in capsys.readouterr().err
