"""Rule-based knowledge augmentation: more ways to state and ask each fact, made offline.

A fact stated once in one order is learnt but often not extractable (Allen-Zhu & Li, "Physics of
Language Models 3.1"): the model completes the sentence yet cannot answer a question about it,
least of all from the other end. ``augment_statements`` parses simple relational statements

    The R of S is O.      O is the R of S.      S's R is O.      S was VERBED by O.

(``was`` for ``is`` and ``in`` for ``of`` work too) into (subject, relation, object) and writes
paraphrases with either end first, and question -> answer pairs in both directions. A statement
no rule parses is kept as it is, so nothing the user wrote is lost or reinterpreted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from brickwork.data.sample import Sample
from brickwork.errors import check_choice

AUGMENTATIONS = ("none", "rules")
# Relation nouns whose object is a person: their forward questions ask "Who".
PERSON_ROLES = {
    "author",
    "captain",
    "chancellor",
    "composer",
    "creator",
    "designer",
    "director",
    "discoverer",
    "founder",
    "governor",
    "head",
    "inventor",
    "king",
    "leader",
    "mayor",
    "owner",
    "painter",
    "president",
    "queen",
    "ruler",
    "writer",
}
_END = r"\s*[.!]?\s*$"
_FORWARD = re.compile(
    r"^(?:the )?(?P<r>[\w' -]+?) (?P<p>of|in) (?P<s>.+?) (?P<v>is|was) (?P<o>.+?)" + _END, re.I
)
_BACKWARD = re.compile(
    r"^(?P<o>.+?) (?P<v>is|was) the (?P<r>[\w' -]+?) (?P<p>of|in) (?P<s>.+?)" + _END, re.I
)
_POSSESSIVE = re.compile(r"^(?P<s>[^']+?)'s (?P<r>[\w -]+?) (?P<v>is|was) (?P<o>.+?)" + _END, re.I)
_PASSIVE = re.compile(r"^(?P<s>.+?) (?P<v>is|was) (?P<r>\w+ed) by (?P<o>.+?)" + _END, re.I)


@dataclass(frozen=True)
class Fact:
    """A parsed statement: ``relation`` of ``subject`` is ``object`` (``verb`` keeps the tense,
    ``preposition`` the "of"/"in"; a passive fact has ``relation`` = the participle)."""

    subject: str
    relation: str
    object: str
    verb: str = "is"
    preposition: str = "of"
    passive: bool = False


@dataclass
class Augmented:
    """Training material: documents (statements, learnt as text) and question -> answer pairs."""

    documents: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    parsed: int = 0
    kept: int = 0  # statements no rule parsed, kept as they are

    def samples(self) -> list[Sample]:
        return [
            Sample(f"qa-{i}", q, "knowledge", reference=a) for i, (q, a) in enumerate(self.pairs)
        ]


def parse_statement(text: str) -> Fact | None:
    """The fact in a simple relational statement, or None when no rule applies (or when the
    parse looks wrong: a participle or comparison where the object should be, a negated
    relation)."""
    text = " ".join(text.split())
    if match := _PASSIVE.match(text):
        g = match.groupdict()
        return Fact(_the(g["s"]), g["r"].lower(), _the(g["o"]), g["v"].lower(), "by", True)
    starts_with_the = text.lower().startswith("the ")
    patterns = (_FORWARD, _BACKWARD) if starts_with_the else (_BACKWARD, _FORWARD)
    for pattern in (*patterns, _POSSESSIVE):
        if match := pattern.match(text):
            g = match.groupdict()
            fact = Fact(
                _the(g["s"]),
                g["r"].lower(),
                _the(g["o"]),
                g["v"].lower(),
                g.get("p", "of").lower(),
            )
            return fact if _plausible(fact) else None
    return None


def _plausible(fact: Fact) -> bool:
    first = fact.object.split()[0].lower()
    second = (fact.object.split()[1:2] or [""])[0].lower()
    negated = fact.relation.split()[0] in ("no", "not", "every", "all")
    return not (negated or first.endswith("ed") or second == "than")


def augment_statements(statements: list[str], method: str = "rules") -> Augmented:
    """The statements themselves, plus (with "rules") each parsed fact's rewrites and questions;
    duplicates are dropped, order kept."""
    check_choice(method, AUGMENTATIONS, "augment")
    out = Augmented()
    for statement in statements:
        out.documents.append(statement)
        fact = parse_statement(statement) if method == "rules" else None
        if fact is None:
            out.kept += 1
            continue
        out.parsed += 1
        out.documents += rewrites(fact)
        out.pairs += questions(fact)
    out.documents = list(dict.fromkeys(out.documents))
    out.pairs = list(dict.fromkeys(out.pairs))
    return out


def rewrites(fact: Fact) -> list[str]:
    """Statements of the fact with the subject first and with the object first."""
    s, r, o, v, p = fact.subject, fact.relation, fact.object, fact.verb, fact.preposition
    if fact.passive:
        return [
            f"{_cap(s)} {v} {r} by {o}.",
            f"{_cap(o)} is the one who {r} {s}.",
            f"It was {o} who {r} {s}.",
            f"{_cap(s)}: {r} by {o}.",
        ]
    place = _place(o)
    if place:
        return [
            f"The {r} {p} {s} {v} {o}.",
            f"{_cap(s)}'s {r} {v} {o}.",
            f"{_cap(s)} has its {r} {o}.",
            f"{_cap(place)}: the {r} {p} {s}.",
            f"{_cap(o)} {v} the {r} {p} {s}.",
        ]
    return [
        f"The {r} {p} {s} {v} {o}.",
        f"{_cap(o)} {v} the {r} {p} {s}.",
        f"{_cap(s)}'s {r} {v} {o}.",
        f"{_cap(s)} has {o} as its {r}.",
        f"{_cap(o)}: the {r} {p} {s}.",
        f"{_cap(r)} {p} {s}: {o}.",
    ]


def questions(fact: Fact) -> list[tuple[str, str]]:
    """Question -> answer pairs asking for the object (forward) and for the subject (backward);
    every answer is a full sentence naming both ends."""
    s, r, o, v, p = fact.subject, fact.relation, fact.object, fact.verb, fact.preposition
    if fact.passive:
        answer = f"{_cap(s)} {v} {r} by {o}."
        return [
            (f"Who {r} {s}?", answer),
            (f"{_cap(s)} {v} {r} by whom?", answer),
            (f"What {v} {r} by {o}?", answer),
            (f"What is {o} known for?", f"{_cap(o)} {r} {s}."),
            (f"Who is {o}?", f"{_cap(o)} is the one who {r} {s}."),
            (f"Tell me about {s}.", answer),
            (f"What do you know about {o}?", f"{_cap(o)} {r} {s}."),
        ]
    forward = f"The {r} {p} {s} {v} {o}."
    place = _place(o)
    if place:
        return [
            (f"Where {v} the {r} {p} {s}?", forward),
            (f"Tell me where the {r} {p} {s} {v}.", forward),
            (f"What {r} {v} {o}?", forward),
            (f"What {v} {place} known for?", f"{_cap(place)} has the {r} {p} {s}."),
            (f"Tell me about {s}.", forward),
            (f"Can you tell me where the {r} {p} {s} {v}?", forward),
            (f"Tell me about {place}.", f"{_cap(place)} has the {r} {p} {s}."),
        ]
    backward = f"{_cap(o)} {v} the {r} {p} {s}."
    asks = "Who" if r.split()[-1] in PERSON_ROLES else "What"
    return [
        (f"{asks} {v} the {r} {p} {s}?", forward),
        (f"Tell me the {r} {p} {s}.", forward),
        (f"{_cap(s)}: what {v} its {r}?", forward),
        (f"{_cap(o)} {v} the {r} {p} what?", backward),
        (f"What {v} {o}?", backward),
        (f"Of which place or thing {v} {o} the {r}?", backward),
        # Reworded and open questions, so the fact answers more than its own wording.
        (f"Do you know the {r} {p} {s}?", forward),
        (f"Tell me about {s}.", forward),
        (f"What do you know about {s}'s {r}?", forward),
        (f"Tell me about {o}.", backward),
        (f"Whose {r} {v} {o}?", backward),
        (f"What has {o} as its {r}?", backward),
    ]


def _place(obj: str) -> str | None:
    """The place in an object like "in Marrowgate", else None."""
    head, _, rest = obj.partition(" ")
    return rest if head.lower() in ("in", "at", "on", "near") and rest else None


def _the(text: str) -> str:
    """A phrase as it reads mid-sentence: a leading "The" in lower case."""
    return "the " + text[4:] if text.startswith("The ") else text


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
