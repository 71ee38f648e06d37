"""The large built-in edit set (builtin-large): what scripts/build_edit_set.py wrote is a usable,
split edit set, and the builder's choices (kept facts, splits, neighbourhoods) follow its rules on
a stand-in for the model."""

import json
from collections import Counter

import pytest

from brickwork import BrickworkError
from brickwork.data.edit_set import (
    BUILD_RECORD,
    TEMPLATES,
    Candidate,
    build,
    preserve_prompts,
    read_candidates,
    read_templates,
)
from brickwork.data.edits import LARGE_FILE, builtin_edits_path, load_edits


@pytest.fixture(scope="module")
def large():
    return load_edits("builtin-large")


def test_the_large_set_holds_300_facts_in_10_relations(large):
    assert len(large) >= 300
    counts = Counter(f.relation for f in large)
    assert sum(n >= 5 for n in counts.values()) >= 10
    assert len(load_edits("builtin-large", split="test")) >= 300  # a 300-edit sequential run


def test_dev_and_test_are_disjoint_and_cover_every_fact(large):
    dev, test = load_edits("builtin-large", split="dev"), load_edits("builtin-large", split="test")
    assert len(dev) + len(test) == len(large)
    assert not {f.id for f in dev} & {f.id for f in test}
    assert not {f.prompt for f in dev} & {f.prompt for f in test}
    assert {f.relation for f in dev} <= {f.relation for f in test}


def test_every_fact_has_paraphrases_and_foreign_neighbourhood_prompts(large):
    prompts = {split: {f.prompt for f in large if f.split == split} for split in ("dev", "test")}
    for fact in large:
        assert len(fact.paraphrases) >= 2 and len(fact.neighborhood) >= 2
        assert fact.target_new.lower() != fact.target_true.lower()
        for prompt in fact.neighborhood:
            assert fact.subject.lower() not in prompt.lower()
            assert prompt not in prompts[fact.split]  # a split's run never edits its neighbours
    neighbours = {p for f in large for p in f.neighborhood}
    assert neighbours & prompts["dev"] and neighbours & prompts["test"]


def test_the_build_record_matches_the_set(large):
    record = json.loads(builtin_edits_path(BUILD_RECORD).read_text())
    assert sum(r["kept"] for r in record["relations"].values()) == len(large)
    assert set(record["known_paraphrases"]) == {f.id for f in large}
    candidates = read_candidates()
    assert sum(r["candidates"] for r in record["relations"].values()) == len(candidates)
    assert builtin_edits_path(LARGE_FILE).read_text().count("\n") == len(large)


def test_the_candidates_cover_every_relation_with_templates():
    candidates = read_candidates()
    assert {c.relation for c in candidates} == set(TEMPLATES)
    for c in candidates:
        prompts = c.prompts()
        assert len(prompts) == 3 and all(c.subject.lower() in p.lower() for p in prompts)


@pytest.mark.parametrize(
    ("read", "text", "message"),
    [
        (read_candidates, "capital\tFrance", "tab-separated"),
        (read_candidates, "planet\tMars\tred", "unknown relation 'planet'"),
        (read_candidates, "capital\tFrance\tParis\ncapital\tfrance\tParis", "duplicate candidate"),
        (read_templates, "capital\tThe capital of {s} is", "tab-separated"),
        (
            read_templates,
            "capital\ta {s}\tb {s}\tc {s}\ncapital\td {s}\te\tf",
            "duplicate relation",
        ),
    ],
)
def test_a_bad_candidate_or_template_line_is_one_clear_error(tmp_path, read, text, message):
    path = tmp_path / "bad.tsv"
    path.write_text(text + "\n")
    with pytest.raises(BrickworkError, match=message):
        read(path)


def test_an_unknown_split_is_refused():
    with pytest.raises(BrickworkError, match="split must be one of"):
        load_edits("builtin-large", split="train")


def test_the_templates_file_gives_three_subject_templates_per_relation(tmp_path):
    assert len(TEMPLATES) >= 10
    assert all(len(t) == 3 and all("{s}" in x for x in t) for t in TEMPLATES.values())
    path = tmp_path / "t.tsv"
    path.write_text("# comment\ncapital\tThe capital of {s} is\t{s}'s capital\tCapital: {s}\n")
    assert read_templates(path) == {
        "capital": ("The capital of {s} is", "{s}'s capital", "Capital: {s}")
    }


