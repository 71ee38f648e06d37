"""The Sample type, the paper's seven functionalities, splits and dataset hashing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

# Paper §4, Table 3: the functionalities the empirical analysis studies.
FUNCTIONALITIES = (
    "coding",
    "math",
    "linguistic",
    "knowledge",
    "translation",
    "ethics",
    "writing",
)
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Sample:
    id: str
    prompt: str
    functionality: str
    reference: str | None = None  # an expert answer; makes response perplexity meaningful
    split: str | None = None  # "train" selects neurons and trains bricks, "test" evaluates them


def dataset_hash(samples: list[Sample]) -> str:
    """A stable hash of the samples' content, recorded with every output built from them."""
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(json.dumps(asdict(sample), sort_keys=True).encode())
    return "sha256:" + digest.hexdigest()[:32]


def with_splits(samples: list[Sample], test_fraction: float = 0.3) -> list[Sample]:
    """Give samples without a split a fixed one, decided by a hash of their id alone."""

    def split_of(sample_id: str) -> str:
        bucket = int(hashlib.sha256(sample_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return "test" if bucket < test_fraction else "train"

    return [s if s.split else replace(s, split=split_of(s.id)) for s in samples]


def select_split(samples: list[Sample], split: str | None) -> list[Sample]:
    """The samples of one split ("train" or "test"), or all of them for None or "all"."""
    if split in (None, "all"):
        return list(samples)
    return [s for s in samples if s.split == split]
