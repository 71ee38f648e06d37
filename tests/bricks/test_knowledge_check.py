"""Knowledge bricks with augmentation, and ``train knowledge --eval`` end to end on the tiny llama:
the printed numbers are the ones the generated answers give."""

import pytest

from brickwork.bricks import BrickRepository, attach
from brickwork.bricks.knowledge_check import (
    answer_check,
    compare,
    report_lines,
    with_own_answers,
)
from brickwork.bricks.train import LoraSettings, train_knowledge_brick
from brickwork.bricks.train_eval import generate_answers, normalize
from brickwork.cli import main
from brickwork.data.questions import known_answers, preserve_samples

STATEMENTS = ["The capital of Verolia is Quenmar.", "Odrin Vashek is the inventor of the Brastel."]
QUESTIONS = ["What is the capital of Verolia?", "Who invented the Brastel?", "What is Quenmar?"]
pytestmark = pytest.mark.usefixtures("one_thread")
FAST = dict(settings=LoraSettings(steps=6, lr=5e-3, batch_size=4, eval_every=3), progress=False)


def test_augmented_training_adds_rows_and_records_them(tiny_llama):
    plain = train_knowledge_brick(tiny_llama, STATEMENTS, "k", "facts", augment="none", **FAST)
    rules = train_knowledge_brick(tiny_llama, STATEMENTS, "k", "facts", **FAST)  # the default
    assert plain.provenance["augment"] == "none" and plain.provenance["n_parsed"] == 0
    assert rules.provenance["augment"] == "rules" and rules.provenance["n_parsed"] == 2
    assert rules.provenance["n_training_rows"] > plain.provenance["n_training_rows"] + 10
    # Early stopping measures the user's statements in both, so the before-losses agree.
    assert rules.metrics["heldout_loss_before"] == pytest.approx(
        plain.metrics["heldout_loss_before"]
    )


def test_eval_prints_the_accuracy_of_the_generated_answers(
    tiny_llama, tiny_model_dirs, tmp_path, capsys
):
    """Expected answers taken from the base model's own answers make 'before' non-trivial; the
    printed lines must equal a recount from answers generated here, before and with the brick."""
    known = known_answers("check")
    base = answer_check(tiny_llama, tiny_llama.model, [(q, "x") for q in QUESTIONS], known)
    words = [normalize(a).split() for a in base.answers]
    expected = [w[0] if w else "quenmar" for w in words]
    questions = list(zip(QUESTIONS, expected, strict=True))
    (tmp_path / "facts.txt").write_text("\n".join(STATEMENTS) + "\n")
    (tmp_path / "q.tsv").write_text("".join(f"{q}\t{a}\n" for q, a in questions))
    args = ["train", "knowledge", "--data", str(tmp_path / "facts.txt"), "--name", "k"]
    args += ["--purpose", "facts", "--repo", str(tmp_path / "r"), "--model"]
    args += [tiny_model_dirs["llama"], "--steps", "4", "--batch-size", "4", "--augment", "rules"]
    args += ["--eval", str(tmp_path / "q.tsv"), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out.splitlines()
    brick = BrickRepository(tmp_path / "r").get("k")
    assert brick.provenance["augment"] == "rules"
    with attach(tiny_llama, [brick]) as model:
        after = answer_check(tiny_llama, model, questions, known)
    before = answer_check(tiny_llama, tiny_llama.model, questions, known)
    result = compare(before, after, questions, known)
    assert result["right_before"] >= 1  # the first words of the base answers are right
    assert printed[-2:] == report_lines(result)
    assert printed[-2].startswith(f"eval accuracy: {result['right_before']}/3 ")


def test_a_bad_questions_file_is_refused_before_the_model_loads(tmp_path, capsys):
    (tmp_path / "facts.txt").write_text("The capital of Verolia is Quenmar.\n")
    (tmp_path / "q.tsv").write_text("What is the capital of Verolia? Quenmar\n")
    args = ["train", "knowledge", "--data", str(tmp_path / "facts.txt"), "--name", "k"]
    args += ["--purpose", "f", "--repo", str(tmp_path / "r"), "--eval", str(tmp_path / "q.tsv")]
    args += ["--model", str(tmp_path / "no-such-model")]  # would fail if it were loaded first
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "line 1" in err[0]


def test_known_answers_are_kept_as_the_model_says_them(tiny_llama):
    samples = preserve_samples("builtin")
    own = with_own_answers(tiny_llama, samples)
    known = [i for i, s in enumerate(samples) if s.id.startswith("known-")]
    assert known and len(own) == len(samples)
    said = generate_answers(
        tiny_llama, tiny_llama.tokenizer, [samples[i].prompt for i in known], 32
    )
    assert [own[i].reference for i in known] == [
        a.strip() or samples[i].reference for i, a in zip(known, said, strict=True)
    ]
    others = [i for i in range(len(samples)) if i not in set(known)]
    assert [own[i] for i in others] == [samples[i] for i in others]
