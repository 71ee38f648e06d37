"""Figures and the self-contained HTML report of the neuron analysis (read from results.json by
``brickwork.analysis.load_results``)."""

from brickwork.report.html import render_report
from brickwork.report.summary import summary_lines

__all__ = ["render_report", "summary_lines"]
