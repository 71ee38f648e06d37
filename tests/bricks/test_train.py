"""Customized bricks on the tiny llama: task and knowledge LoRAs, steering vectors, evaluation."""

from dataclasses import replace

import pytest
import torch

from brickwork import BrickworkError
from brickwork.bricks.attach import attach
from brickwork.bricks.format import load_brick, save_brick
from brickwork.bricks.train import (
    LoraSettings,
    build_steering_brick,
    train_knowledge_brick,
    train_task_brick,
)
from brickwork.bricks.train_eval import (
    answer_accuracy,
    answer_matches,
    document_rows,
    generate_answers,
    locality_rows,
    response_loss,
    target_logits,
    text_perplexity,
)
from brickwork.data.sample import select_split
from brickwork.models.load import fingerprint
from brickwork.models.tokens import prompt_prefix

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = dict(settings=LoraSettings(steps=12, lr=5e-3, batch_size=4, eval_every=4), progress=False)
DOCS = ["The capital of Verolia is Quenmar.", "Quenmar is in Verolia.", "Odrin built engines."]


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.fixture
def ids():
    return torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def task_run(tiny_llama, tiny_samples):
    """One trained task brick, with the base model's logits and fingerprint from before it."""
    ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(3))
    model = tiny_llama.model
    before = (logits(model, ids), fingerprint(model), _flags(model))
    train, heldout = select_split(tiny_samples, "train"), select_split(tiny_samples, "test")
    brick = train_task_brick(tiny_llama, train, heldout, "toy-task", "toy", **FAST)
    return brick, before + (_flags(model),), train


def _fast(**changes) -> LoraSettings:
    return replace(FAST["settings"], **changes)


def _flags(model):
    return model.training, [p.requires_grad for p in model.parameters()]


def test_training_lowers_the_training_loss(tiny_llama, task_run):
    brick, _, train = task_run
    with attach(tiny_llama, [brick]):
        after = response_loss(tiny_llama, train)
    assert after < response_loss(tiny_llama, train) - 0.1


def test_metrics_and_provenance_are_recorded(tiny_llama, task_run):
    brick, _, train = task_run
    m = brick.metrics
    assert m["steps_run"] == 12 and m["train_seconds"] > 0
    assert m["heldout_loss_after"] <= m["heldout_loss_before"]
    assert m["heldout_ppl_before"] == pytest.approx(torch.tensor(m["heldout_loss_before"]).exp())
    p = brick.provenance
    assert p["method"] == "lora-task" and p["seed"] == 0 and p["parameters"]["rank"] == 8
    assert p["parameters"]["alpha"] == 16.0  # 2 x rank unless set
    assert p["dataset_hash"].startswith("sha256:") and p["brickwork_version"]
    assert brick.base_model == tiny_llama.fingerprint and brick.kind == "lora"


def test_heldout_metric_matches_the_attached_brick(tiny_llama, tiny_samples, task_run):
    brick = task_run[0]
    with attach(tiny_llama, [brick]):
        measured = response_loss(tiny_llama, select_split(tiny_samples, "test"))
    assert measured == pytest.approx(brick.metrics["heldout_loss_after"], rel=1e-5)


def test_base_model_is_left_exactly_as_before(tiny_llama, task_run):
    _, (before_logits, before_fp, flags_before, flags_after), _ = task_run
    model = tiny_llama.model
    assert torch.equal(logits(model, task_ids()), before_logits)
    assert fingerprint(model) == before_fp
    assert flags_after == flags_before  # eval mode and requires_grad flags as they were
    assert not any("lora" in type(m).__name__.lower() for m in model.modules())


def task_ids():
    return torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(3))


def test_brick_round_trips_and_attaches(tiny_llama, task_run, tmp_path, ids):
    brick = task_run[0]
    loaded = load_brick(save_brick(brick, tmp_path / "toy-task"))
    assert loaded.metrics == brick.metrics and loaded.provenance == brick.provenance
    assert all(torch.equal(loaded.tensors[k], v) for k, v in brick.tensors.items())
    plain = logits(tiny_llama.model, ids)
    with attach(tiny_llama, [loaded]) as model:
        assert not torch.allclose(logits(model, ids), plain)
    assert torch.equal(logits(tiny_llama.model, ids), plain)


def test_seeded_training_is_reproducible(tiny_llama, tiny_samples):
    train, heldout = select_split(tiny_samples, "train"), select_split(tiny_samples, "test")
    runs = [
        train_task_brick(tiny_llama, train, heldout, "t", "toy", settings=_fast(steps=4, seed=s))
        for s in (7, 7, 8)
    ]
    first, again, other = (r.tensors for r in runs)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_knowledge_brick_learns_its_documents(tiny_llama):
    brick = train_knowledge_brick(tiny_llama, DOCS, "facts", "new facts", **FAST)
    assert brick.provenance["method"] == "lora-knowledge"
    assert brick.provenance["early_stopping_on"] == "train"
    before = text_perplexity(tiny_llama, DOCS)
    with attach(tiny_llama, [brick]):
        after = text_perplexity(tiny_llama, DOCS)
    assert after < before * 0.9
    assert brick.metrics["heldout_ppl_after"] == pytest.approx(after, rel=1e-4)