def _fake_candidates():
    countries = ["France", "Spain", "Italy", "Peru", "Chile", "Japan", "Kenya", "Ghana"]
    capitals = ["Paris", "Madrid", "Rome", "Lima", "Santiago", "Tokyo", "Nairobi", "Accra"]
    rows = [Candidate("capital", c, (a,)) for c, a in zip(countries, capitals, strict=True)]
    rows.append(Candidate("capital", "Papua New Guinea", ("Port Moresby",)))
    rows.append(Candidate("capital", "Guinea", ("Conakry",)))
    rows.append(Candidate("symbol", "gold", ("Gold", "Au")))  # the alias the model uses
    rows += [
        Candidate("symbol", e, (s,)) for e, s in [("iron", "Fe"), ("tin", "Sn"), ("lead", "Pb")]
    ]
    return rows


def _stand_in(unknown: set[str]):
    """A model that knows every fact but ``unknown`` subjects, and gold only as Au."""

    def knows(facts):
        return [f.subject not in unknown and f.target_true != "Gold" for f in facts]

    return knows


def test_build_keeps_known_facts_under_the_alias_the_model_says():
    candidates = _fake_candidates()
    facts, record = build(candidates, _stand_in({"Peru", "lead"}), seed=3, dev_share=0.25)
    by_id = {f.id: f for f in facts}
    assert "capital-peru" not in by_id and "symbol-lead" not in by_id
    assert by_id["symbol-gold"].target_true == "Au"
    assert record["relations"]["capital"]["candidates"] == 10
    assert record["relations"]["capital"]["known"] == 9
    assert record["known_paraphrases"]["capital-france"] == 2
    for fact in facts:
        assert fact.split in ("dev", "test")
        same_split = {f.prompt for f in facts if f.split == fact.split}
        assert not set(fact.neighborhood) & same_split
        assert fact.target_new not in {fact.target_true}
    # Guinea and Papua New Guinea are never each other's neighbours
    guinea = [by_id["capital-guinea"], by_id["capital-papua_new_guinea"]]
    assert all("guinea" not in p.lower() for f in guinea for p in f.neighborhood)
    # the unknown candidate's prompt is a neighbour (it is never edited)
    assert any("Peru" in p for f in facts for p in f.neighborhood)


def test_build_is_seeded():
    candidates = _fake_candidates()
    first = build(candidates, _stand_in(set()), seed=5)
    assert build(candidates, _stand_in(set()), seed=5) == first
    assert build(candidates, _stand_in(set()), seed=6) != first


def test_preserved_prompts_leave_out_every_scored_subject():
    """Preserved prompts come from the evaluated facts' relations, never from a fact of the set
    or a candidate that an evaluated fact's prompts, paraphrases or neighbourhood mention (nor
    one whose prompts mention an evaluated subject)."""
    candidates = _fake_candidates()
    facts, _ = build(candidates, _stand_in({"Peru", "lead"}), seed=3)
    evaluated = [f for f in facts if f.split == "test" and f.relation == "capital"]
    extra = [
        Candidate("capital", "Norway", ("Oslo",)),
        Candidate("capital", f"New {evaluated[0].subject}", ("X",)),  # names an evaluated one
        Candidate("symbol", "neon", ("Ne",)),  # another relation
    ]
    ids = {f.id for f in facts}
    kept = preserve_prompts(evaluated, 50, candidates=candidates + extra, excluded=ids)
    scored = " ".join(t for f in evaluated for t in (f.prompt, *f.paraphrases, *f.neighborhood))
    subjects = {s for _, s in kept}
    assert "Norway" in subjects and all(s.lower() not in scored.lower() for s in subjects)
    assert (
        not subjects & {f.subject for f in facts} and f"New {evaluated[0].subject}" not in subjects
    )
    assert "neon" not in subjects and all(s in p for p, s in kept)
    assert [p for p, s in kept if s == "Norway"] == [
        t.format(s="Norway") for t in TEMPLATES["capital"]
    ]
    assert preserve_prompts(evaluated, 0, candidates=candidates + extra, excluded=ids) == []
