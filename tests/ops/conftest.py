"""Fixtures of the edit tests: a tiny llama whose edits take (``save_sharp_llama``), loaded
with a private statistics cache."""

from __future__ import annotations

import pytest

from brickwork.models import load_model
from tests.tiny import save_sharp_llama


@pytest.fixture(scope="module")
def sharp_llama(tmp_path_factory) -> str:
    return save_sharp_llama(tmp_path_factory.mktemp("sharp_llama"))


@pytest.fixture
def tiny(sharp_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("BRICKWORK_CACHE", str(tmp_path / "cache"))
    return load_model(sharp_llama)
