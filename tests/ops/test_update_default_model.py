"""One ROME-style edit on the real default model: it writes the new fact, leaves a neighbour
alone, and rolls back bit-identically."""

from __future__ import annotations

import pytest
import torch

from brickwork.data.edits import load_edits
from brickwork.models import load_model
from brickwork.ops.update import EditSettings, apply_edit, edit, rollback
from brickwork.ops.update.evaluate import fact_metrics, neighbourhood_reference


@pytest.mark.slow
def test_edit_capital_of_france():
    loaded = load_model("smollm2-135m-instruct")
    fact = next(f for f in load_edits() if f.id == "capital-france")
    state = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    base = loaded.fingerprint
    reference = neighbourhood_reference(loaded, [fact])
    brick = edit(loaded, [fact], "france", EditSettings(covariance="identity"))  # no cache writes
    apply_edit(loaded, brick)
    row = fact_metrics(loaded, [fact], reference)[0]
    assert row["reliability"] == 1.0 and row["locality"] >= 0.5
    rollback(loaded, brick)
    assert loaded.fingerprint == base
    assert all(torch.equal(state[k], v) for k, v in loaded.model.state_dict().items())


@pytest.mark.slow
def test_a_first_token_subject_is_edited_without_moving_other_texts(tmp_path, monkeypatch):
    """'Germany is a country in' opens with a one-token subject at position 0, the attention
    sink. Keyed there at layer 8 (as before ``initial_layer``), the edit moves the first
    position of every text; keyed at layer 0, it leaves them nearly alone."""
    loaded = load_model("smollm2-135m-instruct")
    monkeypatch.setenv("BRICKWORK_CACHE", str(tmp_path))  # the covariances: not the user's cache
    fact = next(f for f in load_edits() if f.id == "continent-germany")
    reference = neighbourhood_reference(loaded, [fact])
    texts = ["<|im_start|>user\nWhat is 2+2?", "Italy is a country in", "The weather"]
    ids = [loaded.tokenizer(t, return_tensors="pt")["input_ids"] for t in texts]

    def first_positions():
        with torch.no_grad():
            return torch.stack([loaded.model(input_ids=i).logits[0, 0].softmax(-1) for i in ids])

    before = first_positions()
    moved, rows = {}, {}
    for name, settings in {
        "sink": EditSettings(covariance_tokens=4000, initial_layer=8),
        "layer 0": EditSettings(covariance_tokens=4000),
    }.items():
        brick = edit(loaded, [fact], name.replace(" ", "-"), settings)
        apply_edit(loaded, brick)
        rows[name] = fact_metrics(loaded, [fact], reference)[0]
        moved[name] = (first_positions() - before).abs().sum(-1)  # total variation x 2
        rollback(loaded, brick)
        assert ("more_layers" in brick.spec) == (name == "layer 0")
    assert rows["layer 0"]["reliability"] == rows["sink"]["reliability"] == 1.0
    assert rows["layer 0"]["locality"] > rows["sink"]["locality"]  # measured 1.00 vs 0.44
    # Measured L1 changes: sink 0.64, 0.37, 0.057; layer 0 0.0002, 0.0007, 0.015.
    assert moved["layer 0"].sum() < moved["sink"].sum() / 20 and moved["layer 0"].max() < 0.05
