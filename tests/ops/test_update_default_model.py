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
    fact = next(f for f in load_edits() if f["id"] == "capital-france")
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
