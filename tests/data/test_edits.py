"""Edit sets as EditFact records: the built-in files read and write back unchanged, and every
malformed line is one clear error naming its file and line."""

import json

import pytest

from brickwork import BrickworkError
from brickwork.data.edits import (
    CANDIDATES_FILE,
    EDITS_FILE,
    EditFact,
    builtin_edits_path,
    load_edits,
)

ROW = {
    "id": "a",
    "relation": "r",
    "subject": "X",
    "prompt": "X is",
    "target_true": "1",
    "target_new": "2",
    "paraphrases": ["X was"],
    "neighborhood": [],
}


@pytest.mark.parametrize("name", [EDITS_FILE, CANDIDATES_FILE])
def test_builtin_sets_round_trip_line_for_line(name):
    path = builtin_edits_path(name)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    facts = load_edits(path)
    assert [f.to_dict() for f in facts] == rows  # what benchmarks/update.py --filter writes
    assert all(isinstance(f.paraphrases, tuple) for f in facts)


def test_an_edit_needs_only_prompt_subject_and_target():
    fact = EditFact.from_dict({"prompt": "X is", "subject": "X", "target_new": "2"})
    assert fact == EditFact("X is", "X", "2")
    assert fact.to_dict() == {"prompt": "X is", "subject": "X", "target_new": "2"}
    assert fact.keep == () and fact.target_true is None and fact.id is None
    with pytest.raises(BrickworkError, match="a fact: missing or empty 'subject'"):
        EditFact.from_dict({"prompt": "X is", "target_new": "2"})
    with pytest.raises(BrickworkError, match="subject 'Y' is not in the prompt"):
        EditFact.from_dict({"prompt": "X is", "subject": "Y", "target_new": "2"})


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", ":1: malformed JSON"),
        (
            json.dumps({k: v for k, v in ROW.items() if k != "relation"}),
            "missing or empty 'relation'",
        ),
        (json.dumps({k: v for k, v in ROW.items() if k != "neighborhood"}), "'neighborhood' must"),
        (json.dumps({**ROW, "target_new": ""}), "missing or empty 'target_new'"),
        (json.dumps({**ROW, "id": None}), "missing or empty 'id'"),
        (json.dumps({**ROW, "unrelated": [1]}), "'unrelated' must be a list of strings"),
        (json.dumps({**ROW, "extra": 1}), "unknown fields ['extra']"),
        (json.dumps(ROW) + "\n\n" + json.dumps(ROW), ":3: duplicate fact id 'a'"),
    ],
)
def test_a_malformed_line_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "edits.jsonl"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(BrickworkError) as info:
        load_edits(path)
    assert message in str(info.value) and f"{path}:" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(BrickworkError, match="no such edit set"):
        load_edits(tmp_path / "missing.jsonl")
