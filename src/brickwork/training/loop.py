"""The training loop: AdamW, warmup then linear decay, gradient clipping, early stopping.

Held-out loss is measured before training, every ``eval_every`` steps, at the last step and when
``max_seconds`` runs out; the parameters of the lowest one are restored at the end. The module
is in train mode for the training steps and in eval mode while it is evaluated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from brickwork.training.best import BestState
from brickwork.training.distributed import all_reduce_step, local_share, world
from brickwork.training.rng import batch_order
from brickwork.training.settings import TrainSettings

MAX_GRAD_NORM = 1.0


@dataclass
class TrainResult:
    loss_before: float
    loss_after: float
    best_step: int
    steps_run: int
    seconds: float
    train_loss_first: float
    train_loss_last: float

    def metrics(self) -> dict:
        return {
            "heldout_loss_before": self.loss_before,
            "heldout_loss_after": self.loss_after,
            "heldout_ppl_before": math.exp(self.loss_before),
            "heldout_ppl_after": math.exp(self.loss_after),
            "best_step": self.best_step,
            "steps_run": self.steps_run,
            "train_seconds": self.seconds,
            "train_loss_first": self.train_loss_first,
            "train_loss_last": self.train_loss_last,
        }


def warmup_linear_decay(optimizer: torch.optim.Optimizer, steps: int):
    """Linear warmup over the first tenth of the steps, then linear decay towards zero."""
    warmup = max(1, steps // 10)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min((i + 1) / warmup, max(0.0, (steps - i) / (steps - warmup + 1)))
    )


def fit(
    module: torch.nn.Module,
    params: list[torch.Tensor],
    rows: Sequence,
    loss: Callable[[list], torch.Tensor],
    evaluate: Callable[[], float],
    settings: TrainSettings,
    *,
    regularizer: Callable[[int], torch.Tensor] | None = None,
    desc: str = "train",
    progress: bool = True,
    weight: Callable[[list], float] = len,
) -> TrainResult:
    """Train ``params`` on seeded batches of ``rows`` (``loss`` maps a batch to a scalar), plus
    ``regularizer(step)`` when given; ``evaluate`` returns the held-out loss. The caller seeds
    the global RNG (dropout) and puts ``params``' gradients where it wants them afterwards.

    In a torch.distributed process group (torchrun) the loop is data-parallel: each rank takes
    its share of every batch, ``loss`` weighted by ``weight`` (what the mean loss averages over:
    rows, or target tokens), and the gradients are summed (``training.distributed``); the
    regularizer counts once (rank 0). Every rank evaluates the whole held-out set.
    """
    s = settings
    rank, ranks = world()
    optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=0.0)
    schedule = warmup_linear_decay(optimizer, s.steps)
    batches = batch_order(len(rows), s.batch_size, s.steps, s.seed)
    best = BestState(_evaluate(module, evaluate), 0, params)
    before, losses, started, step = best.loss, [], time.perf_counter(), 0
    bar = tqdm(batches, desc=desc, disable=not progress or rank != 0)
    for step, indices in enumerate(bar, start=1):
        module.train()
        mine, share = local_share([rows[i] for i in indices], weight, rank, ranks)
        batch_loss = loss(mine) * share
        optimizer.zero_grad(set_to_none=True)
        total = batch_loss + regularizer(step) if regularizer and rank == 0 else batch_loss
        total.backward()
        timed_out = s.max_seconds is not None and time.perf_counter() - started > s.max_seconds
        if ranks > 1:  # gradients, loss and time-out summed over the ranks
            reported, timed_out = all_reduce_step(params, batch_loss, timed_out)
        else:
            reported = float(batch_loss.detach())
        losses.append(reported)
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        schedule.step()
        if step % s.eval_every == 0 or step == s.steps or timed_out:
            best.offer(_evaluate(module, evaluate), step, params)
            bar.set_postfix(train=f"{losses[-1]:.3f}", heldout=f"{best.loss:.3f}")
        if timed_out:
            break
    bar.close()
    best.restore(params)
    first, last = (losses[0], losses[-1]) if losses else (math.nan, math.nan)
    seconds = time.perf_counter() - started
    return TrainResult(before, best.loss, best.step, step, seconds, first, last)


def _evaluate(module: torch.nn.Module, evaluate: Callable[[], float]) -> float:
    module.eval()
    return evaluate()
