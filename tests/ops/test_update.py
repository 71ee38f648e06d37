"""Knowledge editing on tiny random models: rank-one and batch updates, delta bricks that roll
back bit-identically, injected neurons, locating, and clear errors."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch

from brickwork.bricks import BrickRepository
from brickwork.data.edits import EditFact, load_edits
from brickwork.errors import BrickworkError
from brickwork.models import load_model
from brickwork.models.tokens import pad
from brickwork.ops.update import (
    EditSettings,
    apply_edit,
    attach_neurons,
    causal_trace,
    edit,
    inject,
    knowledge_neurons,
    rollback,
    solve_update,
)
from brickwork.ops.update.common import (
    down_module,
    encode,
    subject_index,
    target_ids,
    through_update,
)
from brickwork.ops.update.covariance import cache_path, layer_statistics
from brickwork.ops.update.evaluate import (
    EVAL_PREFIXES,
    fact_metrics,
    greedy,
    known_paraphrases,
    neighbourhood_reference,
    summarize,
    target_scores,
)
from brickwork.ops.update.initial import at_position_zero
from brickwork.ops.update.locate import integrated_gradients
from brickwork.ops.update.rome import fact_key, key_side
from tests.tiny import SHARP_FFN, tiny_tokenizer

# The subject ends the prompt, so a tiny random model's edit reaches the next-token prediction.
FACT = EditFact(
    prompt="Paris is in France",
    subject="France",
    target_new="zq",
    paraphrases=("We went to France",),
    neighborhood=("Rome is in Italy",),
)
D_FF = SHARP_FFN  # the FFN width of the tiny model these tests edit (``sharp_llama``)
# Tiny random models have tiny FFN outputs: let the value move freely.
SETTINGS = EditSettings(layer=1, steps=40, lr=0.5, clamp=1e4, norm_weight=0.0, kl_weight=0.0)


def _target_nll(loaded, fact) -> float:
    """Mean NLL of the fact's new target after its prompt."""
    prompt, target = (
        encode(loaded.tokenizer, fact.prompt),
        target_ids(loaded.tokenizer, fact.target_new),
    )
    with torch.no_grad():
        logits = loaded.model(input_ids=torch.tensor([prompt + target[:-1]])).logits[0]
    return float(torch.nn.functional.cross_entropy(logits[len(prompt) - 1 :], torch.tensor(target)))


def _state(loaded):
    return {k: v.clone() for k, v in loaded.model.state_dict().items()}


def test_subject_index_finds_last_subject_token(tiny):
    tok = tiny.tokenizer  # one token per byte, after <bos>
    assert subject_index(tok, "Paris is in France", "France") == len("Paris is in France")
    assert subject_index(tok, "ab France cd", "france") == len("ab France")
    with pytest.raises(BrickworkError, match="does not occur"):
        subject_index(tok, "Paris is in France", "Spain")


def test_solve_update_meets_constraints_and_is_rome_for_one_fact():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 12, generator=g, dtype=torch.float64)
    cov = x.T @ x / 200
    keys, residuals = torch.randn(12, 3, generator=g), torch.randn(5, 3, generator=g)
    u, v = solve_update(keys, residuals, cov)
    assert torch.allclose((u @ v) @ keys.double(), residuals.double(), atol=1e-8)
    u1, v1 = solve_update(keys[:, :1], residuals[:, :1], cov)
    c_inv_k = (
        torch.linalg.inv(cov + 1e-3 * cov.diagonal().mean() * torch.eye(12)) @ keys[:, 0].double()
    )
    rome = torch.outer(residuals[:, 0].double(), c_inv_k) / (keys[:, 0].double() @ c_inv_k)
    assert torch.allclose(u1 @ v1, rome, atol=1e-8)
    u2, v2 = solve_update(keys, residuals, cov, mode="memit", lam=1e-6)  # λ→0: exact again
    assert torch.allclose((u2 @ v2) @ keys.double(), residuals.double(), atol=1e-4)


