"""The paper's §4 analyses as functions over profiles and masked forward passes."""

from brickwork.analysis.funcscore import average_precision, funcscores, layer_statistics
from brickwork.analysis.masking import edit_activations, mask_lowest, zero_neurons
from brickwork.analysis.results import AnalysisResults
from brickwork.analysis.run import Analysis, AnalysisSettings, analyze
from brickwork.analysis.selection import (
    random_neurons,
    resident_neurons,
    set_similarity,
    similarity_matrix,
    top_neurons,
)
from brickwork.analysis.store import SavedAnalysis, load_analysis, load_results, save_analysis

__all__ = [
    "Analysis",
    "AnalysisResults",
    "AnalysisSettings",
    "SavedAnalysis",
    "analyze",
    "average_precision",
    "edit_activations",
    "funcscores",
    "layer_statistics",
    "load_analysis",
    "load_results",
    "mask_lowest",
    "random_neurons",
    "resident_neurons",
    "save_analysis",
    "set_similarity",
    "similarity_matrix",
    "top_neurons",
    "zero_neurons",
]
