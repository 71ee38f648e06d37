"""CDFs from profiles, the 5%-rise ratio and CETT thresholds."""

import pytest
import torch

from brickwork.analysis.sparsity import cett_threshold, indicator_cdfs, rise_ratio
from brickwork.profile import profile_model


def test_cdfs_are_monotone_and_end_at_one(tiny_llama, tiny_samples):
    profile = profile_model(tiny_llama, tiny_samples, progress=False)
    for cdf in indicator_cdfs(profile).values():
        assert cdf.shape == (2, 200)
        assert (cdf.diff(dim=1) >= 0).all()
        torch.testing.assert_close(cdf[:, -1], torch.ones(2, dtype=cdf.dtype))


def test_rise_ratio_interpolates_and_reports_none():
    ratios = (0.0, 0.1, 0.2, 0.3)
    assert rise_ratio(ratios, torch.tensor([1.0, 1.02, 1.08, 1.2])) == pytest.approx(0.15)
    assert rise_ratio(ratios, torch.tensor([1.0, 1.0, 1.01, 1.02])) is None


def test_cett_threshold_reaches_its_target():
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(200, 64, generator=g) * torch.rand(64, generator=g) ** 3
    weight = torch.randn(16, 64, generator=g)
    output = acts @ weight.t()
    eps_low, active_low = cett_threshold(acts, weight, output, 0.1)
    eps_high, active_high = cett_threshold(acts, weight, output, 0.2)
    assert 0 < eps_low < eps_high
    assert 0 < active_high < active_low < 1
    magnitude = acts.abs() * weight.norm(dim=0)
    dropped = acts * (magnitude < eps_low)
    cett = ((dropped @ weight.t()).norm(dim=-1) / output.norm(dim=-1)).mean()
    assert float(cett) == pytest.approx(0.1, abs=2e-3)
