"""Evaluation helpers: routed static and prompt-selected losses at 100% equal the dense loss."""

import torch

from brickwork.configure.compact import gather_ffn
from brickwork.configure.evaluate import mean_nll, parameter_bytes, routed_static_nll
from brickwork.configure.prompted import prompted_losses
from brickwork.configure.select import SelectionStats, top_per_layer


def test_full_budget_losses_equal_dense(tiny_llama, tiny_samples):
    groups = ["coding", "math", "writing"]
    samples = [s for s in tiny_samples if s.split == "test"]
    dense = mean_nll(tiny_llama, samples, groups)
    stats = SelectionStats(
        groups,
        torch.rand(3, 2, 64),
        torch.zeros(3, 2, 64, dtype=torch.bool),
        torch.zeros(2, 64, dtype=torch.bool),
        torch.rand(2, 64),
        tiny_llama.fingerprint,
    )
    routed = ["math", "math", "coding"]
    static = routed_static_nll(tiny_llama, stats, samples, routed, groups, 1.0)
    torch.testing.assert_close(static, dense, rtol=1e-5, atol=1e-6)
    prompted = prompted_losses(tiny_llama, samples, groups, 1.0)
    torch.testing.assert_close(prompted, dense, rtol=1e-4, atol=1e-5)
    # At a small budget the prompt-selected loss differs from the dense one.
    assert not torch.allclose(prompted_losses(tiny_llama, samples, groups, 0.1), dense)


def test_parameter_bytes_shrink_with_the_slice(tiny_llama):
    half = gather_ffn(tiny_llama, top_per_layer(torch.rand(2, 64), 0.5))
    dense, small = parameter_bytes(tiny_llama.model), parameter_bytes(half.loaded.model)
    ffn_saved = 2 * 3 * 32 * 32 * 4  # layers x projections x dropped neurons x hidden x float32
    assert dense - small == ffn_saved


def test_several_budgets_share_the_prefill_exactly(tiny_llama, tiny_samples):
    from brickwork.configure.prompted import prompted_losses_at

    groups = ["coding", "math", "writing"]
    samples = [s for s in tiny_samples if s.split == "test"]
    shared = prompted_losses_at(tiny_llama, samples, groups, [0.5, 1.0, 0.25])
    for budget in (0.5, 0.25):
        torch.testing.assert_close(
            shared[budget], prompted_losses(tiny_llama, samples, groups, budget)
        )
    torch.testing.assert_close(
        shared[1.0], mean_nll(tiny_llama, samples, groups), rtol=1e-4, atol=1e-5
    )


def test_sequence_oracle_scores_the_reference_too(tiny_llama, tiny_samples):
    from brickwork.configure.prompted import prompted_losses_at

    groups = ["coding", "math", "writing"]
    samples = [s for s in tiny_samples if s.split == "test"]
    oracle = prompted_losses_at(tiny_llama, samples, groups, [1.0, 0.25], oracle=True)
    prompted = prompted_losses_at(tiny_llama, samples, groups, [0.25])
    torch.testing.assert_close(
        oracle[1.0], mean_nll(tiny_llama, samples, groups), rtol=1e-4, atol=1e-5
    )
    # Scoring on the reference as well picks other neurons, so other losses.
    assert not torch.allclose(oracle[0.25], prompted[0.25])
