"""The interactive, offline study report (``interactive.html``) and the comparison of two studies.

Built with plotly, whose script is inlined once in the page (no network when it is viewed), and
a Jinja2 template (``lrlab/study/templates/interactive.html.j2``). Next to the static PNGs of
``report.html`` (kept for papers) it offers:

* hover values on every curve and point, zoom and pan;
* small multiples: one panel per schedule, the schedule's mean validation accuracy over the final
  seeds with each seed's curve thin, and constant's mean (dashed grey) for reference, so no panel
  holds twelve overlapping lines;
* one overlay figure per optimizer where clicking a legend entry hides or shows a schedule;
* accuracy axes zoomed to the data (the band where the schedules differ), not 0-100;
* a per-trial panel: pick a schedule x optimizer cell and see each seed's validation accuracy and
  training loss;
* the lr-sensitivity figure of the tuning runs (log lr axis, the chosen lr starred).

:func:`compare_page` (``lrlab study compare DIR_A DIR_B``) puts two studies side by side from
their ``results.json``: a table of the final test accuracy per cell and each schedule's mean
validation curve of both studies in one panel.

plotly and Jinja2 come with ``pip install 'lrlab[study]'``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["compare_page", "interactive_page", "write_compare", "write_interactive"]

_BASELINE = "constant"
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")


def _render(**context: Any) -> str:
    import jinja2
    import plotly.offline

    env = jinja2.Environment(loader=jinja2.PackageLoader("lrlab.study", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    return env.get_template("interactive.html.j2").render(plotlyjs=plotly.offline.get_plotlyjs(), **context)


def _div(fig: Any, div_id: str) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                           config={"displaylogo": False, "responsive": True}))


def _trial(t: Any) -> dict[str, Any]:
    """A trial as plain data: a :class:`~lrlab.study.storage.TrialRecord` or a ``results.json`` trial."""
    if isinstance(t, Mapping):
        return {"schedule": t["schedule"], "optimizer": t["optimizer"], "seed": t["seed"], "role": t["role"],
                "peak_lr": t["peak_lr"], "final": t["final"],
                "curves": {k: np.array([math.nan if v is None else v for v in vs], dtype=float)
                           for k, vs in t["curves"].items()}}
    return {"schedule": t.schedule_name, "optimizer": t.optimizer, "seed": t.seed, "role": t.role,
            "peak_lr": t.peak_lr, "final": t.final, "curves": t.curves}


def _mean_curve(trials: Sequence[dict[str, Any]], key: str, scale: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and the mean over trials (NaN-aware, trials of unequal length padded with NaN)."""
    n = max((len(t["curves"].get(key, ())) for t in trials), default=0)
    m = np.full((len(trials), n), np.nan)
    for i, t in enumerate(trials):
        v = np.asarray(t["curves"].get(key, ()), dtype=float)
        m[i, : len(v)] = v * scale
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an epoch where every trial is NaN: NaN
        mean = np.nanmean(m, axis=0) if len(trials) else np.array([])
    return np.arange(n), mean


