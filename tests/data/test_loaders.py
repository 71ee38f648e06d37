"""JSONL loading, split assignment and the Infinity-Instruct label mapping (offline)."""

import builtins
import json

import pytest

from brickwork import BrickworkError
from brickwork.data import Sample, load_data, load_jsonl, with_splits
from brickwork.data.infinity import functionality_of, load_infinity_instruct, samples_from_rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_round_trip(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {
                "id": "a",
                "prompt": "2+2?",
                "functionality": "math",
                "reference": "4",
                "split": "test",
            },
            {"prompt": "def f(): pass", "functionality": "coding"},
        ],
    )
    samples = load_jsonl(path)
    assert samples[0] == Sample("a", "2+2?", "math", "4", "test")
    assert samples[1] == Sample("d-2", "def f(): pass", "coding", None, None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no samples"),
        ("\n\n", "holds no samples"),
        ('{"prompt": "x", "functionality": "math"}\n{not json\n', r"d.jsonl:2: malformed JSON"),
        ('{"prompt": "x"}\n', "missing or empty 'functionality'"),
        ('["x"]\n', "expected a JSON object"),
        ('{"prompt": "x", "functionality": "m", "split": "dev"}\n', "split must be one of"),
        ('{"prompt": "x", "functionality": "m", "colour": 1}\n', "unknown fields"),
        ('{"id": 1, "prompt": "x", "functionality": "m"}\n' * 2, "duplicate id '1'"),
    ],
)
def test_bad_jsonl_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "d.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(BrickworkError, match=message):
        load_jsonl(path)


def test_missing_data_file(tmp_path):
    with pytest.raises(BrickworkError, match="no such data file"):
        load_data(str(tmp_path / "none.jsonl"))


def test_samples_without_a_split_get_a_fixed_one_from_their_id():
    samples = [Sample(str(i), "p", "f") for i in range(400)]
    first, second = with_splits(samples), with_splits(list(reversed(samples)))
    assert {s.id: s.split for s in first} == {s.id: s.split for s in second}
    share = sum(s.split == "test" for s in first) / len(first)
    assert 0.22 < share < 0.38
    assert with_splits([Sample("x", "p", "f", split="train")])[0].split == "train"


def test_load_data_selects_a_split(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"prompt": "a", "functionality": "m", "split": "train"},
            {"prompt": "b", "functionality": "m", "split": "test"},
        ],
    )
    assert [s.prompt for s in load_data(str(path), split="test")] == ["b"]
    assert len(load_data(str(path))) == 2
    assert len(load_data("builtin", split="test")) == 7 * 35


def test_infinity_labels_map_only_single_functionality_instances():
    assert functionality_of(["Python Programming", "code writing"]) == "coding"
    assert functionality_of(["mathematical reasoning", "Python programming"]) is None
    assert functionality_of(["cooking"]) is None
    assert functionality_of([]) is None


def test_infinity_rows_are_filtered_and_sampled_reproducibly():
    def row(i, labels):
        turns = [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]
        return {"id": i, "conversations": turns, "label": {"ability_en": labels}}

    labels = {f: [a[0]] for f, a in __import__("brickwork").data.infinity.ABILITY_LABELS.items()}
    rows = [row(i, labels[f]) for i, f in enumerate(sorted(labels) * 5)]
    rows.append(row(999, ["python programming", "french translation"]))  # mixed: dropped
    first = samples_from_rows(rows, per_functionality=3, seed=0)
    assert first == samples_from_rows(rows, per_functionality=3, seed=0)
    assert len(first) == 3 * 7 and all(s.id != "999" for s in first)
    assert all(s.reference == "a" + s.prompt[1:] for s in first)


def test_infinity_loader_without_datasets_is_a_clear_error(monkeypatch):
    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(BrickworkError, match=r"brickwork\[infinity\]"):
        load_infinity_instruct()
