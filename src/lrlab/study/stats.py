"""Statistics of a study: lr selection, mean +- std over seeds, paired comparisons with constant.

**Selection** (:func:`select_lr`) sees validation numbers only: each cell's peak lr is the grid
point with the highest final-epoch validation accuracy, mean over the tuning seeds (a diverged
seed counts as 0); equal means go to the smaller lr. A choice at the smallest or largest grid
point is flagged (``at_edge``): the optimum may lie outside the grid. A study that declares
another ``metric`` (a training function reporting ``val_mse``, say) selects on it in its
``direction`` and compares the final runs on its test counterpart (``test_mse``), in the metric's
own unit (:func:`metric_scale`).

**Final numbers**: every (schedule, optimizer) cell has one final test accuracy per final seed. A schedule is compared
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

**Multiple comparisons**: a study makes one comparison per non-constant cell (22 in the default
study), so some would reach ``p < 0.05`` by chance alone. The p-values of all of them are
adjusted together with Holm's step-down method (:func:`holm`), which controls the family-wise
error rate at ``alpha`` under any dependence: sort the ``m`` p-values, ``p_(1) <= ... <= p_(m)``,
then ``p_holm_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))``. A cell is marked significant when
``p_holm < alpha`` (default 0.05) on at least 3 pairs; both p-values are reported.

**How many seeds would resolve it** (:func:`seeds_to_resolve`), for an unresolved comparison of
``k`` pairs: the smallest ``n > k`` (and ``n >= 2``) at which a two-sided paired t-test at level ``alpha = 0.05`` has 80 %
power against the observed effect, assuming the observed mean ``m`` and sd ``s`` of the paired
differences are the truth: power(n) = ``P(|T| > t_{1-alpha/2, n-1})`` with ``T`` noncentral t
(``n - 1`` df, noncentrality ``sqrt(n) |m| / s``). It is a rough planning number (per comparison,
before the Holm correction; the observed effect of a few seeds is itself noisy).

**Time to target** (:func:`epochs_to_target`): the first epoch at which the cell's validation
accuracy (mean curve over its final seeds) reaches 99 % of the constant baseline's final
validation accuracy (same optimizer, mean over seeds); ``None`` ("never") if it does not.

Accuracies are in percentage points in :class:`CellSummary`.

>>> comp = paired_comparison([0.90, 0.92, 0.91], [0.88, 0.905, 0.895])
>>> round(comp.mean, 4), comp.n, round(comp.t, 6), round(comp.p_sign, 3)
(1.6667, 3, 10.0, 0.25)
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lrlab.study.storage import TrialRecord

__all__ = [
    "CellSummary",
    "Comparison",
    "LrSelection",
    "OptimizerEffect",
    "curve_band",
    "epochs_to_target",
    "holm",
    "optimizer_effects",
    "paired_comparison",
    "seeds_to_resolve",
    "select_lr",
    "summarize",
]

BASELINE = "constant"
TARGET_FRACTION = 0.99
"""Time to target: the fraction of the baseline's final validation accuracy to reach."""
SGD_FAMILY = ("sgd", "sgd_schedulefree")
ADAPTIVE = ("adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamw_schedulefree", "prodigy")


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``pvalues`` (same order; NaN stays NaN, not counted in m).

    >>> holm([0.01, 0.04, 0.03, 0.005])
    [0.03, 0.06, 0.06, 0.02]
    """
    p = [float(x) for x in pvalues]
    idx = sorted((i for i, x in enumerate(p) if math.isfinite(x)), key=lambda i: p[i])
    m = len(idx)
    out = [math.nan] * len(p)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = round(running, 15)
    return out


def seeds_to_resolve(mean: float, sd: float, *, alpha: float = 0.05, power: float = 0.8,
                     max_n: int = 1000, min_n: int = 2) -> int | None:
    """Seeds a paired two-sided t-test needs for ``power`` against the effect ``mean`` with
    paired sd ``sd`` (see the module docstring). ``None`` when there is no effect to detect
    (``mean == 0``, non-finite inputs); ``max_n + 1`` when even ``max_n`` seeds are not enough.
    The search starts at ``min_n`` (an unresolved comparison asks for more seeds than it has).

    >>> seeds_to_resolve(1.0, 1.0), seeds_to_resolve(0.5, 1.0)
    (10, 34)
    """
    from scipy import stats as st

    if not (math.isfinite(mean) and math.isfinite(sd)) or mean == 0 or sd < 0:
        return None
    min_n = max(2, min_n)
    if sd == 0:
        return min_n
    delta = abs(mean) / sd
    for n in range(min_n, max_n + 1):
        q = float(st.t.ppf(1 - alpha / 2, n - 1))
        nc = delta * math.sqrt(n)
        pw = float(st.nct.sf(q, n - 1, nc) + st.nct.cdf(-q, n - 1, nc))
        if pw >= power:
            return n
    return max_n + 1


def epochs_to_target(epochs: np.ndarray, curve: np.ndarray, target: float) -> int | None:
    """Epochs trained until ``curve`` first reaches ``target`` (``epochs`` are 0-based epoch
    indices, so the answer is ``epoch + 1``); ``None`` if it never does.

    >>> epochs_to_target(np.arange(4), np.array([0.5, 0.8, 0.95, 0.9]), 0.9)
    3
    """
    if not math.isfinite(target):
        return None
    hit = np.flatnonzero(np.nan_to_num(np.asarray(curve, dtype=np.float64), nan=-math.inf) >= target)
    return int(epochs[hit[0]]) + 1 if hit.size else None


@dataclass(frozen=True)
class LrSelection:
    """The tuning of one (schedule, optimizer) cell.

    ``grid``: the absolute peak lrs tried (ascending); ``scores``: mean final validation accuracy
    over the tuning seeds per grid point (fraction; a diverged seed counts as 0); ``diverged``:
    diverged tuning runs per grid point, out of ``runs``; ``chosen``: the selected lr (``None`` when every run
    of every grid point diverged); ``at_edge``: the choice is the smallest or largest grid point
    of a grid with more than one point.
    """

    schedule: str
    optimizer: str
    grid: tuple[float, ...]
    scores: tuple[float, ...]
    diverged: tuple[int, ...]
    chosen: float | None
    runs: tuple[int, ...] = ()

    @property
    def at_edge(self) -> bool:
        return self.chosen is not None and len(self.grid) > 1 and self.chosen in (self.grid[0], self.grid[-1])

    @property
    def all_diverged(self) -> bool:
        return self.chosen is None


def select_lr(schedule: str, optimizer: str, runs: Mapping[float, Sequence[tuple[float, bool]]], *,
              maximize: bool = True) -> LrSelection:
    """Pick the peak lr of one cell from its tuning runs: ``{lr: [(final val_acc, diverged), ...]}``.

    The highest mean validation accuracy wins (a diverged run counts 0); equal means go to the
    smaller lr; ``chosen`` is ``None`` when every run diverged.

    ``maximize=False`` (a loss-like metric, e.g. ``val_mse``): a metric has no worst value to
    count a diverged run as, so the score is the mean over the runs that finished, and a grid
    point where any run diverged ranks after every grid point where none did; then the lowest
    score wins (ties: the smaller lr).

    >>> sel = select_lr("linear", "sgd", {0.1: [(0.9, False)], 0.2: [(0.9, False)], 0.4: [(0.0, True)]})
    >>> sel.chosen, sel.at_edge
    (0.1, True)
    >>> select_lr("linear", "sgd", {0.1: [(0.5, False)], 0.2: [(0.2, False)], 0.4: [(0.1, False), (0, True)]},
    ...           maximize=False).chosen
    0.2
    """
    grid = tuple(sorted(runs))
    scores, div = [], []
    for lr in grid:
        bad = [d or not math.isfinite(v) for v, d in runs[lr]]
        if maximize:
            vals = [0.0 if b else float(v) for (v, _), b in zip(runs[lr], bad)]
        else:
            vals = [float(v) for (v, _), b in zip(runs[lr], bad) if not b]
        scores.append(float(np.mean(vals)) if vals else math.nan)
        div.append(sum(bad))
    chosen = None
    best: tuple[float, ...] = (math.inf, math.inf)
    for lr, sc, dv, n in zip(grid, scores, div, (len(runs[lr]) for lr in grid)):
        if dv == n or not math.isfinite(sc):
            continue
        rank = (-sc,) if maximize else (float(dv > 0), sc)
        if rank < best:  # strict: an equal score later in the (ascending) grid does not displace it
            best, chosen = rank, lr
    return LrSelection(schedule, optimizer, grid, tuple(scores), tuple(div), chosen,
                       tuple(len(runs[lr]) for lr in grid))


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of per-seed accuracies (schedule minus baseline), in points.

    ``mean``/``sd``: mean and sample standard deviation of the differences; ``ci``: 95 % t
    interval of the mean; ``t``/``p_t``: paired t-test (two-sided); ``p_sign``: exact sign-flip
    test (two-sided); ``n``: number of pairs; ``p_holm``: ``p_t`` after Holm's adjustment over
    all comparisons of the study (equal to ``p_t`` until :func:`summarize` adjusts it).
    """

    n: int
    mean: float
    sd: float
    ci: tuple[float, float]
    t: float
    p_t: float
    p_sign: float
    p_holm: float = math.nan

    def significant(self, alpha: float = 0.05) -> bool:
        p = self.p_holm if math.isfinite(self.p_holm) else self.p_t
        return self.n >= 3 and math.isfinite(p) and p < alpha

    def seeds_needed(self, alpha: float = 0.05) -> int | None:
        """Seeds that would resolve this comparison (None when it is resolved or shows no effect)."""
        if self.significant(alpha) or self.n < 2:
            return None
        return seeds_to_resolve(self.mean, self.sd, alpha=alpha, min_n=self.n + 1)


