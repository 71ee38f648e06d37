"""The checked reads and atomic writes of brickwork/io.py."""

import pytest
import torch
from safetensors.torch import save_file

from brickwork.errors import BrickworkError
from brickwork.io import (
    check_replaceable,
    read_marker_json,
    read_tensors,
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
