"""The study report: a terminal table, a self-contained HTML page, PNG plots, CSV and JSON.

Files written into the output directory by :func:`write_report`:

* ``report.html``: opens offline (every image inlined as base64 PNG, no scripts, no CDN): the
  results table, the verdict on the seeds' claim, the lr curve of every schedule, train/test
  loss and accuracy curves per optimizer (mean over seeds with a +-1 sd band), the final
  accuracy of every seed, and the full config;
* ``lr_curves.png``, ``curves_<optimizer>.png``, ``final_acc.png``: the same plots;
* ``summary.csv`` (one row per schedule x optimizer), ``trials.csv`` (one row per trial),
  ``curves.csv`` (one row per trial and epoch), ``results.json`` (all of it plus the config).

The terminal table (:func:`results_table`) extends the seeds' Table 1.1: final test accuracy and
loss as mean +- sd over seeds, the best-epoch accuracy, the paired difference from the constant
schedule of the same optimizer with its 95 % interval and p-value, and a ``*`` where that
difference is significant (paired t-test, p < 0.05; weak with 3 seeds: see :mod:`lrlab.study.stats`).
"""

from __future__ import annotations

import base64
import csv
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
    OptimizerEffect,
    claim_verdict,
    curve_band,
)
from lrlab.study.storage import CURVE_FIELDS, TrialRecord, dumps_json

__all__ = ["effect_lines", "results_table", "write_report"]

SIGNIFICANCE_NOTE = (
    "* = differs from constant (same optimizer) beyond seed noise: paired t-test over seeds, p < 0.05. "
    "With 3 seeds this is weak evidence: the t-test has 2 degrees of freedom (needs |t| > 4.30) and "
    "an exact sign-flip test cannot go below p = 0.25; treat unmarked differences as unresolved, not as zero."
)


def _pm(mean: float, sd: float, scale: float = 1.0, digits: int = 1, sep: str = " ± ") -> str:
    if not math.isfinite(mean):
        return "-"
    s = f"{mean * scale:.{digits}f}"
    return s + (f"{sep}{sd * scale:.{digits}f}" if math.isfinite(sd) else "")


def _delta(c: CellSummary) -> tuple[str, str, str]:
    comp = c.vs_baseline
    if comp is None:
        return ("baseline" if c.schedule == BASELINE else "-"), "", ""
    if comp.n == 0 or not math.isfinite(comp.mean):
        return "-", "", ""
    d = f"{comp.mean:+.1f}"
    if math.isfinite(comp.ci[0]):
        d += f"±{(comp.ci[1] - comp.ci[0]) / 2:.1f}"
    p = f"{comp.p_t:.3f}" if math.isfinite(comp.p_t) else "-"
    return d, p, "*" if c.significant() else ""


def table_rows(summaries: Sequence[CellSummary]) -> list[dict[str, str]]:
    """The table's cells as strings (shared by the terminal, HTML and tests)."""
    rows = []
    for c in summaries:
        d, p, mark = _delta(c)
        note = f"{c.diverged}/{c.n} diverged" if c.diverged else ""
        rows.append({
            "optimizer": c.optimizer,
            "schedule": c.schedule,
            "test_acc": _pm(c.acc_mean, c.acc_sd, sep="±"),
            "test_loss": _pm(c.loss_mean, c.loss_sd, digits=3, sep="±"),
            "best_acc": _pm(c.best_acc_mean, math.nan),
            "delta": d,
            "p": p,
            "sig": mark,
            "seeds": str(c.n),
            "note": note,
        })
    return rows


_COLUMNS = [
    ("optimizer", "optim"),
    ("schedule", "schedule"),
    ("test_acc", "acc %"),
    ("test_loss", "loss"),
    ("best_acc", "best %"),
    ("delta", "Δ vs const"),
    ("p", "p"),
    ("sig", ""),
    ("note", "note"),
]


