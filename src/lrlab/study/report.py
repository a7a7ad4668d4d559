"""The study report: a terminal table, a self-contained HTML page, PNG plots, CSV and JSON.

Files written into the output directory by :func:`write_report`:

* ``report.html``: opens offline (every image inlined as base64 PNG, no scripts, no CDN): the
  results table, the verdict on the seeds' claim, the lr-sensitivity plot of the tuning runs,
  the lr curve of every schedule, train/validation loss and accuracy curves per optimizer (mean
  over the final seeds with a +-1 sd band), the final test accuracy of every seed, the versions,
  platform and exact command that produced it, and the full config;
* ``interactive.html`` (when plotly and Jinja2 are installed): the same study with hover, zoom,
  legend toggles, small multiples per schedule, a per-trial panel and the lr sensitivity, offline
  (see :mod:`lrlab.study.interactive`);
* ``lr_sensitivity.png``, ``lr_curves.png``, ``curves_<optimizer>.png``, ``final_acc.png``;
* ``summary.csv`` (one row per schedule x optimizer), ``trials.csv`` (one row per trial, tuning
  and final, with its role), ``curves.csv`` (one row per trial and epoch), ``results.json`` (the
  document ``lrlab study --format json`` prints, plus every trial).

The terminal table (:func:`results_table`) extends the seeds' Table 1.1: per cell the peak lr it
ran at, final validation and test accuracy (mean +- sd over the final seeds), the paired
test-accuracy difference from the constant schedule of the same optimizer with its 95 % interval,
the raw and Holm-adjusted p-values and a ``*`` where the adjusted one is below 0.05, the epochs to
reach 99 % of constant's final validation accuracy, the best validation accuracy and its epoch,
and notes (divergence, "~N seeds" that would resolve an unresolved difference; see
:mod:`lrlab.study.stats`).
"""

from __future__ import annotations

import base64
import csv
import functools
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lrlab.study.stats import (
    BASELINE,
    CellSummary,
    LrSelection,
    OptimizerEffect,
    claim_verdict,
    curve_band,
)
from lrlab.study.storage import CURVE_FIELDS, TrialRecord, dumps_json

__all__ = [
    "edge_lines",
    "effect_lines",
    "metric_digits",
    "metric_on_test",
    "plot_lr_sensitivity",
    "results_document",
    "results_table",
    "significance_note",
    "table_caption",
    "table_columns",
    "table_text",
    "write_readme_results",
    "write_report",
]


def significance_note(n_seeds: int) -> str:
    """What the ``*`` means, for a study with ``n_seeds`` final seeds."""
    note = (
        "* = differs from constant (same optimizer) beyond seed noise: paired t-test over the final seeds, "
        "Holm-adjusted over all the study's comparisons, p_holm < 0.05."
    )
    if n_seeds <= 3:
        note += (f" With {n_seeds} seeds this is weak evidence (the t-test has {max(n_seeds - 1, 0)} degree"
                 f"{'' if n_seeds == 2 else 's'} of freedom); treat unmarked differences as unresolved, not as zero.")
    return note


def _pm(mean: float, sd: float, scale: float = 1.0, digits: int = 1, sep: str = " ± ") -> str:
    if not math.isfinite(mean):
        return "-"
    s = f"{mean * scale:.{digits}f}"
    return s + (f"{sep}{sd * scale:.{digits}f}" if math.isfinite(sd) else "")


def _delta(c: CellSummary, digits: int = 1) -> tuple[str, str, str, str]:
    comp = c.vs_baseline
    if comp is None:
        return ("baseline" if c.schedule == BASELINE and c.n else "-"), "", "", ""
    if comp.n == 0 or not math.isfinite(comp.mean):
        return "-", "", "", ""
    d = f"{comp.mean:+.{digits}f}"
    if math.isfinite(comp.ci[0]):
        d += f"±{(comp.ci[1] - comp.ci[0]) / 2:.{digits}f}"
    p = f"{comp.p_t:.3f}" if math.isfinite(comp.p_t) else "-"
    ph = f"{comp.p_holm:.3f}" if math.isfinite(comp.p_holm) else "-"
    return d, p, ph, "*" if c.significant() else ""


def _lr(c: CellSummary) -> str:
    if c.peak_lr is None:
        return "-"
    return f"{c.peak_lr:.3g}" + ("!" if c.selection is not None and c.selection.at_edge else "")


def _note(c: CellSummary) -> str:
    notes = []
    if c.selection is not None and c.selection.all_diverged:
        notes.append("every tuning lr diverged")
    if c.diverged - c.failed:
        notes.append(f"{c.diverged - c.failed}/{c.n} diverged")
    if c.failed:
        notes.append(f"{c.failed}/{c.n} failed")
    need = c.vs_baseline.seeds_needed() if c.vs_baseline is not None else None
    if need is not None:
        notes.append(f"~{need} seeds" if need <= 1000 else ">1000 seeds")
    return "; ".join(notes)


