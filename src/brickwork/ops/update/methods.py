"""Edit methods, in one registry: how the update at the edited layer is solved, given the keys
of the edits already made (sequential editing). Each entry's ``solver`` returns the function
(keys, residuals) -> (u, v) that replaces ROME's solve, or None for ROME's own.

- ``rome``: ROME's rank-one update (C⁻¹k*, the same averaged key k* on both sides of the update,
  which is r-ROME's fix of ROME's key asymmetry); applied one after another, the baseline that
  is expected to degrade;
- ``alphaedit``: AlphaEdit's null-space projection (``alphaedit.py``): the change is zero on
  the preserved corpus keys' span and keeps earlier edits' keys in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from brickwork.models.load import LoadedModel
from brickwork.ops.update.alphaedit import null_basis, projected_update
from brickwork.ops.update.covariance import layer_statistics
from brickwork.ops.update.rome import EditSettings
from brickwork.registry import Registry

Solver = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class EditMethod:
    name: str
    help: str
    # (model, settings) -> a factory: earlier edits' keys [d_ff, p] (or None) -> solver or None
    prepare: Callable[[LoadedModel, EditSettings], Callable[[torch.Tensor | None], Solver | None]]


def _rome(loaded: LoadedModel, settings: EditSettings):
    return lambda earlier: None


def _alphaedit(loaded: LoadedModel, settings: EditSettings):
    cov = layer_statistics(loaded, settings.layer, settings.covariance_tokens)["cov"]
    basis = null_basis(cov, settings.null_energy)

    def solver_for(earlier: torch.Tensor | None) -> Solver:
        return lambda keys, residuals: projected_update(
            keys, residuals, basis, earlier, settings.null_l2
        )

    return solver_for


EDIT_METHODS: Registry[EditMethod] = Registry(
    "edit method",
    [
        EditMethod("rome", "ROME's rank-one update (r-ROME's symmetric key)", _rome),
        EditMethod("alphaedit", "AlphaEdit: the update in the null space of kept keys", _alphaedit),
    ],
)
