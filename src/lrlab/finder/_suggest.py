"""Suggestions from one range-test curve: steepest descent, valley and minimum/10, each labelled.

All suggesters read the *smoothed* loss on a window that drops the first ``skip_start`` points
(default ``num_steps // 10``, where the loss still reflects the initial weights) and the last
``skip_end`` points (default 5, where a diverging sweep blows up), as fastai does.

* ``steepest``: the lr where the smoothed loss falls fastest *per unit of log lr*:
  ``argmin_i dL/d(ln lr)`` with ``np.gradient`` (second-order central differences, one-sided at the
  ends), searched from the window's start up to the smoothed loss's minimum in the window: a fall
  *after* the minimum is a recovery from a blow-up, not a good lr (Lightning#1767: "fooled by
  spikes"); if the minimum is the window's first point, the loss never falls and ``steepest`` is
  that first point. The derivative is against log lr, which is what the log-x plot shows and the
  only choice that does not depend on how the sweep spaced its lrs. torch-lr-finder differentiates
  against the point *index* and Lightning against *lr* itself (anchors quirks 20-21); fastai's
  ``steep`` uses log lr but a forward difference, reporting the left point (half a step low).
* ``valley``: fastai's algorithm (ESRI's suggester, fastai PR #3408, now fastai's default): find
  the longest decreasing subsequence of the smoothed loss (``lds``), then return the lr at
  ``start + int(d / 3) + int(d / 6)`` with ``d = end - start``, about half-way down that valley.
  It is reproduced exactly, including its bookkeeping: ``start = end - lds[end]`` is one before
  the valley's first point and is taken when ``end`` first becomes the longest, so the pick lies a
  little before the valley's middle. Tested against a literal transcription; the one difference is
  the degenerate 2-point valley, where fastai's index -1 wraps to the *last* lr and ours is 0.
* ``minimum``: one tenth of the lr at the minimum of the smoothed loss (fastai's ``minimum``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = ["METHODS", "Suggestion", "suggest"]

METHODS = ("steepest", "valley", "minimum")


@dataclasses.dataclass(frozen=True)
class Suggestion:
    """One suggested learning rate.

    Attributes:
        method: ``"steepest"``, ``"valley"`` or ``"minimum"``.
        lr: the suggested learning rate.
        index: index (into the whole curve) of the point the suggestion is read from; for
            ``minimum`` that is the minimum itself, whose lr is ten times the suggestion.
        loss: smoothed loss at ``index`` (where to draw the marker).
    """

    method: str
    lr: float
    index: int
    loss: float


def _steepest(log_lrs: np.ndarray, losses: np.ndarray) -> int:
    end = int(np.argmin(losses)) + 1  # the descent to the minimum, its last point included
    if end < 2:
        return 0
    grad = np.gradient(losses[:end], log_lrs[:end])
    return int(np.argmin(grad))


def _valley(losses: np.ndarray) -> int:
    """Index chosen by fastai's ``valley`` (vectorised over ``j``; same result as the double loop)."""
    n = len(losses)
    lds = np.ones(n, dtype=np.int64)
    max_start, max_end = 0, 0
    for i in range(1, n):
        # fastai: for j < i: if losses[i] < losses[j] and lds[i] < lds[j] + 1: lds[i] = lds[j] + 1,
        # then (inside the same j loop) if lds[max_end] < lds[i]: max_end = i; max_start = i - lds[i].
        cand = np.where(losses[i] < losses[:i], lds[:i] + 1, 1)
        running = np.maximum.accumulate(cand)
        lds[i] = running[-1]
        beats = np.nonzero(running > lds[max_end])[0]  # max_end < i here, so lds[max_end] is final
        if beats.size:
            max_end = i
            max_start = i - int(running[beats[0]])
    sections = (max_end - max_start) / 3
    # fastai returns lrs[-1] (the last lr) in the degenerate case max_start = -1, d = 2; we clip to 0.
    return max(max_start + int(sections) + int(sections / 2), 0)