def paired_comparison(a: Sequence[float], b: Sequence[float], scale: float = 100.0) -> Comparison:
    """Compare ``a`` with ``b`` pairwise (fractions in [0, 1]); results in percentage points
    (``scale``: the factor to the reported unit, 1 for a metric that is not a fraction).

    Pairs where either side is NaN (a diverged seed) are dropped. With fewer than 2 pairs the
    spread, interval and p-values are NaN.
    """
    from scipy import stats as st

    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    x = np.asarray(a, dtype=np.float64) * scale
    y = np.asarray(b, dtype=np.float64) * scale
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
    return Comparison(n, mean, sd, (mean - q * se, mean + q * se), t, p_t, hits / 2**n, p_t)


@dataclass(frozen=True)
class CellSummary:
    """One (schedule, optimizer) cell over its final seeds; accuracies in percentage points.

    ``acc``/``loss``: final test accuracy / loss (mean, sd over finished seeds); ``val_acc``:
    final validation accuracy; ``best_val_acc``/``best_epoch``: the best validation accuracy
    over epochs and the epoch (1-based) it occurred at, means over seeds (what early stopping on
    validation could keep); ``n``: seeds run; ``diverged``: seeds that diverged;
    ``vs_baseline``: the paired comparison of test accuracy with the constant schedule of the
    same optimizer (``None`` for the baseline itself or when there is no baseline);
    ``epochs_to_target``: see :func:`epochs_to_target` (``None``: never); ``peak_lr``: the lr
    the final seeds ran at (``None``: tuning found none, every grid point diverged);
    ``selection``: the tuning of this cell (``None`` without tuning).
    """

    schedule: str
    optimizer: str
    n: int
    diverged: int
    acc_mean: float
    acc_sd: float
    loss_mean: float
    loss_sd: float
    best_val_acc_mean: float
    vs_baseline: Comparison | None
    val_acc_mean: float = math.nan
    val_acc_sd: float = math.nan
    best_epoch_mean: float = math.nan
    epochs_to_target: int | None = None
    target: float = math.nan
    peak_lr: float | None = None
    selection: LrSelection | None = None
    failed: int = 0

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
    selections: Mapping[tuple[str, str], LrSelection] | None = None,
    metric: str = "val_acc",
) -> list[CellSummary]:
    """One :class:`CellSummary` per (optimizer, schedule), in the given orders (default: first seen).

    ``metric``: the study's validation metric; the ``val_acc``/``acc`` fields then hold it and
    its test counterpart (``val_mse`` -> ``test_mse``), in percent only for an ``*_acc`` metric
    (:func:`metric_scale`); time to target is defined for accuracy only.

    ``records`` are the final runs (tuning runs are ignored); ``selections`` the tuning per
    ``(schedule, optimizer)``: a cell whose tuning diverged everywhere has no final runs and is
    listed with ``n == 0``. The p-values of every comparison are Holm-adjusted together.
    """
    records = [r for r in records if r.role != "tune"]
    test_key, scale = "test_" + metric.removeprefix("val_"), metric_scale(metric)
    sel = dict(selections or {})
    cells = _by_cell(records)
    scheds = list(schedules) if schedules is not None else list(dict.fromkeys(r.schedule_name for r in records))
    opts = list(optimizers) if optimizers is not None else list(dict.fromkeys(r.optimizer for r in records))
    out = []
    for o in opts:
        base = cells.get((baseline, o), {})
        target = math.nan
        if base and metric == "val_acc":
            base_val = _mean_sd(np.array([_final(base[k], "val_acc") for k in sorted(base)]))[0]
            target = TARGET_FRACTION * base_val
        for s in scheds:
            cell = cells.get((s, o), {})
            chosen = sel.get((s, o))
            if not cell:
                if chosen is not None:
                    out.append(CellSummary(s, o, 0, 0, math.nan, math.nan, math.nan, math.nan, math.nan, None,
                                           target=target * 100.0, selection=chosen))
                continue
            seeds = sorted(cell)
            recs = [cell[k] for k in seeds]
            acc = np.array([_final(r, test_key) for r in recs]) * scale
            val = np.array([_final(r, metric) for r in recs]) * scale
            loss = np.array([_final(r, "test_loss") for r in recs])
            best = np.array([_best(r)[0] * 100.0 for r in recs])
            best_ep = np.array([_best(r)[1] for r in recs])
            comp = None
            if s != baseline and base:
                common = [k for k in seeds if k in base]
                comp = paired_comparison(
                    [_final(cell[k], test_key) for k in common],
                    [_final(base[k], test_key) for k in common], scale,
                )
            ep, mean_curve, _ = curve_band(recs, "val_acc")
            am, asd = _mean_sd(acc)
            vm, vsd = _mean_sd(val)
            lm, lsd = _mean_sd(loss)
            bm, _ = _mean_sd(best)
            em, _ = _mean_sd(best_ep)
            out.append(CellSummary(
                s, o, len(seeds), sum(r.diverged for r in recs), am, asd, lm, lsd, bm, comp,
                val_acc_mean=vm, val_acc_sd=vsd, best_epoch_mean=em,
                epochs_to_target=epochs_to_target(ep, mean_curve, target), target=target * 100.0,
                peak_lr=float(recs[0].peak_lr), selection=chosen,
                failed=sum(r.status == "failed" for r in recs),
            ))
    return _with_holm(out)


