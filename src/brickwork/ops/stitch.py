"""Stitching of heterogeneous bricks (paper §3.2): a pipeline whose steps pass text along, and a
simple planner that chooses the chain from the bricks' descriptions.

A step is a brick (or ``None``: the base model alone) and a prompt template with ``{input}``. Each
step answers greedily with its brick attached; the first non-empty line of its answer becomes the
next step's input. The planner splits an instruction into clauses ("..., then ...", ";", new
lines) and gives each clause the brick whose description is most similar by TF-IDF cosine
(scikit-learn), skipping clauses that match no brick well enough.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from brickwork.bricks.attach import attach
from brickwork.bricks.brick import Brick
from brickwork.bricks.train_eval import generate_answers
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel

DEFAULT_TEMPLATE = "{input}"
_CLAUSE_BREAK = re.compile(r"(?:,?\s*\b(?:and then|then|after that|finally)\b)|;|\n", re.I)


@dataclass(frozen=True)
class Step:
    brick: Brick | None
    template: str = DEFAULT_TEMPLATE

    @property
    def name(self) -> str:
        return self.brick.name if self.brick is not None else "base model"


@dataclass(frozen=True)
class PlannedStep:
    clause: str
    brick: str
    score: float


def step_for(brick: Brick) -> Step:
    """A step using the brick's own prompt template (``spec["prompt_template"]``) if it has one."""
    return Step(brick, brick.spec.get("prompt_template", DEFAULT_TEMPLATE))


def run_pipeline(
    loaded: LoadedModel,
    steps: list[Step],
    inputs: list[str],
    *,
    max_new_tokens: int = 48,
    batch_size: int = 8,
    full_last: bool = False,
) -> list[list[str]]:
    """Run every input through the steps in order; returns each step's outputs [step][input].

    Each step passes the first line of its answers on; with ``full_last`` the last step's
    outputs are its whole answers (stripped), e.g. to score an answer after some reasoning."""
    if not steps:
        raise BrickworkError("a pipeline needs at least one step")
    if not inputs or any(not isinstance(t, str) or not t.strip() for t in inputs):
        raise BrickworkError("pipeline inputs must be a non-empty list of non-empty strings")
    for step in steps:
        if "{input}" not in step.template:
            raise BrickworkError(f"step {step.name!r}: the template must contain '{{input}}'")
    texts, outputs = list(inputs), []
    for number, step in enumerate(steps, 1):
        prompts = [step.template.replace("{input}", text) for text in texts]
        with attach(loaded, [step.brick] if step.brick is not None else []) as model:
            answers = generate_answers(model, loaded.tokenizer, prompts, max_new_tokens, batch_size)
        texts = [first_line(a) or "(empty)" for a in answers]
        outputs.append(
            [a.strip() for a in answers] if full_last and number == len(steps) else texts
        )
    return outputs


def first_line(text: str) -> str:
    """The first non-empty line of ``text``, stripped ("" if none)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def split_clauses(instruction: str) -> list[str]:
    """The instruction's clauses, in order: split at "then", "after that", ";" and new lines."""
    parts = [p.strip(" ,.") for p in _CLAUSE_BREAK.split(instruction)]
    return [p for p in parts if p]


def plan_chain(
    instruction: str,
    bricks: list[Brick] | list[dict],
    *,
    min_score: float = 0.1,
    max_steps: int = 4,
) -> list[PlannedStep]:
    """For each clause of ``instruction``, the brick (or brick.json entry) whose name, purpose and
    description are most similar to it by TF-IDF cosine; clauses scoring below ``min_score`` are
    skipped and the same brick is not repeated back to back."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    if not isinstance(instruction, str) or not instruction.strip():
        raise BrickworkError("the instruction to plan for is empty")
    if not bricks:
        raise BrickworkError("no bricks to plan with")
    names, texts = zip(*(_describe(b) for b in bricks), strict=True)
    clauses = split_clauses(instruction)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    matrix = vectorizer.fit_transform([*texts, *clauses])
    scores = cosine_similarity(matrix[len(texts) :], matrix[: len(texts)])
    plan: list[PlannedStep] = []
    for clause, row in zip(clauses, scores, strict=True):
        best = int(row.argmax())
        if row[best] < min_score or (plan and plan[-1].brick == names[best]):
            continue
        plan.append(PlannedStep(clause, names[best], float(row[best])))
    if not plan:
        raise BrickworkError(f"no brick's description matches any part of {instruction!r}")
    if len(plan) > max_steps:
        raise BrickworkError(f"the plan has {len(plan)} steps, more than max_steps={max_steps}")
    return plan


def stitch(
    loaded: LoadedModel, bricks: list[Brick], instruction: str, inputs: list[str], **options
) -> tuple[list[PlannedStep], list[list[str]]]:
    """Plan a chain for ``instruction`` from ``bricks`` and run ``inputs`` through it."""
    plan = plan_chain(instruction, bricks)
    by_name = {b.name: b for b in bricks}
    return plan, run_pipeline(loaded, [step_for(by_name[p.brick]) for p in plan], inputs, **options)


def _describe(brick: Brick | dict) -> tuple[str, str]:
    if isinstance(brick, Brick):
        name, purpose, description = brick.name, brick.purpose, brick.description
    else:
        name, purpose, description = brick["name"], brick["purpose"], brick.get("description", "")
    words = re.sub(r"[-_.]", " ", name)
    return name, f"{words} {purpose} {description}"
