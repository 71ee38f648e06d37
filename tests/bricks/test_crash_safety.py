"""Fault injection: a process killed between any two steps of an overwrite or a removal leaves
the old or the new brick (never none), and what it leaves behind blocks nothing later."""

import contextlib
import json
import os
import shutil

import pytest
import torch

from brickwork import BrickworkError, io
from brickwork.bricks import BrickRepository, neuron_set_brick


class Killed(BaseException):
    """The process died here: nothing after it runs (not even cleanup)."""


def make_brick(name, purpose="coding"):
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, : len(purpose)] = True
    return neuron_set_brick(name, purpose, "sha256:base", mask, rule="test")


def kill_at(monkeypatch, step):
    """Make the ``step``-th rename or delete of a directory swap (0-based) kill the process."""
    calls = {"n": 0, "dead": False}

    def wrap(real):
        def step_fn(*args, **kwargs):
            if calls["dead"] or calls["n"] == step:
                calls["dead"] = True
                raise Killed
            calls["n"] += 1
            return real(*args, **kwargs)

        return step_fn

    monkeypatch.setattr(io, "_rename", wrap(os.replace))
    monkeypatch.setattr(io, "_rmtree", wrap(shutil.rmtree))
    return calls


STEPS = 4  # an overwrite: target -> .old, tmp -> target, delete .old (+1: runs to the end)


@pytest.mark.parametrize("step", range(STEPS))
def test_overwrite_killed_at_any_step_keeps_old_or_new(tmp_path, monkeypatch, step):
    repo = BrickRepository(tmp_path / "repo")
    repo.add(make_brick("b", "old"))
    calls = kill_at(monkeypatch, step)
    with contextlib.suppress(Killed):
        repo.add(make_brick("b", "newer"), overwrite=True)
    assert calls["dead"] == (step < 3)
    monkeypatch.undo()
    assert repo.get("b").purpose in ("old", "newer")  # never gone
    assert [m["name"] for m in repo.list()] == ["b"]
    repo.add(make_brick("b", "third"), overwrite=True)  # leftovers block nothing
    assert repo.get("b").purpose == "third"
    assert repo.leftovers() == []


@pytest.mark.parametrize("step", range(STEPS - 1))
def test_kill_parked_brick_is_found_by_readers(tmp_path, monkeypatch, step):
    """A reader arriving right after the kill (before any write) still gets the brick."""
    repo = BrickRepository(tmp_path / "repo")
    repo.add(make_brick("b", "old"))
    kill_at(monkeypatch, step)
    with pytest.raises(Killed):
        repo.add(make_brick("b", "newer"), overwrite=True)
    monkeypatch.undo()
    assert BrickRepository(tmp_path / "repo").get("b").purpose in ("old", "newer")


@pytest.mark.parametrize("step", range(2))
def test_remove_killed_at_any_step(tmp_path, monkeypatch, step):
    repo = BrickRepository(tmp_path / "repo")
    repo.add(make_brick("b", "old"))
    kill_at(monkeypatch, step)
    with pytest.raises(Killed):
        repo.remove("b")
    monkeypatch.undo()
    names = [m["name"] for m in repo.list()]
    assert names == (["b"] if step == 0 else [])
    if step == 0:
        repo.remove("b")
    repo.add(make_brick("b", "again"))  # a stale .b.removed blocks nothing
    repo.remove("b")
    repo.add(make_brick("b", "again"))
    assert repo.get("b").purpose == "again" and repo.leftovers() == []


def test_stale_old_and_removed_dirs_block_nothing(tmp_path):
    repo = BrickRepository(tmp_path / "repo")
    repo.add(make_brick("b", "old"))
    for stale in (".b.old", ".b.removed", ".b.x1.tmp"):
        (repo.bricks_dir / stale).mkdir()
        (repo.bricks_dir / stale / "junk").write_text("x")
    repo.add(make_brick("b", "new"), overwrite=True)
    assert repo.get("b").purpose == "new" and repo.leftovers() == []
    (repo.bricks_dir / ".b.old").mkdir()
    repo.remove("b")
    assert repo.list() == [] and repo.leftovers() == []


def test_parked_brick_without_target_is_put_back(tmp_path):
    """The worst kill (between the two renames): the brick sits in .b.old only."""
    repo = BrickRepository(tmp_path / "repo")
    repo.add(make_brick("b", "old"))
    os.replace(repo.bricks_dir / "b", repo.bricks_dir / ".b.old")
    assert repo.get("b").purpose == "old"  # the reader finishes the swap
    assert (repo.bricks_dir / "b").is_dir() and repo.leftovers() == []


