"""The case type, checks and fault setups of ``benchmarks/hostile.py`` (issue 21).

Placeholders in arguments: {m} the tiny model, {fx} the fixture directory, {w} the case's own
work directory, {repo} its copy of the prepared repository (bricks cells, task, task2, polite,
fr)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Case:
    cls: int
    name: str
    argv: list[str]  # brickwork's arguments, or ["@python", code, args...] for a script
    expect: str = "error"  # error | ok (a fault to survive) | either (exit 0 or a clean error)
    setup: object = None  # setup(w, fx): prepares the work directory; may return a cleanup
    check: object = None  # check(w, fx, out, err) -> a problem (str) or None
    env: dict = field(default_factory=dict)
    keep_repo: bool | None = None  # saved bricks must stay byte-identical (default: not "ok")
    fsize: int | None = None  # RLIMIT_FSIZE in bytes: a full disk
    timeout: float | None = None


M = ["--model", "{m}"]
R = ["--repo", "{repo}"]
EDIT = ["edit", *M, "--fact", "Paris is in France", "--subject", "France", "--new", "zq"]
EDIT += ["--layer", "1", "--steps", "3", "--covariance-tokens", "200"]
GEN = ["generate", "hello", *M, "--configure", "none", "--max-new-tokens", "2"]
STEER = ["train", "steer", "--purpose", "p", "--positive", "{fx}/pos.txt"]
STEER += ["--negative", "{fx}/neg.txt", *M, *R, "--layers", "1"]
TASK = ["train", "task", "--purpose", "p", "--data", "{fx}/pairs.jsonl", *M, *R, "--steps", "1"]
KNOW = ["train", "knowledge", "--purpose", "p", "--data", "{fx}/docs.txt", *M, *R]
KNOW += ["--steps", "1"]
COMBINE = ["combine", "linear", *R, "--bricks", "task,task2"]
PROFILE = ["profile", *M, "--data", "builtin", "--split", "test", "--out", "{w}/p"]
ANALYZE = ["analyze", *M, "--data", "builtin", "--out", "{w}/a"]
GROW = ["grow", "width", *M, "--out", "{w}/g", "--layers", "0", "--neurons", "4"]
LOCATE = ["locate", *M, "--fact", "The capital of France is", "--subject", "France"]
LOCATE += ["--answer", "Paris", "--method", "trace"]
BRICKS = ("cells", "task", "task2", "polite", "fr")


def _python_env() -> dict:
    src = str(Path(__file__).resolve().parent.parent / "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


# --- checks -----------------------------------------------------------------------------------


def repo_of(w):
    from brickwork.bricks import BrickRepository

    return BrickRepository(Path(w) / "repo", create=False)


def brick_intact(name: str, purposes=None):
    """The brick ``name`` is a directory (not parked), reads, verifies, has one of ``purposes``."""

    def check(w, fx, out, err):
        if not (Path(w) / "repo" / "bricks" / name).is_dir():
            return f"brick {name} is not in bricks/"
        try:
            brick = repo_of(w).get(name)
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            return f"brick {name} unreadable: {exc}"
        if purposes and brick.purpose not in purposes:
            return f"brick {name} has purpose {brick.purpose!r}"
        damaged = repo_of(w).verify().get(name)
        return f"brick {name} damaged: {damaged}" if damaged else None

    return check


def both(*checks):
    def check(w, fx, out, err):
        return next((p for c in checks if (p := c(w, fx, out, err))), None)

    return check


def says(text: str, stream: str = "err"):
    def check(w, fx, out, err):
        return None if text in (err if stream == "err" else out) else f"no {text!r} in std{stream}"

    return check


def not_about(text: str):
    """The error is not about ``text`` (e.g. the model: the input was checked before loading)."""

    def check(w, fx, out, err):
        return f"the error is about {text}, so it came late" if text in err else None

    return check


def absent(rel: str):
    def check(w, fx, out, err):
        return f"{rel} was written" if (Path(w) / rel.format(w=w)).exists() else None

    return check


def gone(name: str):
    def check(w, fx, out, err):
        bricks = Path(w) / "repo" / "bricks"
        left = [
            p.name for p in bricks.iterdir() if p.name == name or p.name.startswith(f".{name}.")
        ]
        return f"left behind: {left}" if left else None

    return check


def no_leftovers(w, fx, out, err):
    left = repo_of(w).leftovers()
    return f"leftovers: {[p.name for p in left]}" if left else None


def all_intact(w, fx, out, err):
    """verify printed "N of N bricks intact" with N >= 4."""
    found = re.search(r"(\d+) of (\d+) bricks intact", out)
    if not found or found[1] != found[2] or int(found[1]) < 4:
        return f"verify said: {found[0] if found else out[-80:]!r}"
    return None


def strict_json(w, fx, out, err):
    try:
        json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except ValueError as exc:
        return f"not strict JSON: {exc}"
    return None


def shared_modes(rel: str):
    """Directories under ``rel`` are 0755 and files 0644 (readable by others)."""

    def check(w, fx, out, err):
        root = Path(w) / rel
        paths = [root, *root.rglob("*")] if root.exists() else []
        if not paths:
            return f"{rel} missing"
        bad = [
            f"{p.name} {oct(p.stat().st_mode & 0o777)}"
            for p in paths
            if (p.stat().st_mode & 0o777) != (0o755 if p.is_dir() else 0o644)
        ]
        return f"private modes: {bad[:3]}" if bad else None

    return check


def edited_model_differs(w, fx, out, err):
    from safetensors.torch import load_file

    path = Path(w) / "edited" / "model.safetensors"
    if not path.is_file():
        return "no edited model saved"
    edited, base = load_file(str(path)), load_file(str(Path(fx) / "model" / "model.safetensors"))
    if all(edited[k].equal(base[k]) for k in base):
        return "the saved model equals the base (a no-op edit)"
    return None


def covariance_healed(w, fx, out, err):
    import torch
    from safetensors.torch import load_file

    for path in (Path(w) / "cache" / "update").rglob("*.safetensors"):
        try:
            cov = load_file(str(path))["cov"]
        except Exception as exc:  # noqa: BLE001
            return f"cache {path.name} still unreadable: {exc}"
        if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or not torch.isfinite(cov).all():
            return f"cache {path.name} still damaged"
    return None


def model_cache_intact(w, fx, out, err):
    from brickwork.models.load import _cache_intact

    folders = list((Path(w) / "dc" / "models").iterdir())
    bad = [f.name for f in folders if not _cache_intact(f)]
    return f"model cache still damaged: {bad}" if bad else None


# --- setups -----------------------------------------------------------------------------------


def brick_json(name: str, change):
    """Rewrite brick ``name``'s brick.json with ``change(meta, folder)``."""

    def setup(w, fx):
        folder = Path(w) / "repo" / "bricks" / name
        path = folder / "brick.json"
        meta = json.loads(path.read_text())
        result = change(meta, folder)
        if isinstance(result, str):
            path.write_text(result)
        elif result is not False:
            path.write_text(json.dumps(meta))

    return setup


