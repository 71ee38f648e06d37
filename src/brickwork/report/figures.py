"""Matplotlib figures of the neuron analysis, one function per figure of the paper.

Each function takes the results (``AnalysisResults``, the schema of ``results.json``) and returns a
``matplotlib.figure.Figure``. Figures are built without pyplot, so nothing touches the
interactive backend or pyplot's global figure registry.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from brickwork.analysis.results import AnalysisResults

INDICATORS = (("activation", "activation"), ("output", "output magnitude"))
THRESHOLD = 0.2  # the paper's "80% of neurons below 0.2" line


def _floats(values) -> np.ndarray:
    """A float array; JSON nulls become NaN."""
    return np.asarray(values, dtype=float)


def _wrap(text: str, width: int = 110) -> str:
    return "\n".join(textwrap.wrap(str(text), width)) or ""


def _legend_below(fig: Figure, handles, labels, ncol: int) -> None:
    """One figure legend under the panels (in a reserved 0.5 inch strip): it never covers data."""
    fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False, fontsize=9)
    bottom = 0.5 / fig.get_figheight()
    fig.get_layout_engine().set(rect=(0, bottom, 1, 1 - bottom))


def fig_sparsity_cdf(results: AnalysisResults) -> Figure:
    """Paper Fig 6: CDF of the normalized indicator per layer (activation, output magnitude)."""
    sp = results.sparsity
    bins = int(sp.bins)
    x = np.concatenate([[0.0], np.arange(1, bins + 1) / bins])
    n_layers = len(sp.cdf["activation"])
    cmap = colormaps["viridis"]
    norm = Normalize(0, max(n_layers - 1, 1))
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (key, label) in zip(axes, INDICATORS, strict=True):
        for layer, cdf in enumerate(sp.cdf[key]):
            y = np.concatenate([[0.0], _floats(cdf)])
            ax.plot(x, y, color=cmap(norm(layer)), lw=1.2)
        shares = _floats(sp.below[key])
        below = f"{np.nanmean(shares):.0%}" if np.isfinite(shares).any() else "n/a"
        ax.axvline(THRESHOLD, color="black", ls="--", lw=1, label=f"{THRESHOLD} ({below} below)")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=f"normalized {label}", title=label)
        ax.legend(loc="lower right", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of neurons (CDF)")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="layer (depth)")
    fig.suptitle("CDF of normalized indicators per layer\n" + _wrap(sp.normalization), fontsize=10)
    return fig


def fig_masked_ratio(results: AnalysisResults) -> Figure:
    """Paper Fig 7: test loss against the share of lowest-indicator neurons masked."""
    masked = results.sparsity.masked
    ratios = 100 * _floats(masked.ratios)
    funcs = results.functionalities
    colors = colormaps["tab10"]
    fig = Figure(figsize=(11, 5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (key, label) in zip(axes, INDICATORS, strict=True):
        for i, func in enumerate(funcs):
            loss = masked.loss[key].get(func)
            if loss is not None:
                ax.plot(ratios, _floats(loss), marker="o", ms=3, color=colors(i % 10), label=func)
        rise = masked.rise_5pct_ratio.get(key)
        if rise is not None:
            ax.axvline(100 * rise, color="grey", ls=":", lw=1.2, label="mean loss +5%")
        ax.set(xlabel="masked neurons (%)", title=f"masked by lowest {label}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean NLL on test references")
    handles, labels = _unique_legend(axes)
    _legend_below(fig, handles, labels, ncol=min(len(labels), 8))
    fig.suptitle("Loss when masking the lowest-indicator neurons of each token and layer")
    return fig


def _unique_legend(axes: Sequence[Axes]) -> tuple[list, list[str]]:
    """Legend entries of several axes without duplicates, in first-seen order."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    return list(seen.values()), list(seen)


