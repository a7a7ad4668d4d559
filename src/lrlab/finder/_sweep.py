"""The range test's framework-free core: the lr sequence, the smoothed loss and the stop rule.

A sweep trains for at most ``num_steps`` updates, the ``i``-th at learning rate ``lrs[i]``, and
records the loss of each update's batch (computed before that update, as fastai and Lightning do).
The framework adapters (:mod:`lrlab.finder._torch`, :mod:`lrlab.finder._keras`) only supply a
``step(lr) -> loss`` function; everything here is NumPy.

Exact definitions (``N = num_steps``, ``i = 0 .. N-1``, ``a = start_lr``, ``b = end_lr``):

* exponential sweep: ``lr_i = a * (b / a) ** (i / (N - 1))``; linear: ``lr_i = a + (b - a) * i / (N - 1)``.
  Both start at exactly ``a`` and end at exactly ``b`` (fastai's ``a * (b/a) ** (i/N)`` never
  reaches ``b``; Lightning skips ``r = 1/N``; anchors quirk 20).
* smoothed loss, bias-corrected (fastai's ``AvgSmoothLoss``, Lightning's ``beta``):
  ``m_i = beta * m_{i-1} + (1 - beta) * loss_i`` with ``m_{-1} = 0``, ``s_i = m_i / (1 - beta ** (i + 1))``.
  Without the correction (torch-lr-finder) the first values are pulled towards 0.
* stop: after recording update ``i`` the sweep stops if ``s_i > diverge_factor * min(s_0 .. s_i)``
  (default 4, as fastai and Lightning; applied while that minimum is positive). A loss that is NaN
  or infinite stops the sweep *before* that update is applied or recorded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Curve", "check_seeds", "run_sweep", "smooth", "sweep_lrs"]

MODES = ("exp", "linear")


def sweep_lrs(start_lr: float, end_lr: float, num_steps: int, mode: str = "exp") -> np.ndarray:
    """The learning rates of a range test: ``num_steps`` values from ``start_lr`` to ``end_lr``.

    ``mode="exp"``: ``lr_i = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))`` (evenly
    spaced in log lr); ``mode="linear"``: ``lr_i = start_lr + (end_lr - start_lr) * i / (num_steps - 1)``.
    The first value is exactly ``start_lr`` and the last exactly ``end_lr``.

    Args:
        start_lr: lr of the first update (> 0).
        end_lr: lr of the last update (> start_lr).
        num_steps: number of updates (>= 2).
        mode: ``"exp"`` or ``"linear"``.

    >>> sweep_lrs(1e-3, 1.0, 4).tolist()
    [0.001, 0.01, 0.1, 1.0]
    >>> sweep_lrs(0.1, 0.4, 4, mode="linear").tolist()
    [0.1, 0.2, 0.30000000000000004, 0.4]
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 2:
        raise ValueError(f"num_steps must be an integer >= 2, got {num_steps=!r}")
    if not (isinstance(start_lr, (int, float)) and math.isfinite(start_lr) and start_lr > 0):
        raise ValueError(f"start_lr must be a finite number > 0, got {start_lr=!r}")
    if not (isinstance(end_lr, (int, float)) and math.isfinite(end_lr) and end_lr > start_lr):
        raise ValueError(f"end_lr must be a finite number > start_lr={start_lr!r}, got {end_lr=!r}")
    if mode == "exp":
        # geomspace computes exp-spaced values and then sets both endpoints exactly.
        return np.geomspace(float(start_lr), float(end_lr), int(num_steps))
    if mode == "linear":
        return np.linspace(float(start_lr), float(end_lr), int(num_steps))
    raise ValueError(f"mode must be one of {MODES}, got {mode=!r}")


def smooth(losses: Sequence[float] | np.ndarray, beta: float = 0.98) -> np.ndarray:
    """Bias-corrected exponential moving average of ``losses`` (fastai's smoothed loss).

    ``m_i = beta * m_{i-1} + (1 - beta) * loss_i`` (``m_{-1} = 0``) and
    ``s_i = m_i / (1 - beta ** (i + 1))``, so ``s_0 = loss_0`` exactly and a constant loss stays
    constant. ``beta = 0`` returns the losses unchanged.

    Args:
        losses: raw per-update losses.
        beta: smoothing factor in ``[0, 1)`` (0.98 as fastai and Lightning).

    >>> smooth([1.0, 0.0], beta=0.5).tolist()  # m = [0.5, 0.25]; s = [0.5/0.5, 0.25/0.75]
    [1.0, 0.3333333333333333]
    """
    _check_beta(beta)
    x = np.asarray(losses, dtype=np.float64)
    out = np.empty_like(x)
    m = 0.0
    for i, v in enumerate(x):
        m = beta * m + (1.0 - beta) * v
        out[i] = m / (1.0 - beta ** (i + 1))
    return out


def check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """The repeats' seeds as a tuple of distinct ints (ValueError otherwise)."""
    seeds = tuple(seeds)
    if not seeds or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seeds
    ):
        raise ValueError(f"seeds must be a non-empty sequence of ints, got {seeds=!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(
            f"seeds must be distinct (a repeat of a seed repeats the same sweep), got {seeds=!r}"
        )
    return tuple(int(s) for s in seeds)