def place(src: str, name: str):
    """Put a fixture brick directory into the repository under ``name``."""

    def setup(w, fx):
        shutil.copytree(Path(fx) / src, Path(w) / "repo" / "bricks" / name)

    return setup


KILLER = """
import os, shutil, sys
from brickwork import io
from brickwork.bricks import BrickRepository
step, action, repo, name = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
n = [0]
def wrap(real):
    def step_fn(*a, **k):
        if n[0] == step:
            os._exit(9)
        n[0] += 1
        return real(*a, **k)
    return step_fn
io._rename, io._rmtree = wrap(os.replace), wrap(shutil.rmtree)
r = BrickRepository(repo)
if action == "overwrite":
    b = r.get(name)
    b.purpose = "newer"
    r.add(b, overwrite=True)
else:
    r.remove(name)
"""


def killed(step: int, action: str, name: str):
    """A writer killed (os._exit) at the ``step``-th rename or delete of an overwrite/removal."""

    def setup(w, fx):
        args = [sys.executable, "-c", KILLER, str(step), action, str(Path(w) / "repo"), name]
        proc = subprocess.run(args, env=_python_env(), capture_output=True, text=True)
        assert proc.returncode == 9, proc.stderr  # it died where it was meant to

    return setup


HOLDER = "import sys, time\nfrom filelock import FileLock\nlock = FileLock(sys.argv[1])\n"
HOLDER += "lock.acquire()\n"
HOLDER += "print('held', flush=True)\ntime.sleep(120)\n"


