"""Rule-based knowledge augmentation: what it parses, what it refuses, both directions, and that
every statement the user wrote is kept."""

from importlib.resources import files

import pytest

from brickwork import BrickworkError
from brickwork.bricks.augment import Fact, augment_statements, parse_statement


def _user_statements() -> list[str]:
    path = files("brickwork.data").joinpath("facts", "user_statements.txt")
    return path.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize(
    ("text", "fact"),
    [
        ("The currency of Paldorra is the krenit.", Fact("Paldorra", "currency", "the krenit")),
        ("Zurhaven is the largest port of Calmeria.", Fact("Calmeria", "largest port", "Zurhaven")),
        (
            "The tallest mountain in Ostravel was Mount Kivrak",
            Fact("Ostravel", "tallest mountain", "Mount Kivrak", "was", "in"),
        ),
        ("Paldorra's currency is the krenit.", Fact("Paldorra", "currency", "the krenit")),
        (
            "The Lumeric Prize was founded by Tavia Orrenby.",
            Fact("the Lumeric Prize", "founded", "Tavia Orrenby", "was", "by", passive=True),
        ),
    ],
)
def test_simple_statements_are_parsed(text, fact):
    assert parse_statement(text) == fact


@pytest.mark.parametrize(
    "text",
    [
        "The Ferrowick Bridge crosses the river Anselde.",  # no rule for this verb
        "The city of Kestavia was founded in the year 1372.",  # "founded" is not an object
        "No mountain in the range is higher than Mount Tiberlak.",  # a negation, a comparison
        "Children in Helvania grow up speaking Kalvic.",
    ],
)
def test_statements_no_rule_fits_are_not_parsed(text):
    assert parse_statement(text) is None


def test_augmentation_keeps_every_statement_and_asks_both_ways():
    statements = _user_statements()
    out = augment_statements(statements, "rules")
    assert all(s in out.documents for s in statements)
    assert out.parsed + out.kept == len(statements) and out.kept >= 1
    for statement in statements:
        fact = parse_statement(statement)
        if fact is None:  # kept as written, with nothing made up about it
            assert not any(statement in a for _, a in out.pairs)
            continue
        subject, obj = fact.subject.lower(), fact.object.lower()
        forward = [a for q, a in out.pairs if subject in q.lower() and obj not in q.lower()]
        backward = [a for q, a in out.pairs if obj in q.lower() and subject not in q.lower()]
        assert forward and all(obj in a.lower() for a in forward), statement
        assert backward and all(subject in a.lower() for a in backward), statement
        # Object-first and subject-first rewrites of the statement are both there.
        starts = [d.lower() for d in out.documents if subject in d.lower() and obj in d.lower()]
        assert any(d.startswith(obj) for d in starts) and any(not d.startswith(obj) for d in starts)


def test_no_augmentation_is_the_statements_alone():
    statements = _user_statements()
    out = augment_statements(statements, "none")
    assert out.documents == statements and out.pairs == [] and out.samples() == []
    with pytest.raises(BrickworkError, match="augment must be one of"):
        augment_statements(statements, "model")


@pytest.mark.parametrize(
    "statement",
    [
        "The currency of Paldorra is the krenit.",
        "The Lumeric Prize was founded by Tavia Orrenby.",
        "The headquarters of the Sable Lantern Company is in Marrowgate.",
    ],
)
def test_each_fact_is_asked_in_several_wordings_from_each_end(statement):
    fact = parse_statement(statement)
    pairs = augment_statements([statement], "rules").pairs
    subject, obj = fact.subject.lower(), fact.object.lower().removeprefix("in ")
    forward = {q for q, a in pairs if subject in q.lower() and obj in a.lower()}
    backward = {q for q, a in pairs if obj in q.lower() and subject in a.lower()}
    assert len(forward) >= 3 and len(backward) >= 2, (forward, backward)
    # An open question ("Tell me about ...") from both ends, not only the statement reworded.
    assert any(q.startswith("Tell me about") for q in forward)
    assert any(q.startswith(("Tell me about", "What do you know about")) for q in backward)
