"""Combinators: schedules built from schedules. Their results are ordinary registered schedules.

``a >> b`` is :class:`sequence`, ``a * b`` is :class:`product`, ``0.5 * a`` is :class:`scale`.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from typing import Any

from lrlab.schedules._backend import Ops
from lrlab.schedules._core import (
    Schedule,
    State,
    as_float,
    duration_field,
    lr_field,
    register,
    resolve_duration,
)

__all__ = ["clamp", "constant", "cooldown", "per_epoch", "product", "repeat", "scale", "sequence", "take", "warmup"]


def _check_schedule(owner: str, field: str, v: Any) -> None:
    if not isinstance(v, Schedule):
        raise ValueError(f"{owner}: {field} must be a schedule, got {v!r}")


def _check_number(owner: str, field: str, v: Any, *, lo: float | None = None, lo_open: bool = False,
                  hi: float | None = None) -> None:
    f = as_float(v)
    if f is None or not math.isfinite(f):
        raise ValueError(f"{owner}: {field} must be a finite number, got {field}={v!r}")
    if lo is not None and (f < lo or (lo_open and f == lo)):
        op = ">" if lo_open else ">="
        raise ValueError(f"{owner}: {field} must be {op} {lo}, got {field}={v!r}")
    if hi is not None and f > hi:
        raise ValueError(f"{owner}: {field} must be <= {hi}, got {field}={v!r}")


MAX_MULT = 1e6
"""The largest cycle-length multiplier (``restarts``, ``repeat``): cycle starts stay finite floats."""


def _check_bounded(owner: str, bounds: list[float]) -> None:
    """Refuse a product whose values could overflow: every partial product of the factors' upper
    bounds (each taken as at least 1) must be a finite float."""
    acc = 1.0
    for b in bounds:
        acc *= max(b, 1.0)
    if not math.isfinite(acc):
        raise ValueError(f"{owner}: its values can reach inf (the product of the factors' largest values); use smaller levels")


def _check_factor(owner: str, field: str, v: Any) -> None:
    """A decay multiplier per event: in (0, 1], so repeated events never grow the lr past a bound."""
    _check_number(owner, field, v, lo=0.0, lo_open=True, hi=1.0)


@register("constant")
class constant(Schedule):
    """A constant learning rate.

    .. math:: \\eta(t) = \\text{value}

    Args:
        value: the learning rate.
        steps: an optional length (steps, ``"Nep"`` or ``"P%"``), so the constant can be a phase of
            a :class:`sequence`; it does not change the value.

    >>> constant(0.1)(10_000)
    0.1
    """

    value: float = lr_field(0.0)
    steps: int | str | None = duration_field(None, show=True)

    def formula(self, t, ops: Ops, state: State | None):
        return ops.full_like(t, float(self.value))

    @property
    def duration(self) -> int | None:
        return self.steps  # type: ignore[return-value]


@register("sequence")
class sequence(Schedule):
    """Phases one after another; each phase sees its own local step (``a >> b``).

    .. math:: \\eta(t) = s_i(t - B_i) \\quad\\text{for } B_i \\le t < B_{i+1}

    with :math:`B_0 = 0` and :math:`B_{i+1} = B_i + d_i`, where :math:`d_i` is ``durations[i]``
    or, when that is ``None``, the phase's own :attr:`duration`. Every phase but the last must be
    finite. Past the last boundary the last phase runs (and holds if finite). This is optax's
    ``join_schedules`` and torch's ``SequentialLR`` with closed-form phases.

    >>> s = constant(1.0, steps=2) >> constant(0.5)
    >>> [s(t) for t in range(4)]
    [1.0, 1.0, 0.5, 0.5]
    """

    phases: tuple[Schedule, ...] = ()
    durations: tuple[int | str | None, ...] = duration_field(())

    def __post_init__(self) -> None:
        if isinstance(self.durations, list | tuple) and not self.durations and self.phases:
            object.__setattr__(self, "durations", (None,) * len(self.phases))
        super().__post_init__()

    def _validate(self) -> None:
        if len(self.phases) < 1:
            raise ValueError("sequence: needs at least one phase")
        for i, p in enumerate(self.phases):
            _check_schedule("sequence", f"phases[{i}]", p)
        if len(self.durations) != len(self.phases):
            raise ValueError(f"sequence: {len(self.phases)} phases but {len(self.durations)} durations")
        for i in range(len(self.phases) - 1):
            if self._length(i) is None:
                raise ValueError(
                    f"sequence: phase {i} ({self.phases[i]}) never ends; give it a length "
                    "(e.g. steps=...) or a duration"
                )

    def _length(self, i: int) -> int | None:
        d = self.durations[i]
        return d if d is not None else self.phases[i].duration  # type: ignore[return-value]

    def _starts(self) -> list[int]:
        starts = [0]
        for i in range(len(self.phases) - 1):
            starts.append(starts[-1] + self._length(i))  # type: ignore[operator]
        return starts

    def boundaries(self) -> list[int]:
        starts = self._starts()
        out = list(starts[1:])
        for b, p in zip(starts, self.phases):
            out.extend(b + x for x in p.boundaries())
        return sorted(set(out))

    @property
    def duration(self) -> int | None:
        last = self._length(len(self.phases) - 1)
        return None if last is None else self._starts()[-1] + last

    def formula(self, t, ops: Ops, state: State | None):
        starts = self._starts()
        if ops.name == "python":
            i = bisect.bisect_right(starts, t) - 1
            return self.phases[i].formula(t - starts[i], ops, state)
        out = self.phases[-1].formula(ops.maximum(t - starts[-1], 0.0), ops, state)
        for i in range(len(self.phases) - 2, -1, -1):
            local = ops.clip(t - starts[i], 0.0, float(self._length(i)))  # type: ignore[arg-type]
            out = ops.where(ops.lt(t, starts[i + 1]), self.phases[i].formula(local, ops, state), out)
        return out


@register("product")
class product(Schedule):
    """The product of schedules, all on the same step (``a * b``).

    .. math:: \\eta(t) = \\prod_i s_i(t)

    Finite when every factor is; its duration is the longest factor's (metric-driven factors such
    as :class:`plateau` do not count: they never end on their own).

    >>> (constant(0.5) * constant(0.2))(3)
    0.1
    """

    factors: tuple[Schedule, ...] = ()

    def _validate(self) -> None:
        if len(self.factors) < 1:
            raise ValueError("product: needs at least one factor")
        for i, f in enumerate(self.factors):
            _check_schedule("product", f"factors[{i}]", f)
        _check_bounded("product", [f.max_value() for f in self.factors])

    def max_value(self) -> float:
        return math.prod(f.max_value() for f in self.factors)

    @property
    def duration(self) -> int | None:
        # Metric-driven factors (plateau) scale the curve but do not give it a length.
        ds = [f.duration for f in self.factors if not getattr(f, "metric_driven", False)]
        return None if not ds or any(d is None for d in ds) else max(ds)  # type: ignore[type-var]

    def boundaries(self) -> list[int]:
        return sorted({b for f in self.factors for b in f.boundaries()})

    def formula(self, t, ops: Ops, state: State | None):
        out = self.factors[0].formula(t, ops, state)
        for f in self.factors[1:]:
            out = out * f.formula(t, ops, state)
        return out


@register("scale")
class scale(Schedule):
    """A schedule times a constant factor (``0.5 * s``).

    .. math:: \\eta(t) = \\text{factor}\\cdot s(t)

    ``factor`` is a finite number >= 0 (a negative one would make the lr negative).
    """

    schedule: Schedule = None  # type: ignore[assignment]
    factor: float = 1.0

    def _validate(self) -> None:
        _check_schedule("scale", "schedule", self.schedule)
        _check_number("scale", "factor", self.factor, lo=0.0)
        _check_bounded("scale", [self.factor, self.schedule.max_value()])

    def max_value(self) -> float:
        return self.factor * self.schedule.max_value()

    @property
    def duration(self) -> int | None:
        return self.schedule.duration

    def boundaries(self) -> list[int]:
        return self.schedule.boundaries()

    def formula(self, t, ops: Ops, state: State | None):
        return self.factor * self.schedule.formula(t, ops, state)


@register("clamp")
class clamp(Schedule):
    """A schedule kept within ``[min, max]`` (a floor, a ceiling, or both).

    .. math:: \\eta(t) = \\min(\\max(s(t), \\text{min}), \\text{max})

    >>> clamp(constant(1e-6), min=1e-4)(0)
    0.0001
    """

    schedule: Schedule = None  # type: ignore[assignment]
    min: float | None = lr_field(None)
    max: float | None = lr_field(None)

    def _validate(self) -> None:
        _check_schedule("clamp", "schedule", self.schedule)
        if self.min is None and self.max is None:
            raise ValueError("clamp: give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"clamp: min must be <= max, got min={self.min!r}, max={self.max!r}")

    @property
    def duration(self) -> int | None:
        return self.schedule.duration

    def boundaries(self) -> list[int]:
        return self.schedule.boundaries()

    def formula(self, t, ops: Ops, state: State | None):
        v = self.schedule.formula(t, ops, state)
        if self.min is not None:
            v = ops.maximum(v, float(self.min))
        if self.max is not None:
            v = ops.minimum(v, float(self.max))
        return v


@register("take")
class take(Schedule):
    """The first ``steps`` steps of a schedule, then its value at ``steps`` held.

    Gives an infinite schedule a length so it can be a phase of a :class:`sequence`; a cooldown can
    branch off it with ``take(s, steps=N) >> cooldown``.

    .. math:: \\eta(t) = s(\\min(t, \\text{steps}))

    >>> s = take(constant(0.1), steps=100) >> constant(0.0)
    >>> s(99), s(100)
    (0.1, 0.0)
    """

    schedule: Schedule = None  # type: ignore[assignment]
    steps: int | str = duration_field(0, show=True)

    def _validate(self) -> None:
        _check_schedule("take", "schedule", self.schedule)

    @property
    def duration(self) -> int | None:
        return self.steps  # type: ignore[return-value]

    def boundaries(self) -> list[int]:
        return [b for b in self.schedule.boundaries() if b < self.steps]  # type: ignore[operator]

    def formula(self, t, ops: Ops, state: State | None):
        return self.schedule.formula(ops.minimum(t, float(self.steps)), ops, state)  # type: ignore[arg-type]


_WARMUP_SHAPES = ("linear", "cosine", "exponential")


@register("warmup")
class warmup(Schedule):
    """Warmup from ``start`` to the schedule's first value over ``steps`` steps, then the schedule.

    With :math:`W` = ``steps``, :math:`p = t/W`, :math:`\\eta_0 = s(0)` (the peak reached by the
    warmup) and :math:`a` = ``start``:

    .. math::
        \\eta(t) = \\begin{cases}
          a + (\\eta_0 - a)\\,p & \\text{linear} \\\\
          a + (\\eta_0 - a)\\,\\tfrac12(1 - \\cos \\pi p) & \\text{cosine} \\\\
          a\\,(\\eta_0 / a)^{p} & \\text{exponential (needs } a > 0) \\\\
        \\end{cases} \\quad t < W; \\qquad \\eta(t) = s(t - W) \\quad t \\ge W.

    The warmup comes *before* the schedule (it is not taken out of the schedule's length), so the
    total duration is ``steps + s.duration``; the curve is continuous at ``W``. ``start=0`` is
    allowed for the linear and cosine shapes; note that the first update then has lr 0 (the
    transformers convention). Use ``start`` > 0 (e.g. ``peak / 10``) when that wastes a step.

    The schedule is evaluated once per step (at :math:`\\max(t - W, 0)`, which is :math:`0`, i.e.
    :math:`\\eta_0`, during the warmup), so nested warmups cost time linear in their depth.

    >>> s = warmup(constant(1.0), steps=4)
    >>> [s(t) for t in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """

    schedule: Schedule = None  # type: ignore[assignment]
    steps: int | str = duration_field(0, show=True)
    start: float = lr_field(0.0, show=False)  # from 0 unless said otherwise
    shape: str = "linear"

    def _validate(self) -> None:
        _check_schedule("warmup", "schedule", self.schedule)
        if self.shape not in _WARMUP_SHAPES:
            raise ValueError(f"warmup: shape must be one of {', '.join(_WARMUP_SHAPES)}, got shape={self.shape!r}")
        if self.shape == "exponential" and self.start <= 0:
            raise ValueError(f"warmup: the exponential shape needs start > 0, got start={self.start!r}")

    @property
    def duration(self) -> int | None:
        d = self.schedule.duration
        return None if d is None else self.steps + d  # type: ignore[operator]

    def boundaries(self) -> list[int]:
        w = self.steps
        return ([w] if w else []) + [w + b for b in self.schedule.boundaries()]  # type: ignore[operator, return-value]

    def formula(self, t, ops: Ops, state: State | None):
        w = float(self.steps)  # type: ignore[arg-type]
        after = self.schedule.formula(ops.maximum(t - w, 0.0), ops, state)
        if w == 0:
            return after
        # One evaluation: during the warmup (t < w) ``after`` is s(0), the peak the ramp reaches.
        peak = after
        p = ops.clip(t / w, 0.0, 1.0)
        a = self.start
        if self.shape == "linear":
            ramp = a + (peak - a) * p
        elif self.shape == "cosine":
            ramp = a + (peak - a) * (0.5 * (1.0 - ops.cos(ops.pi * p)))
        else:
            ratio = ops.maximum(peak / a, 1e-300)
            ramp = a * ops.exp(p * ops.log(ratio))
        return ops.where(ops.lt(t, w), ramp, after)


# ---- exact integer division and cycles -------------------------------------------------------


def _floor_div(x, d: float, ops: Ops):
    """``floor(x / d)``, corrected so that ``q*d <= x < (q+1)*d`` holds exactly.

    In float64 with whole-number steps ``x / d`` is already exact at multiples of ``d``; the
    correction matters in float32 and under compilers that turn ``x / d`` into ``x * (1/d)``
    (XLA), where ``k*d / d`` can come out just below ``k`` and a drop would happen a step late.
    """
    q = ops.floor(x / d)
    q = ops.where(ops.lt(x, q * d), q - 1.0, q)
    return ops.where(ops.le((q + 1.0) * d, x), q + 1.0, q)


def _ceil_div(x, d: float, ops: Ops):
    """``ceil(x / d)``, corrected so that ``(q-1)*d < x <= q*d`` holds exactly."""
    q = ops.ceil(x / d)
    q = ops.where(ops.lt(q * d, x), q + 1.0, q)
    return ops.where(ops.le(x, (q - 1.0) * d), q - 1.0, q)


# ---- cycles ---------------------------------------------------------------------------------


def _cycle_start(i: float, period: float, mult: float) -> float:
    """Start of cycle ``i`` when cycle ``k`` lasts ``period * mult**k`` (Python numbers)."""
    if mult == 1.0:
        return i * period
    return period * (mult**i - 1.0) / (mult - 1.0)


def _cycle_index(t, period: float, mult: float, ops: Ops):
    """``(i, start, length)`` of the cycle containing step ``t``, exact at the cycle starts.

    Cycle ``k`` starts at ``S_k = P(m^k - 1)/(m - 1)`` (``kP`` when ``m = 1``). The index from
    ``floor(log(1 + t(m-1)/P) / log m)`` (or ``floor(t/P)``) can be off by one at a boundary because
    of round-off, so it is corrected against the computed starts: ``S_i <= t < S_{i+1}`` always holds.
    """

    def start(i):
        if mult == 1.0:
            return i * period
        return period * (ops.pow(mult, i) - 1.0) / (mult - 1.0)

    if mult == 1.0:
        i = ops.floor(t / period)
    else:
        i = ops.floor(ops.log(ops.maximum(1.0 + t * ((mult - 1.0) / period), 1.0)) / math.log(mult))
    i = ops.maximum(ops.where(ops.lt(t, start(i)), i - 1.0, i), 0.0)
    i = ops.where(ops.le(start(i + 1.0), t), i + 1.0, i)
    length = period if mult == 1.0 else period * ops.pow(mult, i)
    return i, start(i), length


@register("repeat")
class repeat(Schedule):
    """Cycles of a finite schedule: restarts with a period multiplier, peak decay and a cycle limit.

    Cycle :math:`i` (0-based) starts at :math:`S_i = P(m^i-1)/(m-1)` (:math:`iP` if :math:`m=1`) and
    lasts :math:`L_i = P m^i`; the inner schedule :math:`s` (duration :math:`D`) is stretched to it:

    .. math:: \\eta(t) = \\text{factor}^i \\cdot s\\big((t - S_i)\\,D / L_i\\big)

    After ``limit`` cycles (if given) the value at the end of the last cycle,
    :math:`\\text{factor}^{\\text{limit}-1} s(D)`, holds. The factor scales the whole inner curve
    (its floor too); timm's ``cycle_decay`` is the same when its ``lr_min`` is 0. The cycle index is
    exact at every restart (see :class:`~lrlab.schedules.restarts`).

    Args:
        schedule: a finite schedule (its duration ``D`` > 0).
        period: first cycle length ``P`` (steps, ``"Nep"``, ``"P%"``), >= 1; ``None`` means ``D``.
        mult: cycle length multiplier (float, in [1, 1e6]); the inner schedule is stretched to
            each cycle.
        factor: multiplier per cycle, in (0, 1] (a factor > 1 would grow without bound).
        limit: number of cycles, after which the value holds; ``None`` repeats forever.

    >>> from lrlab.schedules import linear
    >>> s = repeat(linear(1.0, 0.0, steps=4), factor=0.5, limit=2)
    >>> [s(t) for t in range(10)]
    [1.0, 0.75, 0.5, 0.25, 0.5, 0.375, 0.25, 0.125, 0.0, 0.0]
    """

    schedule: Schedule = None  # type: ignore[assignment]
    period: int | float | str | None = duration_field(None, show=True)
    mult: float = 1.0
    factor: float = 1.0
    limit: int | None = None

    def _validate(self) -> None:
        _check_schedule("repeat", "schedule", self.schedule)
        d = self.schedule.duration
        if d is None or d <= 0:
            raise ValueError(f"repeat: the schedule must be finite with a duration > 0, got {self.schedule} (duration={d!r})")
        if self.period is not None:
            _check_number("repeat", "period", self.period, lo=1.0)
        _check_number("repeat", "mult", self.mult, lo=1.0, hi=MAX_MULT)
        _check_factor("repeat", "factor", self.factor)
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1):
            raise ValueError(f"repeat: limit must be an integer >= 1 or none, got limit={self.limit!r}")

    def _period(self) -> float:
        return float(self.schedule.duration if self.period is None else self.period)  # type: ignore[arg-type]

    def _end(self) -> float:
        return _cycle_start(self.limit, self._period(), float(self.mult))  # type: ignore[arg-type]

    @property
    def duration(self) -> int | None:
        return None if self.limit is None else math.ceil(self._end())

    def boundaries(self) -> list[int]:
        n = min(self.limit, 12) if self.limit is not None else 12  # the first cycles are what a plot shows
        return [round(_cycle_start(i, self._period(), float(self.mult))) for i in range(1, n)]

    def formula(self, t, ops: Ops, state: State | None):
        P, m = self._period(), float(self.mult)
        D = float(self.schedule.duration)  # type: ignore[arg-type]
        tc = t if self.limit is None else ops.minimum(t, self._end())
        i, start, length = _cycle_index(tc, P, m, ops)
        u = ops.clip((tc - start) * (D / length), 0.0, D) if m != 1.0 or P != D else ops.clip(tc - start, 0.0, D)
        if self.limit is not None:
            # After the last cycle: the end of the last cycle, s(D) in cycle limit - 1, held. One
            # evaluation of the inner schedule either way (nested repeats stay linear in depth).
            done = ops.lt(t, self._end())
            i = ops.where(done, ops.minimum(i, float(self.limit - 1)), float(self.limit - 1))
            u = ops.where(done, u, D)
        v = self.schedule.formula(u, ops, state)
        if self.factor != 1.0:
            v = v * ops.pow(float(self.factor), i)
        return v


@register("per_epoch")
class per_epoch(Schedule):
    """An epoch-indexed schedule run per step: constant within each epoch (a staircase).

    .. math:: \\eta(t) = s(\\lfloor t / \\text{steps\\_per\\_epoch} \\rfloor)

    The inner schedule counts *epochs*: its durations are in epochs (``"5ep"`` and plain numbers
    alike) and its ``"P%"`` durations are fractions of the training's epochs, so the seeds'
    per-epoch formulas (step decay, ``lr0*(1 - epoch/E)^p``, Keras ``LearningRateScheduler``
    functions) keep their epoch arguments. ``steps_per_epoch`` may itself be ``"1ep"`` and is then
    filled in by :meth:`resolve`.

    Args:
        schedule: the epoch-indexed schedule.
        steps_per_epoch: optimizer steps per epoch (integer >= 1, or ``"1ep"``).

    >>> from lrlab.schedules import step_decay
    >>> s = per_epoch(step_decay(0.1, factor=0.5, every=10), steps_per_epoch=100)
    >>> s(999), s(1000)
    (0.1, 0.05)
    """

    schedule: Schedule = None  # type: ignore[assignment]
    steps_per_epoch: int | str = duration_field(1, show=True)

    def _validate(self) -> None:
        _check_schedule("per_epoch", "schedule", self.schedule)
        spe = self.steps_per_epoch
        if isinstance(spe, bool) or not isinstance(spe, int | float) or spe != int(spe) or spe < 1:
            raise ValueError(f"per_epoch: steps_per_epoch must be an integer >= 1, got steps_per_epoch={spe!r}")

    def resolve(self, total_steps: int | None = None, steps_per_epoch: int | None = None) -> Schedule:
        _check_schedule("per_epoch", "schedule", self.schedule)
        spe = resolve_duration(self.steps_per_epoch, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                               what="per_epoch: steps_per_epoch")
        if isinstance(spe, int | float) and spe < 1:
            raise ValueError(f"per_epoch: steps_per_epoch must be an integer >= 1, got steps_per_epoch={spe!r}")
        epochs = None if total_steps is None or isinstance(spe, str) else total_steps / spe
        inner = self.schedule.resolve(total_steps=epochs, steps_per_epoch=1)  # type: ignore[arg-type]
        return dataclasses.replace(self, schedule=inner, steps_per_epoch=spe)

    @property
    def duration(self) -> int | None:
        d = self.schedule.duration
        return None if d is None else d * int(self.steps_per_epoch)  # type: ignore[arg-type]

    def boundaries(self) -> list[int]:
        return [b * int(self.steps_per_epoch) for b in self.schedule.boundaries()]  # type: ignore[arg-type]

    def formula(self, t, ops: Ops, state: State | None):
        return self.schedule.formula(_floor_div(t, float(self.steps_per_epoch), ops), ops, state)  # type: ignore[arg-type]


_COOLDOWN_SHAPES = ("linear", "cosine", "1-sqrt")


@register("cooldown")
class cooldown(Schedule):
    """Begin the decay now: leave ``schedule`` at step ``begin`` and decay from its value there.

    With :math:`v_0 = s(\\text{begin})`, :math:`p = (t - \\text{begin})/\\text{steps}` and
    :math:`e` = ``end``:

    .. math::
        \\eta(t) = \\begin{cases}
          s(t) & t < \\text{begin} \\\\
          v_0 + (e - v_0)\\,p & \\text{linear} \\\\
          e + (v_0 - e)\\,\\tfrac12(1 + \\cos \\pi p) & \\text{cosine} \\\\
          e + (v_0 - e)(1 - \\sqrt{p}) & \\text{1-sqrt} \\\\
        \\end{cases} \\quad (\\text{begin} \\le t < \\text{begin} + \\text{steps}); \\qquad
        \\eta(t) = e \\ \\text{afterwards}

    Continuous at ``begin``. The schedule is evaluated once per step (at :math:`\\min(t, \\text{begin})`,
    which is ``begin`` from then on), so nested cooldowns cost time linear in their depth. This branches a WSD-style cooldown off a constant (or any) phase at a
    step chosen during training (e.g. when the budget is known), without rewriting the schedule.

    Args:
        schedule: the running schedule.
        begin: step where the cooldown begins (steps, ``"Nep"`` or ``"P%"``).
        steps: cooldown length (steps, ``"Nep"`` or ``"P%"``); 0 drops to ``end`` at once.
        end: final lr (absolute).
        shape: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.

    >>> s = cooldown(constant(0.1), begin=10, steps=4, end=0.0)
    >>> [round(s(t), 6) for t in (9, 10, 12, 14, 99)]
    [0.1, 0.1, 0.05, 0.0, 0.0]
    """

    schedule: Schedule = None  # type: ignore[assignment]
    begin: int | str = duration_field(0, show=True)
    steps: int | str = duration_field(0, show=True)
    end: float = lr_field(0.0)
    shape: str = "linear"

    def _validate(self) -> None:
        _check_schedule("cooldown", "schedule", self.schedule)
        if self.shape not in _COOLDOWN_SHAPES:
            raise ValueError(f"cooldown: shape must be one of {', '.join(_COOLDOWN_SHAPES)}, got shape={self.shape!r}")

    @property
    def duration(self) -> int | None:
        return self.begin + self.steps  # type: ignore[operator, return-value]

    def boundaries(self) -> list[int]:
        a = int(self.begin)  # type: ignore[arg-type]
        return [b for b in self.schedule.boundaries() if b < a] + [a, self.duration]  # type: ignore[list-item]

    def formula(self, t, ops: Ops, state: State | None):
        a, n, e = float(self.begin), float(self.steps), float(self.end)  # type: ignore[arg-type]
        before = self.schedule.formula(ops.minimum(t, a), ops, state)
        if n == 0:
            return ops.where(ops.lt(t, a), before, ops.full_like(t, e))
        v0 = before  # s(begin) wherever t >= begin, the only place it is used: one evaluation
        p = ops.clip((t - a) / n, 0.0, 1.0)
        if self.shape == "linear":
            down = v0 + (e - v0) * p
        elif self.shape == "cosine":
            down = e + (v0 - e) * (0.5 * (1.0 + ops.cos(ops.pi * p)))
        else:
            down = e + (v0 - e) * (1.0 - ops.sqrt(p))
        down = ops.where(ops.lt(t, a + n), down, ops.full_like(t, e))
        return ops.where(ops.lt(t, a), before, down)