def test_edit_applies_writes_the_fact_and_rolls_back_bit_identically(tiny, tmp_path):
    state, fingerprint = _state(tiny), tiny.fingerprint
    before = _target_nll(tiny, FACT)
    brick = edit(tiny, [FACT], "france-zq", SETTINGS)
    assert all(torch.equal(state[k], v) for k, v in tiny.model.state_dict().items())  # untouched
    repo = BrickRepository(tmp_path / "repo")
    repo.add(brick)
    stored = repo.get("france-zq")  # round trip through safetensors
    apply_edit(tiny, stored)
    assert tiny.fingerprint == brick.spec["result_fingerprint"] != fingerprint
    assert _target_nll(tiny, FACT) < before - 1.0  # measured 5.84 -> 4.03 nats
    # The rank-one constraint: the edited projection maps k* to W k* + δ.
    key = fact_key(tiny, 1, FACT.prompt, FACT.subject).float()
    old = state["model.layers.1.mlp.down_proj.weight"]
    out = down_module(tiny, 1)(key)
    assert torch.allclose(out, old @ key + stored.tensors["u"][:, 0], atol=1e-4)
    rollback(tiny, stored)
    assert tiny.fingerprint == fingerprint
    assert all(torch.equal(state[k], v) for k, v in tiny.model.state_dict().items())


def test_batch_edit_and_identity_covariance(tiny):
    facts = [FACT, EditFact("Bern is in Swiss", "Swiss", "yy")]
    settings = EditSettings(**{**SETTINGS.to_json(), "covariance": "identity"})
    before = [_target_nll(tiny, f) for f in facts]
    brick = edit(tiny, facts, "two", settings)
    assert brick.spec["update"] == "batch" and brick.spec["rank"] == 2
    keys = torch.stack([fact_key(tiny, 1, f.prompt, f.subject) for f in facts], 1).float()
    delta = brick.tensors["u"] @ brick.tensors["v"] @ keys  # every key maps to its own δ
    assert torch.allclose(delta, brick.tensors["u"], atol=1e-3 * float(delta.abs().max()))
    apply_edit(tiny, brick)
    after = [_target_nll(tiny, f) for f in facts]
    rollback(tiny, brick)
    assert all(a < b - 1.0 for a, b in zip(after, before, strict=True))  # 5.8, 6.3 -> 3.9, 4.7


def test_a_text_initial_subject_is_keyed_apart(tiny):
    settings = EditSettings(**{**SETTINGS.to_json(), "first_token_key": True})
    fact = EditFact("We saw France", "France", "zq")
    assert edit(tiny, [fact], "two-keys", settings).spec["rank"] == 2
    starts = EditFact("France is", "France", "zq")
    assert edit(tiny, [starts], "two-anyway", SETTINGS).spec["rank"] == 2  # keyed apart always
    assert torch.equal(  # the text-initial occurrence is left out of the mean
        fact_key(tiny, 1, "France is", "France", ("", "Hi. ")),
        fact_key(tiny, 1, "France is", "France", ("Hi. ",)),
    )


@pytest.fixture
def no_bos(sharp_llama, tmp_path, monkeypatch):
    """The same tiny llama with a tokenizer that adds no BOS token, as SmolLM2's."""
    path = tmp_path / "no_bos"
    shutil.copytree(sharp_llama, path)
    tiny_tokenizer(bos=False).save_pretrained(path)
    monkeypatch.setenv("BRICKWORK_CACHE", str(tmp_path / "cache"))
    return load_model(str(path))


def _layer0_outputs(loaded, ids: list[int]) -> torch.Tensor:
    """Layer 0's FFN output for every token id as a text's only token [n, d_model]."""
    out = []
    handle = down_module(loaded, 0).register_forward_hook(lambda m, a, o: out.append(o[:, 0]))
    with torch.no_grad():
        loaded.model(input_ids=torch.tensor(ids)[:, None])
    handle.remove()
    return out[0]


def test_a_subject_at_position_zero_is_edited_in_the_initial_layer(no_bos, tiny, tmp_path):
    fact = EditFact("F", "F", "zq")  # the target follows at once
    assert at_position_zero(no_bos.tokenizer, fact.prompt, "F")
    assert not at_position_zero(tiny.tokenizer, fact.prompt, "F")  # <bos> comes first
    assert not at_position_zero(no_bos.tokenizer, "FR is in", "FR")  # ends at position 1
    assert edit(tiny, [fact], "bos", SETTINGS).spec.get("more_layers") is None
    state, before = _state(no_bos), _target_nll(no_bos, fact)
    repo = BrickRepository(tmp_path / "repo")
    repo.add(edit(no_bos, [fact], "f0", SETTINGS))
    brick = repo.get("f0")  # round trip through safetensors
    assert brick.spec["layer"] == 1 and brick.spec["more_layers"] == [0]
    broken = type(brick)(**{**brick.__dict__, "tensors": {**brick.tensors}})
    del broken.tensors["v@0"]
    with pytest.raises(BrickworkError, match="lacks its 'v' tensor for layer 0"):
        apply_edit(no_bos, broken)
    specials = sorted(set(no_bos.tokenizer.all_special_ids))
    f_id = no_bos.tokenizer.convert_tokens_to_ids("F")
    unedited = _layer0_outputs(no_bos, [f_id, *specials])
    apply_edit(no_bos, brick)
    edited = _layer0_outputs(no_bos, [f_id, *specials])
    # Layer 0 moves "F" as a first token by δ₀ and leaves the special tokens where they were.
    assert torch.allclose(edited[0] - unedited[0], brick.tensors["u@0"][:, 0], atol=1e-4)
    assert torch.allclose(edited[1:], unedited[1:], atol=1e-4)
    assert _target_nll(no_bos, fact) < before - 1.0  # measured 6.59 -> 4.96 nats
    rollback(no_bos, brick)
    assert all(torch.equal(state[k], v) for k, v in no_bos.model.state_dict().items())


