"""The large built-in edit set (``edits/large.jsonl``, named ``builtin-large``): hand-written
real-world facts (``edits/large_candidates.tsv``: relation, subject, true object with aliases;
``edits/large_templates.tsv``: each relation's prompt templates) kept where the model knows them;
``scripts/build_edit_set.py`` runs ``build`` on the default model and writes the set with its
build record (``edits/large_build.json``).

Per candidate: the prompt and two paraphrases come from its relation's templates; the
counterfactual ``target_new`` is another subject's object of the same relation (seeded). A
candidate is kept when the model's greedy continuation of its prompt starts with one of its
aliases (that alias becomes ``target_true``). Kept facts are split dev/test per relation (seeded);
a fact's neighbourhood prompts are prompts of the same relation about other subjects, taken from
the other split's kept facts first, then from candidates the model does not know (never edited),
so a sequential run over one split never edits its own neighbourhood prompts. No neighbour's
subject occurs in the fact's prompts (or the reverse), and no neighbour's object is the new target.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from brickwork.data.edits import EditFact, builtin_edits_path
from brickwork.errors import BrickworkError

CANDIDATES_TSV = "large_candidates.tsv"
TEMPLATES_TSV = "large_templates.tsv"
BUILD_RECORD = "large_build.json"


def _tsv_rows(path: Path, columns: int, what: str) -> list[tuple[str, list[str]]]:
    """A tab-separated file's rows of ``columns`` non-empty fields, each with its ``file:line``;
    blank and ``#`` lines are skipped."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        where = f"{path}:{number}"
        if len(parts) != columns or not all(p.strip() for p in parts):
            raise BrickworkError(f"{where}: expected {what}, tab-separated")
        rows.append((where, parts))
    return rows


def read_templates(path: Path | None = None) -> dict[str, tuple[str, str, str]]:
    """Per relation, its prompt and two paraphrases (``"{s}"`` is the subject):
    ``relation<TAB>prompt<TAB>paraphrase<TAB>paraphrase`` per line."""
    path = builtin_edits_path(TEMPLATES_TSV) if path is None else path
    templates = {}
    for where, (relation, *texts) in _tsv_rows(path, 4, "relation, prompt and two paraphrases"):
        if relation in templates:
            raise BrickworkError(f"{where}: duplicate relation {relation!r}")
        templates[relation] = tuple(texts)
    return templates


TEMPLATES = read_templates()


@dataclass(frozen=True)
class Candidate:
    relation: str
    subject: str  # as written mid-sentence ("the Eiffel Tower")
    answers: tuple[str, ...]  # accepted true objects, the canonical one first

    @property
    def key(self) -> str:
        return f"{self.relation}-{re.sub(r'[^a-z0-9]+', '_', self.subject.lower()).strip('_')}"

    def prompts(self) -> list[str]:
        """The prompt and its paraphrases, a subject that opens one capitalised."""
        return [_fill(t, self.subject) for t in TEMPLATES[self.relation]]


def _fill(template: str, subject: str) -> str:
    text = template.format(s=subject)
    return text[0].upper() + text[1:]


def read_candidates(path: Path | None = None) -> list[Candidate]:
    """The hand-written candidates: ``relation<TAB>subject<TAB>answer[/alias...]`` per line,
    ``#`` lines are comments."""
    path = builtin_edits_path(CANDIDATES_TSV) if path is None else path
    out, seen = [], set()
    for where, parts in _tsv_rows(path, 3, "relation, subject and answers"):
        if parts[0] not in TEMPLATES:
            raise BrickworkError(f"{where}: unknown relation {parts[0]!r}")
        candidate = Candidate(parts[0], parts[1], tuple(a.strip() for a in parts[2].split("/")))
        if candidate.key in seen:
            raise BrickworkError(f"{where}: duplicate candidate {candidate.key!r}")
        seen.add(candidate.key)
        out.append(candidate)
    return out


def _clash(answer: str, other: str) -> bool:
    a, b = answer.strip().lower(), other.strip().lower()
    return a.startswith(b) or b.startswith(a)


def _overlap(a: Candidate, b: Candidate) -> bool:
    """Whether either subject occurs in the other's prompts ("Guinea", "Papua New Guinea")."""
    return any(a.subject.lower() in p.lower() for p in b.prompts()) or any(
        b.subject.lower() in p.lower() for p in a.prompts()
    )


def counterfactuals(candidates: list[Candidate], seed: int) -> dict[str, str]:
    """Per candidate, a new target: another candidate's canonical object of the same relation
    that matches none of its own answers."""
    rng, out = random.Random(seed), {}
    for c in candidates:
        pool = sorted(
            {o.answers[0] for o in candidates if o.relation == c.relation} - set(c.answers)
        )
        pool = [p for p in pool if not any(_clash(p, a) for a in c.answers)]
        if pool:
            out[c.key] = rng.choice(pool)
    return out


def as_fact(candidate: Candidate, answer: str, target_new: str) -> EditFact:
    prompt, *paraphrases = candidate.prompts()
    subject = candidate.subject if candidate.subject in prompt else _fill("{s}", candidate.subject)
    return EditFact(
        prompt=prompt,
        subject=subject,
        target_new=target_new,
        target_true=answer,
        id=candidate.key,
        relation=candidate.relation,
        paraphrases=tuple(paraphrases),
    )


