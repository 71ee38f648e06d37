"""The training loop: early stopping keeps the best parameters; clipping, schedule, seeding."""

from __future__ import annotations

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from brickwork.training import (
    MAX_GRAD_NORM,
    TrainSettings,
    batch_order,
    fit,
    seeded,
    warmup_linear_decay,
)


def _problem(seed: int = 0):
    """A small linear regression: a model, its parameters, rows and a batch loss."""
    generator = torch.Generator().manual_seed(seed)
    with seeded(seed):
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(0.5))
    x, y = torch.randn(10, 4, generator=generator), torch.randn(10, 3, generator=generator)
    rows = list(zip(x, y, strict=True))

    def loss(batch):
        inputs, targets = (torch.stack(t) for t in zip(*batch, strict=True))
        return torch.nn.functional.mse_loss(model(inputs), targets)

    return model, list(model.parameters()), rows, loss


def _snapshot(params):
    return [p.detach().clone() for p in params]


def test_early_stopping_restores_the_best_parameters():
    model, params, rows, loss = _problem()
    scripted, seen = iter([5.0, 3.0, 1.0, 2.0, 4.0]), []  # before, steps 2, 4, 6, 8

    def evaluate():
        seen.append((model.training, _snapshot(params)))
        return next(scripted)

    settings = TrainSettings(steps=8, lr=0.1, batch_size=2, eval_every=2)
    result = fit(model, params, rows, loss, evaluate, settings, progress=False)
    assert (result.loss_before, result.loss_after) == (5.0, 1.0)
    assert (result.best_step, result.steps_run) == (4, 8)
    best, last = seen[2][1], seen[4][1]
    assert not all(torch.equal(a, b) for a, b in zip(best, last, strict=True))
    assert all(torch.equal(p, b) for p, b in zip(params, best, strict=True))
    assert not any(training for training, _ in seen)  # evaluated in eval mode
    assert result.metrics()["heldout_loss_after"] == 1.0


def test_no_improvement_keeps_the_initial_parameters():
    model, params, rows, loss = _problem()
    initial = _snapshot(params)
    losses = iter(range(10))
    settings = TrainSettings(steps=4, lr=0.1, batch_size=2, eval_every=1)
    result = fit(model, params, rows, loss, lambda: float(next(losses)), settings, progress=False)
    assert result.best_step == 0 and result.steps_run == 4
    assert all(torch.equal(p, b) for p, b in zip(params, initial, strict=True))


def test_training_steps_run_in_train_mode_and_time_runs_out():
    model, params, rows, loss = _problem()
    modes = []

    def recording(batch):
        modes.append(model.training)
        return loss(batch)

    settings = TrainSettings(steps=50, lr=0.1, batch_size=2, eval_every=50, max_seconds=0.0)
    result = fit(model, params, rows, recording, lambda: 1.0, settings, progress=False)
    assert result.steps_run == 1 and modes == [True]


def test_gradients_are_clipped_before_each_step():
    model, params, rows, loss = _problem()
    norms = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    def huge(batch):
        return 1e6 * loss(batch)

    handle = register_optimizer_step_pre_hook(record)
    try:
        settings = TrainSettings(steps=3, lr=0.1, batch_size=2, eval_every=3)
        fit(model, params, rows, huge, lambda: 1.0, settings, progress=False)
    finally:
        handle.remove()
    assert len(norms) == 3 and all(n <= MAX_GRAD_NORM * (1 + 1e-5) for n in norms)
    assert max(norms) > 0.99 * MAX_GRAD_NORM  # the raw gradients were far larger


def test_schedule_warms_up_then_decays():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule, lrs = warmup_linear_decay(optimizer, 20), []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[:3] == [0.5, 1.0, 18 / 19]
    assert all(a > b for a, b in zip(lrs[1:], lrs[2:], strict=False)) and lrs[-1] > 0


def test_seeded_training_is_reproducible_and_leaves_the_callers_rng():
    runs = []
    for seed in (1, 1, 2):
        model, params, rows, loss = _problem()
        torch.manual_seed(123)
        before = torch.rand(1)
        torch.manual_seed(123)
        with seeded(seed):
            settings = TrainSettings(steps=5, lr=0.1, batch_size=3, eval_every=5, seed=seed)
            fit(model, params, rows, loss, iter([2.0, 1.0]).__next__, settings, progress=False)
        assert torch.equal(torch.rand(1), before)  # the caller's random state is untouched
        runs.append(_snapshot(params))
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], runs[2], strict=True))


def test_batch_order_reshuffles_whole_epochs():
    order = batch_order(5, 2, 7, seed=3)
    assert len(order) == 7 and all(len(b) == 2 for b in order)
    flat = [i for b in order for i in b]
    assert sorted(flat[:5]) == sorted(flat[5:10]) == list(range(5))
    assert order == batch_order(5, 2, 7, seed=3) != batch_order(5, 2, 7, seed=4)
