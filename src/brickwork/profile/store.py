"""The Profile: streaming per-neuron statistics that merge by addition, saved as safetensors + JSON.

Tensors (L layers, D = d_ff neurons, F functionalities, N instances, B histogram bins):

- ``instance_mean_abs`` [N, L, D]: per-instance mean |activation| over prompt tokens (zero rows
  for instances another shard covers; ``covered`` [N] says which rows hold data);
- ``instance_tokens`` [N]: prompt tokens per instance;
- ``sum_abs`` [F, L, D] (float64) and ``token_count`` [F]: sums over tokens per functionality;
- ``hist_activation`` / ``hist_output`` [F, L, B]: counts of the normalized indicators, i.e. a
  neuron's |activation| (or output magnitude |a_i|·‖W_O[:, i]‖) divided by the largest one of
  the same token and layer, in B equal bins over [0, 1];
- ``down_norms`` [L, D]: ‖W_O[:, i]‖₂, so output magnitudes derive from activations.

Every tensor but ``down_norms`` adds across shards; ``merge_profiles`` does exactly that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from brickwork.errors import BrickworkError
from brickwork.io import (
    read_json,
    read_tensors,
    replace_atomically,
    sha256_file,
    write_text_atomically,
)

TENSORS_FILE = "profile.safetensors"
META_FILE = "profile.json"
FORMAT_VERSION = 1
ADDITIVE = (
    "instance_mean_abs",
    "instance_tokens",
    "sum_abs",
    "token_count",
    "hist_activation",
    "hist_output",
    "covered",
)
# Metadata that must agree for two shards to belong to one profile.
_SAME_RUN_KEYS = (
    "model_fingerprint",
    "dataset_hash",
    "sample_ids",
    "functionalities",
    "bins",
    "max_tokens",
    "batch_size",
    "hist_stride",
)


@dataclass
class Profile:
    tensors: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)

    @classmethod
    def empty(
        cls,
        n_instances: int,
        n_layers: int,
        d_ff: int,
        n_functionalities: int,
        bins: int,
        down_norms: torch.Tensor,
        meta: dict,
    ) -> Profile:
        f, n, d = n_functionalities, n_instances, d_ff
        tensors = {
            "instance_mean_abs": torch.zeros(n, n_layers, d),
            "instance_tokens": torch.zeros(n, dtype=torch.int64),
            "covered": torch.zeros(n, dtype=torch.int64),
            "sum_abs": torch.zeros(f, n_layers, d, dtype=torch.float64),
            "token_count": torch.zeros(f, dtype=torch.int64),
            "hist_activation": torch.zeros(f, n_layers, bins, dtype=torch.int64),
            "hist_output": torch.zeros(f, n_layers, bins, dtype=torch.int64),
            "down_norms": down_norms.float().clone(),
        }
        return cls(tensors, dict(meta, bins=bins))

    @property
    def complete(self) -> bool:
        return bool((self.tensors["covered"] == 1).all())

    def save(self, out_dir: str | Path) -> Path:
        """Write both files atomically (temporary name, then rename) into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        rows = self.tensors["covered"].nonzero().flatten()
        stored = dict(self.tensors, instance_mean_abs=self.tensors["instance_mean_abs"][rows])
        stored["covered_rows"] = rows
        tensors, digest = {k: v.contiguous() for k, v in stored.items()}, {}

        def write_tensors(tmp: Path) -> None:
            save_file(tensors, str(tmp))
            digest["sha256"] = sha256_file(tmp)  # before the rename: the two files change together

        replace_atomically(out / TENSORS_FILE, write_tensors)
        meta = dict(self.meta, format_version=FORMAT_VERSION, tensors_sha256=digest["sha256"])
        text = json.dumps(meta, indent=1, sort_keys=True)
        write_text_atomically(out / META_FILE, text)
        return out


def load_profile(path: str | Path) -> Profile:
    """Read a saved profile directory, checking that its two files belong together."""
    path = Path(path)
    meta_file, tensor_file = path / META_FILE, path / TENSORS_FILE
    if not meta_file.is_file() or not tensor_file.is_file():
        raise BrickworkError(f"{path} is not a profile directory (no {META_FILE}/{TENSORS_FILE})")
    meta = read_json(meta_file)
    if meta.get("tensors_sha256") != sha256_file(tensor_file):
        raise BrickworkError(f"{tensor_file} is corrupt or does not match {META_FILE}")
    stored = read_tensors(tensor_file)
    rows = stored.pop("covered_rows")
    dense = torch.zeros(len(meta["sample_ids"]), *stored["instance_mean_abs"].shape[1:])
    dense[rows] = stored["instance_mean_abs"]
    stored["instance_mean_abs"] = dense
    return Profile(stored, meta)


def merge_profiles(profiles: list[Profile]) -> Profile:
    """Add shards of one profiling run; an instance covered twice is an error."""
    if not profiles:
        raise BrickworkError("nothing to merge")
    first = profiles[0]
    for other in profiles[1:]:
        for key in _SAME_RUN_KEYS:
            if other.meta.get(key) != first.meta.get(key):
                raise BrickworkError(f"cannot merge profiles that differ in {key}")
    tensors = dict(first.tensors)
    for other in profiles[1:]:
        for key in ADDITIVE:
            tensors[key] = tensors[key] + other.tensors[key]
    if (tensors["covered"] > 1).any():
        raise BrickworkError("cannot merge: some instances appear in more than one profile")
    shards = sorted(p.meta.get("shard", "0/1") for p in profiles)
    return Profile(tensors, dict(first.meta, shard=None, merged_from=shards))
