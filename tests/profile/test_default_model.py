"""The real default model (SmolLM2-135M-Instruct) end to end: slow, loads ~100 MB of weights."""

import pytest

from brickwork import load_builtin_suite, load_model
from brickwork.data import FUNCTIONALITIES
from brickwork.profile import profile_model, summarize

pytestmark = pytest.mark.slow


def test_default_model_profile_on_the_builtin_suite():
    loaded = load_model()
    samples = [
        s for f in FUNCTIONALITIES for s in load_builtin_suite("test") if s.functionality == f
    ]
    samples = [s for i, s in enumerate(samples) if i % 35 < 2]  # two per functionality
    profile = profile_model(loaded, samples, progress=False)
    assert profile.complete
    assert profile.tensors["instance_mean_abs"].shape == (14, 30, 1536)
    assert profile.meta["model_fingerprint"] == loaded.fingerprint
    summary = summarize(profile)
    assert summary["functionalities"].keys() == set(FUNCTIONALITIES)
    # Sparse activation, the paper's §4.2 finding, holds on this model too.
    assert summary["below_0.2_activation"]["mean"] > 0.5