def metric_digits(metric: str, values: Sequence[float]) -> int:
    """Decimals for a study's metric: 1 for a percentage (an ``*_acc`` metric, as always); for a
    metric in its own unit (``val_mse``) enough that the smallest nonzero ``|value|`` keeps 3
    significant digits (0.312 -> 3 decimals, 12.3 -> 1), so 0.31 and 0.34 never both read 0.3."""
    from lrlab.study.stats import metric_scale

    if metric_scale(metric) != 1.0:
        return 1
    finite = [abs(v) for v in values if math.isfinite(v) and v != 0]
    return 3 if not finite else min(12, max(0, 2 - math.floor(math.log10(min(finite)))))


def _digits(summaries: Sequence[CellSummary], metric: str) -> int:
    return metric_digits(metric, [v for c in summaries for v in (c.acc_mean, c.val_acc_mean)])


def table_rows(summaries: Sequence[CellSummary], metric: str = "val_acc") -> list[dict[str, str]]:
    """The table's cells as strings (shared by the terminal, HTML and tests); ``metric``: the
    study's selection metric, whose values (and their test counterpart's) are shown with
    :func:`metric_digits` decimals."""
    rows = []
    digits = _digits(summaries, metric)
    for c in summaries:
        d, p, ph, mark = _delta(c, digits)
        if c.n == 0 or (metric != "val_acc" and not math.isfinite(c.target)):
            target = "-"  # time to target is defined for accuracy only
        elif c.epochs_to_target is None:
            target = "never"
        else:
            target = str(c.epochs_to_target)
        best = "-" if not math.isfinite(c.best_val_acc_mean) else (
            f"{c.best_val_acc_mean:.1f}@{c.best_epoch_mean:.0f}")
        rows.append({
            "optimizer": c.optimizer,
            "schedule": c.schedule,
            "lr": _lr(c),
            "val_acc": _pm(c.val_acc_mean, math.nan, digits=digits),
            "test_acc": _pm(c.acc_mean, c.acc_sd, digits=digits, sep="±"),
            "test_loss": _pm(c.loss_mean, c.loss_sd, digits=3, sep="±"),
            "best_val": best,
            "target": target,
            "delta": d,
            "p": p,
            "p_holm": ph,
            "sig": mark,
            "seeds": str(c.n),
            "note": _note(c),
        })
    return rows


_COLUMNS = [
    ("optimizer", "optim"),
    ("schedule", "schedule"),
    ("lr", "lr"),
    ("val_acc", "val %"),
    ("test_acc", "test %"),
    ("delta", "Δ vs const"),
    ("p", "p"),
    ("p_holm", "p_holm"),
    ("sig", ""),
    ("target", "→target"),
    ("best_val", "best val"),
    ("test_loss", "test loss"),
    ("note", "note"),
]
_TERMINAL_SKIP = ("sig", "test_loss", "val_acc")  # in the HTML, CSV and JSON; the terminal keeps 80 columns
_LEFT = ("optimizer", "schedule", "note")
TABLE_CAPTION = (
    "lr: the peak lr the final seeds ran at (! = at the edge of the tuning grid); test %: final "
    "test accuracy, mean±sd over the final seeds (val %: validation, in the HTML/CSV/JSON); Δ vs const: paired test-accuracy "
    "difference from constant, points ± 95% t-interval half-width; p: paired t-test, p_holm: Holm-adjusted, "
    "* p_holm < 0.05; →target: epochs until the mean validation accuracy reaches 99% of constant's final "
    "value; best val: best validation accuracy @ its epoch (means); ~N seeds: seeds that would resolve an "
    "unresolved difference (80% power)"
)


def metric_on_test(metric: str) -> str:
    """The test counterpart of a validation metric (``val_mse`` -> ``test_mse``)."""
    return "test_" + metric.removeprefix("val_")


def table_columns(metric: str = "val_acc") -> list[tuple[str, str]]:
    """The table's ``(key, label)`` columns; a study on another metric than ``val_acc`` names it
    in the metric columns (``val_mse``/``test_mse``, with `` %`` only for an ``*_acc`` metric)."""
    if metric == "val_acc":
        return list(_COLUMNS)
    unit = " %" if metric.endswith("_acc") else ""
    names = {"val_acc": metric + unit, "test_acc": metric_on_test(metric) + unit}
    return [(k, names.get(k, label)) for k, label in _COLUMNS]