def metric_scale(metric: str) -> float:
    """100 for an accuracy (``*_acc``: reported in percent), else 1 (the metric's own unit)."""
    return 100.0 if metric.endswith("_acc") else 1.0


def _best(r: TrialRecord) -> tuple[float, float]:
    """(best validation accuracy, 1-based epoch of it) of one run; NaN when it has none."""
    v = r.curves["val_acc"]
    if not np.isfinite(v).any():
        return math.nan, math.nan
    i = int(np.nanargmax(v))
    return float(v[i]), float(r.curves["epoch"][i]) + 1.0


def _with_holm(cells: list[CellSummary]) -> list[CellSummary]:
    idx = [i for i, c in enumerate(cells) if c.vs_baseline is not None]
    adj = holm([cells[i].vs_baseline.p_t for i in idx])  # type: ignore[union-attr]
    out = list(cells)
    for i, ph in zip(idx, adj):
        comp = dataclasses.replace(cells[i].vs_baseline, p_holm=ph)  # type: ignore[type-var]
        out[i] = dataclasses.replace(cells[i], vs_baseline=comp)
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
    records: Sequence[TrialRecord], summaries: Sequence[CellSummary], baseline: str = BASELINE,
    metric: str = "val_acc", maximize: bool = True,
) -> list[OptimizerEffect]:
    """One :class:`OptimizerEffect` per optimizer that has a baseline cell (final runs only);
    ``metric``/``maximize``: as for :func:`summarize` (the best schedule is the lowest mean when
    minimizing)."""
    test_key, scale = "test_" + metric.removeprefix("val_"), metric_scale(metric)
    cells = _by_cell([r for r in records if r.role != "tune"])
    out = []
    for o in dict.fromkeys(c.optimizer for c in summaries):
        base_cell = next((c for c in summaries if c.optimizer == o and c.schedule == baseline), None)
        if base_cell is None:
            continue
        others = [c for c in summaries if c.optimizer == o and c.schedule != baseline and math.isfinite(c.acc_mean)]
        everyone = [c for c in summaries if c.optimizer == o and math.isfinite(c.acc_mean)]
        best = (max if maximize else min)(others, key=lambda c: c.acc_mean, default=None)
        spread = (max(c.acc_mean for c in everyone) - min(c.acc_mean for c in everyone)) if everyone else math.nan
        # per seed: the average over schedules of (schedule - constant)
        base = cells.get((baseline, o), {})
        per_seed = []
        for seed, rb in base.items():
            b = _final(rb, test_key)
            diffs = [
                _final(cells[(c.schedule, o)][seed], test_key) - b
                for c in others
                if seed in cells.get((c.schedule, o), {})
            ]
            diffs = [x for x in diffs if math.isfinite(x)]
            if diffs and math.isfinite(b):
                per_seed.append(scale * float(np.mean(diffs)))
        avg = float(np.mean(per_seed)) if per_seed else math.nan
        se = float(np.std(per_seed, ddof=1) / math.sqrt(len(per_seed))) if len(per_seed) > 1 else math.nan
        out.append(OptimizerEffect(
            o, base_cell.acc_mean, base_cell.acc_sd,
            best.schedule if best else None, best.vs_baseline if best else None,
            avg, se, spread,
        ))
    return out