def results_table(summaries: Sequence[CellSummary], title: str | None = None) -> Any:
    """A ``rich.table.Table`` of the results (best mean accuracy per optimizer in bold)."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                  caption="acc %, loss: final test accuracy and loss, mean±sd over seeds; best %: validation accuracy "
                          "at the best epoch (mean); Δ vs const: paired difference from constant, points ± 95% CI half-width; "
                          "p: paired t-test, * p < 0.05",
                  caption_justify="left")
    any_note = any(c.diverged for c in summaries)
    columns = [(k, lbl) for k, lbl in _COLUMNS if k != "sig" and (k != "note" or any_note)]
    rows = table_rows(summaries)
    for key, label in columns:
        width = max([len(label)] + [len(r[key]) + (2 if key == "p" else 0) for r in rows])
        table.add_column(label, justify="left" if key in ("optimizer", "schedule", "note") else "right",
                         no_wrap=key != "note", min_width=None if key == "note" else width)
    best: dict[str, float] = {}
    for c in summaries:
        if math.isfinite(c.acc_mean) and c.acc_mean > best.get(c.optimizer, -math.inf):
            best[c.optimizer] = c.acc_mean
    prev = None
    for c, row in zip(summaries, rows):
        if prev is not None and c.optimizer != prev:
            table.add_section()
        prev = c.optimizer
        style = "bold" if math.isfinite(c.acc_mean) and c.acc_mean == best.get(c.optimizer) else None
        cells = [row[k] + (" *" if k == "p" and row["sig"] else "  " if k == "p" else "") for k, _ in columns]
        if c.diverged:
            cells[-1] = f"[red]{cells[-1]}[/red]"
        table.add_row(*cells, style=style)
    return table


def effect_lines(effects: Sequence[OptimizerEffect]) -> list[str]:
    """One line per optimizer on how much the schedule matters, then the verdict on the claim."""
    lines = []
    for e in effects:
        best = "-"
        if e.best is not None and e.best_schedule is not None and math.isfinite(e.best.mean):
            ci = f" [{e.best.ci[0]:+.1f}, {e.best.ci[1]:+.1f}]" if math.isfinite(e.best.ci[0]) else ""
            best = f"{e.best_schedule} {e.best.mean:+.1f}{ci}"
        avg = f"{e.average_mean:+.1f}" + (f" ± {e.average_se:.1f} s.e." if math.isfinite(e.average_se) else "")
        lines.append(
            f"{e.optimizer}: constant {_pm(e.baseline_acc, e.baseline_sd)} %; best schedule {best} points; "
            f"average schedule {avg} points; spread best-worst {e.spread:.1f} points"
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
    """Training (running mean) and validation loss and accuracy over epochs for one optimizer: mean over seeds, +-1 sd band."""
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


def plot_final_accuracy(records: Sequence[TrialRecord], summaries: Sequence[CellSummary]) -> bytes:
    """Final test accuracy of every seed (dots) with the mean +- sd (bar) per cell."""
    import matplotlib

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
            pts = [r.final.get("test_acc", math.nan) * 100 for r in records
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
        ax.set_xlabel("final test accuracy %", fontsize=8)
        ax.set_title(opt, fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle("Final test accuracy per seed (dots), mean ± sd (squares); green / red: significantly better / "
                 "worse than constant (paired t-test, p < 0.05)", fontsize=10)
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


def _summary_dict(c: CellSummary) -> dict[str, Any]:
    comp = c.vs_baseline
    return {
        "schedule": c.schedule, "optimizer": c.optimizer, "seeds": c.n, "diverged": c.diverged,
        "test_acc_mean": c.acc_mean, "test_acc_sd": c.acc_sd, "test_loss_mean": c.loss_mean,
        "test_loss_sd": c.loss_sd, "best_epoch_acc_mean": c.best_acc_mean,
        "delta_vs_constant": None if comp is None else comp.mean,
        "delta_ci_low": None if comp is None else comp.ci[0],
        "delta_ci_high": None if comp is None else comp.ci[1],
        "p_paired_t": None if comp is None else comp.p_t,
        "p_sign_flip": None if comp is None else comp.p_sign,
        "pairs": None if comp is None else comp.n,
        "significant": c.significant(),
    }


def _trial_dict(r: TrialRecord) -> dict[str, Any]:
    return {
        "trial_id": r.trial_id, "key": r.key, "schedule": r.schedule_name, "schedule_text": r.schedule_text,
        "optimizer": r.optimizer, "optimizer_kwargs": r.optimizer_kwargs, "seed": r.seed, "peak_lr": r.peak_lr,
        "epochs": r.epochs, "status": r.status, "diverged_epoch": r.diverged_epoch, "seconds": r.seconds,
        "final": r.final, "curves": {k: r.curves[k].tolist() for k in CURVE_FIELDS},
        "schedule_config": r.schedule_config,
    }


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
) -> dict[str, Path]:
    """Write the HTML report, PNGs, CSVs and JSON into ``out``; returns ``{kind: path}``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    opts = list(dict.fromkeys(c.optimizer for c in summaries))
    images: list[tuple[str, str, bytes]] = []
    images.append(("lr_curves.png", "Learning-rate schedules", plot_lr_curves(records, schedules, steps_per_epoch)))
    images.append(("final_acc.png", "Final test accuracy per seed", plot_final_accuracy(records, summaries)))
    for o in opts:
        images.append((f"curves_{o}.png", f"Training curves: {o}", plot_training_curves(records, schedules, o)))
    for name, _, png in images:
        (out / name).write_bytes(png)
        paths[name] = out / name

    _write_csv(out / "summary.csv", list(_summary_dict(summaries[0]).keys()) if summaries else [],
               [list(_summary_dict(c).values()) for c in summaries])
    trial_header = ["trial_id", "schedule", "optimizer", "seed", "peak_lr", "status", "diverged_epoch",
                    "test_acc", "test_loss", "train_acc", "train_loss", "best_val_acc", "seconds", "schedule_text"]
    trial_rows = []
    curve_rows = []
    for r in records:
        best = float(np.nanmax(r.curves["val_acc"])) if np.isfinite(r.curves["val_acc"]).any() else math.nan
        trial_rows.append([
            r.trial_id, r.schedule_name, r.optimizer, r.seed, r.peak_lr, r.status, r.diverged_epoch,
            r.final.get("test_acc", math.nan), r.final.get("test_loss", math.nan),
            r.final.get("train_acc", math.nan), r.final.get("train_loss", math.nan), best, r.seconds,
            r.schedule_text,
        ])
        for i in range(len(r.curves["epoch"])):
            curve_rows.append([r.trial_id, r.schedule_name, r.optimizer, r.seed,
                               *[float(r.curves[k][i]) for k in CURVE_FIELDS]])
    _write_csv(out / "trials.csv", trial_header, trial_rows)
    _write_csv(out / "curves.csv", ["trial_id", "schedule", "optimizer", "seed", *CURVE_FIELDS], curve_rows)
    lines = effect_lines(effects)
    results = {
        "title": title,
        "meta": dict(meta or {}),
        "config": dict(config),
        "summary": [_summary_dict(c) for c in summaries],
        "effects": [
            {"optimizer": e.optimizer, "baseline_acc": e.baseline_acc, "baseline_sd": e.baseline_sd,
             "best_schedule": e.best_schedule, "best_gain": None if e.best is None else e.best.mean,
             "best_gain_ci": None if e.best is None else list(e.best.ci),
             "average_effect": e.average_mean, "average_effect_se": e.average_se, "spread": e.spread}
            for e in effects
        ],
        "claim": lines[-1] if lines and lines[-1].startswith("Claim") else None,
        "trials": [_trial_dict(r) for r in records],
    }
    (out / "results.json").write_text(dumps_json(results), encoding="utf-8")
    for name in ("summary.csv", "trials.csv", "curves.csv", "results.json"):
        paths[name] = out / name
    page = _html(title, summaries, lines, images, config, meta or {}, records)
    (out / "report.html").write_text(page, encoding="utf-8")
    paths["report.html"] = out / "report.html"
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
) -> str:
    e = html.escape
    best: dict[str, float] = {}
    for c in summaries:
        if math.isfinite(c.acc_mean) and c.acc_mean > best.get(c.optimizer, -math.inf):
            best[c.optimizer] = c.acc_mean
    head = "".join(f'<th class="{"l" if k in ("optimizer", "schedule", "note") else ""}">{e(lbl)}</th>'
                   for k, lbl in _COLUMNS)
    body = []
    prev = None
    for c, row in zip(summaries, table_rows(summaries)):
        cls = []
        if math.isfinite(c.acc_mean) and c.acc_mean == best.get(c.optimizer):
            cls.append("best")
        if prev is not None and c.optimizer != prev:
            cls.append("sep")
        prev = c.optimizer
        tds = []
        for k, _ in _COLUMNS:
            klass = "l" if k in ("optimizer", "schedule", "note") else ""
            if k == "sig" and row[k]:
                klass += " sig"
            if k == "note" and row[k]:
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
<p class="note">Accuracies in %, mean ± sd over seeds; best-epoch acc: the highest test accuracy over epochs (mean over seeds);
Δ vs const: paired difference from the constant schedule of the same optimizer, in points, ± the half-width of its 95 % t interval; p: paired t-test. Bold: best mean per optimizer.
{e(SIGNIFICANCE_NOTE)}</p>
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