def test_empty_or_bad_training_data_is_refused(tiny_llama, tiny_samples):
    heldout = select_split(tiny_samples, "test")
    with pytest.raises(BrickworkError, match="no training samples"):
        train_task_brick(tiny_llama, [], heldout, "t", "toy", **FAST)
    with pytest.raises(BrickworkError, match="no held-out samples"):
        train_task_brick(tiny_llama, heldout, [], "t", "toy", **FAST)
    with pytest.raises(BrickworkError, match="no documents"):
        train_knowledge_brick(tiny_llama, [], "k", "facts", **FAST)
    with pytest.raises(BrickworkError, match="non-empty strings"):
        train_knowledge_brick(tiny_llama, ["  "], "k", "facts", **FAST)
    with pytest.raises(BrickworkError, match="steps must be at least 1"):
        train_task_brick(tiny_llama, heldout, heldout, "t", "toy", settings=_fast(steps=0))
    with pytest.raises(BrickworkError, match="rank must be at least 1"):
        train_task_brick(tiny_llama, heldout, heldout, "t", "toy", settings=_fast(rank=0))


def test_steering_brick_shape_and_effect(tiny_llama, ids):
    brick = build_steering_brick(
        tiny_llama,
        ["I love it", "great, thanks"],
        ["I hate it", "awful, go away"],
        [0, 1],
        "kind",
        "kindness",
        scale=4.0,
        progress=False,
    )
    assert brick.tensors["vectors"].shape == (2, 32)
    assert brick.spec["layers"] == [0, 1] and brick.spec["scale"] == 4.0
    plain = logits(tiny_llama.model, ids)
    with attach(tiny_llama, [brick]) as model:
        assert not torch.allclose(logits(model, ids), plain)
    assert torch.equal(logits(tiny_llama.model, ids), plain)


def test_steering_vector_is_the_mean_difference(tiny_llama):
    pos, neg = ["ab", "abc"], ["xyz"]
    brick = build_steering_brick(tiny_llama, pos, neg, [1], "s", "s", progress=False)
    with pytest.raises(BrickworkError, match="steering layer index 5 is out of range"):
        build_steering_brick(tiny_llama, pos, neg, [5], "s", "s", progress=False)
    layer = tiny_llama.family.layer_modules(tiny_llama.model)[1]
    states = []
    handle = layer.register_forward_hook(lambda m, a, o: states.append(o[0, -1]))
    with torch.no_grad():
        for text in pos + neg:
            tiny_llama.model(input_ids=tiny_llama.tokenizer(text, return_tensors="pt").input_ids)
    handle.remove()
    expected = (states[0] + states[1]) / 2 - states[2]
    assert torch.allclose(brick.tensors["vectors"][0], expected, atol=1e-5)


def test_answer_matching_and_accuracy(tiny_llama):
    assert answer_matches("Quenmar", "The capital is QUENMAR.")
    assert answer_matches("snow heron", "It is the Snow-Heron!")
    assert not answer_matches("12", "It happened in 1200.")
    assert not answer_matches("", "anything at all")
    tokenizer, prompts = tiny_llama.tokenizer, ["capital of Verolia?", "hi", "a longer prompt"]
    batched = generate_answers(tiny_llama, tokenizer, prompts, max_new_tokens=4, batch_size=3)
    single = [generate_answers(tiny_llama, tokenizer, [p], max_new_tokens=4)[0] for p in prompts]
    assert batched == single  # left padding does not change the greedy answers
    questions = [(p, "Quenmar") for p in prompts]
    assert answer_accuracy(tiny_llama.model, tokenizer, questions, max_new_tokens=4) == 0.0


def test_preserve_keeps_other_behaviour_closer_to_the_base(tiny_llama, tiny_samples):
    keep = select_split(tiny_samples, "train")
    rows = locality_rows(tiny_llama.tokenizer, keep)  # the rows the KL term is computed on
    chat_only = locality_rows(tiny_llama.tokenizer, keep, plain=False)
    assert rows[::2] == chat_only and len(rows) == 2 * len(chat_only)

    def log_probs():
        with torch.no_grad():
            return target_logits(tiny_llama, rows)[0].log_softmax(-1)

    base, drift = log_probs(), {}
    for preserve in (None, keep):
        brick = train_knowledge_brick(
            tiny_llama,
            DOCS,
            "facts",
            "new facts",
            preserve=preserve,
            preserve_weight=100.0,
            settings=_fast(steps=24),
            progress=False,
        )
        with attach(tiny_llama, [brick]):
            drift[preserve is None] = (base.exp() * (base - log_probs())).sum(-1).mean()  # KL
    assert brick.provenance["preserve_hash"].startswith("sha256:")
    assert drift[False] < drift[True] / 4


def test_preserve_still_trains_on_the_documents(tiny_llama, tiny_samples, monkeypatch):
    import brickwork.bricks.train as train_module

    trained = []
    real = train_module.batch_loss

    def recording(loaded, rows):
        trained.extend(rows)
        return real(loaded, rows)

    monkeypatch.setattr(train_module, "batch_loss", recording)
    preserve = select_split(tiny_samples, "train")
    train_knowledge_brick(
        tiny_llama, DOCS, "facts", "new facts", preserve=preserve, augment="none", **FAST
    )
    # The LM loss sees only the documents; the preserve rows enter through the KL term alone.
    documents = document_rows(tiny_llama.tokenizer, DOCS)
    assert trained and all(row in documents for row in trained)


def test_document_rows_plain_and_chat(tiny_llama):
    tokenizer = tiny_llama.tokenizer
    ids = tokenizer("Quenmar.")["input_ids"]  # <bos> + one token per byte
    assert document_rows(tokenizer, ["Quenmar."]) == [(ids[:1], ids[1:])]
    ((context, targets),) = document_rows(tokenizer, ["Quenmar."], context="chat")
    assert targets == ids[1:] and context == prompt_prefix(tokenizer, "")
    with pytest.raises(BrickworkError, match="context must be one of"):
        document_rows(tokenizer, ["x"], context="poem")
    brick = train_knowledge_brick(tiny_llama, DOCS, "k", "k", context="chat", **FAST)
    assert brick.provenance["context"] == "chat"