def test_wrong_base_and_out_of_order_rollback_are_refused(tiny, tiny_model_dirs):
    brick = edit(tiny, [FACT], "e", SETTINGS)
    other = load_model(tiny_model_dirs["mistral"])
    with pytest.raises(BrickworkError, match="made for base model"):
        apply_edit(other, brick)
    with pytest.raises(BrickworkError, match="cannot roll back"):
        rollback(tiny, brick)  # never applied
    apply_edit(tiny, brick)
    with pytest.raises(BrickworkError, match="made for base model"):
        apply_edit(tiny, brick)  # the model changed: the edit no longer fits
    rollback(tiny, brick)


def test_editing_a_fact_the_model_does_not_produce_is_refused(tiny):
    wrong = replace(FACT, target_true="Lyon")
    with pytest.raises(BrickworkError, match="does not produce 'Lyon'"):
        edit(tiny, [wrong], "e", SETTINGS)


def test_covariance_is_cached_per_fingerprint_and_layer(tiny):
    stats = layer_statistics(tiny, 0, tokens=300)
    path = cache_path(tiny, 0, 300)
    assert path.is_file()
    cov = stats["cov"]
    assert cov.shape == (D_FF, D_FF) and torch.allclose(cov, cov.T)
    assert torch.linalg.eigvalsh(cov.double()).min() > -1e-6  # E[k kᵀ] is PSD
    again = layer_statistics(tiny, 0, tokens=300)
    assert torch.equal(again["cov"], cov) and again["tokens"] == stats["tokens"] >= 300
    texts = ["hello world", "abc"]
    manual = layer_statistics(tiny, 0, texts=texts)
    keys = []
    handle = down_module(tiny, 0).register_forward_pre_hook(lambda m, a: keys.append(a[0][0]))
    with torch.no_grad():
        for text in texts:
            tiny.model(**tiny.tokenizer(text, return_tensors="pt"))
    handle.remove()
    k = torch.cat(keys).double()
    assert torch.allclose(manual["cov"].double(), k.T @ k / len(k), atol=1e-6)


def test_injected_neurons_fire_on_the_fact_only_and_detach_exactly(tiny, monkeypatch):
    from torch.nn.functional import normalize, relu

    from brickwork.ops.update import covariance
    from brickwork.ops.update.inject import ffn_inputs

    # A tiny random model's FFN inputs are near-parallel; a corpus without the fact's characters
    # keeps the fact separable (on the real corpus it can refuse: see the error test).
    monkeypatch.setattr(covariance, "corpus_texts", lambda: ["0123 4567 89", "+-*/ =<>"] * 40)
    state = _state(tiny)
    ids = tiny.tokenizer(["Paris is in France", "qqqq qqqq zzzz zzz"], return_tensors="pt")
    with torch.no_grad():
        before = tiny.model(**ids).logits
    brick = inject(tiny, [FACT], "inj", SETTINGS)
    t = brick.tensors
    assert 0 < float(t["thresholds"][0]) < 1 and float(t["scales"][0]) > 0

    def fires(x):  # the hook's activation rule on FFN inputs x [n, d_model]
        return relu((normalize(x.float(), dim=-1) @ t["keys"].T - t["thresholds"]) * t["scales"])

    # About 1 on the fact's subject token (behind each prefix), exactly 0 on every corpus token.
    assert torch.allclose(
        fires(ffn_inputs(tiny, SETTINGS.layer, FACT)).mean(), torch.tensor(1.0), atol=0.05
    )
    corpus = layer_statistics(tiny, SETTINGS.layer, SETTINGS.covariance_tokens)["inputs"]
    assert fires(corpus).max() == 0
    with attach_neurons(tiny, brick), torch.no_grad():
        assert not torch.equal(tiny.model(**ids).logits, before)  # the neuron writes somewhere
    with torch.no_grad():
        assert torch.equal(tiny.model(**ids).logits, before)
    assert all(torch.equal(state[k], v) for k, v in tiny.model.state_dict().items())