def claim_verdict(effects: Sequence[OptimizerEffect]) -> str | None:
    """The seeds' claim "schedules help SGD more than adaptive optimizers", in plain words.

    Only when the study has an SGD-family optimizer (:data:`SGD_FAMILY`) and an adaptive one
    (:data:`ADAPTIVE`); the first of each in the study's order are compared. The average schedule
    effect (mean over non-constant schedules of the per-seed difference from constant) of the two
    is compared, paired per seed within each optimizer and independent between them: "yes" when
    the SGD effect exceeds the adaptive one by more than twice the standard error of the
    difference, "no, the opposite" when it is below by more than twice, otherwise "cannot tell".
    """
    e = {x.optimizer: x for x in effects}
    sgd = next((o for o in e if o in SGD_FAMILY), None)
    adaptive = next((o for o in e if o in ADAPTIVE), None)
    if sgd is None or adaptive is None:
        return None
    a, b = e[sgd], e[adaptive]
    diff = a.average_mean - b.average_mean
    se = math.sqrt(a.average_se**2 + b.average_se**2) if math.isfinite(a.average_se + b.average_se) else math.nan
    head = (
        f"Do schedules help SGD more than adaptive optimizers? On average a schedule changed final test "
        f"accuracy by {a.average_mean:+.1f} points with {sgd} and {b.average_mean:+.1f} with {adaptive} "
        f"(difference {diff:+.1f}" + (f" ± {se:.1f} s.e.)." if math.isfinite(se) else ").")
    )
    if not math.isfinite(diff):
        return head + " Cannot tell: no comparable runs."
    if not math.isfinite(se):
        return head + " Cannot tell: needs at least 2 seeds."
    if diff > 2 * se:
        return head + f" Yes, in this study: schedules helped {sgd} more."
    if diff < -2 * se:
        return head + f" No, the opposite in this study: schedules helped {adaptive} more."
    return head + " Cannot tell: the difference is within seed noise."


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
