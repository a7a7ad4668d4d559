"""Plot of a range test: loss against lr (log x), one curve per repeat, the suggestions marked.

Each repeat is drawn as its smoothed loss (solid) over its raw batch losses (faint). Each
suggestion method gets one colour: a marker on every repeat's curve at the point it read, a
vertical line at its median over repeats and a band from its lowest to its highest repeat (the
spread); ``minimum/10``'s markers sit on the minima, a decade right of its line. The
recommended method's line is solid, the others dashed. matplotlib is imported here
only (``pip install 'lrlab[plot]'``); no pyplot state is touched, so it is safe in scripts and
threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lrlab.finder._result import FinderResult

__all__ = ["plot"]

_METHOD_COLORS = {"steepest": "#d62728", "valley": "#2ca02c", "minimum": "#9467bd"}
_REPEAT_COLORS = ("#1f77b4", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")


def plot(
    result: FinderResult,
    path: str | Path | None = None,
    *,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Draw ``result`` and return the matplotlib ``Figure`` (saved to ``path`` when given).

    Args:
        result: a :class:`~lrlab.finder.FinderResult`.
        path: file to save to (format from its suffix: ``.png``, ``.svg``, ``.pdf``).
        ax: draw into this Axes instead of a new figure.
        title: the figure title (default: the recommended lr and the confidence).

    >>> from lrlab.finder._result import aggregate
    >>> from lrlab.finder._sweep import run_sweep, sweep_lrs
    >>> lrs = sweep_lrs(1e-4, 1.0, 60)
    >>> r = aggregate([run_sweep(lambda lr, k=k: 1 + (np.log10(lr) + 1 + 0.05 * k) ** 2, lrs, seed=k) for k in range(2)])
    >>> fig = plot(r)
    >>> fig.axes[0].get_xscale()
    'log'
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - matplotlib is part of the [plot] extra
        raise ValueError("plotting needs matplotlib: pip install 'lrlab[plot]'") from e
    if ax is None:
        fig = Figure(figsize=(7.5, 4.8), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    tops, bottoms = [], []
    for k, c in enumerate(result.curves):
        if not len(c.lrs):
            continue
        color = _REPEAT_COLORS[k % len(_REPEAT_COLORS)]
        ax.plot(c.lrs, c.losses, color=color, alpha=0.2, linewidth=0.8)
        ax.plot(
            c.lrs,
            c.smoothed,
            color=color,
            linewidth=1.6,
            label=f"seed {c.seed} ({c.stop}, {len(c.lrs)} steps)",
        )
        head = c.smoothed[: max(len(c.smoothed) // 10, 1)]
        tops.append(float(np.max(head)))
        bottoms.append(float(np.min(c.smoothed)))
    for method, summary in result.suggestions.items():
        color = _METHOD_COLORS.get(method, "black")
        recommended = method == result.recommended
        lo, hi = min(summary.lrs), max(summary.lrs)
        if hi > lo:
            ax.axvspan(lo, hi, color=color, alpha=0.12, linewidth=0)
        name = "minimum/10" if method == "minimum" else method  # its markers sit on the minima
        label = f"{name}: {summary.lr:.3g} (spread {summary.spread:.2f} dec)" + (
            " *" if recommended else ""
        )
        ax.axvline(
            summary.lr,
            color=color,
            linestyle="-" if recommended else "--",
            linewidth=2.0 if recommended else 1.2,
            label=label,
        )
        for c, sug in zip(result.curves, result.per_repeat):
            if sug is not None and method in sug:
                s = sug[method]
                ax.plot(
                    [c.lrs[s.index]],
                    [s.loss],
                    "o",
                    color=color,
                    markersize=5,
                    markeredgecolor="white",
                )
    ax.set_xscale("log")
    if tops:
        low, high = min(bottoms), max(tops)
        pad = 0.08 * (high - low if high > low else abs(high) or 1.0)
        ax.set_ylim(low - pad, high + 3 * pad)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss (smoothed; raw faint)")
    if title is None:
        verdict = "confident" if result.confident else "LOW CONFIDENCE"
        title = f"LR range test: {result.lr:.3g} ({result.recommended}, {verdict})"
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if path is not None:
        fig.savefig(Path(path), dpi=120)
    return fig
