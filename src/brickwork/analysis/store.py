"""An analysis directory: results.json, funcscores.safetensors and the profile; written by
``save_analysis`` and read by ``load_analysis`` (``load_results`` reads results.json alone)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from brickwork.analysis.results import AnalysisResults
from brickwork.analysis.run import Analysis
from brickwork.errors import BrickworkError
from brickwork.io import read_tensors, replace_atomically, write_text_atomically

RESULTS_FILE = "results.json"
SCORES_FILE = "funcscores.safetensors"
PROFILE_DIR = "profile"


def save_analysis(analysis: Analysis, out_dir: str | Path) -> Path:
    """Write every output into ``out_dir``; each file appears whole or not at all."""
    AnalysisResults.from_dict(analysis.results)  # only results that read back are written
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
    write_text_atomically(out / RESULTS_FILE, text)
    return out


@dataclass(frozen=True)
class SavedAnalysis:
    """An analysis directory read back: the results, the train-split FuncScores and the sets."""

    directory: Path
    results: AnalysisResults
    funcscores: torch.Tensor  # [F, L, D]
    neuron_sets: dict[str, torch.Tensor]  # name -> [L, D] bool (top/<f>, resident, random, ...)

    def profile(self):
        """The profile the analysis was made from (saved beside the results)."""
        from brickwork.profile import load_profile

        return load_profile(self.directory / PROFILE_DIR)


def load_analysis(analysis_dir: str | Path) -> SavedAnalysis:
    """Read what ``save_analysis`` wrote into ``analysis_dir``."""
    folder = Path(analysis_dir)
    results = load_results(folder)
    scores_file = folder / SCORES_FILE
    if not scores_file.is_file():
        raise BrickworkError(f"{folder} has no {SCORES_FILE}: run brickwork analyze")
    tensors = read_tensors(scores_file)
    sets = {k.removeprefix("set/"): v.bool() for k, v in tensors.items() if k.startswith("set/")}
    if "funcscore" not in tensors:
        raise BrickworkError(f"{scores_file} holds no funcscore tensor")
    return SavedAnalysis(folder, results, tensors["funcscore"], sets)


def load_results(path: str | os.PathLike) -> AnalysisResults:
    """Read ``results.json`` from a directory (or a file path) as records."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BrickworkError(f"No results file at {path}; run the analysis first.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BrickworkError(f"Cannot read results file {path}: {exc}.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BrickworkError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})."
        ) from None
    return AnalysisResults.from_dict(data, str(path))
