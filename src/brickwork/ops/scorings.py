"""Retrieval scorings: how a ``RetrievalIndex`` (ops/retrieval.py) scores bricks for a query.

LM hidden states are anisotropic: a few dimensions have values tens of times larger than the rest
and dominate a plain cosine similarity. The registered scorings (``SCORINGS``):

- ``"lda"`` (the default, chosen on validation instructions: docs/results/combine.md): linear
  discriminant analysis with the bricks as classes. The within-brick covariance of the training
  prompts' states, pooled over the bricks searched, is estimated with Ledoit-Wolf shrinkage
  (scikit-learn, on per-dimension standardised residuals), and a query x scores brick i by
  x·Σ⁻¹μᵢ - ½μᵢ·Σ⁻¹μᵢ; the reported score is the posterior probability (softmax over the bricks,
  equal priors). Needs every brick's prompt states and at least two bricks.
- ``"standardise"``: cosine similarity after standardising every dimension by the mean and
  standard deviation of all the bricks' training-prompt states (from the stored second moments).
- ``"centre"``: cosine similarity after subtracting the mean of the bricks' embeddings.

A scoring whose ``fit`` cannot use the bricks (they lack its statistics: bricks embedded by older
versions) hands over to its ``fallback``: ``lda`` to ``standardise`` to ``centre``. Adding a
scoring is a ``fit`` and a ``rank`` function and one entry in ``SCORINGS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from brickwork.errors import BrickworkError
from brickwork.registry import Registry

DEFAULT_SCORING = "lda"


@dataclass(frozen=True)
class Purpose:
    """One brick's purpose statistics: the mean of its prompts' states and, when stored, the
    per-dimension mean of their squares and the states themselves, over ``n_prompts`` prompts."""

    name: str
    description: str
    mean: torch.Tensor  # [hidden]
    second_moment: torch.Tensor | None = None  # [hidden]
    n_prompts: int = 1
    states: torch.Tensor | None = None  # [n_prompts, hidden]


@dataclass(frozen=True)
class Fitted:
    """What a scoring keeps of the bricks: a query x is scored through ``matrix`` [N, hidden]
    after (x - ``shift``) / ``scale``, plus ``bias`` [N] where the scoring has intercepts."""

    matrix: torch.Tensor
    shift: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor | None = None


@dataclass(frozen=True)
class Scoring:
    """A registered scoring. ``fit(purposes, means)`` gives the ``Fitted`` index tensors, or None
    when the bricks lack its statistics (then ``fallback`` is fitted instead);
    ``rank(fitted, vector, k)`` gives the top-``k`` (scores, indices) for a query [hidden]."""

    name: str
    fit: Callable[[list[Purpose], torch.Tensor], Fitted | None]
    rank: Callable[[Fitted, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]
    fallback: str | None = None


def fit_scoring(name: str, purposes: list[Purpose], means: torch.Tensor) -> tuple[str, Fitted]:
    """(the scoring used, its fit): ``name``, or the first of its fallbacks that can fit."""
    fitted = SCORINGS[name].fit(purposes, means)
    while fitted is None:
        name = SCORINGS[name].fallback
        fitted = SCORINGS[name].fit(purposes, means)
    return name, fitted


def _fit_lda(purposes: list[Purpose], means: torch.Tensor) -> Fitted | None:
    fitted = _lda(purposes, means)
    if fitted is None:
        return None
    coef, bias = fitted
    return Fitted(coef, torch.zeros_like(means[0]), torch.ones_like(means[0]), bias)


def _fit_standardise(purposes: list[Purpose], means: torch.Tensor) -> Fitted | None:
    if any(p.second_moment is None for p in purposes):
        return None
    shift, scale = _standardisation(purposes, means)
    return Fitted(_normalise((means - shift) / scale), shift, scale)


def _fit_centre(purposes: list[Purpose], means: torch.Tensor) -> Fitted:
    shift = means.mean(dim=0) if len(purposes) > 1 else torch.zeros_like(means[0])
    scale = torch.ones_like(shift)
    return Fitted(_normalise((means - shift) / scale), shift, scale)


def _posterior(fitted: Fitted, vector: torch.Tensor, k: int):
    """Top-k by discriminant, reported as posterior probabilities (equal priors)."""
    discriminants = fitted.matrix @ vector.to(fitted.matrix.dtype) + fitted.bias
    indices = torch.topk(discriminants, min(k, len(discriminants))).indices
    return torch.softmax(discriminants, dim=0)[indices], indices


def _cosine(fitted: Fitted, vector: torch.Tensor, k: int):
    """Top-k cosine similarities of the mapped query with the rows of ``matrix``."""
    query = (vector.to(fitted.shift.dtype) - fitted.shift) / fitted.scale
    scores = fitted.matrix @ _normalise(query[None])[0]
    values, indices = torch.topk(scores, min(k, len(scores)))
    return values, indices


SCORINGS: Registry[Scoring] = Registry(
    "scoring",
    (
        Scoring("lda", _fit_lda, _posterior, fallback="standardise"),
        Scoring("standardise", _fit_standardise, _cosine, fallback="centre"),
        Scoring("centre", _fit_centre, _cosine),
    ),
)


def _lda(purposes: list[Purpose], means: torch.Tensor):
    """(coefficients [N, hidden], intercepts [N]) of linear discriminant analysis with equal
    priors, the bricks as classes; None when it cannot be fitted (a brick without states, a
    single brick, or no within-brick variation)."""
    from sklearn.covariance import ledoit_wolf

    if len(purposes) < 2 or any(p.states is None for p in purposes):
        return None
    states = [p.states.double() for p in purposes]
    if any(s.ndim != 2 or s.shape[1] != means.shape[1] or len(s) < 1 for s in states):
        raise BrickworkError("a brick's stored prompt states do not match its embedding")
    if not all(torch.isfinite(s).all() for s in states):
        raise BrickworkError("a brick's stored prompt states hold NaN or inf")
    residuals = torch.cat([s - m for s, m in zip(states, means, strict=True)])
    spread = residuals.pow(2).mean(dim=0).sqrt()
    if len(residuals) <= len(purposes) or float(spread.max()) == 0.0:
        return None
    spread = spread.clamp_min(1e-6 * float(spread.mean()))
    shrunk, _ = ledoit_wolf((residuals / spread).numpy(), assume_centered=True)
    covariance = spread[:, None] * torch.from_numpy(shrunk) * spread[None]
    coef = torch.linalg.solve(covariance, means.T).T
    bias = -0.5 * (means * coef).sum(dim=1)
    if not (torch.isfinite(coef).all() and torch.isfinite(bias).all()):
        return None
    return coef, bias


def _standardisation(
    purposes: list[Purpose], means: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation per dimension of all the bricks' prompt states, pooled
    (weighted by each brick's number of prompts) from the bricks' means and second moments.
    With a single brick nothing is subtracted (its own mean would map it to zero)."""
    counts = torch.tensor([float(p.n_prompts) for p in purposes], dtype=torch.float64)
    seconds = torch.stack([p.second_moment.double() for p in purposes])
    if not torch.isfinite(seconds).all():
        raise BrickworkError("a purpose embedding's second moment holds NaN or inf")
    weights = (counts / counts.sum())[:, None]
    mean = (weights * means).sum(dim=0)
    variance = ((weights * seconds).sum(dim=0) - mean**2).clamp_min(0.0)
    floor = 1e-6 * float(variance.mean()) if float(variance.mean()) > 0 else 1e-12
    scale = variance.clamp_min(floor).sqrt()
    shift = mean if len(purposes) > 1 else torch.zeros_like(mean)
    return shift, scale


def _normalise(rows: torch.Tensor) -> torch.Tensor:
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