def lock_held(w, fx):
    """Another process holds the repository lock; the cleanup ends it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(Path(w) / "repo" / ".lock")], stdout=subprocess.PIPE
    )
    proc.stdout.readline()
    return proc.kill


def full(*steps):
    def setup(w, fx):
        for step in steps:
            step(Path(w))

    return setup


def damage_covariance(damage):
    def setup(w, fx):
        import torch
        from safetensors.torch import load_file, save_file

        for path in (Path(w) / "cache" / "update").rglob("*.safetensors"):
            stats = load_file(str(path))
            if damage in ("nan", "inf"):
                stats["cov"][0, 0] = float(damage)
            elif damage == "wrong shape":
                stats["cov"] = torch.eye(3)
            elif damage == "no cov":
                del stats["cov"]
            elif damage == "zero count":
                stats["count"] = torch.tensor(0)
            if damage == "truncated":
                path.write_bytes(path.read_bytes()[:100])
            elif damage == "empty":
                path.write_bytes(b"")
            elif damage == "garbage":
                path.write_bytes(b"\x00" * 64 + b"not safetensors")
            else:
                save_file(stats, str(path))

    return setup


def damage_model_cache(damage):
    def setup(w, fx):
        target = Path(w) / "dc"
        shutil.copytree(Path(fx) / "default-cache", target, copy_function=os.link)
        folder = next((target / "models").iterdir())
        name = "config.json" if damage == "config" else "model.safetensors"
        path = folder / name
        data = path.read_bytes()
        path.unlink()  # the fixture's hard link stays as it is
        if damage == "flip":
            data = (
                data[: len(data) // 2]
                + bytes([data[len(data) // 2] ^ 1])
                + data[1 + len(data) // 2 :]
            )
        elif damage == "truncated":
            data = data[: len(data) // 3]
        elif damage == "config":
            data = data.replace(b'"hidden_act"', b'"hidden_act_"')
        if damage == "missing":
            (folder / "tokenizer.json").unlink()
        elif damage == "no checksums":
            (folder / "brickwork-checksums.json").unlink()
        path.write_bytes(data)

    return setup


WRITER = """
import sys
from brickwork.bricks import BrickRepository
r = BrickRepository(sys.argv[1])
for i in range(int(sys.argv[2])):
    b = r.get("cells")
    b.purpose = ("coding", "coding2")[i % 2]
    r.add(b, overwrite=True)
"""
READERS = """
import subprocess, sys
from brickwork.bricks import BrickRepository
repo, mode, writer_code = sys.argv[1], sys.argv[2], sys.argv[3]
writer = subprocess.Popen([sys.executable, "-c", writer_code, repo, "60"])
r = BrickRepository(repo)
fails = reads = 0
while writer.poll() is None or reads < 5:
    try:
        if mode == "get":
            assert r.get("cells").purpose in ("coding", "coding2")
        elif mode == "list":
            assert "cells" in [m["name"] for m in r.list()] and not r.skipped
        else:
            cli = [sys.executable, "-m", "brickwork", "bricks", "show", "cells", "--repo", repo]
            done = subprocess.run(cli, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
    except Exception as exc:
        fails += 1
        print(repr(exc)[:200])
    reads += 1
writer.wait()
print(f"{fails} of {reads} reads failed; writer exit {writer.returncode}")
sys.exit(1 if fails or writer.returncode else 0)
"""
COMBINERS = """
import subprocess, sys
repo = sys.argv[1]
cli = [sys.executable, "-m", "brickwork", "combine", "linear", "--repo", repo, "--bricks",
       "task,task2", "--name"]
procs = [subprocess.Popen([*cli, f"m{i}"]) for i in range(4)]
codes = [p.wait() for p in procs]
print("exit codes", codes)
sys.exit(max(codes))
"""
