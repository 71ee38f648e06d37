"""Data parallelism for the training loop, on torch.distributed (gloo on CPU, NCCL on CUDA).

Under torchrun every rank holds the whole model and the same seeded parameters. Each step's
global batch (the same seeded indices on every rank) is cut into one share per rank; a rank's
loss is weighted by its share of the batch's weight (target tokens, say), so the summed
gradients are those of the whole batch's mean loss, and every rank takes the same optimizer
step. One all-reduce per step carries the gradients, the weighted loss and the time-out flag.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist

from brickwork.errors import BrickworkError


def join_torchrun(backend: str | None = None) -> tuple[int, int]:
    """(rank, world size): under torchrun (WORLD_SIZE > 1) join the process group, else (0, 1).

    The default backend is gloo for CPU tensors, with NCCL for CUDA tensors when a GPU is present.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 and not dist.is_initialized():
        return 0, 1
    if not dist.is_initialized():
        default = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend or default)
    return dist.get_rank(), dist.get_world_size()


def world() -> tuple[int, int]:
    """(rank, world size) of the joined process group, (0, 1) without one."""
    if not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def local_share(
    batch: Sequence, weight: Callable[[list], float], rank: int, ranks: int
) -> tuple[list, float]:
    """This rank's rows of a global batch, and their share of the batch's total weight."""
    if ranks == 1:
        return list(batch), 1.0
    if len(batch) < ranks:
        raise BrickworkError(
            f"a batch of {len(batch)} cannot be split over {ranks} processes: "
            f"use --batch-size {ranks} or more"
        )
    mine = list(batch[rank::ranks])
    return mine, weight(mine) / weight(list(batch))


def all_reduce_step(
    params: list[torch.Tensor], loss: torch.Tensor, timed_out: bool
) -> tuple[float, bool]:
    """Sum the ranks' gradients into every rank's ``params`` (in one flat all-reduce), and give
    back the batch's loss (the sum of the ranks' weighted losses) and whether any rank timed
    out."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    device = grads[0].device if grads else torch.device("cpu")
    flag = torch.tensor(float(timed_out), device=device)
    extras = torch.stack([loss.detach().float().to(device), flag])
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [extras])
    dist.all_reduce(flat)
    start = 0
    for param, grad in zip(params, grads, strict=True):
        size = grad.numel()
        param.grad = flat[start : start + size].view_as(grad).to(grad.dtype)
        start += size
    return float(flat[-2]), bool(flat[-1] > 0)
