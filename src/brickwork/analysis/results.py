"""The schema of ``results.json``: typed records of what ``analyze`` reports.

``analyze`` builds the JSON-ready dict (``Analysis.results``) that ``save_analysis`` writes
unchanged; ``AnalysisResults.from_dict`` reads it back as records, and everything else (bricks,
selection, the report, benchmarks) reads the records, never the dict by key. Keys added later
than the first format are optional, so every results.json written so far still reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from brickwork.errors import BrickworkError
from brickwork.records import from_json, to_json

RESULTS_FORMAT = 1  # the "format_version" written by analyze


@dataclass(frozen=True)
class Provenance:
    model: str
    model_fingerprint: str
    dataset_hash: str
    seed: int
    brickwork_version: str
    command: str
    family: str
    dataset: str
    seconds: float
    created: str


@dataclass(frozen=True)
class Cett:
    targets: list[float]
    epsilon: dict[str, list[float]]  # str(target) -> per layer
    activated_ratio: dict[str, list[float]]  # str(target) -> per layer
    mean_activated_ratio: dict[str, float]  # str(target) -> mean over layers
    tokens: int | None = None

    def key(self, target: float) -> str:
        """The table key of a CETT target: "0.1" for 0.1, tolerant of int/float spelling."""
        if str(target) in self.activated_ratio:
            return str(target)
        for k in self.activated_ratio:
            if float(k) == float(target):
                return k
        raise KeyError(str(target))


@dataclass(frozen=True)
class Masked:
    ratios: list[float]  # masked shares, ascending
    loss: dict[str, dict[str, list[float]]]  # indicator -> functionality -> loss per ratio
    rise_5pct_ratio: dict[str, float | None]  # indicator -> first ratio where loss rises 5%
    eval_samples: int | None = None


@dataclass(frozen=True)
class Sparsity:
    normalization: str
    bins: int
    cdf: dict[str, list[list[float]]]  # indicator -> [layer][bin]
    below: dict[str, list[float]] = field(metadata={"key": "below_0.2"})  # share below 0.2
    masked: Masked
    cett: Cett


@dataclass(frozen=True)
class FuncScore:
    split: str  # where the neurons were selected
    per_layer: dict[
        str, dict[str, list[float]]
    ]  # functionality -> statistic (and random_<statistic>) -> per layer
    heldout_top: dict[str, float]  # functionality -> test FuncScore of the selected neurons
    heldout_random: dict[str, float] | None = None  # the same for the random set


@dataclass(frozen=True)
class Resident:
    rule: str
    count: int
    rows: list[str]  # functionalities
    matrix: list[list[float]]  # [row][column] PPL increase, resident neurons excluded


@dataclass(frozen=True)
class AblationSummary:
    diagonal_mean: float
    off_diagonal_mean: float
    random_mean: float
    resident_diagonal_mean: float
    resident_off_diagonal_mean: float


@dataclass(frozen=True)
class RandomSeeds:
    seeds: list[int]  # the first is the "random" row's
    matrix: list[list[float]]  # [seed][column] PPL increase of that seed's random set


@dataclass(frozen=True)
class AblationSamples:
    """Per evaluated sample (for bootstrap intervals): the column it belongs to, its reference
    token count and summed reference NLL, unablated and per ablated set."""

    functionality: list[str]
    tokens: list[int]
    baseline_nll: list[float]
    nll: dict[str, list[float]]  # row name, "random/<seed>", "resident-excluded/<f>" -> [sample]


@dataclass(frozen=True)
class Ablation:
    fraction: float
    selection: str  # "per-layer" or "global"
    baseline_ppl: dict[str, float]  # functionality -> PPL
    rows: list[str]  # ablated sets: the functionalities, then "random"
    columns: list[str]  # evaluated functionalities
    matrix: list[list[float]]  # [row][column] relative PPL increase
    resident: Resident
    diagonal_dominant: dict[str, bool]
    summary: AblationSummary
    eval_samples: int | None = None
    random_seeds: RandomSeeds | None = None  # absent in results written before them
    per_sample: AblationSamples | None = None


@dataclass(frozen=True)
class Partition:
    rows: list[str]  # functionalities
    matrix: list[list[float]]  # [row][column] overlap |A ∩ B| / k
    random_expected: float
    random_empirical: float
    off_diagonal_mean: float


@dataclass(frozen=True)
class Drilldown:
    """Per functionality, its most specific neurons and their top-activating prompts
    (analysis/drilldown.py)."""

    split: str  # where the prompts come from
    neurons: dict[str, list[dict]]  # functionality -> [{layer, neuron, funcscore, prompts}]
    on_target: dict[str, float]  # share of those prompts of the neuron's functionality
    chance: dict[str, float]  # that functionality's share of the split


@dataclass(frozen=True)
class AnalysisResults:
    """Everything ``analyze`` reports, as written to results.json."""

    provenance: Provenance
    functionalities: list[str]
    n_layers: int
    d_ff: int
    sparsity: Sparsity
    funcscore: FuncScore
    ablation: Ablation
    partition: Partition
    settings: dict[str, Any]  # AnalysisSettings as a dict, and eval_format
    format_version: int = RESULTS_FORMAT
    drilldown: Drilldown | None = None  # absent in results written before it

    @classmethod
    def from_dict(cls, data: Any, where: str = "the results") -> AnalysisResults:
        """Records from the parsed JSON; one clear error for a missing or mistyped key."""
        if not isinstance(data, dict):
            raise BrickworkError(f"{where} does not hold a JSON object of analysis results.")
        version = data.get("format_version", RESULTS_FORMAT)
        if isinstance(version, int) and version > RESULTS_FORMAT:
            raise BrickworkError(
                f"{where} has results format {version}; this brickwork reads up to "
                f"{RESULTS_FORMAT}: upgrade brickwork."
            )
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise BrickworkError(f"{where} lacks the results keys: {', '.join(missing)}.")
        return from_json(cls, data, where, extra=True)

    def to_dict(self) -> dict:
        """The JSON object (as results.json holds it)."""
        return to_json(self)


_REQUIRED = ("provenance", "functionalities", "sparsity", "funcscore", "ablation", "partition")


def as_results(results: AnalysisResults | dict, where: str = "the results") -> AnalysisResults:
    """Records from either the records or ``Analysis.results`` (the dict analyze returns)."""
    return (
        results
        if isinstance(results, AnalysisResults)
        else AnalysisResults.from_dict(results, where)
    )
