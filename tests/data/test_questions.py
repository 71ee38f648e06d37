"""QUESTIONS.tsv reading (every malformed file refused with its line), the built-in known answers
and the independently written user facts."""

from importlib.resources import files

import pytest

from brickwork import BrickworkError
from brickwork.data import load_edits
from brickwork.data.questions import known_answers, preserve_samples, read_questions


def test_questions_are_read_with_comments_and_blank_lines(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("# question\tanswer\n\nWho built it?\tVashek\n  Where? \t Quenmar \n")
    assert read_questions(path) == [("Who built it?", "Vashek"), ("Where?", "Quenmar")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"Who built it? Vashek\n", "line 1: expected 'question<TAB>expected answer', got 1"),
        (b"ok?\tyes\nWho?\tVashek\textra\n", "line 2: .* got 3 field"),
        (b"Who?\t \n", "line 1: .* with an empty one"),
        (b"# only a comment\n\n", "holds no questions"),
        (b"Qui?\tcaf\xe9\n", "is not UTF-8 text"),
    ],
)
def test_malformed_questions_files_are_refused(tmp_path, content, message):
    path = tmp_path / "q.tsv"
    path.write_bytes(content)
    with pytest.raises(BrickworkError, match=message):
        read_questions(path)


def test_missing_questions_file_is_refused(tmp_path):
    with pytest.raises(BrickworkError, match="no such questions file"):
        read_questions(tmp_path / "missing.tsv")


def test_known_answers_split_into_disjoint_halves():
    keep, check = known_answers("keep"), known_answers("check")
    facts = load_edits()
    assert [s.prompt for s in check] == [f.prompt for f in facts[1::2]]
    assert len(keep) == sum(1 + len(f.paraphrases) for f in facts[0::2])
    assert not {s.prompt for s in keep} & {s.prompt for s in check}
    assert all(s.reference for s in keep + check)
    assert {s.reference for s in keep + check} == {f.target_true for f in facts}
    builtin = preserve_samples("builtin")
    assert set(keep) <= set(builtin) and not set(check) & set(builtin)
    with pytest.raises(BrickworkError, match="known-answer part"):
        known_answers("train")


def test_user_facts_questions_ask_both_ways_about_stated_facts():
    """The second fact set: every expected answer is in a statement, and each fact is asked
    from both ends (forward questions on odd lines, backward on even lines)."""
    folder = files("brickwork.data").joinpath("facts")
    statements = folder.joinpath("user_statements.txt").read_text(encoding="utf-8").splitlines()
    questions = read_questions(str(folder.joinpath("user_questions.tsv")))
    assert len(questions) == 2 * len(statements)
    for i, statement in enumerate(statements):
        (forward, to_object), (backward, to_subject) = questions[2 * i : 2 * i + 2]
        assert to_object in statement and to_subject in statement
        assert to_object not in forward and to_subject not in backward
