"""BAAI/Infinity-Instruct, mapped to the seven functionalities as in the paper's Table 3.

An instance is kept only when every one of its ability labels maps to the same functionality.
Loading streams from the Hugging Face Hub, so it needs the network and the ``datasets`` package.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from brickwork.data.sample import FUNCTIONALITIES, Sample
from brickwork.errors import BrickworkError

# Our reading of the paper's Table 3; labels are compared lower-cased.
ABILITY_LABELS: dict[str, tuple[str, ...]] = {
    "coding": (
        "python programming",
        "sql programming",
        "java programming",
        "c++ programming",
        "javascript programming",
        "c# programming",
        "object-oriented programming",
        "code comments",
        "code writing",
    ),
    "math": (
        "mathematical reasoning",
        "mathematical modeling",
        "basic mathematics",
        "mathematical analysis",
        "mathematical application",
        "mathematical proof",
        "mathematical explanation",
        "mathematical concept explanation",
        "complex problem solving",
        "basic calculation",
    ),
    "linguistic": (
        "sentence structure analysis",
        "syntactic understanding",
        "linguistic knowledge",
        "syntactic generation",
        "syntactic analysis",
    ),
    "knowledge": tuple(
        f"{domain} knowledge"
        for domain in (
            "health",
            "geographic",
            "general science",
            "legal",
            "physics",
            "chemistry",
            "literary",
            "sociology",
            "popular science",
            "biology",
            "astronomy",
            "psychological",
            "economic",
            "clinical medical",
            "environmental",
            "religious studies",
            "geometry",
        )
    ),
    "translation": (
        "multilingual translation",
        "translation ability",
        "chinese-english translation",
        "machine translation",
        "french translation",
    ),
    "ethics": (
        "ethical judgment",
        "ethical reasoning",
        "ethical analysis",
        "moral reasoning",
        "ethical thinking",
        "ethical guidance",
        "unethical behavior simulation",
        "ethics and morality",
        "moral standards",
    ),
    "writing": (
        "scriptwriting",
        "creative writing",
        "narrative writing",
        "technical writing",
        "writing guidance",
        "news writing",
        "script writing",
        "creativity writing",
        "product description writing",
        "screenwriting",
    ),
}
_FUNCTIONALITY_OF = {
    label: functionality for functionality, labels in ABILITY_LABELS.items() for label in labels
}


def functionality_of(labels: Iterable[str]) -> str | None:
    """The single functionality all labels map to, or None (unlabelled, unmapped or mixed)."""
    found = {_FUNCTIONALITY_OF.get(label.strip().lower()) for label in labels}
    if len(found) != 1 or None in found:
        return None
    return found.pop()


def samples_from_rows(rows: Iterable[dict], per_functionality: int, seed: int) -> list[Sample]:
    """Keep single-functionality rows and sample ``per_functionality`` of each, reproducibly."""
    pools: dict[str, list[Sample]] = {f: [] for f in FUNCTIONALITIES}
    for row in rows:
        functionality = functionality_of(row.get("label", {}).get("ability_en", []))
        turns = row.get("conversations") or []
        if functionality is None or not turns or turns[0].get("from") != "human":
            continue
        reference = turns[1]["value"] if len(turns) > 1 else None
        pools[functionality].append(
            Sample(str(row["id"]), turns[0]["value"], functionality, reference)
        )
    rng = random.Random(seed)
    samples: list[Sample] = []
    for functionality, pool in pools.items():
        if not pool:
            raise BrickworkError(f"Infinity-Instruct gave no {functionality!r} instances")
        samples += rng.sample(pool, min(per_functionality, len(pool)))
    return samples


def load_infinity_instruct(
    per_functionality: int = 1000, seed: int = 0, subset: str = "0625", scan: int = 200_000
) -> list[Sample]:
    """Stream ``scan`` rows of Infinity-Instruct and sample per functionality (needs network)."""
    try:
        import datasets
    except ImportError:
        raise BrickworkError(
            "the Infinity-Instruct loader needs `pip install brickwork[infinity]`"
        ) from None
    try:
        stream = datasets.load_dataset(
            "BAAI/Infinity-Instruct", subset, split="train", streaming=True
        )
        rows = list(stream.take(scan))
    except Exception as exc:  # offline: connection, DNS or hub errors of many types
        raise BrickworkError(
            f"cannot stream BAAI/Infinity-Instruct from the Hugging Face Hub (offline?): "
            f"{type(exc).__name__}"
        ) from None
    return samples_from_rows(rows, per_functionality, seed)