def table_caption(metric: str = "val_acc") -> str:
    """The legend under the table: :data:`TABLE_CAPTION` for an accuracy study, otherwise the
    same legend naming ``metric`` and its test counterpart (in their own unit, not percent)."""
    if metric == "val_acc":
        return TABLE_CAPTION
    test, unit = metric_on_test(metric), (" %" if metric.endswith("_acc") else "")
    how = "in percent" if unit else "as reported"
    return (
        f"lr: the peak lr the final seeds ran at (! = at the edge of the tuning grid); {test}{unit}: final "
        f"{test} ({how}), mean±sd over the final seeds ({metric}{unit}: validation, in the HTML/CSV/JSON); "
        f"Δ vs const: paired {test} difference from constant ± 95% t-interval half-width; p: paired t-test, "
        "p_holm: Holm-adjusted, * p_holm < 0.05; →target and best val: for accuracy studies (validation "
        "accuracy); ~N seeds: seeds that would resolve an unresolved difference (80% power)"
    )


COMPACT_WIDTH = 110
"""Terminals narrower than this get the table without the "best val" and "note" columns."""
COMPACT_NOTE = "(best val and notes: in report.html, or in a terminal at least 110 columns wide)"


def results_table(summaries: Sequence[CellSummary], title: str | None = None, *, compact: bool = False,
                  maximize: bool = True, metric: str = "val_acc") -> Any:
    """A ``rich.table.Table`` of the results (best mean test accuracy per optimizer in bold, the
    lowest with ``maximize=False``); ``compact`` leaves out the "best val" and "note" columns
    (narrow terminals); ``metric``: the study's selection metric (its columns' labels, legend and
    decimals, see :func:`table_columns`)."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    # Text: no markup, no :emoji: codes (a task named module:function)
    table = Table(title=Text(title) if title else None, title_justify="left", show_lines=False,
                  box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, caption=table_caption(metric),
                  caption_justify="left")
    rows = table_rows(summaries, metric)
    any_note = any(r["note"] for r in rows)
    skip = _TERMINAL_SKIP + (("best_val", "note") if compact else ())
    columns = [(k, lbl) for k, lbl in table_columns(metric) if k not in skip and (k != "note" or any_note)]
    for key, label in columns:
        width = max([len(label)] + [len(r[key]) + (2 if key == "p_holm" else 0) for r in rows])
        table.add_column(label, justify="left" if key in _LEFT else "right",
                         no_wrap=key != "note", min_width=None if key == "note" else width)
    best = _best_per_optimizer(summaries, maximize)
    prev = None
    for c, row in zip(summaries, rows):
        if prev is not None and c.optimizer != prev:
            table.add_section()
        prev = c.optimizer
        style = "bold" if math.isfinite(c.acc_mean) and c.acc_mean == best.get(c.optimizer) else None
        cells = [escape(row[k]) + (" *" if k == "p_holm" and row["sig"] else "  " if k == "p_holm" else "")
                 for k, _ in columns]
        if columns[-1][0] == "note" and "diverged" in row["note"]:
            cells[-1] = f"[red]{cells[-1]}[/red]"
        table.add_row(*cells, style=style)
    return table


def _best_per_optimizer(summaries: Sequence[CellSummary], maximize: bool = True) -> dict[str, float]:
    """The best mean test metric per optimizer (the lowest when the study minimizes its metric)."""
    sign = 1.0 if maximize else -1.0
    best: dict[str, float] = {}
    for c in summaries:
        if math.isfinite(c.acc_mean) and sign * c.acc_mean > sign * best.get(c.optimizer, -sign * math.inf):
            best[c.optimizer] = c.acc_mean
    return best


def edge_lines(summaries: Sequence[CellSummary]) -> list[str]:
    """One warning per optimizer whose chosen lr sits at the edge of the grid for some schedules."""
    out = []
    for o in dict.fromkeys(c.optimizer for c in summaries):
        edge = [c for c in summaries if c.optimizer == o and c.selection is not None and c.selection.at_edge]
        if not edge:
            continue
        parts = [f"{c.schedule} ({'smallest' if c.selection.chosen == c.selection.grid[0] else 'largest'})"  # type: ignore[union-attr]
                 for c in edge]
        out.append(f"! {o}: the best lr is at the edge of the grid for {', '.join(parts)}: the optimum may lie "
                   "outside it; widen the grid (tune.grid / --lr-grid)")
    return out


def table_text(summaries: Sequence[CellSummary], effects: Sequence[OptimizerEffect], *, title: str | None,
               n_seeds: int, width: int = 100, metric: str = "val_acc", maximize: bool = True) -> str:
    """The terminal table and the lines under it as plain text (what the README shows)."""
    from rich.console import Console

    con = Console(file=io.StringIO(), width=width, color_system=None, highlight=False, record=True)
    con.print(results_table(summaries, title=title, metric=metric, maximize=maximize))
    for line in [significance_note(n_seeds), *edge_lines(summaries), *effect_lines(effects, metric)]:
        con.print(line, markup=False)
    text = con.export_text(styles=False)
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n") + "\n"


def effect_lines(effects: Sequence[OptimizerEffect], metric: str = "val_acc") -> list[str]:
    """One line per optimizer on how much the schedule matters, then the verdict on the claim
    (differences in points of accuracy, or in ``metric``'s own unit with :func:`metric_digits`
    decimals)."""
    lines = []
    k = metric_digits(metric, [e.baseline_acc for e in effects])
    unit, pts = (" %", " points") if metric.endswith("_acc") else (f" {metric_on_test(metric)}", "")
    for e in effects:
        best = "-"
        if e.best is not None and e.best_schedule is not None and math.isfinite(e.best.mean):
            ci = f" [{e.best.ci[0]:+.{k}f}, {e.best.ci[1]:+.{k}f}]" if math.isfinite(e.best.ci[0]) else ""
            best = f"{e.best_schedule} {e.best.mean:+.{k}f}{ci}"
        avg = f"{e.average_mean:+.{k}f}" + (f" ± {e.average_se:.{k}f} s.e." if math.isfinite(e.average_se) else "")
        lines.append(
            f"{e.optimizer}: constant {_pm(e.baseline_acc, e.baseline_sd, digits=k)}{unit}; best schedule {best}"
            f"{pts}; average schedule {avg}{pts}; spread best-worst {e.spread:.{k}f}{pts}"
        )
    v = claim_verdict(effects)
    if v:
        lines.append(v)
    return lines


# ---- plots --------------------------------------------------------------------------------------


def _fig_png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _colors(n: int) -> list[Any]:
    import matplotlib as mpl

    cmap = mpl.colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(n)]


def _is_metric_driven(cfg: Mapping[str, Any]) -> bool:
    from lrlab.schedules import from_config

    return any(node.name == "plateau" for node in from_config(cfg).walk())


def plot_lr_curves(records: Sequence[TrialRecord], schedules: Sequence[str], steps_per_epoch: int) -> bytes:
    """One panel per schedule: the lr as a multiple of the peak, over epochs (per step).

    Metric-driven schedules (plateau) also show the lr each optimizer really used at each
    epoch's end, averaged over seeds (dots), since their curve depends on the run.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from lrlab.schedules import from_config

    n = len(schedules)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), squeeze=False, sharey=True)
    for i, name in enumerate(schedules):
        ax = axes[i // cols][i % cols]
        recs = [r for r in records if r.schedule_name == name]
        if not recs:
            ax.set_visible(False)
            continue
        r0 = recs[0]
        sched = from_config(r0.schedule_config)
        total = int(r0.epochs) * steps_per_epoch
        steps = np.arange(total)
        ax.plot(steps / steps_per_epoch, sched.values(steps) / r0.peak_lr, color="C0", lw=1.5)
        if _is_metric_driven(r0.schedule_config):
            for j, opt in enumerate(dict.fromkeys(r.optimizer for r in recs)):
                sub = [r for r in recs if r.optimizer == opt]
                rel = [
                    TrialRecord(**{**r.__dict__, "curves": {**r.curves, "lr": r.curves["lr"] / r.peak_lr}})
                    for r in sub
                ]
                ep, mean, _ = curve_band(rel, "lr")
                ax.plot(ep + 1, mean, "o", ms=2.5, color=f"C{j + 1}", label=f"{opt} (used)")
            ax.legend(fontsize=6, loc="lower left")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epochs trained", fontsize=8)
    for row in axes:
        row[0].set_ylabel("lr / peak", fontsize=8)
    fig.suptitle("Learning-rate schedules (multiple of each optimizer's peak lr)", fontsize=10)
    fig.tight_layout()
    return _fig_png(fig)


def plot_training_curves(records: Sequence[TrialRecord], schedules: Sequence[str], optimizer: str) -> bytes:
    """Train/validation loss and accuracy over epochs for one optimizer: mean over the final
    seeds, +-1 sd band (train: running means over each epoch's minibatches)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    panels = [("train_loss", "train loss", True), ("val_loss", "validation loss", True),
              ("train_acc", "train accuracy %", False), ("val_acc", "validation accuracy %", False)]
    colors = _colors(len(schedules))
    for ax, (key, label, log) in zip(axes.flat, panels):
        positive = False
        for color, name in zip(colors, schedules):
            recs = [r for r in records if r.schedule_name == name and r.optimizer == optimizer]
            if not recs:
                continue
            ep, mean, sd = curve_band(recs, key)
            k = 1.0 if "loss" in key else 100.0
            ls = "--" if name == BASELINE else "-"
            ax.plot(ep + 1, mean * k, ls, color=color, lw=1.3, label=name)
            positive = positive or bool(np.any(np.isfinite(mean) & (mean > 0)))
            lo = (mean - sd) * k
            ax.fill_between(ep + 1, np.where(lo <= 0, np.nan, lo) if log else lo, (mean + sd) * k,
                            color=color, alpha=0.15, lw=0)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epochs trained", fontsize=8)
        if log and positive:  # a panel where every trial diverged at once stays linear
            from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        else:
            lo = [np.nanmin(r.curves[key]) for r in records if r.optimizer == optimizer
                  and np.isfinite(r.curves[key]).any()]
            if lo:
                ax.set_ylim(max(0.0, min(np.nanpercentile(lo, 10) * 100, 100) - 2), 100.5)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0][1].legend(fontsize=7, ncol=2, loc="upper right")
    fig.suptitle(f"{optimizer}: mean over seeds, band = ±1 sd", fontsize=11)
    fig.tight_layout()
    return _fig_png(fig)


def plot_final_accuracy(records: Sequence[TrialRecord], summaries: Sequence[CellSummary],
                        metric: str = "val_acc") -> bytes:
    """Final test accuracy (or ``metric``'s test counterpart) of every seed (dots) with the mean
    +- sd (bar) per cell."""
    import matplotlib

    from lrlab.study.stats import metric_scale

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    opts = list(dict.fromkeys(c.optimizer for c in summaries))
    fig, axes = plt.subplots(1, len(opts), figsize=(5.5 * len(opts), 4.2), squeeze=False)
    for ax, opt in zip(axes[0], opts):
        cells = [c for c in summaries if c.optimizer == opt]
        for i, c in enumerate(cells):
            better = c.vs_baseline is not None and c.vs_baseline.mean > 0
            color = ("C2" if better else "C3") if c.significant() else ("C7" if c.schedule == BASELINE else "C0")
            if math.isfinite(c.acc_mean):
                ax.errorbar(c.acc_mean, i, xerr=c.acc_sd if math.isfinite(c.acc_sd) else None,
                            fmt="s", color=color, ms=5, capsize=3)
            pts = [r.final.get(metric_on_test(metric), math.nan) * metric_scale(metric) for r in records
                   if r.optimizer == opt and r.schedule_name == c.schedule and not r.diverged]
            ax.plot(pts, [i] * len(pts), "o", color=color, alpha=0.4, ms=3)
            if c.diverged:
                ax.annotate(f"{c.diverged} diverged", (0.02, i), xycoords=("axes fraction", "data"),
                            fontsize=7, color="C3", va="center")
        base = next((c for c in cells if c.schedule == BASELINE), None)
        if base is not None and math.isfinite(base.acc_mean):
            ax.axvline(base.acc_mean, color="C7", ls="--", lw=1)
        ax.set_yticks(range(len(cells)), [c.schedule for c in cells], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("final test accuracy %" if metric == "val_acc" else f"final {metric_on_test(metric)}"
                      + (" %" if metric.endswith("_acc") else ""), fontsize=8)
        ax.set_title(opt, fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    what = "Final test accuracy" if metric == "val_acc" else f"Final {metric_on_test(metric)}"
    fig.suptitle(what + " per seed (dots), mean ± sd (squares); green / red: significantly better / "
                 "worse than constant (paired t-test, Holm-adjusted p < 0.05)", fontsize=10)
    fig.tight_layout()
    return _fig_png(fig)


def plot_lr_sensitivity(selections: Mapping[tuple[str, str], LrSelection], schedules: Sequence[str],
                        optimizers: Sequence[str]) -> bytes:
    """Validation accuracy (mean over tuning seeds) against peak lr (log x): one line per
    schedule, one panel per optimizer; the chosen lr of each line is a star, a grid point where
    every tuning seed diverged an ``x`` at the bottom (DeepOBS's lr-sensitivity plot)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    opts = [o for o in optimizers if any(k[1] == o for k in selections)]
    fig, axes = plt.subplots(1, max(len(opts), 1), figsize=(5.6 * max(len(opts), 1), 4.4), squeeze=False)
    colors = _colors(len(schedules))
    for ax, opt in zip(axes[0], opts):
        finite: list[float] = []
        lines = []
        for color, name in zip(colors, schedules):
            sel = selections.get((name, opt))
            if sel is None:
                continue
            grid = np.array(sel.grid)
            dead = np.array([d == n for d, n in zip(sel.diverged, sel.runs)])
            y = np.where(dead, np.nan, np.array(sel.scores) * 100.0)
            finite += [float(v) for v in y if math.isfinite(v)]
            lines.append((name, color, grid, y, dead, sel))
        low = max(0.0, (np.percentile(finite, 10) if finite else 0.0) - 5.0)
        for name, color, grid, y, dead, sel in lines:
            ls = "--" if name == BASELINE else "-"
            ax.plot(grid, y, ls, marker="o", ms=3, color=color, lw=1.3, label=name)
            if sel.chosen is not None:
                k = sel.grid.index(sel.chosen)
                ax.plot([sel.chosen], [y[k]], "*", ms=12, color=color, mec="k", mew=0.6, zorder=5)
            if dead.any():
                ax.plot(grid[dead], np.full(int(dead.sum()), low + 0.5), "x", color=color, ms=6)
        ax.set_xscale("log")
        from matplotlib.ticker import NullFormatter

        ticks = sorted({lr for *_, sel in lines for lr in sel.grid})
        ax.set_xticks(ticks, [f"{lr:.3g}" for lr in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(bottom=low)
        ax.set_xlabel("peak learning rate", fontsize=8)
        ax.set_ylabel("final validation accuracy % (tuning seeds)", fontsize=8)
        ax.set_title(opt, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6.5, ncol=2, loc="best")
    fig.suptitle("Learning-rate sensitivity: star = chosen lr, x = every tuning seed diverged", fontsize=10)
    fig.tight_layout()
    return _fig_png(fig)


# ---- files --------------------------------------------------------------------------------------


def _num(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)
    return v


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in rows:
            w.writerow([_num(v) for v in row])


def _frac(v: float, scale: float = 100.0) -> float | None:
    return v / scale if math.isfinite(v) else None


def _scale(info: Mapping[str, Any] | None) -> float:
    """What the summaries' metric columns were multiplied by (:func:`lrlab.study.stats.metric_scale`)."""
    from lrlab.study.stats import metric_scale

    return metric_scale(str((info or {}).get("metric", "val_acc")))


def cell_dict(c: CellSummary, scale: float = 100.0) -> dict[str, Any]:
    """One (optimizer, schedule) cell as plain data: accuracies as fractions, p-values, the lr.

    ``scale``: 100 for the default accuracy metric; 1 when the study's metric is not an accuracy
    (then ``val_acc``/``test_acc`` hold the metric and its test counterpart as reported)."""
    comp = c.vs_baseline
    f = functools.partial(_frac, scale=scale)
    sel = c.selection
    return {
        "optimizer": c.optimizer,
        "schedule": c.schedule,
        "peak_lr": c.peak_lr,
        "lr_grid": None if sel is None else list(sel.grid),
        "lr_at_edge": None if sel is None else sel.at_edge,
        "lr_grid_val_acc": None if sel is None else list(sel.scores),
        "val_acc": {"mean": f(c.val_acc_mean), "sd": f(c.val_acc_sd)},
        "test_acc": {"mean": f(c.acc_mean), "sd": f(c.acc_sd)},
        "test_loss": {"mean": c.loss_mean, "sd": c.loss_sd},
        "delta_vs_constant": None if comp is None else f(comp.mean),
        "delta_ci95": None if comp is None else [f(comp.ci[0]), f(comp.ci[1])],
        "p": None if comp is None else comp.p_t,
        "p_holm": None if comp is None else comp.p_holm,
        "p_sign_flip": None if comp is None else comp.p_sign,
        "significant": c.significant(),
        "seeds_to_resolve": None if comp is None else comp.seeds_needed(),
        "epochs_to_target": c.epochs_to_target,
        "target_val_acc": f(c.target),
        "best_val_acc": f(c.best_val_acc_mean),
        "best_epoch": c.best_epoch_mean,
        "n_seeds": c.n,
        "diverged": c.diverged,
        "failed": c.failed,
        "note": _note(c),
    }


def results_document(summaries: Sequence[CellSummary], effects: Sequence[OptimizerEffect],
                     info: Mapping[str, Any]) -> dict[str, Any]:
    """What ``lrlab study --format json`` prints: the cells, the claim, how each optimizer's
    trials trained (fleet or one at a time, and why), versions, config, command."""
    lines = effect_lines(effects, str(info.get("metric", "val_acc")))
    scale = _scale(info)
    return {
        "task": info.get("task"),
        "epochs": info.get("epochs"),
        "metric": info.get("metric", "val_acc"),
        "direction": info.get("direction", "maximize"),
        "cells": [cell_dict(c, scale) for c in summaries],
        "warnings": edge_lines(summaries),
        "effects": [
            {"optimizer": e.optimizer, "baseline_acc": _frac(e.baseline_acc, scale), "best_schedule": e.best_schedule,
             "best_gain": None if e.best is None else _frac(e.best.mean, scale),
             "average_effect": _frac(e.average_mean, scale), "average_effect_se": _frac(e.average_se, scale),
             "spread": _frac(e.spread, scale)}
            for e in effects
        ],
        "claim": claim_verdict(effects),
        "lines": lines,
        "training_paths": [dict(p) for p in info.get("training_paths") or []],
        "versions": dict(info.get("versions") or {}),
        "command": info.get("command"),
        "config": dict(info.get("config") or {}),
    }


def _trial_dict(r: TrialRecord) -> dict[str, Any]:
    return {
        "trial_id": r.trial_id, "key": r.key, "role": r.role, "schedule": r.schedule_name,
        "schedule_text": r.schedule_text, "optimizer": r.optimizer, "optimizer_kwargs": r.optimizer_kwargs,
        "seed": r.seed, "peak_lr": r.peak_lr, "epochs": r.epochs, "status": r.status,
        "diverged_epoch": r.diverged_epoch, "seconds": r.seconds, "final": r.final,
        "curves": {k: r.curves[k].tolist() for k in CURVE_FIELDS}, "schedule_config": r.schedule_config,
    }


def _flat(d: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update({f"{k}_{kk}": vv for kk, vv in v.items()})
        elif isinstance(v, list):
            out[k] = " ".join("" if x is None else f"{x:g}" if isinstance(x, float) else str(x) for x in v)
        else:
            out[k] = v
    return out


def write_report(
    out: str | Path,
    records: Sequence[TrialRecord],
    summaries: Sequence[CellSummary],
    effects: Sequence[OptimizerEffect],
    *,
    config: Mapping[str, Any],
    schedules: Sequence[str],
    steps_per_epoch: int,
    title: str = "lrlab study",
    meta: Mapping[str, Any] | None = None,
    tune_records: Sequence[TrialRecord] = (),
    info: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the HTML report, PNGs, CSVs and JSON into ``out``; returns ``{kind: path}``.

    ``records`` are the final runs, ``tune_records`` the tuning runs (the lr-sensitivity plot,
    ``trials.csv`` and ``results.json`` include them, with their role).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    opts = list(dict.fromkeys(c.optimizer for c in summaries))
    info = dict(info or {"config": dict(config)})
    selections = {(c.schedule, c.optimizer): c.selection for c in summaries if c.selection is not None}
    images: list[tuple[str, str, bytes]] = []
    if selections:
        images.append(("lr_sensitivity.png", "Learning-rate sensitivity (tuning runs, validation)",
                       plot_lr_sensitivity(selections, schedules, opts)))
    if records:
        images.append(("lr_curves.png", "Learning-rate schedules", plot_lr_curves(records, schedules, steps_per_epoch)))
        metric = str(info.get("metric", "val_acc"))
        what = "Final test accuracy" if metric == "val_acc" else f"Final {metric_on_test(metric)}"
        images.append(("final_acc.png", what + " per seed", plot_final_accuracy(records, summaries, metric)))
        for o in opts:
            images.append((f"curves_{o}.png", f"Training curves: {o}", plot_training_curves(records, schedules, o)))
    for name, _, png in images:
        (out / name).write_bytes(png)
        paths[name] = out / name

    cells = [_flat(cell_dict(c, _scale(info))) for c in summaries]
    _write_csv(out / "summary.csv", list(cells[0]) if cells else [], [list(c.values()) for c in cells])
    trial_header = ["trial_id", "role", "schedule", "optimizer", "seed", "peak_lr", "status", "diverged_epoch",
                    "val_acc", "val_loss", "test_acc", "test_loss", "train_acc", "train_loss", "best_val_acc",
                    "seconds", "schedule_text"]
    trial_rows = []
    curve_rows = []
    for r in [*tune_records, *records]:
        best = float(np.nanmax(r.curves["val_acc"])) if np.isfinite(r.curves["val_acc"]).any() else math.nan
        trial_rows.append([
            r.trial_id, r.role, r.schedule_name, r.optimizer, r.seed, r.peak_lr, r.status, r.diverged_epoch,
            *[r.final.get(k, math.nan) for k in ("val_acc", "val_loss", "test_acc", "test_loss", "train_acc",
                                                  "train_loss")],
            best, r.seconds, r.schedule_text,
        ])
        for i in range(len(r.curves["epoch"])):
            curve_rows.append([r.trial_id, r.role, r.schedule_name, r.optimizer, r.seed, r.peak_lr,
                               *[float(r.curves[k][i]) for k in CURVE_FIELDS]])
    _write_csv(out / "trials.csv", trial_header, trial_rows)
    _write_csv(out / "curves.csv", ["trial_id", "role", "schedule", "optimizer", "seed", "peak_lr", *CURVE_FIELDS],
               curve_rows)
    metric = str(info.get("metric", "val_acc"))
    lines = [*edge_lines(summaries), *effect_lines(effects, metric)]
    results = {
        "title": title,
        "meta": dict(meta or {}),
        **results_document(summaries, effects, info),
        "trials": [_trial_dict(r) for r in [*tune_records, *records]],
    }
    (out / "results.json").write_text(dumps_json(results), encoding="utf-8")
    for name in ("summary.csv", "trials.csv", "curves.csv", "results.json"):
        paths[name] = out / name
    n_seeds = len(config.get("seeds") or []) or max((c.n for c in summaries), default=0)
    page = _html(title, summaries, lines, images, config, meta or {}, records, significance_note(n_seeds), metric)
    (out / "report.html").write_text(page, encoding="utf-8")
    paths["report.html"] = out / "report.html"
    try:
        import jinja2  # noqa: F401
        import plotly  # noqa: F401
    except ImportError:  # the interactive page is optional: report.html has everything
        return paths
    from lrlab.study.interactive import write_interactive

    paths["interactive.html"] = write_interactive(out, records, tune_records, summaries, schedules, title=title,
                                                  meta=meta, metric=str((info or {}).get("metric", "val_acc")))
    return paths


README_BEGIN = "<!-- study-table:begin (make readme-results writes this block from docs/study/table.txt) -->"
README_END = "<!-- study-table:end -->"


def readme_block(table: str) -> str:
    """The README's table block for ``table`` (the text of docs/study/table.txt)."""
    return f"{README_BEGIN}\n```\n{table.rstrip()}\n```\n{README_END}"


def write_readme_results(table: str, sensitivity_png: bytes, docs: str | Path,
                         readme: str | Path | None = None) -> dict[str, Path]:
    """Write ``table.txt`` and ``lr_sensitivity.png`` into ``docs`` and, when ``readme`` is
    given, replace its block between :data:`README_BEGIN` and :data:`README_END` with the table
    (errors when the README has no such block, so nothing is silently skipped)."""
    d = Path(docs)
    d.mkdir(parents=True, exist_ok=True)
    (d / "table.txt").write_text(table, encoding="utf-8")
    (d / "lr_sensitivity.png").write_bytes(sensitivity_png)
    paths = {"table.txt": d / "table.txt", "lr_sensitivity.png": d / "lr_sensitivity.png"}
    if readme is not None:
        r = Path(readme)
        text = r.read_text(encoding="utf-8")
        i, j = text.find(README_BEGIN), text.find(README_END)
        if i < 0 or j < i:
            raise ValueError(f"{r} has no study-table block ({README_BEGIN!r} ... {README_END!r})")
        r.write_text(text[:i] + readme_block(table) + text[j + len(README_END):], encoding="utf-8")
        paths["readme"] = r
    return paths


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1150px;color:#222;padding:0 1em}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{padding:3px 9px;border-bottom:1px solid #ddd;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}tr.best td{font-weight:600}tr.sep td{border-top:2px solid #999}
.sig{color:#b00;font-weight:700}.div{color:#b00}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
pre{background:#f7f7f7;padding:1em;overflow-x:auto;font-size:12px}.note{color:#555;font-size:13px}
"""


def _html(
    title: str,
    summaries: Sequence[CellSummary],
    lines: Sequence[str],
    images: Sequence[tuple[str, str, bytes]],
    config: Mapping[str, Any],
    meta: Mapping[str, Any],
    records: Sequence[TrialRecord],
    sig_note: str,
    metric: str = "val_acc",
) -> str:
    e = html.escape
    maximize = config.get("direction", "maximize") != "minimize"
    best = _best_per_optimizer(summaries, maximize)
    cols = table_columns(metric)
    head = "".join(f'<th class="{"l" if k in _LEFT else ""}">{e(lbl)}</th>' for k, lbl in cols)
    bold = ("test accuracy" if metric == "val_acc" else metric_on_test(metric)) + ("" if maximize else " (lowest)")
    body = []
    prev = None
    for c, row in zip(summaries, table_rows(summaries, metric)):
        cls = []
        if math.isfinite(c.acc_mean) and c.acc_mean == best.get(c.optimizer):
            cls.append("best")
        if prev is not None and c.optimizer != prev:
            cls.append("sep")
        prev = c.optimizer
        tds = []
        for k, _ in cols:
            klass = "l" if k in _LEFT else ""
            if k == "sig" and row[k]:
                klass += " sig"
            if k == "note" and "diverged" in row[k]:
                klass += " div"
            tds.append(f'<td class="{klass.strip()}">{e(row[k])}</td>')
        body.append(f'<tr class="{" ".join(cls)}">{"".join(tds)}</tr>')
    imgs = "".join(
        f"<h2>{e(cap)}</h2><img alt=\"{e(name)}\" src=\"data:image/png;base64,{base64.b64encode(png).decode()}\">"
        for name, cap, png in images
    )
    meta_items = "".join(f"<li>{e(str(k))}: {e(str(v))}</li>" for k, v in meta.items())
    specs: dict[str, str] = {}
    for r in records:
        specs.setdefault(r.schedule_name, r.schedule_text)
    spec_rows = "".join(f'<tr><td class="l">{e(n)}</td><td class="l"><code>{e(s)}</code></td></tr>'
                        for n, s in specs.items())
    effect_html = "".join(f"<li>{e(x)}</li>" for x in lines)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{e(title)}</h1>
<ul class="note">{meta_items}</ul>
<h2>Results</h2>
<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>
<p class="note">{e(table_caption(metric))}; test loss: final test loss, mean±sd. Bold: best mean {e(bold)} per optimizer.
{e(sig_note)}</p>
<h2>How much the schedule matters</h2>
<ul>{effect_html}</ul>
<p class="note">"best schedule" picks the highest of several means measured on the same seeds, so it is optimistic;
"average schedule" is the paired effect of a typical schedule (mean over schedules of per-seed differences from constant).</p>
{imgs}
<h2>Schedules (multiples of the peak lr)</h2>
<table><tbody>{spec_rows}</tbody></table>
<h2>Full config</h2>
<pre>{e(json.dumps(dict(config), indent=2, sort_keys=False, default=str))}</pre>
</body></html>
"""
