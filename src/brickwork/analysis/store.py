"""Saving an analysis: results.json, funcscores.safetensors, the profile, and the report."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from brickwork.analysis.run import Analysis
from brickwork.io import replace_atomically

RESULTS_FILE = "results.json"
SCORES_FILE = "funcscores.safetensors"
PROFILE_DIR = "profile"


def save_analysis(analysis: Analysis, out_dir: str | Path) -> Path:
    """Write every output into ``out_dir``; each file appears whole or not at all."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if analysis.profile is not None:
        analysis.profile.save(out / PROFILE_DIR)
    tensors = {"funcscore": analysis.funcscores.contiguous()}
    tensors.update(
        {f"set/{k}": v.to(torch.uint8).contiguous() for k, v in analysis.neuron_sets.items()}
    )
    metadata = {"functionalities": json.dumps(analysis.results["functionalities"])}
    replace_atomically(out / SCORES_FILE, lambda tmp: save_file(tensors, str(tmp), metadata))
    text = json.dumps(analysis.results, indent=1)
    replace_atomically(out / RESULTS_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return out
