"""Agreement across repeats: per-method median lr, spread in decades, and the confidence flag.

A range test is noisy (pain point 9: fastai#3295, Lightning#21141): the same model with another
data order can move a suggestion by a decade. lrlab repeats the sweep over a few seeds and reports,
per method, the median suggestion and its *spread*, ``log10(max lr) - log10(min lr)`` over the
repeats (in decades: 0.5 means a factor of 10**0.5 = 3.2 between the extremes).

A result is **confident** when none of these holds (each adds a line to ``notes``):

1. fewer than two repeats produced suggestions (agreement cannot be measured);
2. a repeat produced none (its sweep stopped within the skipped start);
3. the recommended method's spread exceeds ``max_spread`` (default 0.5 decades);
4. a completed sweep's smoothed loss was lowest at the last point of its window: the loss was
   still falling at ``end_lr``, so the range did not reach the rise and minimum/valley are cut off;
5. all repeats recorded identical losses: the seeds changed nothing (a data loader that does not
   shuffle, say), so their agreement says nothing.

The spread is a range, so it grows with the number of repeats (for normally scattered log lrs the
expected range is about 1.7 standard deviations for 3 repeats and 3.1 for 10): three agreeing
seeds are evidence, not proof. Measured on MNIST-1D (CNN, SGD momentum 0.9, 100 steps from 1e-7
to 10): valley's spread was 0.32 decades over seeds 0-2 but 1.05 over seeds 0-9.

**Why minimum/10 is the default recommendation**, not fastai's valley: the study uses ``lr`` as
the *peak* of a schedule. On MNIST-1D with a 40-epoch cosine decay (3 seeds per point, peak
lrs at powers of 2 times valley), the best peak was 4x valley for the CNN with SGD and Adam and
8-16x valley for the MLP, each worth 7-12 points of test accuracy over valley itself.
minimum/10 landed within 1-3x of the best peak in all four cases and was never unstable;
steepest ranged from the best to 3.4x above it (next to divergence for the CNN with SGD).
Pass ``recommend="valley"`` for fastai's choice.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lrlab.finder._suggest import METHODS, Suggestion, suggest
from lrlab.finder._sweep import Curve

__all__ = ["DEFAULT_MAX_SPREAD", "DEFAULT_RECOMMEND", "FinderResult", "MethodSummary", "aggregate"]

DEFAULT_MAX_SPREAD = 0.5
"""Largest spread (decades of lr) of the recommended suggestion across repeats for a confident result."""

DEFAULT_RECOMMEND = "minimum"
"""The suggestion behind ``FinderResult.lr``: minimum/10 (see the module docstring for why not valley)."""


@dataclasses.dataclass(frozen=True)
class MethodSummary:
    """One suggestion method over all repeats.

    Attributes:
        method: ``"steepest"``, ``"valley"`` or ``"minimum"``.
        lr: geometric median of the repeats' suggestions, ``10 ** median(log10(lrs))``.
        lrs: each repeat's suggestion (repeats that produced one, in seed order).
        spread: ``log10(max(lrs)) - log10(min(lrs))``, in decades (0 for one repeat).
    """

    method: str
    lr: float
    lrs: tuple[float, ...]
    spread: float


@dataclasses.dataclass(frozen=True)
class FinderResult:
    """What a range test found: curves, labelled suggestions with their spread, a recommended lr.

    Attributes:
        curves: one :class:`~lrlab.finder.Curve` per repeat.
        per_repeat: each repeat's ``{method: Suggestion}`` (``None`` where it produced none).
        suggestions: ``{method: MethodSummary}`` over the repeats.
        recommended: the method whose median is :attr:`lr` (``"minimum"`` by default).
        confident: ``True`` unless one of the rules in :mod:`lrlab.finder._result` fired.
        notes: one line per reason for low confidence (empty when confident).
        max_spread: the spread threshold used (decades).
        settings: the sweep's settings (range, steps, mode, seeds, optimizer, ...), JSON-ready.
    """

    curves: tuple[Curve, ...]
    per_repeat: tuple[dict[str, Suggestion] | None, ...]
    suggestions: dict[str, MethodSummary]
    recommended: str
    confident: bool
    notes: tuple[str, ...]
    max_spread: float
    settings: dict[str, Any]

    @property
    def lr(self) -> float:
        """The recommended learning rate (median of the recommended method over repeats)."""
        return self.suggestions[self.recommended].lr

    @property
    def spread(self) -> float:
        """Spread of the recommended method across repeats, in decades."""
        return self.suggestions[self.recommended].spread

    def to_dict(self, *, curves: bool = False) -> dict[str, Any]:
        """JSON-ready summary; ``curves=True`` adds every repeat's lrs and losses."""
        out: dict[str, Any] = {
            "lr": self.lr,
            "recommended": self.recommended,
            "spread": self.spread,
            "confident": self.confident,
            "max_spread": self.max_spread,
            "notes": list(self.notes),
            "suggestions": {
                m: {"lr": s.lr, "lrs": list(s.lrs), "spread": s.spread}
                for m, s in self.suggestions.items()
            },
            "repeats": [
                {
                    "seed": c.seed,
                    "stop": c.stop,
                    "steps": len(c.lrs),
                    "last_lr": float(c.lrs[-1]) if len(c.lrs) else None,
                    "suggestions": None if sug is None else {m: s.lr for m, s in sug.items()},
                }
                for c, sug in zip(self.curves, self.per_repeat)
            ],
            "settings": dict(self.settings),
        }
        if curves:
            out["curves"] = [c.to_dict() for c in self.curves]
        return out

    def plot(
        self, path: str | Path | None = None, *, ax: Any = None, title: str | None = None
    ) -> Any:
        """Loss against lr (log x), one curve per repeat, suggestions marked; see :func:`lrlab.finder.plot`."""
        from lrlab.finder._plot import plot

        return plot(self, path, ax=ax, title=title)

    def __str__(self) -> str:
        lines = [
            f"recommended lr {self.lr:.3g} ({self.recommended}, spread {self.spread:.2f} decades over "
            f"{len(self.suggestions[self.recommended].lrs)} repeats): "
            + ("confident" if self.confident else "LOW CONFIDENCE")
        ]
        for m, s in self.suggestions.items():
            each = ", ".join(f"{v:.3g}" for v in s.lrs)
            lines.append(f"  {m:<9} {s.lr:.3g}  spread {s.spread:.2f}  [{each}]")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _summary(method: str, lrs: Sequence[float]) -> MethodSummary:
    logs = np.log10(np.asarray(lrs, dtype=np.float64))
    return MethodSummary(
        method=method,
        lr=float(10.0 ** np.median(logs)),
        lrs=tuple(float(v) for v in lrs),
        spread=float(logs.max() - logs.min()),
    )


