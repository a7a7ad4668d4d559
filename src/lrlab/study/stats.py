"""Statistics of a study: mean +- std over seeds, paired comparisons with the constant-lr baseline.

Every (schedule, optimizer) cell has one final test accuracy per seed. A schedule is compared
with the constant schedule *of the same optimizer* on the same seeds (same initial weights and
data order), so the per-seed differences ``d_i = acc(schedule, seed i) - acc(constant, seed i)``
cancel most of the seed-to-seed variation. Two tests of "mean difference = 0" are reported:

* the paired t-test: ``t = mean(d) / (sd(d) / sqrt(n))`` with ``n - 1`` degrees of freedom
  (assumes the differences are roughly normal), with the 95 % interval
  ``mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n)``;
* the exact sign-flip (permutation) test: the share of the ``2**n`` sign patterns of ``d`` whose
  mean is at least as far from 0 as the observed one. It assumes only symmetry, but with ``n``
  seeds it can never go below ``2 / 2**n``: **0.25 with 3 seeds**, so 3 seeds can never be
  significant by that test, and the t-test with 2 degrees of freedom needs ``|t| > 4.30``.
  Three seeds detect only large, consistent effects; use 5-10 seeds for anything finer.

A cell is marked significant when the paired t-test gives ``p < alpha`` (default 0.05) on at
least 3 pairs. Accuracies are in percentage points in :class:`CellSummary`.

>>> comp = paired_comparison([0.90, 0.92, 0.91], [0.88, 0.905, 0.895])
>>> round(comp.mean, 4), comp.n, round(comp.t, 6), round(comp.p_sign, 3)
(1.6667, 3, 10.0, 0.25)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lrlab.study.storage import TrialRecord

__all__ = [
    "CellSummary",
    "Comparison",
    "OptimizerEffect",
    "curve_band",
    "optimizer_effects",
    "paired_comparison",
    "summarize",
]

BASELINE = "constant"


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of per-seed accuracies (schedule minus baseline), in points.

    ``mean``/``sd``: mean and sample standard deviation of the differences; ``ci``: 95 % t
    interval of the mean; ``t``/``p_t``: paired t-test (two-sided); ``p_sign``: exact sign-flip
    test (two-sided); ``n``: number of pairs.
    """

    n: int
    mean: float
    sd: float
    ci: tuple[float, float]
    t: float
    p_t: float
    p_sign: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.n >= 3 and math.isfinite(self.p_t) and self.p_t < alpha