def _check_beta(beta: float) -> None:
    if not (isinstance(beta, (int, float)) and 0.0 <= beta < 1.0):
        raise ValueError(f"beta must be in [0, 1), got {beta=!r}")


@dataclasses.dataclass(frozen=True)
class Curve:
    """One sweep's record: the lrs actually used, the raw and smoothed losses, why it stopped.

    Attributes:
        lrs: lr of each recorded update (a prefix of the planned sequence).
        losses: raw batch loss of each recorded update (before that update).
        smoothed: bias-corrected smoothed loss (:func:`smooth`).
        num_steps: the planned number of updates (suggestions skip ``num_steps // 10`` at the start).
        stop: ``"completed"``, ``"diverged"`` (smoothed loss > ``diverge_factor`` x best; the
            diverging update is the last one recorded) or ``"non-finite"`` (the next loss was
            NaN/inf; it is not recorded).
        seed: the repeat's seed (data order and any randomness of the model), or ``None``.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    num_steps: int
    stop: str
    seed: int | None = None

    def to_dict(self) -> dict:
        """JSON-ready form (lists of floats)."""
        return {
            "seed": self.seed,
            "stop": self.stop,
            "num_steps": self.num_steps,
            "lrs": self.lrs.tolist(),
            "losses": self.losses.tolist(),
            "smoothed": self.smoothed.tolist(),
        }


def run_sweep(
    step: Callable[[float], float],
    lrs: np.ndarray,
    *,
    beta: float = 0.98,
    diverge_factor: float | None = 4.0,
    seed: int | None = None,
) -> Curve:
    """Run ``step(lr)`` for each lr in ``lrs`` until the end or a stop, recording the losses.

    ``step`` must apply one update at learning rate ``lr`` and return the loss of that update's
    batch computed *before* the update, as a Python float. If that loss is NaN or infinite the
    update must not be applied (the adapters check before calling ``backward``/``apply``); the sweep
    stops with ``stop="non-finite"`` without recording it.

    Args:
        step: the framework's one-update function.
        lrs: planned learning rates (:func:`sweep_lrs`).
        beta: smoothing factor (:func:`smooth`).
        diverge_factor: stop once the smoothed loss exceeds ``diverge_factor`` times its minimum so
            far (> 1), or ``None`` to run all of ``lrs`` unless a loss is non-finite.
        seed: stored in the returned :class:`Curve`.

    >>> curve = run_sweep(lambda lr: 1.0 / (1.0 + lr), np.array([1.0, 3.0]), beta=0.0)
    >>> curve.losses.tolist(), curve.stop
    ([0.5, 0.25], 'completed')
    >>> run_sweep(lambda lr: lr, np.array([1.0, 2.0, 9.0, 10.0]), beta=0.0, diverge_factor=4.0).stop
    'diverged'
    """
    _check_beta(beta)
    if diverge_factor is not None and not (
        isinstance(diverge_factor, (int, float)) and diverge_factor > 1.0
    ):
        raise ValueError(f"diverge_factor must be a number > 1 or None, got {diverge_factor=!r}")
    lrs = np.asarray(lrs, dtype=np.float64)
    losses: list[float] = []
    smoothed: list[float] = []
    m, best, stop = 0.0, math.inf, "completed"
    for i, lr in enumerate(lrs):
        loss = float(step(float(lr)))
        if not math.isfinite(loss):
            stop = "non-finite"
            break
        m = beta * m + (1.0 - beta) * loss
        s = m / (1.0 - beta ** (i + 1))
        losses.append(loss)
        smoothed.append(s)
        best = min(best, s)
        if diverge_factor is not None and best > 0 and s > diverge_factor * best:
            stop = "diverged"
            break
    n = len(losses)
    return Curve(
        lrs=lrs[:n].copy(),
        losses=np.asarray(losses, dtype=np.float64),
        smoothed=np.asarray(smoothed, dtype=np.float64),
        num_steps=len(lrs),
        stop=stop,
        seed=seed,
    )


def sweep_settings(framework: str, optimizer: str, optimizer_kwargs: Mapping[str, Any] | None, *,
                   start_lr: float, end_lr: float, num_steps: int, mode: str, seeds: Sequence[int],
                   beta: float, diverge_factor: float | None, batch_size: int | None,
                   **extra: Any) -> dict[str, Any]:
    """The settings a :class:`~lrlab.finder.FinderResult` records (plain, JSON-ready values)."""
    return {
        "framework": framework,
        **extra,
        "optimizer": optimizer,
        "optimizer_kwargs": dict(optimizer_kwargs or {}),
        "start_lr": float(start_lr),
        "end_lr": float(end_lr),
        "num_steps": int(num_steps),
        "mode": mode,
        "seeds": list(seeds),
        "beta": float(beta),
        "diverge_factor": diverge_factor,
        "batch_size": batch_size,
    }