def aggregate(
    curves: Sequence[Curve],
    *,
    methods: Sequence[str] = METHODS,
    recommend: str = DEFAULT_RECOMMEND,
    skip_start: int | None = None,
    skip_end: int = 5,
    max_spread: float = DEFAULT_MAX_SPREAD,
    settings: dict[str, Any] | None = None,
) -> FinderResult:
    """Suggest on each curve, combine over repeats and decide the confidence flag.

    Args:
        curves: one sweep per repeat.
        methods: suggestion methods to compute (see :func:`lrlab.finder.suggest`).
        recommend: the method whose median becomes ``FinderResult.lr``; must be in ``methods``.
        skip_start, skip_end: window of the suggesters (default ``num_steps // 10`` and 5).
        max_spread: confidence threshold on the recommended method's spread, in decades (> 0).
        settings: recorded in the result.

    Raises:
        ValueError: on bad arguments, or when no repeat produced a suggestion.

    >>> from lrlab.finder._sweep import run_sweep, sweep_lrs
    >>> lrs = sweep_lrs(1e-4, 1.0, 81)
    >>> curves = [run_sweep(lambda lr, k=k: 1 + (np.log10(lr) + 1.0 + 0.01 * k) ** 2, lrs, beta=0.0, seed=k)
    ...           for k in range(3)]
    >>> r = aggregate(curves)
    >>> round(r.suggestions["minimum"].lr, 6), r.confident
    (0.01, True)
    """
    if not curves:
        raise ValueError("curves is empty: run at least one sweep")
    if recommend not in methods:
        raise ValueError(
            f"recommend must be one of the computed methods {tuple(methods)}, got {recommend=!r}"
        )
    if not (isinstance(max_spread, (int, float)) and math.isfinite(max_spread) and max_spread > 0):
        raise ValueError(f"max_spread must be a finite number of decades > 0, got {max_spread=!r}")
    per_repeat: list[dict[str, Suggestion] | None] = []
    notes: list[str] = []
    for c in curves:
        try:
            sug = suggest(
                c.lrs,
                c.smoothed,
                num_steps=c.num_steps,
                skip_start=skip_start,
                skip_end=skip_end,
                methods=methods,
            )
        except ValueError as e:
            per_repeat.append(None)
            notes.append(
                f"repeat seed={c.seed} ({c.stop} after {len(c.lrs)} steps) gave no suggestion: {e}"
            )
            continue
        per_repeat.append(sug)
        if c.stop == "completed":
            lo = c.num_steps // 10 if skip_start is None else skip_start
            window = c.smoothed[lo : len(c.smoothed) - skip_end]
            if int(np.argmin(window)) == len(window) - 1:
                notes.append(
                    f"repeat seed={c.seed}: loss still falling at the end of the range "
                    f"(lr {c.lrs[-1]:.3g}): raise end_lr"
                )
    ok = [s for s in per_repeat if s is not None]
    if not ok:
        raise ValueError("no repeat produced a suggestion:\n  " + "\n  ".join(notes))
    summaries = {m: _summary(m, [s[m].lr for s in ok]) for m in methods}
    done = [c for c, s in zip(curves, per_repeat) if s is not None]
    if len(done) >= 2 and all(np.array_equal(c.losses, done[0].losses) for c in done[1:]):
        notes.append(
            "all repeats recorded identical losses: the seeds did not change the data order or the model"
        )
    if len(ok) < 2:
        notes.append(
            f"only {len(ok)} repeat gave suggestions: agreement not measured (use 2 or more seeds)"
        )
    rec = summaries[recommend]
    if rec.spread > max_spread:
        notes.append(
            f"{recommend} disagrees across repeats: spread {rec.spread:.2f} decades > max_spread={max_spread:g}"
        )
    return FinderResult(
        curves=tuple(curves),
        per_repeat=tuple(per_repeat),
        suggestions=summaries,
        recommended=recommend,
        confident=not notes,
        notes=tuple(notes),
        max_spread=float(max_spread),
        settings=dict(settings or {}),
    )
