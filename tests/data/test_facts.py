"""The built-in fictional facts: 30 well-formed rows whose questions are held out."""

import json

import pytest

from brickwork import BrickworkError
from brickwork.bricks.train_eval import answer_matches
from brickwork.data.facts import NewFact, fact_documents, fact_questions, load_new_facts

ROW = {"id": "a", "statement": "s", "train_paraphrases": ["t"], "questions": ["q?"], "answer": "x"}


def test_thirty_facts_with_all_fields():
    facts = load_new_facts()
    assert len(facts) == 30 and len({f.id for f in facts}) == 30
    for fact in facts:
        assert 2 <= len(fact.train_paraphrases) <= 3 and 2 <= len(fact.questions) <= 3
        assert fact.answer.strip()


def test_questions_are_held_out_and_answers_are_in_the_training_texts():
    facts = load_new_facts()
    training = {t.lower() for t in fact_documents(facts)}
    assert len(fact_documents(facts)) == sum(1 + len(f.train_paraphrases) for f in facts)
    for fact in facts:
        for question in fact.questions:
            assert question.lower() not in training and question.endswith("?")
            assert not answer_matches(fact.answer, question)  # the question gives no answer
        for text in [fact.statement, *fact.train_paraphrases]:
            assert answer_matches(fact.answer, text), text
    assert len(fact_questions(facts)) == sum(len(f.questions) for f in facts)


@pytest.mark.parametrize(
    "row, message",
    [
        ("not json", "malformed JSON"),
        (
            json.dumps({"id": "a", "statement": "s", "answer": "x", "questions": ["q?"]}),
            "'train_paraphrases' must be a non-empty list",
        ),
        (json.dumps({"id": "a", "statement": "", "answer": "x"}), "missing or empty 'statement'"),
        ('["a list"]', ":1: expected a JSON object"),
        (json.dumps({**ROW, "source": "x"}), "unknown fields ['source']"),
        (json.dumps({**ROW, "questions": ["q?", " "]}), "'questions' must be a non-empty list"),
        (json.dumps({**ROW, "answer": 3}), "'answer' must be a string"),
        (json.dumps(ROW) + "\n" + json.dumps(ROW), ":2: duplicate fact id 'a'"),
        ("\n", "holds no facts"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path, row, message):
    path = tmp_path / "facts.jsonl"
    path.write_text(row + "\n", encoding="utf-8")
    with pytest.raises(BrickworkError) as info:
        load_new_facts(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(BrickworkError, match="no such facts file"):
        load_new_facts(tmp_path / "missing.jsonl")


def test_a_good_row_is_a_record(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text("\n" + json.dumps(ROW) + "\n\n", encoding="utf-8")  # blank lines skipped
    assert load_new_facts(path) == [NewFact("a", "s", ("t",), ("q?",), "x")]
