"""LoraHub-style coefficient search: LoRA bricks attached together with adjustable weights, and
a gradient-free (CMA-ES) search for the weights that minimise a response loss."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tqdm import tqdm

from brickwork.bricks.attach import attach
from brickwork.bricks.brick import Brick
from brickwork.bricks.train_eval import response_loss
from brickwork.data.sample import Sample
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel
from brickwork.ops.combine.lora import check_finite_numbers, checked_factors


@dataclass
class SearchResult:
    """A coefficient search's best weights and how it got there."""

    weights: list[float]
    loss: float  # mean response loss on the search examples at ``weights``
    start_loss: float  # the same at the starting (uniform) weights
    evaluations: int
    history: list[float] = field(default_factory=list)  # objective of every evaluation


@contextmanager
def weighted_mixture(loaded: LoadedModel, bricks: list[Brick]) -> Iterator[Callable]:
    """Attach LoRA ``bricks`` together and yield ``set_weights(ws)``, which rescales each brick's
    adapter so that the model computes W + Σ wᵢ·ΔWᵢ, the same update ``merge_linear`` builds,
    without rebuilding or reloading anything. On exit the model is exactly as before."""
    from peft.tuners.lora import LoraLayer

    checked_factors(bricks, [1.0] * len(bricks), "mixture")
    names = [b.name for b in bricks]
    if len(set(names)) != len(names):
        raise BrickworkError(f"brick names must be distinct to mix them: {names}")
    with attach(loaded, bricks) as model:
        layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
        base = [dict(m.scaling) for m in layers]

        def set_weights(weights: list[float]) -> None:
            check_finite_numbers(list(weights), "weights")
            for layer, scalings in zip(layers, base, strict=True):
                for brick_name, weight in zip(names, weights, strict=True):
                    layer.scaling[brick_name] = scalings[brick_name] * float(weight)

        yield set_weights


@dataclass(frozen=True)
class SearchSettings:
    """How ``search_weights`` searches: at most ``budget`` evaluations of CMA-ES (seeded, initial
    step ``sigma``), each weight within ±``bound``, ``l1``·mean|wᵢ| added to the loss."""

    budget: int = 30
    seed: int = 0
    bound: float = 1.5
    l1: float = 0.05
    sigma: float = 0.3

    def check(self) -> None:
        if self.budget < 2:
            raise BrickworkError(f"budget must be at least 2 evaluations, not {self.budget}")


def search_weights(
    loaded: LoadedModel,
    bricks: list[Brick],
    examples: list[Sample],
    *,
    settings: SearchSettings = SearchSettings(),
    initial: list[float] | None = None,
    progress: bool = False,
) -> SearchResult:
    """LoraHub-style gradient-free search (CMA-ES from the ``cma`` package) for the weights wᵢ
    that minimise the response loss on a few ``examples`` plus the ``settings``' L1 term, within
    their bound and budget. It starts from ``initial`` (default uniform 1/k) and returns the best
    weights seen, so never worse than the start on the examples. Evaluate the result on other
    examples."""
    import cma
    import numpy as np

    if len(bricks) < 2:
        raise BrickworkError("a coefficient search needs at least two bricks")
    if not examples:
        raise BrickworkError("a coefficient search needs a few examples with references")
    settings.check()
    budget, bound, l1 = settings.budget, settings.bound, settings.l1
    start = [1.0 / len(bricks)] * len(bricks) if initial is None else list(initial)
    if len(start) != len(bricks):
        raise BrickworkError(f"got {len(start)} initial weights for {len(bricks)} bricks")
    history: list[float] = []
    losses: dict[tuple[float, ...], float] = {}
    with weighted_mixture(loaded, bricks) as set_weights:

        def objective(x) -> float:
            weights = tuple(float(v) for v in x)
            set_weights(weights)
            losses[weights] = response_loss(loaded, examples)
            value = losses[weights] + l1 * sum(abs(w) for w in weights) / len(weights)
            history.append(value)
            return value

        best = (objective(start), tuple(start))
        options = {
            "seed": settings.seed + 1,
            "bounds": [-bound, bound],
            "maxfevals": budget - 1,
            "verbose": -9,
        }  # cma treats seed 0 as "from the clock"
        state = np.random.get_state()
        try:
            strategy = cma.CMAEvolutionStrategy(start, settings.sigma, options)
            bar = tqdm(total=budget, initial=1, desc="weight search", disable=not progress)
            while not strategy.stop() and len(history) < budget:
                candidates = strategy.ask()
                values = [objective(x) for x in candidates[: budget - len(history)]]
                bar.update(len(values))
                best = min([best, *zip(values, map(tuple, candidates), strict=False)])
                if len(values) < len(candidates):
                    break
                strategy.tell(candidates, values)
            bar.close()
        finally:
            np.random.set_state(state)
    weights = [float(w) for w in best[1]]
    return SearchResult(
        weights, losses[tuple(weights)], losses[tuple(start)], len(history), history
    )
