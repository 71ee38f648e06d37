"""Recovery: train a compact model to match its dense model's next-token distributions.

The loss is KL(dense || compact) on the target positions of self-distillation rows
(configure/distill.py: the functionality's train prompts with their references and with the
dense model's own greedy continuations). Mode ``ffn`` trains the kept FFN weights; mode ``lora``
trains a LoRA on every linear layer of the compact model and merges it. Either way the result is
a recovery brick (bricks/recovery.py) bound to the compact model's fingerprint; the dense model
and the compact model passed in are left exactly as they were (recovery trains copies).
The training loop is the one core, ``brickwork.training.fit``; a few train rows are held aside
for its early stopping (no test data is seen).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from brickwork.bricks.brick import Brick
from brickwork.bricks.recovery import RecoverySpec, recovery_brick, swapped_parameters
from brickwork.bricks.train_eval import Row, target_logits
from brickwork.configure.compact import CompactModel
from brickwork.configure.distill import distillation_rows
from brickwork.data.sample import Sample, dataset_hash
from brickwork.errors import BrickworkError
from brickwork.models.ffn import input_names
from brickwork.models.load import LoadedModel
from brickwork.training import TrainSettings, fit, kl, seeded

MODES = ("ffn", "lora")


@dataclass(frozen=True)
class RecoverySettings(TrainSettings):
    """Recovery's settings. The defaults keep one recovery of SmolLM2-135M at about 2 minutes
    on 2 CPU cores (~5 s a step). Mode ``lora`` is the default because it recovered more than
    training the kept FFN weights in equal wall time (benchmarks/recovery.py --compare-modes)."""

    steps: int = 24
    lr: float = 1e-3
    batch_size: int = 8
    eval_every: int = 1_000_000  # held-out KL before and after only
    mode: str = field(
        default="lora", metadata={"help": "train a LoRA or the kept FFN weights", "choices": MODES}
    )
    rank: int = field(default=16, metadata={"help": "LoRA rank (mode lora)"})
    seq_len: int = 128  # tokens per row: the prompt's end, then at most seq_len // 2 targets
    continuation_tokens: int = 64  # dense greedy continuation per train prompt (0: none)
    heldout_rows: int = 8  # train rows held aside for early stopping

    COUNTS = ("steps", "batch_size", "eval_every", "rank", "heldout_rows")

    def check(self) -> None:
        super().check()
        if self.mode not in MODES:
            raise BrickworkError(f"recovery mode must be one of {MODES}, not {self.mode!r}")
        if self.seq_len < 8:
            raise BrickworkError(f"seq_len must be at least 8, not {self.seq_len}")
        if self.continuation_tokens < 0:
            raise BrickworkError("continuation_tokens must not be negative")


def recover(
    dense: LoadedModel,
    compact: CompactModel,
    samples: list[Sample],
    settings: RecoverySettings = RecoverySettings(),
    *,
    name: str = "recovery",
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> Brick:
    """A recovery brick for ``compact``, distilled from ``dense`` on ``samples`` (train split)."""
    settings.check()
    dense.require_base(compact.base_fingerprint, "the compact model")
    rows = distillation_rows(
        dense, samples, settings.seq_len, settings.continuation_tokens, cache_dir
    )
    train, heldout = _split(rows, settings)
    student = compact.loaded

    def loss(batch: list[Row]) -> torch.Tensor:
        with torch.no_grad():
            reference = target_logits(dense, batch)[0]
        return kl(reference, target_logits(student, batch)[0])

    def evaluate() -> float:
        with torch.no_grad():
            return sum(float(loss(heldout[i : i + 8])) for i in range(0, len(heldout), 8))

    with seeded(settings.seed), _frozen(dense.model), _trainable(compact, settings) as (ps, out):
        result = fit(student.model, ps, train, loss, evaluate, settings, progress=progress)
        tensors = out()
    spec = RecoverySpec(
        dense_model=dense.fingerprint,
        mode=settings.mode,
        parameters=sorted(tensors),
        settings=asdict(settings),
        functionality=compact.info.get("functionality"),
        budget=compact.info.get("budget"),
    )
    provenance = {"method": "self-distillation (KL to the dense model)", "n_rows": len(rows)}
    provenance["dataset_hash"] = dataset_hash(samples)
    return recovery_brick(
        name, student, tensors, spec, provenance=provenance, metrics=result.metrics()
    )


def _split(rows: list[Row], settings: RecoverySettings) -> tuple[list[Row], list[Row]]:
    """Seeded: ``heldout_rows`` rows aside for early stopping (all rows train when too few)."""
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(settings.seed))
    shuffled = [rows[i] for i in order.tolist()]
    if len(rows) < 2 * settings.heldout_rows:
        return shuffled, shuffled
    return shuffled[settings.heldout_rows :], shuffled[: settings.heldout_rows]


@contextmanager
def _frozen(model: torch.nn.Module) -> Iterator[None]:
    """No gradients for the dense model's parameters (the compact model shares most of them);
    their ``requires_grad`` flags come back on exit. Nothing writes to them."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def ffn_parameter_names(loaded: LoadedModel) -> list[str]:
    """The names of the FFN projections' parameters (the kept neurons' weights and biases)."""
    family, model = loaded.family, loaded.model
    wanted = set()
    for layer in family.layer_modules(model):
        mlp = family.ffn(layer)
        for projection in (*input_names(family), family.down):
            wanted |= {id(p) for p in getattr(mlp, projection).parameters()}
    return [n for n, p in model.named_parameters() if id(p) in wanted]


Export = Callable[[], dict[str, torch.Tensor]]


@contextmanager
def _trainable(compact: CompactModel, settings: RecoverySettings) -> Iterator[tuple[list, Export]]:
    """(the parameters to train, a function returning the trained tensors by parameter name);
    the compact model is restored on exit."""
    model = compact.loaded.model
    if settings.mode == "ffn":
        names = ffn_parameter_names(compact.loaded)
        current = dict(model.named_parameters())
        with swapped_parameters(model, {n: current[n] for n in names}, trainable=True):
            now = dict(model.named_parameters())
            yield [now[n] for n in names], lambda: {n: now[n].detach().clone() for n in names}
        return
    with _lora(model, settings) as trained:
        yield trained


@contextmanager
def _lora(model: torch.nn.Module, settings: RecoverySettings) -> Iterator[tuple[list, Export]]:
    """A PEFT LoRA on every linear layer, removed on exit; the export merges it into copies of
    the adapted weights (the shared weights themselves are never merged into)."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer

    config = LoraConfig(r=settings.rank, lora_alpha=2 * settings.rank, target_modules="all-linear")
    peft_model = get_peft_model(model, config)
    try:
        params = [p for p in peft_model.parameters() if p.requires_grad]

        def export() -> dict[str, torch.Tensor]:
            out = {}
            for name, module in model.named_modules():
                if isinstance(module, LoraLayer):
                    base = module.get_base_layer().weight
                    delta = module.get_delta_weight("default").detach()
                    out[f"{name}.weight"] = (base.detach() + delta).clone()
            return out

        yield params, export
    finally:
        peft_model.unload()