Knows = Callable[[list[EditFact]], list[bool]]


def known_facts(candidates: list[Candidate], knows: Knows, seed: int) -> dict[str, EditFact]:
    """The facts whose prompt ``knows`` confirms for one of their answers (tried in order)."""
    new = counterfactuals(candidates, seed)
    left, kept = [c for c in candidates if c.key in new], {}
    for position in range(max((len(c.answers) for c in left), default=0)):
        trying = [c for c in left if len(c.answers) > position]
        asked = [as_fact(c, c.answers[position], new[c.key]) for c in trying]
        for fact, ok in zip(asked, knows(asked), strict=True):
            if ok:
                kept[fact.id] = fact
        left = [c for c in left if c.key not in kept]
    return kept


def known_paraphrase_counts(facts: list[EditFact], knows: Knows) -> dict[str, int]:
    """Per fact, how many of its paraphrases ``knows`` confirms."""
    asked = [(f.id, replace(f, prompt=p)) for f in facts for p in f.paraphrases]
    answers = knows([f for _, f in asked])
    counts = {f.id: 0 for f in facts}
    for (key, _), ok in zip(asked, answers, strict=True):
        counts[key] += ok
    return counts


def splits(facts: list[EditFact], dev_share: float, seed: int) -> dict[str, str]:
    """dev or test per fact id, the dev share rounded per relation (seeded order)."""
    rng, out = random.Random(seed), {}
    for relation in sorted({f.relation for f in facts}):
        ids = sorted(f.id for f in facts if f.relation == relation)
        rng.shuffle(ids)
        n_dev = round(len(ids) * dev_share)
        out.update({key: "dev" if i < n_dev else "test" for i, key in enumerate(ids)})
    return out


def neighbours(
    fact: EditFact,
    split: str,
    by_key: dict[str, Candidate],
    kept: dict[str, EditFact],
    assigned: dict[str, str],
    k: int,
    rng: random.Random,
) -> tuple[str, ...]:
    """Up to ``k`` prompts of the relation about other subjects (see the module text)."""
    own = by_key[fact.id]
    others = [
        c
        for c in by_key.values()
        if c.relation == own.relation
        and c.key != own.key
        and not _overlap(c, own)
        and not any(_clash(fact.target_new, a) for a in c.answers)
    ]
    other_split = [c for c in others if c.key in kept and assigned[c.key] != split]
    unknown = [c for c in others if c.key not in kept]
    rng.shuffle(other_split)
    rng.shuffle(unknown)
    return tuple(c.prompts()[0] for c in [*other_split, *unknown][:k])


def build(
    candidates: list[Candidate],
    knows: Knows,
    seed: int = 0,
    dev_share: float = 0.25,
    k: int = 3,
    min_neighbours: int = 2,
) -> tuple[list[EditFact], dict]:
    """The kept facts with splits and neighbourhoods, and a record of what was kept."""
    kept = known_facts(candidates, knows, seed)
    by_key = {c.key: c for c in candidates}
    assigned = splits(list(kept.values()), dev_share, seed)
    rng, facts = random.Random(seed + 1), []
    for c in candidates:
        if c.key in kept:
            fact = kept[c.key]
            near = neighbours(fact, assigned[c.key], by_key, kept, assigned, k, rng)
            if len(near) >= min_neighbours:
                facts.append(replace(fact, neighborhood=near, split=assigned[c.key]))
    paraphrases = known_paraphrase_counts(facts, knows)
    relations = {}
    for c in candidates:
        row = relations.setdefault(
            c.relation, {"candidates": 0, "known": 0, "kept": 0, "dev": 0, "test": 0}
        )
        row["candidates"] += 1
        row["known"] += c.key in kept
    for f in facts:
        relations[f.relation]["kept"] += 1
        relations[f.relation][f.split] += 1
    record = {
        "seed": seed,
        "dev_share": dev_share,
        "relations": relations,
        "known_paraphrases": paraphrases,
    }
    return facts, record


def preserve_prompts(
    evaluated: list[EditFact],
    per_relation: int = 8,
    seed: int = 0,
    candidates: list[Candidate] | None = None,
    excluded: set[str] = frozenset(),
) -> list[tuple[str, str]]:
    """(prompt, subject) pairs whose keys a sequential edit should keep in place: every template
    of up to ``per_relation`` candidates per relation of ``evaluated`` (seeded), taken only from
    candidates that are not facts of the set (ids in ``excluded``) and whose subject occurs in no
    prompt, paraphrase or neighbourhood prompt of ``evaluated`` (nor one of theirs in its
    prompts): what is preserved is never what is scored."""
    candidates = read_candidates() if candidates is None else candidates
    scored = [t.lower() for f in evaluated for t in (f.prompt, *f.paraphrases, *f.neighborhood)]
    subjects = {f.subject.lower() for f in evaluated}
    relations = {f.relation for f in evaluated}
    rng, out = random.Random(seed), []
    for relation in sorted(relations):
        pool = [
            c
            for c in candidates
            if c.relation == relation
            and c.key not in excluded
            and not any(c.subject.lower() in t for t in scored)
            and not any(s in p.lower() for s in subjects for p in c.prompts())
        ]
        rng.shuffle(pool)
        for c in pool[:per_relation]:
            out += [
                (p, c.subject if c.subject in p else _fill("{s}", c.subject)) for p in c.prompts()
            ]
    return out