def paired_comparison(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Compare ``a`` with ``b`` pairwise (fractions in [0, 1]); results in percentage points.

    Pairs where either side is NaN (a diverged seed) are dropped. With fewer than 2 pairs the
    spread, interval and p-values are NaN.
    """
    from scipy import stats as st

    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    x = np.asarray(a, dtype=np.float64) * 100.0
    y = np.asarray(b, dtype=np.float64) * 100.0
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    n = int(d.size)
    if n == 0:
        return Comparison(0, math.nan, math.nan, (math.nan, math.nan), math.nan, math.nan, math.nan)
    mean = float(d.mean())
    if n < 2:
        return Comparison(n, mean, math.nan, (math.nan, math.nan), math.nan, math.nan, math.nan)
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    q = float(st.t.ppf(0.975, n - 1))
    if se > 1e-12 * max(1.0, abs(mean)):
        t = mean / se
        p_t = float(2.0 * st.t.sf(abs(t), n - 1))
    else:  # identical differences: no spread to test against
        t = math.copysign(math.inf, mean) if mean != 0 else 0.0
        p_t = 0.0 if mean != 0 else 1.0
    obs = abs(d.sum())
    hits = sum(
        1 for signs in itertools.product((1.0, -1.0), repeat=n) if abs(float(np.dot(signs, d))) >= obs - 1e-9
    )
    return Comparison(n, mean, sd, (mean - q * se, mean + q * se), t, p_t, hits / 2**n)


@dataclass(frozen=True)
class CellSummary:
    """One (schedule, optimizer) cell over its seeds; accuracies in percentage points.

    ``acc``/``loss``: final test accuracy / loss (mean, sd over finished seeds); ``best_acc``:
    the best validation accuracy over epochs, mean over seeds (what early stopping on
    validation would see);
    ``n``: seeds run; ``diverged``: seeds that diverged; ``vs_baseline``: the paired comparison
    with the constant schedule of the same optimizer (``None`` for the baseline itself or when
    there is no baseline).
    """

    schedule: str
    optimizer: str
    n: int
    diverged: int
    acc_mean: float
    acc_sd: float
    loss_mean: float
    loss_sd: float
    best_acc_mean: float
    vs_baseline: Comparison | None

    def significant(self, alpha: float = 0.05) -> bool:
        return self.vs_baseline is not None and self.vs_baseline.significant(alpha)


def _final(r: TrialRecord, key: str) -> float:
    if r.diverged:
        return math.nan
    v = r.final.get(key, math.nan)
    return float(v) if v is not None else math.nan


def _mean_sd(v: np.ndarray) -> tuple[float, float]:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


def _by_cell(records: Sequence[TrialRecord]) -> dict[tuple[str, str], dict[int, TrialRecord]]:
    cells: dict[tuple[str, str], dict[int, TrialRecord]] = {}
    for r in records:
        cells.setdefault((r.schedule_name, r.optimizer), {})[r.seed] = r
    return cells


def summarize(
    records: Sequence[TrialRecord],
    schedules: Sequence[str] | None = None,
    optimizers: Sequence[str] | None = None,
    baseline: str = BASELINE,
) -> list[CellSummary]:
    """One :class:`CellSummary` per (optimizer, schedule), in the given orders (default: first seen)."""
    cells = _by_cell(records)
    scheds = list(schedules) if schedules is not None else list(dict.fromkeys(r.schedule_name for r in records))
    opts = list(optimizers) if optimizers is not None else list(dict.fromkeys(r.optimizer for r in records))
    out = []
    for o in opts:
        base = cells.get((baseline, o), {})
        for s in scheds:
            cell = cells.get((s, o), {})
            if not cell:
                continue
            seeds = sorted(cell)
            acc = np.array([_final(cell[k], "test_acc") for k in seeds]) * 100.0
            loss = np.array([_final(cell[k], "test_loss") for k in seeds])
            best = np.array([
                np.nanmax(cell[k].curves["val_acc"]) * 100.0
                if np.isfinite(cell[k].curves["val_acc"]).any() else math.nan
                for k in seeds
            ])
            comp = None
            if s != baseline and base:
                common = [k for k in seeds if k in base]
                comp = paired_comparison(
                    [_final(cell[k], "test_acc") for k in common],
                    [_final(base[k], "test_acc") for k in common],
                )
            am, asd = _mean_sd(acc)
            lm, lsd = _mean_sd(loss)
            bm, _ = _mean_sd(best)
            out.append(CellSummary(s, o, len(seeds), sum(cell[k].diverged for k in seeds), am, asd, lm, lsd, bm, comp))
    return out


@dataclass(frozen=True)
class OptimizerEffect:
    """How much the schedule matters for one optimizer (percentage points of test accuracy).

    ``baseline_sd``: seed-to-seed sd of the constant schedule (the noise scale);
    ``best``: the schedule with the highest mean accuracy and its paired comparison with constant
    (optimistic: the best of many is selected on the same seeds); ``average``: the mean over all
    non-baseline schedules of the per-seed differences, i.e. the paired effect of a typical
    schedule (``mean``, ``se``, ``n`` seeds); ``spread``: best minus worst mean accuracy.
    """

    optimizer: str
    baseline_acc: float
    baseline_sd: float
    best_schedule: str | None
    best: Comparison | None
    average_mean: float
    average_se: float
    spread: float


def optimizer_effects(
    records: Sequence[TrialRecord], summaries: Sequence[CellSummary], baseline: str = BASELINE
) -> list[OptimizerEffect]:
    """One :class:`OptimizerEffect` per optimizer that has a baseline cell."""
    cells = _by_cell(records)
    out = []
    for o in dict.fromkeys(c.optimizer for c in summaries):
        base_cell = next((c for c in summaries if c.optimizer == o and c.schedule == baseline), None)
        if base_cell is None:
            continue
        others = [c for c in summaries if c.optimizer == o and c.schedule != baseline and math.isfinite(c.acc_mean)]
        everyone = [c for c in summaries if c.optimizer == o and math.isfinite(c.acc_mean)]
        best = max(others, key=lambda c: c.acc_mean, default=None)
        spread = (max(c.acc_mean for c in everyone) - min(c.acc_mean for c in everyone)) if everyone else math.nan
        # per seed: the average over schedules of (schedule - constant)
        base = cells.get((baseline, o), {})
        per_seed = []
        for seed, rb in base.items():
            b = _final(rb, "test_acc")
            diffs = [
                _final(cells[(c.schedule, o)][seed], "test_acc") - b
                for c in others
                if seed in cells.get((c.schedule, o), {})
            ]
            diffs = [x for x in diffs if math.isfinite(x)]
            if diffs and math.isfinite(b):
                per_seed.append(100.0 * float(np.mean(diffs)))
        avg = float(np.mean(per_seed)) if per_seed else math.nan
        se = float(np.std(per_seed, ddof=1) / math.sqrt(len(per_seed))) if len(per_seed) > 1 else math.nan
        out.append(OptimizerEffect(
            o, base_cell.acc_mean, base_cell.acc_sd,
            best.schedule if best else None, best.vs_baseline if best else None,
            avg, se, spread,
        ))
    return out


def claim_verdict(effects: Sequence[OptimizerEffect], sgd: str = "sgd", adaptive: str = "adam") -> str | None:
    """One sentence on the seeds' claim "schedules help SGD more than adaptive optimizers".

    Compares the average schedule effect of ``sgd`` and ``adaptive`` (paired per seed within each
    optimizer, independent between them): supported when the difference exceeds twice its
    standard error, contradicted when it is below minus twice, otherwise unresolved.
    """
    e = {x.optimizer: x for x in effects}
    if sgd not in e or adaptive not in e:
        return None
    a, b = e[sgd], e[adaptive]
    diff = a.average_mean - b.average_mean
    se = math.sqrt(a.average_se**2 + b.average_se**2) if math.isfinite(a.average_se + b.average_se) else math.nan
    head = (
        f"Claim 'schedules help SGD more than adaptive optimizers': average schedule effect "
        f"{sgd} {a.average_mean:+.2f} vs {adaptive} {b.average_mean:+.2f} points "
        f"(difference {diff:+.2f}" + (f" ± {se:.2f} s.e.)" if math.isfinite(se) else ")")
    )
    if not math.isfinite(se):
        return head + ": not enough seeds to judge (needs at least 2)."
    if diff > 2 * se:
        return head + ": supported in this study."
    if diff < -2 * se:
        return head + ": contradicted in this study."
    return head + ": not resolved beyond seed noise."


def curve_band(records: Sequence[TrialRecord], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(epochs, mean, sd)`` of curve ``key`` over ``records`` (NaN-aware; sd 0 for one seed).

    Epochs a diverged trial did not reach count as missing.
    """
    if not records:
        raise ValueError("curve_band needs at least one record")
    epochs = np.unique(np.concatenate([r.curves["epoch"] for r in records]))
    epochs = epochs[np.isfinite(epochs)]
    col = {float(e): j for j, e in enumerate(epochs)}
    m = np.full((len(records), epochs.size), np.nan)
    for i, r in enumerate(records):
        for e, v in zip(r.curves["epoch"], r.curves[key]):
            if math.isfinite(e):
                m[i, col[float(e)]] = v
    count = np.isfinite(m).sum(axis=0)
    total = np.where(np.isfinite(m), m, 0.0).sum(axis=0)
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    dev = np.where(np.isfinite(m), m - np.where(np.isfinite(mean), mean, 0.0), 0.0)
    sd = np.where(count > 1, np.sqrt((dev**2).sum(axis=0) / np.maximum(count - 1, 1)), 0.0)
    return epochs, mean, sd
