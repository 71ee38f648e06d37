"""Generation-based edit metrics, sequential edit stacks that roll back bit-identically (all or
the last k), AlphaEdit's null-space update, and the CLI's sequential modes on tiny models."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from brickwork.bricks import BrickRepository
from brickwork.cli import main
from brickwork.data.edits import EditFact
from brickwork.models import load_model
from brickwork.ops.update import apply_edit, edit, rollback
from brickwork.ops.update.alphaedit import null_basis, projected_update
from brickwork.ops.update.covariance import layer_statistics
from brickwork.ops.update.edit import known_facts
from brickwork.ops.update.evaluate import (
    fact_metrics,
    greedy,
    neighbourhood_reference,
    summarize,
)
from brickwork.ops.update.generation import answer_hit, normalise
from brickwork.ops.update.methods import EDIT_METHODS
from brickwork.ops.update.rome import EditSettings, fact_key
from brickwork.ops.update.sequential import (
    apply_stack,
    checkpoints,
    edit_sequentially,
    roll_back,
    stack_names,
)
from brickwork.ops.update.sequential_eval import without_edited_neighbours

FACTS = [
    EditFact("Paris is in France", "France", "zq", paraphrases=("We went to France",)),
    EditFact("Bern is in Swiss", "Swiss", "yy", neighborhood=("Rome is in Italy",)),
    EditFact("Oslo is in Norway", "Norway", "kw"),
]
# Tiny random models have tiny FFN outputs: let the value move freely.
SETTINGS = EditSettings(
    layer=1, steps=40, clamp=1e4, norm_weight=0.0, kl_weight=0.0, covariance_tokens=2000
)


def _state(loaded) -> dict:
    return {k: v.clone() for k, v in loaded.model.state_dict().items()}


def _same(loaded, state) -> bool:
    return all(torch.equal(state[k], v) for k, v in loaded.model.state_dict().items())


def test_answer_hit_normalises_and_needs_a_word_boundary():
    assert normalise("  The  Berlin.") == "berlin."
    assert answer_hit(" Berlin, the capital", "Berlin")
    assert answer_hit("the berlin", "BERLIN") and answer_hit('"Rome"', "Rome")
    assert answer_hit("a Euro coin", "euro") and answer_hit("Rome", "the Rome")
    assert not answer_hit(" Romania", "Rome") and not answer_hit("Paris", "Rome")
    assert not answer_hit("theory", "ory") and not answer_hit("Berlin", " ")


def test_generated_metrics_agree_with_the_greedy_answers(tiny):
    """reliability_gen and generalization_gen are exactly what the greedy answers say, before
    and after an edit that changes them, and locality_gen is 1 exactly where a neighbourhood
    prompt's greedy tokens did not move. (A one-layer edit of a tiny byte-level model moves the
    answer but cannot spell a chosen target: the hit case takes the edited answer as target.)"""
    fact = replace(FACTS[0], neighborhood=("Rome is in Italy", "Bern is in Swiss"))
    prompts, reference = [fact.prompt, *fact.paraphrases], neighbourhood_reference(tiny, [fact])
    before = [tiny.tokenizer.decode(g) for g in greedy(tiny, prompts, 6)]
    brick = edit(tiny, [fact], "zq", SETTINGS)
    apply_edit(tiny, brick)
    after = [tiny.tokenizer.decode(g) for g in greedy(tiny, prompts, 6)]
    assert after[0] != before[0]  # the edit moved the greedy answer
    target = re.search(r"[^\W_]+", normalise(after[0])).group()  # its first word
    assert not answer_hit(before[0], target)
    moved = replace(fact, target_new=target)
    row = fact_metrics(tiny, [moved], reference)[0]
    assert row["reliability_gen"] == 1.0
    assert row["generalization_gen"] == float(answer_hit(after[1], target))
    now = greedy(tiny, list(fact.neighborhood))
    unchanged = [now[i] == reference[p] for i, p in enumerate(fact.neighborhood)]
    assert row["locality_gen"] == sum(unchanged) / len(unchanged)
    rollback(tiny, brick)
    row = fact_metrics(tiny, [moved], reference)[0]
    assert row["reliability_gen"] == 0.0 and row["locality_gen"] == 1.0
    assert row["generalization_gen"] == float(answer_hit(before[1], target))


@pytest.mark.parametrize("method", list(EDIT_METHODS))
def test_stack_rolls_back_the_last_k_bit_identically_and_round_trips(tiny, tmp_path, method):
    base, fingerprint, states = _state(tiny), tiny.fingerprint, []
    bricks = edit_sequentially(
        tiny, FACTS, "seq", method, SETTINGS, lambda i, b: states.append(_state(tiny))
    )
    assert [b.name for b in bricks] == ["seq-0001", "seq-0002", "seq-0003"]
    assert all(b.provenance["method"] == method for b in bricks)
    # one covariance, of the unedited model (each edit changes the fingerprint it is cached by)
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 1
    assert all(not _same(tiny, s) for s in states[:2]) and _same(tiny, states[2])
    repo = BrickRepository(tmp_path / "repo")
    for brick in bricks:
        repo.add(brick)
    stored = [repo.get(n) for n in stack_names(repo.has, "seq")]
    assert len(stored) == 3
    roll_back(tiny, stored, last=1)
    assert _same(tiny, states[1])
    roll_back(tiny, stored[:2], last=2)
    assert _same(tiny, base) and tiny.fingerprint == fingerprint
    apply_stack(tiny, stored)  # the stored stack re-applies to exactly the same weights
    assert _same(tiny, states[2]) and tiny.fingerprint == stored[-1].spec["result_fingerprint"]
    with pytest.raises(Exception, match="roll back 1 to 3 edits"):
        roll_back(tiny, stored, last=4)
    roll_back(tiny, stored)
    assert _same(tiny, base)


def test_projected_update_lies_in_the_null_space_of_the_preserved_keys():
    g = torch.Generator().manual_seed(0)
    kept = torch.randn(12, 8, generator=g, dtype=torch.float64)  # preserved keys span 8 of 12
    preserved = kept @ torch.randn(8, 300, generator=g, dtype=torch.float64)
    basis = null_basis(preserved @ preserved.T / 300, energy=1e-6)
    assert basis.shape == (12, 4)
    keys, residuals = torch.randn(12, 2, generator=g), torch.randn(5, 2, generator=g)
    earlier = torch.randn(12, 1, generator=g, dtype=torch.float64)
    u, v = projected_update(keys, residuals, basis, earlier, l2=1e-6)
    change = u @ v
    assert change.abs().max() > 0.1
    assert (change @ preserved).abs().max() < 1e-8 * preserved.abs().max()  # the projection
    projected = basis @ basis.T
    fitted = change @ keys.double()
    target = residuals.double()  # reachable only through the null-space part of the keys
    assert torch.allclose(change @ projected, change, atol=1e-10)
    assert (change @ earlier).norm() < 0.1 * (fitted.norm())  # earlier edits kept in place
    assert torch.nn.functional.cosine_similarity(fitted.flatten(), target.flatten(), 0) > 0.5


def test_alphaedit_edit_is_zero_outside_the_null_space(tiny):
    solver = EDIT_METHODS["alphaedit"].prepare(tiny, SETTINGS)(None)
    brick = edit(tiny, [FACTS[0]], "alpha", SETTINGS, solver=solver, method="alphaedit")
    change = brick.tensors["u"].double() @ brick.tensors["v"].double()
    cov = layer_statistics(tiny, 1, SETTINGS.covariance_tokens)["cov"]
    basis = null_basis(cov, SETTINGS.null_energy)
    outside = torch.eye(len(basis)) - basis @ basis.T
    assert (change @ outside).abs().max() < 1e-4 * change.abs().max()
    assert brick.provenance["method"] == "alphaedit" and "keys" in brick.tensors


def test_neighbours_the_sequence_edits_are_left_out_and_counted():
    capital = "capital"
    facts = [
        EditFact(
            "The capital of Sweden is",
            "Sweden",
            "Oslo",
            relation=capital,
            neighborhood=("The capital of Chad is",),
        ),
        EditFact(
            "The capital of Chad is",
            "Chad",
            "Rome",
            relation=capital,
            neighborhood=(
                "The capital of Sweden is",
                "Chadwick is the capital of",
                "The capital of Peru is",
            ),
        ),
        EditFact(
            "The currency of Peru is",
            "Peru",
            "yen",
            relation="currency",
            neighborhood=("The currency of Sweden is", "The currency of Chile is"),
        ),
    ]
    kept, left_out = without_edited_neighbours(facts)
    assert left_out == 2  # Chad's and Sweden's capitals; Peru's capital and Sweden's currency stay
    assert kept[0].neighborhood == ()
    assert kept[1].neighborhood == ("Chadwick is the capital of", "The capital of Peru is")
    assert kept[2].neighborhood == facts[2].neighborhood
    assert [f.prompt for f in kept] == [f.prompt for f in facts]


def test_a_fact_without_neighbours_leaves_locality_to_the_others(tiny):
    facts = [replace(FACTS[0], neighborhood=()), FACTS[1]]
    reference = neighbourhood_reference(tiny, facts)
    rows = fact_metrics(tiny, facts, reference)
    assert "locality_gen" not in rows[0] and rows[1]["locality_gen"] == 1.0
    assert summarize(rows)["locality_gen"] == 1.0


def test_known_facts_asks_only_until_the_limit(tiny):
    said = [tiny.tokenizer.decode(g).strip() for g in greedy(tiny, [f.prompt for f in FACTS], 8)]
    facts = [
        replace(FACTS[0], target_true="nothing it says"),
        *(replace(f, target_true=s) for f, s in zip(FACTS[1:], said[1:], strict=True)),
    ]
    assert known_facts(tiny, facts) == (facts[1:], facts[:1])
    assert known_facts(tiny, facts, limit=1) == (facts[1:2], facts[:1])
    assert known_facts(tiny, facts, limit=5) == (facts[1:], facts[:1])


def test_checkpoints_are_capped():
    assert checkpoints(500, 120) == [10, 50, 100, 120]
    assert checkpoints(50, 120) == [10, 50] and checkpoints(3, 120) == [3]


def _facts_file(tmp_path, tiny) -> str:
    """Two facts the tiny model 'knows' (its own greedy answers) and one it does not."""
    rows = []
    for i, f in enumerate(FACTS):
        said = tiny.tokenizer.decode(greedy(tiny, [f.prompt], 8)[0]).strip()
        true = said if i < 2 else "nothing it says"
        row = {"id": f"f{i}", "relation": "in", "target_true": true, "neighborhood": []}
        rows.append(f.to_dict() | row | {"paraphrases": list(f.paraphrases)})
    path = tmp_path / "facts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


OPTIONS = ["--layer", "1", "--steps", "3", "--covariance-tokens", "2000", "--clamp", "10000"]


def test_cli_sequential_edit_eval_and_rollback(tiny, sharp_llama, tmp_path, capsys):
    facts, repo = _facts_file(tmp_path, tiny), str(tmp_path / "repo")
    common = ["--model", sharp_llama, "--facts", facts, *OPTIONS]
    out = tmp_path / "seq.json"
    assert main(["edit", "eval", *common, "--sequential", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "left out 1 of 3 facts the model does not know (f2)" in printed
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["method"] == "alphaedit" and [r["edits"] for r in record["checkpoints"]] == [2]
    assert "reliability_gen" in record["checkpoints"][0] and out.with_suffix(".png").is_file()
    edited = str(tmp_path / "edited")
    args = ["edit", *common, "--sequential", "--method", "rome", "--repo", repo, "--out", edited]
    assert main([*args, "--name", "s"]) == 0
    assert "2 sequential rome edits" in capsys.readouterr().out
    assert stack_names(BrickRepository(repo).has, "s") == ["s-0001", "s-0002"]
    back = str(tmp_path / "back")
    rolled = ["edit", "rollback", "--model", edited, "--repo", repo, "--name", "s", "--out", back]
    assert main(rolled) == 0
    assert _same(load_model(back), _state(tiny))
    assert main(["edit", *common, "--repo", repo, "--name", "batch"]) == 0  # not sequential
    printed = capsys.readouterr().out
    assert "left out 1 of 3 facts" in printed and "batch edit of layer 1" in printed
    last = ["edit", "rollback", "--model", edited, "--repo", repo, "--name", "s", "--last", "1"]
    assert main([*last, "--out", str(tmp_path / "one")]) == 0
    assert "rollback 1 edit(s) of 's'" in capsys.readouterr().out
    assert main([*last[:-1], "3", "--out", str(tmp_path / "three")]) == 2
    assert "--last 3: 's' holds 2 edit(s)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["edit", "eval", "--sequential", "0"], "must be at least 1"),
        (["edit", "eval", "--sequential", "x"], "expected an integer"),
        (["edit", "eval", "--sequential", "3", "--limit", "2"], "not both"),
        (["edit", "eval", "--sequential", "3", "--data", "/nonexistent"], "lacks"),
        (["edit", "eval", "--sequential", "3", "--method", "inject"], "invalid choice"),
        (["edit", "eval", "--sequential", "3", "--split", "dev"], "no facts in split 'dev'"),
        (["edit", "eval", "--split", "test"], "no facts in split 'test'"),
        (["edit", "eval", "--sequential", "3", "--preserve", "-1"], "expected 0 or a positive"),
        (["edit", "--sequential", "--repo", "REPO"], "--sequential needs --facts"),
        (["edit", "rollback", "--repo", "REPO", "--name", "s", "--out", "o"], "not a brick repo"),
        (["edit", "rollback", "--name", "s", "--last", "0", "--out", "o"], "at least 1"),
    ],
)
def test_cli_sequential_errors(args, message, tmp_path, capsys):
    """Each is one ``error:`` line and exit 2, before any model is loaded (there is none)."""
    args = [a.replace("REPO", str(tmp_path / "repo")) for a in args]
    assert main([*args, "--model", str(tmp_path / "no-model")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err


def test_preserved_keys_stay_in_place(tiny):
    """A heavily weighted preserved prompt's key barely moves under the edit (the update is
    nearly zero on it), unlike without it; the edited key's output still changes."""
    kept = [(FACTS[2].prompt, FACTS[2].subject)]
    other = fact_key(tiny, 1, *kept[0]).double()
    own = fact_key(tiny, 1, FACTS[0].prompt, FACTS[0].subject).double()
    shares = []
    for preserve in (None, kept):
        settings = replace(SETTINGS, preserve_weight=1e6)
        (brick,) = edit_sequentially(tiny, FACTS[:1], "p", "alphaedit", settings, None, preserve)
        change = brick.tensors["u"].double() @ brick.tensors["v"].double()
        roll_back(tiny, [brick])
        shares.append(float((change @ other).norm() / (change @ own).norm()))
    assert shares[1] < 1e-3 < shares[0]


def test_cli_sequential_eval_on_a_split(tiny, sharp_llama, tmp_path, capsys):
    """--split keeps the set's facts of that split; the built-in large set resolves by name."""
    path = Path(_facts_file(tmp_path, tiny))
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for row, split in zip(rows, ("dev", "test", "dev"), strict=True):
        row["split"] = split
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "seq.json"
    common = ["edit", "eval", "--model", sharp_llama, *OPTIONS, "--sequential", "5"]
    assert main([*common, "--facts", str(path), "--split", "test", "--out", str(out)]) == 0
    record = json.loads(out.read_text(encoding="utf-8"))
    assert [r["edits"] for r in record["checkpoints"]] == [1]
    capsys.readouterr()
    assert main([*common, "--facts", "builtin-large", "--split", "dev"]) == 2
    assert "left out 111 of 111 facts" in capsys.readouterr().out