def _zoom(curves: Sequence[np.ndarray], pad: float = 1.0) -> list[float] | None:
    """An accuracy axis range from the data: the curves after their first quarter (where schedules
    differ, not the first epochs' climb), padded, within [0, 100]."""
    vals = [v[len(v) // 4:] for v in curves if len(v)]
    flat = np.concatenate(vals) if vals else np.array([])
    flat = flat[np.isfinite(flat)]
    if not flat.size:
        return None
    lo, hi = float(flat.min()), float(flat.max())
    return [max(0.0, lo - pad), min(100.0, hi + pad)]


def _finals(trials: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in trials if t["role"] == "final"]


def _cells(trials: Sequence[dict[str, Any]], schedules: Sequence[str], optimizers: Sequence[str]
           ) -> dict[tuple[str, str], list[dict[str, Any]]]:
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {(s, o): [] for o in optimizers for s in schedules}
    for t in trials:
        if (t["schedule"], t["optimizer"]) in cells:
            cells[(t["schedule"], t["optimizer"])].append(t)
    return cells


def _metric_scale(metric: str) -> tuple[float, str]:
    """How a metric is shown: accuracies in %, anything else as reported."""
    return (100.0, "%") if metric.endswith("_acc") else (1.0, "")


def fig_small_multiples(trials: Sequence[dict[str, Any]], schedules: Sequence[str], optimizer: str,
                        metric: str = "val_acc") -> Any:
    """One panel per schedule: its mean validation accuracy (bold), each seed (thin) and constant's
    mean (dashed grey); shared, data-zoomed y axis."""
    from plotly.subplots import make_subplots

    cells = _cells(_finals(trials), schedules, [optimizer])
    names = [s for s in schedules if cells[(s, optimizer)]]
    cols = min(4, max(len(names), 1))
    rows = max(1, math.ceil(len(names) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, shared_yaxes=True, shared_xaxes=True,
                        horizontal_spacing=0.03, vertical_spacing=0.12 if rows > 1 else 0.1)
    base = cells.get((_BASELINE, optimizer)) or []
    means = []
    for i, (name, color) in enumerate(zip(names, _PALETTE * 4)):
        r, c = i // cols + 1, i % cols + 1
        ts = cells[(name, optimizer)]
        for t in ts:
            y = np.asarray(t["curves"].get(metric, []), dtype=float) * _metric_scale(metric)[0]
            fig.add_scatter(x=np.arange(len(y)), y=y, mode="lines", line={"width": 0.8, "color": color},
                            opacity=0.45, name=f"{name} seed {t['seed']}", showlegend=False, row=r, col=c,
                            hovertemplate=f"{name} seed {t['seed']}<br>epoch %{{x}}: %{{y:.2f}}%<extra></extra>")
        x, m = _mean_curve(ts, metric, _metric_scale(metric)[0])
        means.append(m)
        if base and name != _BASELINE:
            bx, bm = _mean_curve(base, metric, _metric_scale(metric)[0])
            fig.add_scatter(x=bx, y=bm, mode="lines", line={"width": 1.2, "color": "#888", "dash": "dash"},
                            name="constant (mean)", showlegend=False, row=r, col=c,
                            hovertemplate="constant mean<br>epoch %{x}: %{y:.2f}%<extra></extra>")
        fig.add_scatter(x=x, y=m, mode="lines", line={"width": 2.2, "color": color}, name=f"{name} (mean)",
                        showlegend=False, row=r, col=c,
                        hovertemplate=f"{name} mean<br>epoch %{{x}}: %{{y:.2f}}%<extra></extra>")
    rng = _zoom(means)
    if rng:
        fig.update_yaxes(range=rng)
    fig.update_xaxes(title_text="epoch", row=rows)
    fig.update_yaxes(title_text="val acc %" if metric == "val_acc" else metric, col=1)
    fig.update_layout(height=260 * rows + 80, margin={"t": 50, "b": 40, "l": 60, "r": 20}, template="plotly_white")
    return fig


def fig_overlay(trials: Sequence[dict[str, Any]], schedules: Sequence[str], optimizer: str,
                metric: str = "val_acc") -> Any:
    """Every schedule's mean validation accuracy in one zoomed panel; click a legend entry to
    hide or show it, double-click to isolate it."""
    import plotly.graph_objects as go

    cells = _cells(_finals(trials), schedules, [optimizer])
    fig = go.Figure()
    means = []
    for name, color in zip(schedules, _PALETTE * 4):
        ts = cells[(name, optimizer)]
        if not ts:
            continue
        x, m = _mean_curve(ts, metric, _metric_scale(metric)[0])
        means.append(m)
        fig.add_scatter(x=x, y=m, mode="lines", name=name,
                        line={"color": color, "width": 2, "dash": "dash" if name == _BASELINE else "solid"},
                        hovertemplate=f"{name}<br>epoch %{{x}}: %{{y:.2f}}%<extra></extra>")
    rng = _zoom(means)
    fig.update_layout(height=440, template="plotly_white", xaxis_title="epoch",
                      yaxis_title=f"{'val acc %' if metric == 'val_acc' else metric} (mean over final seeds), {optimizer}", hovermode="x unified",
                      margin={"t": 30, "b": 40, "l": 60, "r": 20}, legend={"title": "schedule (click to toggle)"})
    if rng:
        fig.update_yaxes(range=rng)
    return fig


def fig_trials(trials: Sequence[dict[str, Any]], schedules: Sequence[str], optimizers: Sequence[str],
               metric: str = "val_acc") -> Any:
    """Per-trial panel: a menu picks a schedule x optimizer cell; each of its final seeds' validation
    accuracy (left) and training loss (right)."""
    from plotly.subplots import make_subplots

    cells = [(k, v) for k, v in _cells(_finals(trials), schedules, optimizers).items() if v]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("validation accuracy %", "training loss"))
    owner: list[int] = []
    accs = []
    for ci, ((s, o), ts) in enumerate(cells):
        for t, color in zip(sorted(ts, key=lambda t: t["seed"]), _PALETTE * 4):
            label = f"seed {t['seed']} (lr {t['peak_lr']:.3g})"
            acc = np.asarray(t["curves"].get(metric, []), dtype=float) * _metric_scale(metric)[0]
            accs.append(acc)
            loss = np.asarray(t["curves"]["train_loss"], dtype=float)
            for col, y, unit in ((1, acc, "%{y:.2f}%"), (2, loss, "%{y:.4f}")):
                fig.add_scatter(x=np.arange(len(y)), y=y, mode="lines+markers", marker={"size": 3},
                                line={"color": color}, name=label, legendgroup=label, showlegend=col == 1,
                                visible=ci == 0, row=1, col=col,
                                hovertemplate=f"{s}/{o} {label}<br>epoch %{{x}}: {unit}<extra></extra>")
                owner.append(ci)
    buttons = [{"label": f"{s} / {o}", "method": "update",
                "args": [{"visible": [k == ci for k in owner]}, {"title.text": f"{s} / {o}: each final seed"}]}
               for ci, ((s, o), _) in enumerate(cells)]
    first = f"{cells[0][0][0]} / {cells[0][0][1]}: each final seed" if cells else ""
    fig.update_layout(height=420, template="plotly_white", title={"text": first, "x": 0.5},
                      updatemenus=[{"buttons": buttons, "x": 0, "xanchor": "left", "y": 1.18, "yanchor": "top"}],
                      margin={"t": 90, "b": 40, "l": 60, "r": 20})
    rng = _zoom(accs, pad=2.0)
    if rng:
        fig.update_yaxes(range=rng, col=1)
    fig.update_xaxes(title_text="epoch")
    return fig


def fig_lr_sensitivity(selections: Mapping[tuple[str, str], Any], schedules: Sequence[str],
                       optimizers: Sequence[str]) -> Any:
    """Validation accuracy of the tuning runs against peak lr (log axis), a panel per optimizer, a
    line per schedule (toggled together across panels), the chosen lr starred."""
    from plotly.subplots import make_subplots

    opts = [o for o in optimizers if any(k[1] == o for k in selections)]
    fig = make_subplots(rows=1, cols=max(len(opts), 1), subplot_titles=opts, horizontal_spacing=0.06)
    ys = []
    for j, opt in enumerate(opts, start=1):
        for name, color in zip(schedules, _PALETTE * 4):
            sel = selections.get((name, opt))
            if sel is None:
                continue
            y = np.array([math.nan if d == n else s * 100 for s, d, n in zip(sel.scores, sel.diverged, sel.runs)])
            ys.append(y)
            fig.add_scatter(x=list(sel.grid), y=y, mode="lines+markers", name=name, legendgroup=name,
                            showlegend=j == 1, line={"color": color, "dash": "dash" if name == _BASELINE else "solid"},
                            row=1, col=j,
                            hovertemplate=f"{name}, {opt}<br>lr %{{x:.3g}}: %{{y:.2f}}%<extra></extra>")
            if sel.chosen is not None:
                k = list(sel.grid).index(sel.chosen)
                fig.add_scatter(x=[sel.chosen], y=[y[k]], mode="markers", legendgroup=name, showlegend=False,
                                marker={"symbol": "star", "size": 13, "color": color, "line": {"width": 1}},
                                row=1, col=j, hovertemplate=f"{name}: chosen lr %{{x:.3g}}<extra></extra>")
    fig.update_xaxes(type="log", title_text="peak learning rate")
    fig.update_yaxes(title_text="final val acc % (tuning seeds)", col=1)
    flat = np.concatenate(ys) if ys else np.array([])
    flat = flat[np.isfinite(flat)]
    if flat.size:
        fig.update_yaxes(range=[max(0.0, float(np.percentile(flat, 10)) - 5), min(100.0, float(flat.max()) + 1)])
    fig.update_layout(height=440, template="plotly_white", margin={"t": 40, "b": 40, "l": 60, "r": 20})
    return fig


def interactive_page(records: Sequence[Any], tune_records: Sequence[Any], summaries: Sequence[Any],
                     schedules: Sequence[str], *, title: str, meta: Mapping[str, Any] | None = None,
                     metric: str = "val_acc") -> str:
    """The interactive report as one self-contained HTML string (see the module docstring)."""
    from lrlab.study.report import table_caption, table_columns, table_rows

    trials = [_trial(r) for r in [*tune_records, *records]]
    optimizers = list(dict.fromkeys(c.optimizer for c in summaries)) or list(
        dict.fromkeys(t["optimizer"] for t in trials))
    selections = {(c.schedule, c.optimizer): c.selection for c in summaries if c.selection is not None}
    rows, columns = table_rows(summaries, metric), table_columns(metric)
    table = {"title": "Results", "header": [h for _, h in columns], "left": 2, "caption": table_caption(metric),
             "rows": [[r[k] for k, _ in columns] for r in rows]}
    figures = []
    for o in optimizers:
        figures.append({"id": f"multiples-{o}", "title": f"Validation accuracy by schedule: {o}",
                        "note": "One panel per schedule: mean over the final seeds (bold), each seed (thin), "
                                "constant's mean (dashed grey). Axes zoomed to the data; hover for values.",
                        "html": _div(fig_small_multiples(trials, schedules, o, metric), f"multiples-{o}-fig")})
        figures.append({"id": f"overlay-{o}", "title": f"All schedules: {o}",
                        "note": "Click a schedule in the legend to hide or show it; double-click to isolate it.",
                        "html": _div(fig_overlay(trials, schedules, o, metric), f"overlay-{o}-fig")})
    figures.append({"id": "trials", "title": "Per trial", "note": "Pick a cell in the menu: each final seed's curves.",
                    "html": _div(fig_trials(trials, schedules, optimizers, metric), "trials-fig")})
    if selections:
        figures.append({"id": "lr-sensitivity", "title": "Learning-rate sensitivity (tuning runs)",
                        "note": "Star: the chosen lr; a missing point: every tuning seed diverged there.",
                        "html": _div(fig_lr_sensitivity(selections, schedules, optimizers), "lr-sensitivity-fig")})
    return _render(title=title, intro="Interactive version of report.html (static PNGs there, for papers). "
                   "Works offline: plotly's script is inside this file.", tables=[table], figures=figures,
                   meta=dict(meta or {}))


def write_interactive(out: str | Path, *args: Any, **kwargs: Any) -> Path:
    """:func:`interactive_page` written to ``<out>/interactive.html``; returns the path."""
    path = Path(out) / "interactive.html"
    path.write_text(interactive_page(*args, **kwargs), encoding="utf-8")
    return path


# ---- two studies side by side --------------------------------------------------------------------


def _load(d: str | Path) -> dict[str, Any]:
    p = Path(d) / "results.json"
    if not p.is_file():
        raise ValueError(f"no study report in {str(d)!r} (expected {p}; run `lrlab study report --out {d}`)")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        doc["_trials"] = [_trial(t) for t in doc["trials"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{p}: not an lrlab results.json ({e})") from e
    doc["_label"] = Path(d).resolve().name or str(d)
    return doc


def _final_acc(ts: Sequence[dict[str, Any]]) -> tuple[float, float, int]:
    v = np.array([t["final"].get("test_acc") for t in ts if t["final"].get("test_acc") is not None], dtype=float)
    v = v[np.isfinite(v)] * 100
    if not v.size:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def compare_page(dir_a: str | Path, dir_b: str | Path) -> str:
    """Two studies side by side (from each directory's ``results.json``): final test accuracy per
    cell (mean ± sd over the final seeds, and B - A) and, per optimizer in both, one panel per
    schedule with both studies' mean validation curves."""
    from plotly.subplots import make_subplots

    a, b = _load(dir_a), _load(dir_b)
    la, lb = a["_label"], b["_label"]
    if la == lb:
        la, lb = f"A: {la}", f"B: {lb}"
    fa, fb = _finals(a["_trials"]), _finals(b["_trials"])
    scheds = list(dict.fromkeys([t["schedule"] for t in fa] + [t["schedule"] for t in fb]))
    opts = list(dict.fromkeys([t["optimizer"] for t in fa] + [t["optimizer"] for t in fb]))
    ca, cb = _cells(fa, scheds, opts), _cells(fb, scheds, opts)

    def pm(m: float, s: float, n: int) -> str:
        return "-" if not n else f"{m:.1f}±{s:.1f} ({n})"

    rows = []
    for o in opts:
        for s in scheds:
            (ma, sa, na), (mb, sb, nb) = _final_acc(ca[(s, o)]), _final_acc(cb[(s, o)])
            if na or nb:
                rows.append([o, s, pm(ma, sa, na), pm(mb, sb, nb), f"{mb - ma:+.1f}" if na and nb else "-"])
    table = {"title": "Final test accuracy %", "header": ["optim", "schedule", la, lb, "B - A (points)"],
             "left": 2, "rows": rows,
             "caption": "mean±sd over each study's final seeds (number of seeds); the studies may differ in "
                        "task, epochs and seeds: see each one's provenance below."}
    figures = []
    for o in opts:
        names = [s for s in scheds if ca[(s, o)] or cb[(s, o)]]
        if not names:
            continue
        cols = min(4, len(names))
        nrows = math.ceil(len(names) / cols)
        fig = make_subplots(rows=nrows, cols=cols, subplot_titles=names, shared_yaxes=True, shared_xaxes=True,
                            horizontal_spacing=0.03, vertical_spacing=0.12 if nrows > 1 else 0.1)
        means = []
        for i, s in enumerate(names):
            r, c = i // cols + 1, i % cols + 1
            for label, cells, color in ((la, ca, "#1f77b4"), (lb, cb, "#ff7f0e")):
                if not cells[(s, o)]:
                    continue
                x, m = _mean_curve(cells[(s, o)], "val_acc")
                means.append(m)
                fig.add_scatter(x=x, y=m, mode="lines", name=label, legendgroup=label, showlegend=i == 0,
                                line={"color": color, "width": 2}, row=r, col=c,
                                hovertemplate=f"{label}: {s}<br>epoch %{{x}}: %{{y:.2f}}%<extra></extra>")
        rng = _zoom(means)
        if rng:
            fig.update_yaxes(range=rng)
        fig.update_yaxes(title_text="val acc %", col=1)
        fig.update_layout(height=260 * nrows + 90, template="plotly_white",
                          margin={"t": 60, "b": 40, "l": 60, "r": 20}, legend={"orientation": "h", "y": 1.08})
        figures.append({"id": f"compare-{o}", "title": f"Validation accuracy, {o}: {la} vs {lb}",
                        "note": "Mean over each study's final seeds; click a study in the legend to toggle it.",
                        "html": _div(fig, f"compare-{o}-fig")})
    meta = {f"{la}: {k}": v for k, v in (a.get("meta") or {}).items()}
    meta.update({f"{lb}: {k}": v for k, v in (b.get("meta") or {}).items()})
    return _render(title=f"lrlab study compare: {la} vs {lb}", intro=f"A = {Path(dir_a)}, B = {Path(dir_b)}.",
                   tables=[table], figures=figures, meta=meta)


def write_compare(dir_a: str | Path, dir_b: str | Path, out: str | Path) -> Path:
    """:func:`compare_page` written to ``out`` (a file path); returns it."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(compare_page(dir_a, dir_b), encoding="utf-8")
    return path
