"""The checked reads and atomic writes of brickwork/io.py."""

import os

import pytest
import torch
from safetensors.torch import save_file

from brickwork.errors import BrickworkError
from brickwork.io import (
    check_replaceable,
    read_marker_json,
    read_tensors,
    replace_atomically,
    replace_dir_atomically,
    write_marked_dir,
    write_text_atomically,
)


def test_write_text_atomically_writes_and_replaces(tmp_path):
    target = tmp_path / "notes.txt"
    write_text_atomically(target, "first")
    write_text_atomically(target, "second é")
    assert target.read_text(encoding="utf-8") == "second é"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # no temporary file left


def test_read_tensors_round_trips_and_refuses_a_broken_file(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file({"x": torch.arange(3.0)}, str(good))
    assert torch.equal(read_tensors(good)["x"], torch.arange(3.0))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(BrickworkError, match="cannot read"):
        read_tensors(bad)


def test_read_marker_json_names_what_is_missing_or_corrupt(tmp_path):
    with pytest.raises(BrickworkError, match="is not a model kit: kit.json is missing"):
        read_marker_json(tmp_path, "kit.json", "model kit")
    (tmp_path / "kit.json").write_text("{", encoding="utf-8")
    with pytest.raises(BrickworkError, match="corrupt"):
        read_marker_json(tmp_path, "kit.json", "model kit")
    (tmp_path / "kit.json").write_text('{"a": 1}', encoding="utf-8")
    assert read_marker_json(tmp_path, "kit.json", "model kit") == {"a": 1}


def test_check_replaceable_refuses_only_a_foreign_directory(tmp_path):
    check_replaceable(tmp_path / "new", "kit.json", "model kit")  # absent: fine
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "kit.json").write_text("{}", encoding="utf-8")
    check_replaceable(tmp_path / "ours", "kit.json", "model kit")  # one of ours: fine
    (tmp_path / "other").mkdir()
    with pytest.raises(BrickworkError, match="exists and is not a model kit"):
        check_replaceable(tmp_path / "other", "kit.json", "model kit")


def test_write_marked_dir_writes_files_and_marker_and_replaces_only_its_own(tmp_path):
    def write(tmp):
        (tmp / "weights.bin").write_bytes(b"w")
        return {"version": 1, "where": tmp_path}  # a Path is written as text

    target = write_marked_dir(tmp_path / "kit", "kit.json", "model kit", write)
    assert read_marker_json(target, "kit.json", "model kit") == {
        "version": 1,
        "where": str(tmp_path),
    }
    assert (target / "weights.bin").read_bytes() == b"w"
    write_marked_dir(target, "kit.json", "model kit", lambda tmp: {"version": 2})  # its own: fine
    assert sorted(p.name for p in target.iterdir()) == ["kit.json"]
    (tmp_path / "other").mkdir()
    with pytest.raises(BrickworkError, match="exists and is not a model kit"):
        write_marked_dir(tmp_path / "other", "kit.json", "model kit", write)
    assert not any((tmp_path / "other").iterdir())


def test_replaced_directory_is_readable_by_others(tmp_path):
    """A library that writes private (0o600) files still gives a shared output (umask 022)."""

    def write(folder):
        (folder / "sub").mkdir(mode=0o700)
        for path in (folder / "weights", folder / "sub" / "x"):
            path.write_bytes(b"x")
            os.chmod(path, 0o600)

    old = os.umask(0o022)
    try:
        target = replace_dir_atomically(tmp_path / "out", write)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in [target, *target.rglob("*")]}
    assert modes == {"out": 0o755, "sub": 0o755, "weights": 0o644, "x": 0o644}


@pytest.mark.parametrize("kind", ["os", "safetensors"])
def test_a_full_disk_is_one_clear_error_and_leaves_nothing(tmp_path, kind):
    from safetensors import SafetensorError

    def write(folder):
        (folder / "half").write_bytes(b"x")
        if kind == "os":
            raise OSError(27, "File too large")
        raise SafetensorError("Error while serializing: I/O error: File too large (os error 27)")

    with pytest.raises(BrickworkError, match="cannot write .*out: .*File too large"):
        replace_dir_atomically(tmp_path / "out", write)
    with pytest.raises(BrickworkError, match="cannot write .*f.txt: .*File too large"):
        replace_atomically(tmp_path / "f.txt", lambda tmp: write(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half"]
