"""The retrieval-scoring registry: every registered scoring retrieves, ranks and round-trips, and a
new scoring is one entry."""

import pytest
import torch

from brickwork import BrickworkError
from brickwork.ops.retrieval import RetrievalIndex, retrieve
from brickwork.ops.scorings import (
    SCORINGS,
    Fitted,
    Purpose,
    Scoring,
    fit_scoring,
)
from tests.ops.test_route import QUERIES, TASKS, described  # noqa: F401 (a fixture)


@pytest.mark.parametrize("name", list(SCORINGS))
def test_every_scoring_retrieves_each_task_best_first(tiny_llama, described, name, tmp_path):  # noqa: F811
    index = RetrievalIndex.from_bricks(described, scoring=name)
    assert index.scoring == name  # every statistic is there: no fallback
    again = RetrievalIndex.load(index.save(tmp_path / "index.safetensors"))
    for task in TASKS:
        matches = retrieve(tiny_llama, index, QUERIES[task], k=3)
        assert matches[0].name == task
        assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
        assert retrieve(tiny_llama, again, QUERIES[task], k=3) == matches


def test_a_new_scoring_is_one_entry(tiny_llama, described, monkeypatch, tmp_path):  # noqa: F811
    def fit(purposes, means):
        return Fitted(means, torch.zeros_like(means[0]), torch.ones_like(means[0]))

    def rank(fitted, vector, k):
        return torch.topk(fitted.matrix @ vector.to(fitted.matrix.dtype), k)

    monkeypatch.setitem(SCORINGS, "dot", Scoring("dot", fit, rank))
    index = RetrievalIndex.load(
        RetrievalIndex.from_bricks(described, "dot").save(tmp_path / "i.safetensors")
    )
    query = index.embed(tiny_llama, QUERIES["digits"])
    want = torch.stack([b.tensors["brickwork.purpose_embedding"] for b in described]).double()
    assert index.scoring == "dot" and torch.equal(index.matrix, want)
    best = index.query(query, 1)[0]
    assert best.score == pytest.approx(float((want @ query.double()).max()))


def test_fallback_chain_and_unknown_names():
    with pytest.raises(BrickworkError, match="scoring 'cosine'; known: lda, standardise, centre"):
        SCORINGS["cosine"]
    means = torch.randn(2, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    bare = [Purpose(name, "", mean) for name, mean in zip("ab", means, strict=True)]
    used, fitted = fit_scoring("lda", bare, means)  # no states, no second moments
    assert used == "centre" and torch.equal(fitted.shift, means.mean(dim=0))
    assert [s.fallback for s in SCORINGS.values()] == ["standardise", "centre", None]
