"""BrickRepository: CRUD and search, checksums, concurrent writers, and killed writers."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from brickwork import BrickworkError
from brickwork.bricks import BrickRepository, neuron_set_brick


def make_brick(name, purpose="coding", base="sha256:base"):
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, : len(name) % 16] = True
    return neuron_set_brick(name, purpose, base, mask, rule="test", description=f"{purpose} set")


def test_add_get_list_search_remove(tmp_path):
    repo = BrickRepository(tmp_path / "repo")
    repo.add(make_brick("coding-neurons"))
    repo.add(make_brick("math-neurons", purpose="math", base="sha256:other"))
    assert [m["name"] for m in repo.list()] == ["coding-neurons", "math-neurons"]
    assert torch.equal(
        repo.get("coding-neurons").neuron_mask(), make_brick("coding-neurons").neuron_mask()
    )
    assert [m["name"] for m in repo.search(purpose="math")] == ["math-neurons"]
    assert [m["name"] for m in repo.search(base_model="sha256:base")] == ["coding-neurons"]
    assert [m["name"] for m in repo.search(text="MATH SET")] == ["math-neurons"]
    assert repo.search(kind="plugin") == []
    with pytest.raises(BrickworkError, match="already in"):
        repo.add(make_brick("coding-neurons"))
    repo.add(make_brick("coding-neurons", purpose="code"), overwrite=True)
    assert repo.get("coding-neurons").purpose == "code"
    repo.remove("math-neurons")
    assert [m["name"] for m in BrickRepository(tmp_path / "repo").list()] == ["coding-neurons"]
    with pytest.raises(BrickworkError, match="no brick named 'math-neurons'"):
        repo.get("math-neurons")


def test_path_names_are_rejected(tmp_path):
    repo = BrickRepository(tmp_path / "repo")
    for name in ("../outside", "a/../../b"):
        with pytest.raises(BrickworkError, match="invalid brick name"):
            repo.get(name)
    assert not (tmp_path / "outside").exists()


def test_verify_reports_damaged_files(tmp_path):
    repo = BrickRepository(tmp_path / "repo")
    repo.add(make_brick("a-set"))
    repo.add(make_brick("b-set"))
    weights = tmp_path / "repo" / "bricks" / "b-set" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-3])
    assert repo.verify() == {"a-set": [], "b-set": ["weights.safetensors"]}


def test_a_folder_that_is_not_a_repository_is_refused(tmp_path):
    (tmp_path / "stuff.txt").write_text("mine")
    with pytest.raises(BrickworkError, match="not a brick repository"):
        BrickRepository(tmp_path)
    with pytest.raises(BrickworkError, match="not a brick repository"):
        BrickRepository(tmp_path / "nothing", create=False)


WRITER = textwrap.dedent("""
    import sys, torch
    from brickwork.bricks import BrickRepository, neuron_set_brick
    repo = BrickRepository(sys.argv[1])
    for i in range(int(sys.argv[3])):
        mask = torch.ones(4, 256, dtype=torch.bool)
        repo.add(neuron_set_brick(f"{sys.argv[2]}-{i}", "x", "sha256:b", mask, rule="r"))
""")


def test_two_concurrent_writers_lose_nothing(tmp_path):
    root = str(tmp_path / "repo")
    BrickRepository(root)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, root, tag, "12"]) for tag in "ab"]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    repo = BrickRepository(root)
    assert len(repo.list()) == 24
    assert all(bad == [] for bad in repo.verify().values())


SLOW_WRITER = textwrap.dedent("""
    import sys, time, torch
    import brickwork.bricks.format as fmt
    from brickwork.bricks import BrickRepository, neuron_set_brick
    repo, ones = BrickRepository(sys.argv[1]), torch.ones(2, 8, dtype=torch.bool)
    repo.add(neuron_set_brick("done-before", "x", "sha256:b", ones, rule="r"))
    real_save = fmt.save_file
    def slow_save(*args, **kwargs):
        real_save(*args, **kwargs)
        print("writing", flush=True)
        time.sleep(60)
    fmt.save_file = slow_save
    repo.add(neuron_set_brick("interrupted", "x", "sha256:b", ones, rule="r"))
""")


def test_a_writer_killed_mid_write_leaves_a_usable_repository(tmp_path):
    root = str(tmp_path / "repo")
    writer = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, root], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "writing"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    time.sleep(0.1)
    repo = BrickRepository(root)
    assert [m["name"] for m in repo.list()] == ["done-before"]
    assert repo.verify() == {"done-before": []}
    repo.add(make_brick("after-the-crash"))  # the lock is free again
    assert len(repo.list()) == 2
