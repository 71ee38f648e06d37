"""Figures and the self-contained HTML report of the neuron analysis (results.json)."""

from brickwork.report.html import load_results, render_report
from brickwork.report.summary import summary_lines

__all__ = ["load_results", "render_report", "summary_lines"]
