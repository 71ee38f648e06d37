"""Combination of homogeneous LoRA bricks (paper §3.2): linear, task arithmetic, TIES, DARE and a
LoraHub-style coefficient search. Every result is a LoRA plugin brick (a PEFT adapter directory
once saved) whose provenance names its parents with their content hashes.

All methods work on each target module's update ΔWᵢ = sᵢ·Bᵢ·Aᵢ (sᵢ = alpha/r, or alpha/√r with
rsLoRA), never on A and B separately, through one core, ``generalized_task_arithmetic``
(methods.py), whose options give the registered methods (registry.py, ``MERGE_METHODS``):

- ``merge_linear`` is exact: Σ wᵢ·ΔWᵢ is the LoRA with A = cat(Aᵢ) and B = cat(wᵢ·sᵢ·Bᵢ) (rank
  Σ rᵢ, scaling 1). With ``rank`` it is truncated by SVD (computed through QR of the thin factors)
  and the relative Frobenius error of the truncation is recorded. PEFT's
  ``add_weighted_adapter(combination_type="linear")`` instead weights A and B by √(wᵢ·sᵢ) and adds
  them, which yields cross terms Bᵢ·Aⱼ: it is not Σ wᵢ·ΔWᵢ.
- ``merge_ties`` and ``merge_dare`` sparsify and merge the dense ΔWᵢ, then take the best
  rank-``rank`` approximation by SVD (default: Σ rᵢ, the rank the exact linear merge has); the
  relative re-compression error is recorded in ``metrics``. The dense merge would need rank
  min(d_out, d_in).

Bad input raises ``BrickworkError`` before anything is built; results holding NaN or inf too.
"""

from brickwork.ops.combine.lora import (
    A_SUFFIX,
    B_SUFFIX,
    content_hash,
    lora_deltas,
    lora_factors,
    lora_scaling,
)
from brickwork.ops.combine.methods import (
    DARE_VARIANTS,
    SPARSIFICATIONS,
    generalized_task_arithmetic,
    merge_dare,
    merge_linear,
    merge_ties,
    task_arithmetic,
)
from brickwork.ops.combine.registry import (
    MERGE_METHODS,
    MergeMethod,
    merge,
    register_merge_method,
)
from brickwork.ops.combine.search import (
    SearchResult,
    SearchSettings,
    search_weights,
    weighted_mixture,
)

__all__ = [
    "A_SUFFIX",
    "B_SUFFIX",
    "DARE_VARIANTS",
    "MERGE_METHODS",
    "SPARSIFICATIONS",
    "MergeMethod",
    "SearchResult",
    "SearchSettings",
    "content_hash",
    "generalized_task_arithmetic",
    "lora_deltas",
    "lora_factors",
    "lora_scaling",
    "merge",
    "merge_dare",
    "merge_linear",
    "merge_ties",
    "register_merge_method",
    "search_weights",
    "task_arithmetic",
    "weighted_mixture",
]