def fig_cett(results: AnalysisResults) -> Figure:
    """Share of neurons kept active per layer at each CETT target (cumulative error of tail)."""
    cett = results.sparsity.cett
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    for target in cett.targets:
        key = cett.key(target)
        ratio = 100 * _floats(cett.activated_ratio[key])
        mean = cett.mean_activated_ratio.get(key)
        label = f"CETT {key}" + ("" if mean is None else f" (mean {100 * mean:.1f}%)")
        ax.plot(np.arange(len(ratio)), ratio, marker="o", ms=3, label=label)
    ax.set(xlabel="layer", ylabel="activated neurons (%)", ylim=(0, None))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Activated ratio per layer at each CETT target")
    ax.legend(loc="best", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def fig_funcscore(results: AnalysisResults) -> Figure:
    """Paper Fig 8: per-layer FuncScore (best, best 5‰, mean) against random activations."""
    per_layer = results.funcscore.per_layer
    funcs = [f for f in results.functionalities if f in per_layer]
    ncols = min(4, max(len(funcs), 1))
    nrows = -(-len(funcs) // ncols) or 1
    fig = Figure(figsize=(3.2 * ncols, 2.7 * nrows + 0.8), layout="constrained")
    axes = np.atleast_1d(
        fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    ).ravel()
    series = (("best", "best", "C3"), ("best_5permille", "best 5‰", "C1"), ("mean", "mean", "C0"))
    for ax, func in zip(axes, funcs, strict=False):
        scores = per_layer[func]
        for key, label, color in series:
            y = _floats(scores[key])
            layers = np.arange(len(y))
            ax.plot(layers, y, color=color, lw=1.4, label=label)
            ax.plot(
                layers,
                _floats(scores[f"random_{key}"]),
                color=color,
                lw=1,
                ls="--",
                label=f"random {label}",
            )
        ax.set_title(func, fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[len(funcs) :]:
        ax.set_visible(False)
    for ax in axes.reshape(nrows, ncols)[:, 0]:
        ax.set_ylabel("FuncScore (AP)")
    for ax in axes.reshape(nrows, ncols)[-1, :]:
        ax.set_xlabel("layer")
        ax.xaxis.set_tick_params(labelbottom=True)
    handles, labels = _unique_legend(axes[: len(funcs)])
    _legend_below(fig, handles, labels, ncol=6)
    fig.suptitle(
        f"FuncScore per layer ({results.funcscore.split} split); dashed: random activations"
    )
    return fig


def _percent(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{100 * value:.0f}%"


def _heatmap(ax: Axes, values: np.ndarray, norm: Normalize, cmap, fmt) -> None:
    """Draw an annotated heatmap; text colour follows the cell's brightness."""
    ax.imshow(values, cmap=cmap, norm=norm, aspect="auto")
    size = 9 if values.shape[1] <= 8 else 7
    for (r, c), v in np.ndenumerate(values):
        shade = cmap(norm(v)) if np.isfinite(v) else (1, 1, 1, 1)
        luminance = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2]
        ax.text(
            c,
            r,
            fmt(v),
            ha="center",
            va="center",
            fontsize=size,
            color="white" if luminance < 0.5 else "black",
        )


def _label_axes(ax: Axes, rows: list[str], cols: list[str], ylabel: str, xlabel: str) -> None:
    ax.set_xticks(range(len(cols)), cols, rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel=xlabel, ylabel=ylabel)


def fig_ablation(results: AnalysisResults) -> Figure:
    """Paper Fig 9: test PPL increase when ablating each functionality's top neurons."""
    abl = results.ablation
    full, excl = _floats(abl.matrix), _floats(abl.resident.matrix)
    norm, cmap = value_colours(np.concatenate([full.ravel(), excl.ravel()]))
    cols = list(abl.columns)
    n = len(cols)
    fig = Figure(figsize=(max(9.0, 1.8 * n + 4), max(4.8, 0.6 * n + 2.8)), layout="constrained")
    ax_full, ax_excl = fig.subplots(1, 2, width_ratios=[len(abl.rows), len(abl.resident.rows)])
    _heatmap(ax_full, full, norm, cmap, _percent)
    _label_axes(ax_full, list(abl.rows), cols, "ablated top neurons of", "evaluated on")
    if "random" in abl.rows:
        ax_full.axhline(abl.rows.index("random") - 0.5, color="black", lw=1.5)
    ax_full.set_title(f"top {100 * abl.fraction:g}% ({abl.selection}) ablated")
    _heatmap(ax_excl, excl, norm, cmap, _percent)
    _label_axes(ax_excl, list(abl.resident.rows), cols, "", "evaluated on")
    res = abl.resident
    ax_excl.set_title(_wrap(f"resident neurons excluded ({res.count}): {res.rule}", 60))
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap),
        ax=[ax_full, ax_excl],
        label="PPL increase (colour clipped at 95th pct)",
        format=_pct_tick,
    )
    fig.suptitle("Perplexity increase (PPL_pruned - PPL) / PPL on the test split")
    return fig


def value_colours(values: np.ndarray) -> tuple[Normalize, object]:
    """A sequential map from 0 when all values share one sign; a diverging map centred at 0
    (red up, blue down) only when both signs occur. Clipped at the 95th percentile of |value|."""
    finite = values[np.isfinite(values)]
    vmax = float(np.percentile(np.abs(finite), 95)) if finite.size else 1.0
    vmax = max(vmax, 1e-3)
    if finite.size and finite.min() < 0 < finite.max():
        return Normalize(-vmax, vmax, clip=True), colormaps["RdBu_r"]
    if finite.size and finite.max() <= 0:
        return Normalize(-vmax, 0, clip=True), colormaps["Blues_r"]
    return Normalize(0, vmax, clip=True), colormaps["Reds"]


def _pct_tick(value: float, _pos=None) -> str:
    return f"{100 * value:.0f}%"


def fig_partition(results: AnalysisResults) -> Figure:
    """Paper Fig 10: overlap |A ∩ B| / k of the functionalities' top neuron sets."""
    part = results.partition
    values = _floats(part.matrix)
    off = values[~np.eye(len(values), dtype=bool)] if values.size else values
    hi = float(np.nanmax(off)) if np.isfinite(off).any() else 0.0
    # Colour the off-diagonal range; the diagonal (always 1) is clipped to the top colour.
    vmax = max(hi, 2 * float(part.random_expected), 1e-3)
    norm, cmap = Normalize(0, vmax, clip=True), colormaps["viridis"]
    n = len(part.rows)
    fig = Figure(figsize=(1.0 * n + 3, 0.8 * n + 2), layout="constrained")
    ax = fig.subplots()
    _heatmap(ax, values, norm, cmap, lambda v: "n/a" if not np.isfinite(v) else f"{v:.2f}")
    _label_axes(ax, list(part.rows), list(part.rows), "", "")
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=f"overlap (colour clipped at {vmax:.2f})"
    )
    ax.set_title(
        "Top-neuron overlap |A ∩ B| / k, mean over layers\n"
        f"random: expected {part.random_expected:.3f}, empirical {part.random_empirical:.3f}",
        fontsize=10,
    )
    return fig


FIGURES = {
    "fig6_sparsity_cdf.png": fig_sparsity_cdf,
    "fig7_masked_ratio.png": fig_masked_ratio,
    "cett.png": fig_cett,
    "fig8_funcscore.png": fig_funcscore,
    "fig9_ablation.png": fig_ablation,
    "fig10_partition.png": fig_partition,
}