def test_integrated_gradients_are_complete(tiny):
    """IG sums to P(answer) minus P with the layer's last-token activations zeroed."""
    prompt, answer, layer = "Paris is in France", "zq", 1
    scores = integrated_gradients(tiny, prompt, answer, steps=64, layers=[layer])
    assert torch.count_nonzero(scores[0]) == 0  # only the requested layer
    ids = tiny.tokenizer(prompt, return_tensors="pt")["input_ids"]
    token = tiny.tokenizer(" zq", add_special_tokens=False)["input_ids"][0]

    def prob(zero: bool) -> float:
        def hook(m, args):
            x = args[0].clone()
            x[:, -1] = 0
            return (x,)

        handle = down_module(tiny, layer).register_forward_pre_hook(hook) if zero else None
        with torch.no_grad():
            p = float(tiny.model(input_ids=ids).logits[0, -1].softmax(-1)[token])
        if handle:
            handle.remove()
        return p

    total = float(scores[layer].sum())
    assert total == pytest.approx(prob(False) - prob(True), rel=0.05, abs=1e-7)
    brick = knowledge_neurons(tiny, [prompt, "We went to France"], answer, "kn", steps=8)
    assert brick.tensors["mask"].shape == (2, D_FF) == brick.tensors["scores"].shape
    assert all(brick.tensors["mask"][r["layer"], r["neuron"]] for r in brick.spec["ranking"])


def test_causal_trace_restoring_the_last_layer_recovers_the_clean_probability(tiny):
    brick = causal_trace(tiny, "Paris is in France", "France", "zq", "trace", samples=4)
    s, hidden = brick.spec, brick.tensors["hidden_scores"]
    assert hidden.shape == (2,) and brick.tensors["mlp_scores"].shape == (2,)
    # The subject's last token is the prompt's last token: restoring the final layer's state
    # there restores the prediction exactly.
    assert float(hidden[-1]) == pytest.approx(s["p_clean"] - s["p_corrupt"], abs=1e-6)
    assert s["p_clean"] != s["p_corrupt"]
    assert sorted(s["ranking"]) == [0, 1]


def test_builtin_edit_set():
    facts = load_edits()
    assert len(facts) >= 60
    assert all(len(f.paraphrases) >= 2 and len(f.neighborhood) >= 2 for f in facts)
    assert all(f.target_new != f.target_true for f in facts)


def test_bad_edit_set_is_one_line_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    row = {
        "id": "a",
        "relation": "r",
        "subject": "X",
        "prompt": "Y is",
        "target_true": "1",
        "target_new": "2",
        "paraphrases": [],
        "neighborhood": [],
    }
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(BrickworkError, match="subject 'X' is not in the prompt"):
        load_edits(path)
    row["prompt"] = "X is"
    path.write_text(json.dumps({**row, "keep": ["Z is 3"]}) + "\n")
    assert load_edits(path)[0].keep == ("Z is 3",)  # optional
    path.write_text(json.dumps({**row, "keep": "Z is 3"}) + "\n")
    with pytest.raises(BrickworkError, match="'keep' must be a list of strings"):
        load_edits(path)


def test_injection_refuses_a_fact_the_corpus_already_holds(tiny, monkeypatch):
    from brickwork.ops.update import covariance
    from brickwork.ops.update.common import CONTEXTS

    # The corpus holds the fact's own contexts, so some corpus token is at least as close to the
    # key as the fact is on average: no threshold can separate them.
    monkeypatch.setattr(covariance, "corpus_texts", lambda: [c + FACT.prompt for c in CONTEXTS])
    with pytest.raises(BrickworkError, match="cannot single it out"):
        inject(tiny, [FACT], "inj", SETTINGS)


def test_value_is_optimised_through_the_update_itself(tiny):
    """The hook the value optimisation runs under equals applying ΔW = δ wᵀ to the weight."""
    keys = torch.stack([fact_key(tiny, 1, FACT.prompt, FACT.subject)], 1)
    w = key_side(keys, layer_statistics(tiny, 1)["cov"], SETTINGS)
    assert torch.allclose(w @ keys.double(), torch.ones(1, dtype=torch.float64), atol=1e-6)
    delta = torch.randn(
        down_module(tiny, 1).weight.shape[0], generator=torch.Generator().manual_seed(0)
    )
    ids = tiny.tokenizer("Rome is in Italy, France", return_tensors="pt")["input_ids"]
    with torch.no_grad(), through_update(down_module(tiny, 1), w, delta):
        hooked = tiny.model(input_ids=ids).logits
    weight = down_module(tiny, 1).weight
    before = weight.detach().clone()
    with torch.no_grad():
        weight.add_(torch.outer(delta, w.float()))
        edited = tiny.model(input_ids=ids).logits
        weight.copy_(before)
    assert torch.allclose(hooked, edited, atol=1e-4)


