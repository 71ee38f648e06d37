"""brickwork edit / edit apply|rollback / locate on a tiny model directory, and clear errors."""

from __future__ import annotations

import json

import torch

from brickwork.bricks import BrickRepository
from brickwork.cli import main
from brickwork.models import load_model
from brickwork.ops.update.evaluate import greedy

EDIT = [
    "--fact",
    "Paris is in France",
    "--subject",
    "France",
    "--new",
    "zq",
    "--layer",
    "1",
    "--steps",
    "3",
    "--covariance",
    "identity",
]


def _weights(path) -> dict:
    return dict(load_model(str(path)).model.state_dict())


def test_edit_save_and_rollback_round_trip(tmp_path, tiny_model_dirs, capsys):
    model, repo = tiny_model_dirs["llama"], str(tmp_path / "repo")
    assert (
        main(
            [
                "edit",
                "--model",
                model,
                *EDIT,
                "--keep",
                "Rome is in Italy",
                "--repo",
                repo,
                "--name",
                "fr",
                "--out",
                str(tmp_path / "edited"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "rank_one edit of layer 1" in out and "saved brick 'fr'" in out
    brick = BrickRepository(repo).get("fr")
    assert brick.spec["facts"][0]["keep"] == ["Rome is in Italy"]
    edited = load_model(str(tmp_path / "edited"))
    assert edited.fingerprint == brick.spec["result_fingerprint"]
    assert (
        main(
            [
                "edit",
                "rollback",
                "--model",
                str(tmp_path / "edited"),
                "--repo",
                repo,
                "--name",
                "fr",
                "--out",
                str(tmp_path / "restored"),
            ]
        )
        == 0
    )
    original, restored = _weights(model), _weights(tmp_path / "restored")
    assert all(torch.equal(original[k], restored[k]) for k in original)
    assert (
        main(
            [
                "edit",
                "apply",
                "--model",
                model,
                "--repo",
                repo,
                "--name",
                "fr",
                "--out",
                str(tmp_path / "again"),
            ]
        )
        == 0
    )
    again = _weights(tmp_path / "again")
    assert all(torch.equal(again[k], v) for k, v in edited.model.state_dict().items())


def test_edit_errors_are_one_line(tmp_path, tiny_model_dirs, capsys):
    model, repo = tiny_model_dirs["llama"], str(tmp_path / "repo")
    assert main(["edit", "--model", model, *EDIT, "--old", "Lyon", "--repo", repo]) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after the weight-loading progress bar
    assert err.startswith("error: the model does not produce 'Lyon' for 'Paris is in France'")
    assert main(["edit", "--model", model, *EDIT, "--repo", repo, "--name", "fr"]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "edit",
                "apply",
                "--model",
                tiny_model_dirs["mistral"],
                "--repo",
                repo,
                "--name",
                "fr",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "error: edit brick 'fr' was made for base model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["edit", "--model", model, "--fact", "x", "--repo", repo]) == 2
    assert "give --fact, --subject and --new" in capsys.readouterr().err


def test_inject_and_locate_store_bricks(tmp_path, tiny_model_dirs, capsys):
    model, repo = tiny_model_dirs["llama"], str(tmp_path / "repo")
    assert (
        main(
            [
                "edit",
                "--model",
                model,
                *EDIT,
                "--method",
                "inject",
                "--repo",
                repo,
                "--name",
                "inj",
                "--covariance-tokens",
                "200",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "locate",
                "--model",
                model,
                "--fact",
                "Paris is in France",
                "--answer",
                "zq",
                "--subject",
                "France",
                "--paraphrase",
                "We went to France",
                "--ig-steps",
                "4",
                "--repo",
                repo,
                "--name",
                "fr",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "knowledge neurons:" in out and "causal trace:" in out
    names = {b["name"]: b for b in BrickRepository(repo).list()}
    assert names["inj"]["kind"] == "delta" and names["inj"]["spec"]["update"] == "inject"
    assert names["fr-neurons"]["kind"] == "neuron_set" and names["fr-trace"]["kind"] == "trace"


def test_edit_eval_reports_every_metric(tmp_path, tiny_model_dirs, capsys):
    facts = tmp_path / "facts.jsonl"
    fact = {
        "id": "fr",
        "relation": "in",
        "prompt": "Paris is in France",
        "subject": "France",
        "target_true": "",
        "target_new": "zq",
        "paraphrases": ["France is big", "Paris is in France"],  # the second is known
        "neighborhood": ["Rome is in Italy"],
        "unrelated": ["Bern is in Swiss"],
    }
    tiny = load_model(tiny_model_dirs["llama"])
    # what the tiny model says now: the fact it "knows"
    fact["target_true"] = tiny.tokenizer.decode(greedy(tiny, [fact["prompt"]], 8)[0]).strip()
    facts.write_text(json.dumps(fact) + "\n", encoding="utf-8")
    out = tmp_path / "eval.json"
    args = ["edit", "eval", "--model", tiny_model_dirs["llama"], "--facts", str(facts)]
    options = ["--layer", "1", "--steps", "3", "--covariance", "identity", "--out", str(out)]
    assert main([*args, *options]) == 0
    printed = capsys.readouterr().out
    record = json.loads(out.read_text(encoding="utf-8"))
    assert len(record["rows"]) == 1 and record["after"]["facts"] == 1
    for key in (
        "generalization_prefixed",
        "generalization_inside",
        "generalization_known",
        "locality_unrelated",
        "reliability_gen",
        "generalization_known_gen",
        "locality_gen",
        "locality_unrelated_gen",
    ):
        assert key in record["rows"][0] and key in printed
    assert not list(tmp_path.glob(".eval.json.*"))  # written atomically, no temporary left


def test_edit_prints_per_edit_metrics_and_writes_no_model_copy(tmp_path, tiny_model_dirs, capsys):
    model, repo = tiny_model_dirs["llama"], tmp_path / "repo"
    keep = ["Rome is in Italy", "Bern is in Swiss"]
    options = ["--keep", keep[0], "--keep", keep[1], "--paraphrase", "France is big"]
    command = ["edit", "--model", model, *EDIT, *options, "--repo", str(repo), "--name", "fr"]
    assert main(command) == 0
    out = capsys.readouterr().out
    for line in ("reliability", "generalization", "keep texts unchanged"):
        assert line in out
    assert "1 paraphrase" in out and "2 --keep texts" in out
    assert "no model copy written" in out and "generate --brick fr --repo" in out
    brick = BrickRepository(str(repo)).get("fr")
    measured = brick.metrics["after_edit"]
    # the printed numbers are the stored ones
    assert f"{measured['metrics']['reliability']:.1%}" in out
    assert measured["counts"] == {
        "reliability": 1,
        "generalization": 1,
        "locality": 0,
        "keep": 2,
    }
    assert measured["metrics"]["locality"] is None  # no neighbourhood prompts given
    for row in measured["keep_changed"]:  # each changed keep text is named
        assert row["text"] in keep and f"changed: {row['text']!r}" in out
    if not measured["keep_changed"]:
        assert "every --keep text's greedy answer is unchanged" in out
    # a delta brick: the edited layer's weights, no model copy beside the repository
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    tiny = load_model(model)
    stored = sum(t.numel() for t in brick.tensors.values())
    assert stored < sum(p.numel() for p in tiny.model.parameters()) / 4


def test_edit_metrics_name_the_keep_texts_whose_answer_changed(tiny_llama):
    from brickwork.data.edits import EditFact
    from brickwork.ops.update.edit_metrics import edit_metrics, format_metrics, keep_reference

    fact = EditFact(
        "Paris is in France", "France", "zq", keep=("Rome is in Italy", "Bern is in Swiss")
    )
    reference = keep_reference(tiny_llama, [fact])
    assert reference["Rome is in Italy"] == greedy(tiny_llama, ["Rome is in Italy"])[0]
    # the unedited model against its own answers: nothing changed
    same = edit_metrics(tiny_llama, [fact], reference)
    assert same["keep_changed"] == [] and same["metrics"]["keep_gen"] == 1.0
    assert same["metrics"]["keep"] == 1.0
    # a reference the model does not produce for one text: that text is reported
    own = reference["Bern is in Swiss"]
    wrong = [(t + 1) % len(tiny_llama.tokenizer) for t in own]
    result = edit_metrics(tiny_llama, [fact], reference | {"Bern is in Swiss": wrong})
    assert [r["text"] for r in result["keep_changed"]] == ["Bern is in Swiss"]
    assert result["keep_changed"][0]["after"] == tiny_llama.tokenizer.decode(own)
    assert result["metrics"]["keep_gen"] == 0.5 and result["metrics"]["keep"] < 1.0
    assert any("changed: 'Bern is in Swiss'" in line for line in format_metrics(result))


def test_edit_metrics_average_each_metric_over_the_facts_that_have_its_prompts(tiny_llama):
    import math

    from brickwork.data.edits import EditFact
    from brickwork.ops.update.edit_metrics import edit_metrics, keep_reference

    facts = [
        EditFact(
            "Paris is in France",
            "France",
            "zq",
            paraphrases=("France is big",),
            neighborhood=("Rome is in Italy", "Bern is in Swiss"),
        ),
        EditFact("Oslo is in Norway", "Norway", "zq"),
    ]
    result = edit_metrics(tiny_llama, facts, keep_reference(tiny_llama, facts))
    m = result["metrics"]
    assert result["counts"]["generalization"] == 1 and result["counts"]["locality"] == 2
    assert all(math.isfinite(m[k]) for k in ("generalization", "generalization_gen"))
    # the unedited model against its own greedy answers: locality is whole
    assert m["locality"] == 1.0 and m["locality_gen"] == 1.0
    assert m["keep"] is None and result["keep_changed"] == []
