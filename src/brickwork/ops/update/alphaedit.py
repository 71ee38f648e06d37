"""AlphaEdit's update (Fang et al. 2024, arXiv 2410.02355): the change lies in the null space
of the preserved keys, so what the model computes for them stays as it was, and it keeps the
keys of earlier edits where they were.

The preserved keys are the corpus keys of the cached covariance C = E[k kᵀ]. A small model's C
has no exact null space (SmolLM2-135M layer 8: smallest eigenvalue 0.004 of a trace of 56), so
the "null space" U [d_ff, r] is spanned by C's eigenvectors of smallest eigenvalue that together
carry at most ``energy`` of its trace (AlphaEdit thresholds eigenvalues at 1e-2 instead).
With P = U Uᵀ, keys K [d_ff, n] (the new fact's), residuals R [d_model, n] and the earlier
edits' keys Kp, AlphaEdit solves
    min ‖Δ P K - R‖² + ‖Δ P Kp‖² + λ ‖Δ P‖²,
in U's coordinates (K̃ = Uᵀ K): ΔW = R K̃ᵀ (K̃ K̃ᵀ + K̃p K̃pᵀ + λ I)⁻¹ Uᵀ, exactly zero on
every direction outside U. λ is ``l2`` times the mean ‖K̃‖² (scale-free).
"""

from __future__ import annotations

import torch

from brickwork.errors import BrickworkError

DEFAULT_ENERGY = 0.05
DEFAULT_L2 = 0.01


def null_basis(cov: torch.Tensor, energy: float = DEFAULT_ENERGY) -> torch.Tensor:
    """U [d_ff, r]: the eigenvectors of ``cov`` of smallest eigenvalue whose eigenvalues sum to
    at most ``energy`` of its trace (every eigenvalue that is zero up to rounding included)."""
    values, vectors = torch.linalg.eigh(cov.double())
    share = values.clamp_min(0).cumsum(0) / values.clamp_min(0).sum()
    kept = (share <= energy) | (values <= 1e-10 * values.abs().max())
    if not kept.any():
        raise BrickworkError(
            f"the preserved keys leave no null space at energy {energy} (raise it)"
        )
    return vectors[:, kept]


def projected_update(
    keys: torch.Tensor,
    residuals: torch.Tensor,
    basis: torch.Tensor,
    earlier: torch.Tensor | None = None,
    l2: float = DEFAULT_L2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ΔW = U @ V ([d_model, m] @ [m, d_ff]) for keys [d_ff, n], residuals [d_model, n], the
    null-space ``basis`` [d_ff, r] and the earlier edits' keys [d_ff, p] (or None); the m <= n
    factors are those of the keys with a non-zero residual (as ``solve_update``)."""
    k, r, u = keys.double(), residuals.double(), basis.double()
    reduced = u.T @ k  # [r, n]
    scale = float((reduced**2).sum(0).mean())
    a = reduced @ reduced.T + l2 * max(scale, 1e-12) * torch.eye(len(u.T), dtype=torch.float64)
    if earlier is not None and earlier.shape[1]:
        kept = u.T @ earlier.double()
        a = a + kept @ kept.T
    v = torch.linalg.solve(a, reduced).T @ u.T  # [n, d_ff]; a is symmetric
    used = r.abs().sum(0) > 0
    return r[:, used], v[used]
