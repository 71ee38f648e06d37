"""Early stopping: keep the parameters of the lowest held-out loss seen."""

from __future__ import annotations

import torch


class BestState:
    """The lowest held-out loss so far, its step and a copy of the parameters then."""

    def __init__(self, loss: float, step: int, params: list[torch.Tensor]) -> None:
        self.loss, self.step = loss, step
        self.state = [p.detach().clone() for p in params]

    def offer(self, loss: float, step: int, params: list[torch.Tensor]) -> None:
        if loss < self.loss:
            self.loss, self.step = loss, step
            self.state = [p.detach().clone() for p in params]

    def restore(self, params: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for param, saved in zip(params, self.state, strict=True):
                param.copy_(saved)