def test_keep_texts_hold_their_predictions(tiny):
    keep = ["Rome is in Italy", "Bern is in Swiss"]
    drift = {}
    for weight in (0.0, 1000.0):  # a tiny random model needs a strong weight to show it
        settings = EditSettings(**{**SETTINGS.to_json(), "keep_weight": weight})
        brick = edit(tiny, [replace(FACT, keep=tuple(keep))], f"keep-{int(weight)}", settings)
        assert brick.spec["facts"][0]["keep"] == keep
        ids, mask = pad([tiny.tokenizer(t)["input_ids"] for t in keep], 0)
        with torch.no_grad():
            base = tiny.model(input_ids=ids, attention_mask=mask).logits.log_softmax(-1)
            apply_edit(tiny, brick)
            after = tiny.model(input_ids=ids, attention_mask=mask).logits.log_softmax(-1)
            rollback(tiny, brick)
        drift[weight] = float(((base.exp() * (base - after)).sum(-1) * mask).sum())
        assert not any(target_scores(tiny, [FACT.prompt], ["zq"])[0])  # rolled back
    assert drift[1000.0] < drift[0.0] / 4, drift  # measured 0.03 vs 0.37


def test_fact_metrics_on_the_unedited_model(tiny):
    fact = replace(FACT, unrelated=("Bern is in Swiss",))
    reference = neighbourhood_reference(tiny, [fact])
    assert set(reference) == {"Rome is in Italy", "Bern is in Swiss"}
    row = fact_metrics(tiny, [fact], reference)[0]
    assert row["locality"] == row["locality_unrelated"] == row["locality_first"] == 1.0
    assert "locality_unrelated" not in fact_metrics(tiny, [FACT], reference)[0]
    assert summarize([row, fact_metrics(tiny, [FACT], reference)[0]])["locality_unrelated"] == 1.0


def _mean_score(loaded, prompts, target=FACT.target_new) -> float:
    hits = target_scores(loaded, prompts, [target] * len(prompts))
    return sum(sum(h) / len(h) for h in hits) / len(hits)


def test_generalization_known_counts_the_paraphrases_the_model_answers(tiny):
    """``known_paraphrases`` applies the prompts' check (the greedy continuation starts with the
    true object) to each paraphrase; generalization_known scores only those."""
    fact = replace(FACT, paraphrases=("France is big", "We went to France"))
    said = [tiny.tokenizer.decode(g).strip() for g in greedy(tiny, list(fact.paraphrases), 8)]
    assert said[0] and not said[1].lower().startswith(said[0].lower())  # the tiny model's own
    fact = replace(fact, target_true=said[0])
    known = known_paraphrases(tiny, [fact])
    assert known == {("France is big", said[0])}
    reference = neighbourhood_reference(tiny, [fact])
    row = fact_metrics(tiny, [fact], reference, known=known)[0]
    assert row["generalization_known"] == _mean_score(tiny, ["France is big"])
    assert "generalization_known" not in fact_metrics(tiny, [fact], reference, known=set())[0]
    assert known_paraphrases(tiny, [FACT]) == set()  # no target_true: nothing to check


def test_generalization_prefixed_and_inside(tiny):
    """The prefixed paraphrases are scored behind every eval prefix; ``inside`` only counts the
    paraphrases that do not open with the subject, and is absent when there are none."""
    fact = replace(FACT, paraphrases=("France is big", "We went to France"))
    row = fact_metrics(tiny, [fact], neighbourhood_reference(tiny, [fact]))[0]
    prefixed = [c + p for p in fact.paraphrases for c in EVAL_PREFIXES]
    assert len(prefixed) == 4 and row["generalization_prefixed"] == _mean_score(tiny, prefixed)
    assert row["generalization_inside"] == _mean_score(tiny, ["We went to France"])
    opening = replace(fact, paraphrases=("France is big",))
    first = fact_metrics(tiny, [opening], neighbourhood_reference(tiny, [opening]))[0]
    assert "generalization_inside" not in first
    assert summarize([first, row])["generalization_inside"] == row["generalization_inside"]