def suggest(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    *,
    num_steps: int | None = None,
    skip_start: int | None = None,
    skip_end: int = 5,
    methods: Sequence[str] = METHODS,
) -> dict[str, Suggestion]:
    """Labelled lr suggestions from one range-test curve (smoothed losses against lrs).

    The window is ``[skip_start, len(losses) - skip_end)``; ``skip_start`` defaults to
    ``num_steps // 10`` (``num_steps`` defaults to ``len(losses)``: pass the *planned* number of a
    sweep that stopped early, as :class:`~lrlab.finder.FinderResult` does).

    Args:
        lrs: learning rate of each point (increasing, > 0).
        losses: smoothed loss of each point (finite).
        num_steps: planned number of sweep updates.
        skip_start: points dropped at the start.
        skip_end: points dropped at the end.
        methods: which of ``"steepest"``, ``"valley"``, ``"minimum"`` to compute.

    Returns:
        ``{method: Suggestion}`` in the order of ``methods``.

    Example: on ``L(x) = x**3/3 + 2*x**2 + 3*x`` with ``x = log10(lr)``, ``dL/dx = (x + 1)(x + 3)``
    is most negative at ``x = -2`` and ``L`` is smallest at ``x = -1`` (so minimum/10 is ``1e-2``);
    the valley runs from the window's start to ``x = -1`` and valley picks ``x = -1.95``:

    >>> lrs = np.geomspace(1e-3, 1.0, 61); x = np.log10(lrs)
    >>> s = suggest(lrs, x**3 / 3 + 2 * x**2 + 3 * x)
    >>> {k: float(f"{v.lr:.4g}") for k, v in s.items()}
    {'steepest': 0.01, 'valley': 0.01122, 'minimum': 0.01}
    """
    lr_arr = np.asarray(lrs, dtype=np.float64)
    loss_arr = np.asarray(losses, dtype=np.float64)
    if lr_arr.ndim != 1 or lr_arr.shape != loss_arr.shape:
        raise ValueError(
            f"lrs and losses must be 1-D of equal length, got shapes {lr_arr.shape} and {loss_arr.shape}"
        )
    if lr_arr.size and (not np.all(lr_arr > 0) or not np.all(np.diff(lr_arr) > 0)):
        raise ValueError("lrs must be positive and strictly increasing")
    if not np.all(np.isfinite(loss_arr)):
        raise ValueError("losses must be finite (a sweep stops before recording a NaN/inf loss)")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {methods=!r}")
    n = len(loss_arr)
    if num_steps is None:
        num_steps = n
    if skip_start is None:
        skip_start = num_steps // 10
    if not (isinstance(skip_start, int) and skip_start >= 0):
        raise ValueError(f"skip_start must be an integer >= 0, got {skip_start=!r}")
    if not (isinstance(skip_end, int) and skip_end >= 0):
        raise ValueError(f"skip_end must be an integer >= 0, got {skip_end=!r}")
    lo, hi = skip_start, n - skip_end
    if hi - lo < 3:
        raise ValueError(
            f"only {max(hi - lo, 0)} points left of {n} after skip_start={skip_start} and skip_end={skip_end}; "
            "at least 3 are needed (the sweep stopped early: lower start_lr or raise num_steps)"
        )
    w_lrs, w_loss = lr_arr[lo:hi], loss_arr[lo:hi]
    out: dict[str, Suggestion] = {}
    for m in methods:
        if m == "steepest":
            k = _steepest(np.log(w_lrs), w_loss)
            lr = float(w_lrs[k])
        elif m == "valley":
            k = _valley(w_loss)
            lr = float(w_lrs[k])
        else:
            k = int(np.argmin(w_loss))
            lr = float(w_lrs[k]) / 10.0
        out[m] = Suggestion(method=m, lr=lr, index=lo + k, loss=float(w_loss[k]))
    return out