@pytest.mark.parametrize("step", range(STEPS - 1))
def test_listing_and_removal_after_a_killed_overwrite(tmp_path, monkeypatch, step):
    """list and verify show a brick a kill left parked; remove leaves nothing of it behind."""
    repo = BrickRepository(tmp_path / "repo")
    repo.add(make_brick("a"))
    repo.add(make_brick("b", "old"))
    kill_at(monkeypatch, step)
    with pytest.raises(Killed):
        repo.add(make_brick("b", "newer"), overwrite=True)
    monkeypatch.undo()
    assert [m["name"] for m in BrickRepository(tmp_path / "repo").list()] == ["a", "b"]
    assert BrickRepository(tmp_path / "repo").verify() == {"a": [], "b": []}
    repo.remove("b")
    assert [p.name for p in repo.leftovers()] == []


def test_gc_reports_and_removes_leftovers(tmp_path):
    repo = BrickRepository(tmp_path / "repo")
    repo.add(make_brick("a"))
    repo.add(make_brick("b"))
    (repo.bricks_dir / ".a.k2.tmp").mkdir()
    os.replace(repo.bricks_dir / "b", repo.bricks_dir / ".b.old")
    assert [p.name for p in repo.leftovers()] == [".a.k2.tmp", ".b.old"]
    assert [p.name for p in repo.gc()] == [".a.k2.tmp"]
    assert repo.leftovers() == [] and [m["name"] for m in repo.list()] == ["a", "b"]


def test_directories_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        repo = BrickRepository(tmp_path / "repo")
        repo.add(make_brick("b"))
    finally:
        os.umask(old)
    assert (repo.bricks_dir / "b").stat().st_mode & 0o777 == 0o755


def test_lock_wait_says_what_it_waits_for_and_gives_up(tmp_path, monkeypatch, capsys):
    repo = BrickRepository(tmp_path / "repo")
    other = BrickRepository(tmp_path / "repo")
    monkeypatch.setenv("BRICKWORK_LOCK_TIMEOUT", "0.2")
    gave_up = pytest.raises(BrickworkError, match="gave up after 0.2 s waiting for the lock")
    with other.locked(), gave_up:
        repo.add(make_brick("b"))
    assert "waiting for the lock of brick repository" in capsys.readouterr().err
    repo.add(make_brick("b"))  # free again
    monkeypatch.setenv("BRICKWORK_LOCK_TIMEOUT", "soon")
    with pytest.raises(BrickworkError, match="BRICKWORK_LOCK_TIMEOUT must be a number"):
        repo.add(make_brick("c"))


def test_reader_racing_an_overwrite_retries_under_the_lock(tmp_path, monkeypatch):
    """A read that lands between the two renames of an overwrite sees no brick; it retries under
    the lock instead of reporting it missing or corrupt."""
    repo = BrickRepository(tmp_path / "repo")
    repo.add(make_brick("b", "old"))
    real = repo._read
    calls = []

    def racing_read(name, path):
        calls.append(name)
        if len(calls) == 1:  # the first read finds the brick parked (an overwrite in flight)
            os.replace(path, io.old_dir(path))
        return real(name, path)

    monkeypatch.setattr(repo, "_read", racing_read)
    assert repo.get("b").purpose == "old" and len(calls) == 2


MALFORMED = {
    "missing purpose": lambda m: m.pop("purpose"),
    "kind a list": lambda m: m.update(kind=["neuron_set"]),
    "files a list": lambda m: m.update(files=["weights.safetensors"]),
    "files empty": lambda m: m.update(files={}),
    "weights dropped from files": lambda m: m["files"].pop("weights.safetensors"),
    "file outside the brick": lambda m: m["files"].update({"../../etc/passwd": "0" * 64}),
    "name not its directory": lambda m: m.update(name="other"),
    "name with a newline": lambda m: m.update(name="b\n"),
    "spec a string": lambda m: m.update(spec="x"),
    "spec field wrong type": lambda m: m["spec"].update(n_layers="two"),
    "unknown kind": lambda m: m.update(kind="nope"),
    "metrics a list": lambda m: m.update(metrics=[1]),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_one_malformed_brick_json_spoils_only_its_brick(tmp_path, case):
    repo = BrickRepository(tmp_path / "repo")
    for name in ("a", "b", "c"):
        repo.add(make_brick(name))
    meta_file = repo.bricks_dir / "b" / "brick.json"
    meta = json.loads(meta_file.read_text())
    MALFORMED[case](meta)
    meta_file.write_text(json.dumps(meta))
    assert [m["name"] for m in repo.list()] == ["a", "c"]
    assert list(repo.skipped) == ["b"]
    assert [m["name"] for m in repo.search(purpose="coding")] == ["a", "c"]
    assert repo.get("a").name == "a" and repo.get("c").name == "c"
    with pytest.raises(BrickworkError):
        repo.get("b")
    report = repo.verify()
    assert report["a"] == report["c"] == [] and report["b"] != []


def test_unlisted_file_fails_verification(tmp_path):
    repo = BrickRepository(tmp_path / "repo")
    repo.add(make_brick("b"))
    (repo.bricks_dir / "b" / "extra.bin").write_bytes(b"x")
    assert repo.verify() == {"b": ["extra.bin"]}


def test_trailing_newline_name_is_refused(tmp_path):
    with pytest.raises(BrickworkError, match="invalid brick name"):
        make_brick("name\n")
