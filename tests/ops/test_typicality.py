"""Retrieval fits: calibrated on fresh prompts of a brick's own distribution, zero far away, kept
by a saved index, and a query far from every brick is reported as such."""

import torch

from brickwork.bricks import BrickRepository
from brickwork.cli import main
from brickwork.ops.retrieval import RetrievalIndex
from brickwork.ops.typicality import NO_FIT, typicality
from tests.ops.test_route import QUERIES, described  # noqa: F401 (a fixture)


def test_fits_of_fresh_samples_are_calibrated():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(2, 16, generator=g, dtype=torch.float64) * 3
    scales = torch.rand(16, generator=g, dtype=torch.float64) + 0.5
    train = [m + torch.randn(400, 16, generator=g, dtype=torch.float64) * scales for m in means]
    typical = typicality(train, torch.stack([t.mean(dim=0) for t in train]))
    fresh = means[0] + torch.randn(400, 16, generator=g, dtype=torch.float64) * scales
    fits = torch.tensor([typical.fit(x, 0) for x in fresh])
    # p-value-like: about uniform on [0, 1] for prompts drawn like the training ones
    assert 0.4 < float(fits.mean()) < 0.6
    assert 0.01 < float((fits < NO_FIT).double().mean()) < 0.12
    assert typical.fit(means[0] + 20 * scales, 0) == 0.0
    assert typical.fit(means[0], 0) == 1.0
    assert typicality([train[0], None], means) is None


def test_far_query_gets_a_best_brick_but_no_fit(tiny_llama, described, tmp_path):  # noqa: F811
    index = RetrievalIndex.from_bricks(described)
    near = index.embed(tiny_llama, QUERIES["digits"])
    far = index.typical.centres[0] + 50 * index.typical.spread
    best_near, best_far = index.query(near, 1)[0], index.query(far.float(), 1)[0]
    assert best_near.name == "digits" and best_near.fit > NO_FIT
    assert best_far.fit == 0.0 and best_far.score > 0.5  # the ranking alone would trust it
    again = RetrievalIndex.load(index.save(tmp_path / "index.safetensors"))
    assert again.query(near, 3) == index.query(near, 3)


def test_cli_says_when_no_brick_fits(tiny_llama, tiny_model_dirs, described, tmp_path, capsys):  # noqa: F811
    repo = BrickRepository(tmp_path / "repo")
    for brick in described:
        repo.add(brick)
    command = ["bricks", "retrieve", "--repo", str(repo.root), "--model", tiny_model_dirs["llama"]]
    assert main([*command, QUERIES["symbols"]]) == 0
    assert "no brick fits" not in capsys.readouterr().out
    assert (
        main([*command, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz qqqqqqqqqqqqqqq xxxxxxxxxxxxxxxxx"]) == 0
    )
    out = capsys.readouterr().out
    fits = [float(line.split()[1]) for line in out.splitlines()[1:4]]
    assert "no brick fits" in out and max(fits) < NO_FIT and out.split()[4] == "1.0000"
