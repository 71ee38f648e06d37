"""Stitching: text pipelines through bricks and a planner over descriptions (tiny llama)."""

from dataclasses import replace

import pytest

from brickwork import BrickworkError
from brickwork.bricks import BrickRepository, attach
from brickwork.bricks.train_eval import generate_answers
from brickwork.cli import main
from brickwork.ops.stitch import (
    Step,
    first_line,
    plan_chain,
    run_pipeline,
    split_clauses,
    step_for,
    stitch,
)
from tests.ops.test_combine import make_lora


@pytest.fixture
def library(tiny_llama):
    described = {
        "fr-en": ("Translate French text into English", "French: {input}\nEnglish:"),
        "en-de": ("Translate English text into German", "English: {input}\nGerman:"),
        "gsm8k": ("Solve grade school math word problems step by step", "Problem: {input}"),
    }
    return [
        replace(
            make_lora(tiny_llama, name, seed),
            description=text,
            spec={**make_lora(tiny_llama, name, seed).spec, "prompt_template": template},
        )
        for seed, (name, (text, template)) in enumerate(described.items(), start=1)
    ]


def test_split_clauses():
    assert split_clauses("Translate it to English, then solve the math problem; finally x") == [
        "Translate it to English",
        "solve the math problem",
        "x",
    ]
    assert split_clauses("one step only.") == ["one step only"]


def test_planner_chooses_the_chain_from_descriptions(library):
    plan = plan_chain(
        "Translate the French question into English, then solve the math word problem", library
    )
    assert [p.brick for p in plan] == ["fr-en", "gsm8k"]
    assert all(0 < p.score <= 1 for p in plan)
    plan = plan_chain(
        "translate French into English and then translate English into German", library
    )
    assert [p.brick for p in plan] == ["fr-en", "en-de"]
    metas = [{"name": b.name, "purpose": b.purpose, "description": b.description} for b in library]
    assert [p.brick for p in plan_chain("solve this math problem", metas)] == ["gsm8k"]
    with pytest.raises(BrickworkError, match="no brick"):
        plan_chain("paint a watercolour", library)
    with pytest.raises(BrickworkError, match="empty"):
        plan_chain(" ", library)


def test_each_step_feeds_its_output_to_the_next(tiny_llama, library):
    steps = [step_for(library[0]), Step(None, "Again: {input}")]
    outputs = run_pipeline(tiny_llama, steps, ["bonjour", "merci beaucoup"], max_new_tokens=6)
    assert len(outputs) == 2 and all(len(o) == 2 for o in outputs)
    with attach(tiny_llama, [library[0]]) as model:
        first = generate_answers(
            model,
            tiny_llama.tokenizer,
            ["French: bonjour\nEnglish:", "French: merci beaucoup\nEnglish:"],
            max_new_tokens=6,
        )
    assert outputs[0] == [first_line(a) or "(empty)" for a in first]
    second = generate_answers(
        tiny_llama, tiny_llama.tokenizer, [f"Again: {t}" for t in outputs[0]], max_new_tokens=6
    )
    assert outputs[1] == [first_line(a) or "(empty)" for a in second]


def test_full_last_keeps_the_whole_final_answer(tiny_llama, library):
    steps = [step_for(library[0]), Step(None, "Again: {input}")]
    lines = run_pipeline(tiny_llama, steps, ["bonjour"], max_new_tokens=12)
    full = run_pipeline(tiny_llama, steps, ["bonjour"], max_new_tokens=12, full_last=True)
    assert full[0] == lines[0]  # earlier steps still pass (and report) their first line
    answer = generate_answers(
        tiny_llama, tiny_llama.tokenizer, [f"Again: {lines[0][0]}"], max_new_tokens=12
    )[0]
    assert full[1] == [answer.strip()]
    assert lines[1] == [first_line(answer) or "(empty)"]


def test_stitch_plans_and_runs(tiny_llama, library):
    plan, outputs = stitch(
        tiny_llama, library, "translate French to English", ["salut"], max_new_tokens=4
    )
    assert [p.brick for p in plan] == ["fr-en"] and len(outputs) == 1


def test_bad_pipelines_are_refused(tiny_llama, library):
    with pytest.raises(BrickworkError, match="at least one step"):
        run_pipeline(tiny_llama, [], ["x"])
    with pytest.raises(BrickworkError, match="non-empty"):
        run_pipeline(tiny_llama, [Step(None)], [""])
    with pytest.raises(BrickworkError, match="template"):
        run_pipeline(tiny_llama, [Step(None, "no slot")], ["x"])


def test_cli_stitch(tiny_llama, tiny_model_dirs, library, tmp_path, capsys):
    repo = BrickRepository(tmp_path / "repo")
    for brick in library:
        repo.add(brick)
    argv = [
        "stitch",
        "translate French into English, then translate English into German",
        "--repo",
        str(repo.root),
        "--input",
        "bonjour",
        "--max-new-tokens",
        "3",
        "--model",
        tiny_model_dirs["llama"],
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "step 1: fr-en" in out and "step 2: en-de" in out and "input: bonjour" in out
