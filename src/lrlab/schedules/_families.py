"""Schedule families: step, multistep, piecewise, exponential, inverse time, linear, polynomial,
cosine, cosine with restarts, snapshot cosine, triangle, inverse square root, warmup-stable-decay,
tanh and piecewise interpolation.

Every family is a closed-form function of the optimizer step ``t`` (0-based) and reproduces the
named framework convention exactly (see each docstring, and ``tests/schedules/test_parity_frameworks.py``
for the parity checks against the real torch, Keras and optax implementations).

Where a framework convention is not a class of its own, it is a parameter or a composition:

=============================================  =====================================================
framework                                      lrlab
=============================================  =====================================================
torch ``StepLR(step_size, gamma)``             ``step_decay(lr0, factor=gamma, every=step_size)``
Keras-tutorial ``lr0*d^floor((1+e)/r)``        ``step_decay(lr0, factor=d, every=r, offset=1)``
torch ``MultiStepLR(milestones, gamma)``       ``multistep(lr0, milestones, factor=gamma)``
Keras ``PiecewiseConstantDecay(b, v)``         ``piecewise(b, v, switch="after")``
optax ``piecewise_constant_schedule``          ``piecewise(b, cumulative products, switch="at")``
torch ``ExponentialLR(gamma)``                 ``exponential(lr0, factor=gamma)``
Keras ``ExponentialDecay(lr0, D, r, stair)``   ``exponential(lr0, factor=r, every=D, staircase=stair)``
optax ``exponential_decay(..., begin, end)``   ``exponential(..., begin=B, end=E)``
seeds ``lr0*e^(-d*t)``                         ``exponential(lr0, factor=math.exp(-d))``
Keras ``InverseTimeDecay``, seeds ``1/t``      ``inverse_time(lr0, rate, every, staircase)``
torch ``LinearLR(s, e, T)``                    ``linear(lr0*s, lr0*e, T)``
torch ``PolynomialLR(T, p)``                   ``polynomial(lr0, 0.0, T, power=p)``
Keras ``PolynomialDecay(..., cycle)``          ``polynomial(lr0, end, D, power, cycle)``
torch ``CosineAnnealingLR(T, eta_min)``        ``cosine(lr0, eta_min, T)`` (torch is periodic past T)
Keras ``CosineDecay(lr0, D, alpha)``           ``cosine(lr0, alpha*lr0, D)``
Keras ``CosineDecay(..., warmup_*)``           ``warmup(cosine(target, alpha*target, D), W, start=lr0)``
optax ``warmup_cosine_decay_schedule``         ``warmup(cosine(peak, end, D-W), W, start=init)``
torch ``CosineAnnealingWarmRestarts``          ``restarts(lr0, eta_min, T_0, mult=T_mult)``
Keras ``CosineDecayRestarts``                  ``restarts(lr0, alpha*lr0, first, t_mul, m_mul)``
HF ``linear`` (with warmup)                    ``triangle(peak, warmup, steps)``
HF ``cosine`` / ``cosine_with_min_lr``         ``warmup(cosine(peak, min_lr, T-W), W)``
HF ``cosine_with_restarts(num_cycles=n)``      ``warmup(repeat(cosine(peak, 0, (T-W)/n), limit=n), W)``
HF ``polynomial``                              ``warmup(polynomial(peak, lr_end, T-W, power), W)``
HF ``inverse_sqrt``                            ``inverse_sqrt(peak, warmup, timescale)``
HF ``warmup_stable_decay``                     ``wsd(peak, warmup, stable, decay, end=r*peak)``
timm ``TanhLRScheduler``                       ``tanh(peak, end, steps, lb, ub)``
optax ``piecewise_interpolate_schedule``       ``interpolate(knots, levels, shape)``
=============================================  =====================================================

Every finite family holds its final value past its end. Frameworks differ there: torch's
``CosineAnnealingLR`` keeps oscillating after ``T_max``, transformers' cosine family rises again
after ``num_training_steps`` (its progress is not clamped), torch's ``OneCycleLR`` raises when
stepped past ``total_steps``; lrlab equals them up to their end and holds afterwards.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from lrlab.schedules._backend import Ops
from lrlab.schedules._combinators import (
    MAX_MULT,
    _ceil_div,
    _check_factor,
    _check_number,
    _cycle_index,
    _cycle_start,
    _floor_div,
)
from lrlab.schedules._core import (
    Schedule,
    State,
    as_float,
    duration_field,
    lr_field,
    register,
    shown_field,
)

__all__ = [
    "cosine",
    "exponential",
    "interpolate",
    "inverse_sqrt",
    "inverse_time",
    "linear",
    "multistep",
    "piecewise",
    "polynomial",
    "restarts",
    "snapshot",
    "step_decay",
    "tanh",
    "triangle",
    "wsd",
]


def _check_choice(owner: str, field: str, v: Any, choices: tuple[str, ...]) -> None:
    if v not in choices:
        raise ValueError(f"{owner}: {field} must be one of {', '.join(map(repr, choices))}, got {field}={v!r}")


def _check_positive(owner: str, field: str, v: Any) -> None:
    _check_number(owner, field, v, lo=0.0, lo_open=True)


def _check_int(owner: str, field: str, v: Any, *, lo: int) -> None:
    f = as_float(v)
    if f is None or not math.isfinite(f) or not f.is_integer() or f < lo:
        raise ValueError(f"{owner}: {field} must be an integer >= {lo}, got {field}={v!r}")


def _check_bool(owner: str, field: str, v: Any) -> None:
    if not isinstance(v, bool):
        raise ValueError(f"{owner}: {field} must be true or false, got {field}={v!r}")


# ---- step / multistep / piecewise ------------------------------------------------------------


@register("step_decay")
class step_decay(Schedule):
    """Step decay: the lr is multiplied by ``factor`` every ``every`` steps.

    .. math:: \\eta(t) = \\text{peak}\\cdot\\text{factor}^{\\lfloor (t + \\text{offset}) / \\text{every}\\rfloor}

    ``offset=0`` (default) is torch ``StepLR(step_size=every, gamma=factor)``: the k-th drop happens
    at ``t = k*every``. ``offset=1`` is the Keras-tutorial drop-based decay
    ``lr0 * drop**floor((1 + epoch) / epochs_drop)``: the k-th drop happens one step earlier, at
    ``t = k*every - 1`` (with 0-based Keras epochs, epoch 9 of ``every=10`` already has the halved lr).

    Args:
        peak: lr before the first drop.
        factor: multiplier per drop (torch ``gamma``, Keras-tutorial ``drop``), in (0, 1]: a
            factor > 1 would grow the lr without bound (to ``inf``).
        every: steps between drops (steps, ``"Nep"`` or ``"P%"``), > 0.
        offset: steps added to ``t`` before dividing (0 = torch, 1 = Keras tutorial), in ``[0, every)``.

    >>> s = step_decay(0.1, factor=0.5, every=10, offset=1)
    >>> s(8), s(9), s(19)
    (0.1, 0.05, 0.025)
    """

    peak: float = lr_field(0.1)
    factor: float = shown_field(0.1)
    every: int | str = duration_field(1, show=True)
    offset: int = 0

    def _validate(self) -> None:
        _check_factor("step_decay", "factor", self.factor)
        _check_positive("step_decay", "every", self.every)
        _check_int("step_decay", "offset", self.offset, lo=0)
        if self.offset >= self.every:  # type: ignore[operator]
            raise ValueError(f"step_decay: offset must be < every={self.every!r}, got offset={self.offset!r}")

    def boundaries(self) -> list[int]:
        e = int(self.every)  # type: ignore[arg-type]
        return [k * e - self.offset for k in range(1, 11)]

    def formula(self, t, ops: Ops, state: State | None):
        n = _floor_div(t + float(self.offset), float(self.every), ops)  # type: ignore[arg-type]
        return self.peak * ops.pow(float(self.factor), n)


@register("multistep")
class multistep(Schedule):
    """Multi-step decay: the lr is multiplied by ``factor`` at each milestone (torch ``MultiStepLR``).

    .. math:: \\eta(t) = \\text{peak}\\cdot\\text{factor}^{\\#\\{m \\in \\text{milestones}: m \\le t\\}}

    The drop happens *at* ``t = m`` (torch's convention; timm's ``MultiStepLRScheduler`` drops at
    ``m - 1``: use milestones ``m - 1``). A milestone given twice counts twice (torch's ``Counter``).
    Finite: the value holds after the last milestone.

    Args:
        peak: lr before the first milestone.
        milestones: steps where a drop happens (steps, ``"Nep"`` or ``"P%"``), in any order.
        factor: multiplier per milestone (torch ``gamma``), in (0, 1].

    >>> s = multistep(1.0, milestones=[3, 6], factor=0.1)
    >>> [round(s(t), 12) for t in range(8)]
    [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01]
    """

    peak: float = lr_field(0.1)
    milestones: tuple[int | str, ...] = duration_field((), show=True)
    factor: float = shown_field(0.1)

    def _validate(self) -> None:
        _check_factor("multistep", "factor", self.factor)
        if not isinstance(self.milestones, tuple) or not self.milestones:
            raise ValueError(f"multistep: milestones must be a non-empty list of steps, got milestones={self.milestones!r}")

    @property
    def duration(self) -> int | None:
        return math.ceil(max(self.milestones))  # type: ignore[type-var, arg-type]

    def boundaries(self) -> list[int]:
        return sorted({int(m) for m in self.milestones})  # type: ignore[arg-type]

    def formula(self, t, ops: Ops, state: State | None):
        ms = sorted(float(m) for m in self.milestones)  # type: ignore[arg-type]
        if ops.name == "python":
            return self.peak * math.pow(self.factor, bisect.bisect_right(ms, t))
        count = ops.full_like(t, 0.0)
        for m in ms:
            count = count + ops.where(ops.le(m, t), 1.0, 0.0)
        return self.peak * ops.pow(float(self.factor), count)


_SWITCH = ("at", "after")


@register("piecewise")
class piecewise(Schedule):
    """Piecewise constant lr with absolute ``levels`` between ``bounds``.

    With ``switch="at"`` (default; optax ``piecewise_constant_schedule`` and torch ``MultiStepLR``)
    ``levels[i+1]`` starts *at* ``t = bounds[i]``; with ``switch="after"`` (Keras
    ``PiecewiseConstantDecay``) it starts *after* it, at ``t = bounds[i] + 1``:

    .. math::
        \\eta(t) = \\text{levels}[k],\\quad k = \\#\\{i: b_i \\le t\\}\\ (\\text{at})
        \\ \\text{or}\\ \\#\\{i: b_i < t\\}\\ (\\text{after})

    optax's multiplicative ``{boundary: scale}`` maps to ``levels = [init, init*s0, init*s0*s1, ...]``.

    Args:
        bounds: strictly increasing steps (steps, ``"Nep"`` or ``"P%"``).
        levels: ``len(bounds) + 1`` learning rates.
        switch: ``"at"`` or ``"after"`` (see above).

    >>> s = piecewise([10, 20], [1.0, 0.5, 0.1], switch="after")
    >>> s(10), s(11), s(21)
    (1.0, 0.5, 0.1)
    """

    bounds: tuple[int | str, ...] = duration_field((), show=True)
    levels: tuple[float, ...] = lr_field(())
    switch: str = "at"

    def _validate(self) -> None:
        b, v = self.bounds, self.levels
        if not isinstance(v, tuple) or len(v) != len(b) + 1:
            raise ValueError(f"piecewise: needs len(levels) == len(bounds) + 1, got levels={v!r}, bounds={b!r}")
        if any(b[i + 1] <= b[i] for i in range(len(b) - 1)):  # type: ignore[operator]
            raise ValueError(f"piecewise: bounds must be strictly increasing, got bounds={b!r}")
        _check_choice("piecewise", "switch", self.switch, _SWITCH)

    @property
    def duration(self) -> int | None:
        if not self.bounds:
            return 0
        return math.ceil(self.bounds[-1]) + (1 if self.switch == "after" else 0)  # type: ignore[arg-type]

    def boundaries(self) -> list[int]:
        extra = 1 if self.switch == "after" else 0
        return [int(b) + extra for b in self.bounds]  # type: ignore[arg-type]

    def formula(self, t, ops: Ops, state: State | None):
        cmp = ops.le if self.switch == "at" else ops.lt
        out = ops.full_like(t, float(self.levels[0]))
        for b, v in zip(self.bounds, self.levels[1:]):
            out = ops.where(cmp(float(b), t), float(v), out)  # type: ignore[arg-type]
        return out


# ---- exponential / inverse time -------------------------------------------------------------


@register("exponential")
class exponential(Schedule):
    """Exponential decay: ``factor`` per ``every`` steps, optionally stepwise, delayed and bounded.

    With :math:`d = \\max(t - \\text{begin}, 0)` and :math:`p = d/\\text{every}` (floored if
    ``staircase``):

    .. math::
        \\eta(t) = \\text{bound}\\big(\\text{peak}\\cdot\\text{factor}^{p}\\big)

    where ``bound`` is ``max(., end)`` for ``factor < 1`` and ``min(., end)`` for ``factor > 1``
    (no bound when ``end`` is ``None``). A growing schedule (``factor > 1``) needs ``end``, its
    ceiling, so its values stay finite. This is optax ``exponential_decay`` exactly; Keras
    ``ExponentialDecay`` is ``begin=0, end=None``; torch ``ExponentialLR(gamma)`` is
    ``factor=gamma, every=1``; the seeds' ``lr0*e^(-d*t)`` is ``factor=math.exp(-d)``. Steps before
    ``begin`` give ``peak`` exactly on every path (the exponent is never negative, so nothing
    overflows however large ``begin`` is).

    Args:
        peak: lr at ``t <= begin``.
        factor: multiplier per ``every`` steps (> 0; > 1 grows and then needs ``end``).
        every: steps per ``factor`` (Keras ``decay_steps``), >= 1.
        staircase: floor the exponent (drop once every ``every`` steps).
        begin: steps of constant ``peak`` before the decay starts (optax ``transition_begin``).
        end: the bound (optax ``end_value``), an lr; ``None`` for none.

    >>> s = exponential(1.0, factor=0.5, every=10)
    >>> s(0), s(10), round(s(5), 12)
    (1.0, 0.5, 0.707106781187)
    """

    peak: float = lr_field(0.1)
    factor: float = shown_field(0.96)
    every: int | float | str = duration_field(1, show=True)
    staircase: bool = False
    begin: int | str = duration_field(0)
    end: float | None = lr_field(None)

    def _validate(self) -> None:
        _check_positive("exponential", "factor", self.factor)
        _check_number("exponential", "every", self.every, lo=1.0)
        _check_bool("exponential", "staircase", self.staircase)
        if self.factor > 1 and self.end is None:
            raise ValueError(
                f"exponential: factor={self.factor!r} > 1 grows without bound; give end= (the ceiling)"
            )

    def boundaries(self) -> list[int]:
        return [int(self.begin)] if self.begin else []  # type: ignore[arg-type]

    def formula(self, t, ops: Ops, state: State | None):
        # d >= 0: before ``begin`` the exponent is 0 and the value peak * 1 exactly (a negative
        # exponent would overflow factor**p for a large begin).
        d = ops.maximum(t - float(self.begin), 0.0)  # type: ignore[arg-type]
        p = _floor_div(d, float(self.every), ops) if self.staircase else d / float(self.every)  # type: ignore[arg-type]
        if self.factor > 1.0:  # stop one factor past the ceiling: factor**p stays finite
            peak, end = float(self.peak), float(self.end)  # type: ignore[arg-type]
            cap = math.log(end / peak) / math.log(self.factor) if 0 < peak < end else 0.0
            p = ops.minimum(p, cap + 1.0)
        v = self.peak * ops.pow(float(self.factor), p)
        if self.end is not None:
            v = ops.maximum(v, float(self.end)) if self.factor < 1.0 else ops.minimum(v, float(self.end))
        return v


@register("inverse_time")
class inverse_time(Schedule):
    """Inverse time (1/t) decay.

    .. math:: \\eta(t) = \\frac{\\text{peak}}{1 + \\text{rate}\\cdot p},\\quad p = t/\\text{every}
        \\ (\\lfloor\\cdot\\rfloor \\text{ if staircase})

    Keras ``InverseTimeDecay(peak, decay_steps=every, decay_rate=rate, staircase)``; with
    ``every=1`` it is the seeds' time-based decay ``lr0/(1 + d*t)`` and the old Keras optimizer
    ``decay=`` argument ``lr0/(1 + decay*iterations)`` (``t`` counts iterations, not epochs).

    Args:
        peak: lr at ``t = 0``.
        rate: decay rate ``k`` in :math:`1/(1 + k p)` (>= 0; a rate, not a per-event factor).
        every: steps per unit of ``p`` (Keras ``decay_steps``), >= 1.
        staircase: floor ``p``.

    >>> s = inverse_time(0.1, rate=0.001)
    >>> s(0), round(s(1000), 12)
    (0.1, 0.05)
    """

    peak: float = lr_field(0.1)
    rate: float = shown_field(0.01)
    every: int | float | str = duration_field(1, show=True)
    staircase: bool = False

    def _validate(self) -> None:
        _check_number("inverse_time", "rate", self.rate, lo=0.0)
        _check_number("inverse_time", "every", self.every, lo=1.0)
        _check_bool("inverse_time", "staircase", self.staircase)

    def formula(self, t, ops: Ops, state: State | None):
        p = _floor_div(t, float(self.every), ops) if self.staircase else t / float(self.every)  # type: ignore[arg-type]
        return self.peak / (1.0 + self.rate * p)


# ---- linear / polynomial --------------------------------------------------------------------


@register("linear")
class linear(Schedule):
    """Linear interpolation from ``start`` to ``end`` over ``steps`` steps, then ``end``.

    .. math:: \\eta(t) = \\text{start} + (\\text{end} - \\text{start})\\cdot \\min(t, T)/T

    From ``t = T`` on the value is ``end`` exactly, and it never leaves ``[min(start, end),
    max(start, end)]`` on any backend (float32 and XLA's rounded reciprocals included). torch ``LinearLR(start_factor=s, end_factor=e, total_iters=T)`` on base lr ``b`` is
    ``linear(b*s, b*e, T)``; the seeds' linear decay to the last epoch is ``linear(lr0, 0.0, T)``
    (``lr0*(1 - epoch/T)``). Works for warmups (``start < end``) and decays alike.

    Args:
        start: lr at ``t = 0``.
        end: lr at ``t >= steps``.
        steps: length ``T`` (steps, ``"Nep"`` or ``"P%"``); 0 means ``end`` at once.

    >>> s = linear(0.0, 0.1, steps=5)
    >>> [round(s(t), 12) for t in (0, 1, 5, 9)]
    [0.0, 0.02, 0.1, 0.1]
    """

    start: float = lr_field(0.0)
    end: float = lr_field(0.0)
    steps: int | str = duration_field(0, show=True)

    @property
    def duration(self) -> int | None:
        return self.steps  # type: ignore[return-value]

    def formula(self, t, ops: Ops, state: State | None):
        T, a, b = float(self.steps), float(self.start), float(self.end)  # type: ignore[arg-type]
        if T == 0:
            return ops.full_like(t, b)
        v = ops.clip(a + (b - a) * (ops.minimum(t, T) / T), min(a, b), max(a, b))
        return ops.where(ops.le(T, t), ops.full_like(t, b), v)


@register("polynomial")
class polynomial(Schedule):
    """Polynomial decay from ``start`` to ``end`` over ``steps`` steps (Keras ``PolynomialDecay``).

    .. math:: \\eta(t) = (\\text{start} - \\text{end})\\,(1 - s/D')^{\\text{power}} + \\text{end}

    Without ``cycle``: :math:`s = \\min(t, D)`, :math:`D' = D` (then ``end`` holds). With ``cycle``
    (Keras exactly): :math:`s = t`, :math:`D' = D\\lceil t/D\\rceil` (:math:`D' = D` at ``t = 0``).
    Keras' cycling is *not periodic*: the horizon grows, so right after ``t = kD`` the lr jumps
    to :math:`(\\text{start}-\\text{end})(1 - (kD+1)/((k+1)D))^p + \\text{end}` (0.45 for
    ``D=10, k=1, p=1``) and never returns to ``start``. Use :class:`~lrlab.schedules.repeat` for
    true restarts.

    torch ``PolynomialLR(total_iters=T, power=p)`` on base lr ``b`` is ``polynomial(b, 0.0, T, p)``;
    optax ``polynomial_schedule`` is this with ``cycle=False`` (its ``transition_begin`` is
    ``constant(start, steps=B) >> polynomial(...)``); the seeds' power decay to the last epoch
    ``lr0*(1 - epoch/T)^p`` is ``polynomial(lr0, 0.0, T, p)`` (run per epoch with ``per_epoch``).
    Note the default ``end`` is 0 (Keras' default is 1e-4).

    Args:
        start: lr at ``t = 0``.
        end: lr at ``t = steps``.
        steps: decay length ``D`` (steps, ``"Nep"`` or ``"P%"``), > 0.
        power: exponent (> 0; 1 is linear).
        cycle: Keras' growing-horizon cycling (infinite schedule).

    >>> s = polynomial(0.1, 0.0, steps=100, power=5)
    >>> s(0), round(s(50), 12), s(100)
    (0.1, 0.003125, 0.0)
    """

    start: float = lr_field(0.1)
    end: float = lr_field(0.0)
    steps: int | str = duration_field(1, show=True)
    power: float = 1.0
    cycle: bool = False

    def _validate(self) -> None:
        _check_positive("polynomial", "steps", self.steps)
        _check_positive("polynomial", "power", self.power)
        _check_bool("polynomial", "cycle", self.cycle)

    @property
    def duration(self) -> int | None:
        return None if self.cycle else self.steps  # type: ignore[return-value]

    def formula(self, t, ops: Ops, state: State | None):
        D = float(self.steps)  # type: ignore[arg-type]
        if self.cycle:
            Dp = D * ops.where(ops.le(t, 0.0), 1.0, _ceil_div(t, D, ops))
            base = (Dp - t) / Dp  # not 1 - t/Dp: XLA multiplies by a rounded reciprocal
        else:  # (D - min(t, D)) / D is exactly 0 from t = D on, in float32 and under XLA too
            base = (D - ops.minimum(t, D)) / D
        f = base if self.power == 1.0 else ops.pow(ops.maximum(base, 0.0), float(self.power))
        return (self.start - self.end) * f + self.end


# ---- cosine family --------------------------------------------------------------------------


@register("cosine")
class cosine(Schedule):
    """Cosine annealing from ``peak`` to ``end`` over ``steps`` steps, then ``end``.

    .. math:: \\eta(t) = \\text{end} + (\\text{peak} - \\text{end})
        \\left[\\tfrac12\\left(1 + \\cos\\frac{\\pi \\min(t, T)}{T}\\right)\\right]^{\\text{exponent}}

    ``end`` is an absolute floor (torch ``eta_min``, optax ``end_value``); Keras/optax ``alpha``
    (relative) is ``end = alpha * peak``; ``exponent`` is optax's. torch ``CosineAnnealingLR`` is
    the same within ``T_max`` but keeps oscillating after it (period ``2*T_max``); this holds ``end``.

    Args:
        peak: lr at ``t = 0``.
        end: lr at ``t >= steps``.
        steps: length ``T`` (steps, ``"Nep"`` or ``"P%"``), > 0.
        exponent: power on the cosine factor (optax), > 0.

    >>> s = cosine(peak=1.0, end=0.0, steps=10)
    >>> s(0), round(s(5), 12), s(10), s(99)
    (1.0, 0.5, 0.0, 0.0)
    """

    peak: float = lr_field(0.1)
    end: float = lr_field(0.0)
    steps: int | str = duration_field(1, show=True)
    exponent: float = 1.0

    def _validate(self) -> None:
        _check_positive("cosine", "steps", self.steps)
        _check_positive("cosine", "exponent", self.exponent)

    @property
    def duration(self) -> int | None:
        return self.steps  # type: ignore[return-value]

    def formula(self, t, ops: Ops, state: State | None):
        T = float(self.steps)  # type: ignore[arg-type]
        c = 0.5 * (1.0 + ops.cos(ops.pi * (ops.minimum(t, T) / T)))
        if self.exponent != 1.0:
            c = ops.pow(ops.maximum(c, 0.0), float(self.exponent))
        return self.end + (self.peak - self.end) * c


@register("restarts")
class restarts(Schedule):
    """Cosine annealing with warm restarts (SGDR), float period multiplier and peak decay.

    Cycle :math:`i` (0-based) starts at :math:`S_i = P(m^i - 1)/(m - 1)` (:math:`iP` if
    :math:`m = 1`) and lasts :math:`P m^i`; with :math:`f = (t - S_i)/(P m^i)`:

    .. math:: \\eta(t) = \\text{end} + (\\text{peak} - \\text{end})\\,\\text{factor}^i\\,
        \\tfrac12\\left(1 + \\cos \\pi f\\right)

    Keras ``CosineDecayRestarts(lr0, first_decay_steps=P, t_mul=m, m_mul=f, alpha)`` is
    ``restarts(lr0, alpha*lr0, P, m, f)`` (the factor scales the amplitude above the floor, not
    the floor); torch ``CosineAnnealingWarmRestarts(T_0=P, T_mult=m, eta_min)`` is ``factor=1``
    with integer ``m``. The cycle index is computed with a logarithm and then corrected against the
    exact cycle starts, so every restart happens exactly at :math:`S_i` (the lr is ``peak *
    decay**i`` there) despite round-off. Infinite; for a limited number of cycles use
    ``repeat(cosine(...), limit=n)``.

    Args:
        peak: lr at the start of the first cycle.
        end: floor reached at the end of each cycle (absolute).
        period: first cycle length ``P`` in steps (``"Nep"``/``"P%"`` allowed), >= 1.
        mult: cycle length multiplier ``m`` (float, in [1, 1e6]).
        factor: amplitude multiplier per cycle, in (0, 1] (Keras ``m_mul``; a factor > 1 would
            grow without bound).

    >>> s = restarts(1.0, 0.0, period=2, mult=2.0)
    >>> [round(s(t), 4) for t in range(7)]
    [1.0, 0.5, 1.0, 0.8536, 0.5, 0.1464, 1.0]
    """

    peak: float = lr_field(0.1)
    end: float = lr_field(0.0)
    period: int | float | str = duration_field(1, show=True)
    mult: float = 1.0
    factor: float = 1.0

    def _validate(self) -> None:
        _check_number("restarts", "period", self.period, lo=1.0)
        _check_number("restarts", "mult", self.mult, lo=1.0, hi=MAX_MULT)
        _check_factor("restarts", "factor", self.factor)

    def boundaries(self) -> list[int]:
        return [round(_cycle_start(i, float(self.period), self.mult)) for i in range(1, 12)]  # type: ignore[arg-type]

    def formula(self, t, ops: Ops, state: State | None):
        i, start, length = _cycle_index(t, float(self.period), float(self.mult), ops)  # type: ignore[arg-type]
        f = (t - start) / length
        amp = self.peak - self.end
        if self.factor != 1.0:
            amp = amp * ops.pow(float(self.factor), i)
        return self.end + amp * (0.5 * (1.0 + ops.cos(ops.pi * f)))


@register("snapshot")
class snapshot(Schedule):
    """The snapshot-ensemble cosine: ``cycles`` equal cosine cycles from ``peak`` to 0 over ``steps``.

    With :math:`P = \\lceil T/M \\rceil` and :math:`\\tau = \\min(t, T-1)`:

    .. math:: \\eta(t) = \\frac{\\text{peak}}{2}\\left(\\cos\\frac{\\pi \\bmod(\\tau, P)}{P} + 1\\right)

    This is the seeds' formula (Huang et al., "Snapshot Ensembles", ICLR 2017) with 0-based ``t``:
    the seeds write ``mod(num_of_epoch - 1, ...)`` with a 1-based epoch, i.e. ``t = num_of_epoch -
    1``. The value reached at ``t = T - 1`` (the end of the last cycle) is held afterwards. When
    ``M`` does not divide ``T`` the last cycle is cut short, as in the formula.

    Args:
        peak: lr at the start of each cycle.
        cycles: number of cycles ``M`` (integer >= 1).
        steps: total length ``T`` (steps, ``"Nep"`` or ``"P%"``), >= 1.

    >>> s = snapshot(0.2, cycles=2, steps=10)
    >>> s(0), round(s(2), 12), s(5)
    (0.2, 0.130901699437, 0.2)
    """

    peak: float = lr_field(0.1)
    cycles: int = shown_field(1)
    steps: int | str = duration_field(1, show=True)

    def _validate(self) -> None:
        _check_int("snapshot", "cycles", self.cycles, lo=1)
        _check_int("snapshot", "steps", self.steps, lo=1)

    @property
    def duration(self) -> int | None:
        return self.steps  # type: ignore[return-value]

    def _period(self) -> float:
        return float(math.ceil(self.steps / self.cycles))  # type: ignore[operator]

    def boundaries(self) -> list[int]:
        P = int(self._period())
        return list(range(P, int(self.steps), P)[:100])  # type: ignore[call-overload]

    def formula(self, t, ops: Ops, state: State | None):
        P = self._period()
        tau = ops.minimum(t, float(self.steps) - 1.0)  # type: ignore[arg-type]
        r = tau - P * _floor_div(tau, P, ops)
        return self.peak / 2.0 * (ops.cos(ops.pi * r / P) + 1.0)


# ---- transformer-style schedules ------------------------------------------------------------


@register("triangle")
class triangle(Schedule):
    """The triangle (slanted) schedule: linear warmup from 0 to ``peak``, then linear decay to ``end``.

    .. math::
        \\eta(t) = \\begin{cases}
          \\text{peak}\\cdot t/W & t < W \\\\
          \\text{end} + (\\text{peak} - \\text{end})\\cdot\\max\\!\\big(0, (T - t)/(T - W)\\big) & t \\ge W
        \\end{cases}

    ``steps`` (``T``) *includes* the warmup. With ``end=0`` this is transformers'
    ``get_linear_schedule_with_warmup(W, T)`` (BERT) exactly, including its lr of 0 at step 0.

    Args:
        peak: lr at ``t = W``.
        warmup: warmup length ``W`` (steps, ``"Nep"`` or ``"P%"``).
        steps: total length ``T > W``.
        end: lr at ``t >= T``.

    >>> s = triangle(1.0, warmup=2, steps=6)
    >>> [s(t) for t in range(8)]
    [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """

    peak: float = lr_field(0.1)
    warmup: int | str = duration_field(0, show=True)
    steps: int | str = duration_field(1, show=True)
    end: float = lr_field(0.0)

    def _validate(self) -> None:
        if not self.steps > self.warmup:  # type: ignore[operator]
            raise ValueError(f"triangle: steps must be > warmup={self.warmup!r}, got steps={self.steps!r}")

    @property
    def duration(self) -> int | None:
        return self.steps  # type: ignore[return-value]

    def boundaries(self) -> list[int]:
        return [int(self.warmup)] if self.warmup else []  # type: ignore[arg-type]

    def formula(self, t, ops: Ops, state: State | None):
        W, T = float(self.warmup), float(self.steps)  # type: ignore[arg-type]
        frac = ops.maximum((T - t) / (T - W), 0.0)
        down = self.end + (self.peak - self.end) * frac if self.end else self.peak * frac
        if W == 0:
            return down
        return ops.where(ops.lt(t, W), self.peak * (t / W), down)


@register("inverse_sqrt")
class inverse_sqrt(Schedule):
    """Linear warmup then inverse-square-root decay (transformers ``inverse_sqrt``).

    .. math::
        \\eta(t) = \\text{peak}\\cdot\\begin{cases}
          t/\\max(1, W) & t < W \\\\
          1/\\sqrt{(t + \\tau - W)/\\tau} & t \\ge W
        \\end{cases}

    with timescale :math:`\\tau` = ``timescale``, or ``W`` when ``None`` (10000 when ``W = 0``),
    so the decay starts at ``peak`` and halves by :math:`t = W + 3\\tau`.

    Args:
        peak: lr at ``t = W``.
        warmup: warmup length ``W`` (steps, ``"Nep"`` or ``"P%"``).
        timescale: :math:`\\tau` in steps (> 0; a whole number is stored as an int) or ``None``.

    >>> s = inverse_sqrt(1.0, warmup=4)
    >>> s(2), s(4), s(16)
    (0.5, 1.0, 0.5)
    """

    peak: float = lr_field(0.1)
    warmup: int | str = duration_field(0, show=True)
    timescale: int | float | None = None

    def _validate(self) -> None:
        if self.timescale is not None:
            _check_positive("inverse_sqrt", "timescale", self.timescale)

    def boundaries(self) -> list[int]:
        return [int(self.warmup)] if self.warmup else []  # type: ignore[arg-type]

    def formula(self, t, ops: Ops, state: State | None):
        W = float(self.warmup)  # type: ignore[arg-type]
        ts = float(self.timescale) if self.timescale is not None else (W or 10_000.0)
        decay = 1.0 / ops.sqrt(ops.maximum((t + (ts - W)) / ts, 1.0))
        if W == 0:
            return self.peak * decay
        return self.peak * ops.where(ops.lt(t, W), t / max(1.0, W), decay)


_WSD_SHAPES = ("linear", "cosine", "1-sqrt")


@register("wsd")
class wsd(Schedule):
    """Warmup-stable-decay (trapezoid), transformers ``warmup_stable_decay`` exactly.

    With :math:`m = \\text{end}/\\text{peak}` (0 when ``peak`` is 0) and :math:`g(f) = f(1 - m) + m`:

    .. math::
        \\eta(t)/\\text{peak} = \\begin{cases}
          g(w(t/\\max(1,W))) & t < W \\\\
          1 & W \\le t < W + S \\\\
          g(d((t - W - S)/\\max(1,D))) & W + S \\le t < W + S + D \\\\
          m & t \\ge W + S + D
        \\end{cases}

    warmup shapes :math:`w(p)`: linear :math:`p`, cosine :math:`\\tfrac12(1-\\cos\\pi p)`, 1-sqrt
    :math:`1-\\sqrt{1-p}`; decay shapes :math:`d(p)`: linear :math:`1-p`, cosine
    :math:`\\tfrac12(1+\\cos\\pi p)`, 1-sqrt :math:`1-\\sqrt{p}` (Hägele et al. 2024). Like
    transformers, the warmup starts at ``end`` (not 0). transformers' relative ``min_lr_ratio=r``
    is ``end = r * peak`` (``end`` is absolute, like every other family's ``end``). transformers derives ``S = T - W - D``
    when given ``num_training_steps=T`` only; here ``S`` is explicit, and fractions keep it short:
    ``wsd(peak, warmup="5%", stable="75%", decay="20%")``. For a cooldown that branches off a
    running schedule at a step chosen later, see :class:`~lrlab.schedules.cooldown`.

    Args:
        peak: the stable lr.
        warmup, stable, decay: phase lengths ``W, S, D`` (steps, ``"Nep"`` or ``"P%"``).
        end: final lr (absolute), in ``[0, peak]``.
        warmup_shape: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.
        decay_shape: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.

    >>> s = wsd(1.0, warmup=2, stable=3, decay=4, end=0.1)
    >>> [round(s(t), 4) for t in range(11)]
    [0.1, 0.55, 1.0, 1.0, 1.0, 1.0, 0.8682, 0.55, 0.2318, 0.1, 0.1]
    """

    peak: float = lr_field(0.1)
    warmup: int | str = duration_field(0, show=True)
    stable: int | str = duration_field(0, show=True)
    decay: int | str = duration_field(0, show=True)
    end: float = lr_field(0.0)
    warmup_shape: str = "linear"
    decay_shape: str = "cosine"

    def _validate(self) -> None:
        _check_choice("wsd", "warmup_shape", self.warmup_shape, _WSD_SHAPES)
        _check_choice("wsd", "decay_shape", self.decay_shape, _WSD_SHAPES)
        if self.end > self.peak:
            raise ValueError(f"wsd: end must be <= peak={self.peak!r}, got end={self.end!r}")

    @property
    def duration(self) -> int | None:
        return self.warmup + self.stable + self.decay  # type: ignore[operator, return-value]

    def boundaries(self) -> list[int]:
        W, S = int(self.warmup), int(self.stable)  # type: ignore[arg-type]
        return sorted({b for b in (W, W + S, self.duration) if b})  # type: ignore[misc]

    def formula(self, t, ops: Ops, state: State | None):
        W, S, D = float(self.warmup), float(self.stable), float(self.decay)  # type: ignore[arg-type]
        m = float(self.end) / float(self.peak) if self.peak else 0.0
        pw = ops.clip(t / max(1.0, W), 0.0, 1.0)
        if self.warmup_shape == "linear":
            fw = pw
        elif self.warmup_shape == "cosine":
            fw = 0.5 * (1.0 - ops.cos(ops.pi * pw))
        else:
            fw = 1.0 - ops.sqrt(1.0 - pw)
        pd = ops.clip((t - W - S) / max(1.0, D), 0.0, 1.0)
        if self.decay_shape == "linear":
            fd = 1.0 - pd
        elif self.decay_shape == "cosine":
            fd = 0.5 * (1.0 + ops.cos(ops.pi * 0.5 * 2.0 * pd))
        else:
            fd = 1.0 - ops.sqrt(pd)
        up = ops.maximum(fw * (1.0 - m) + m, 0.0)
        down = ops.maximum(fd * (1.0 - m) + m, 0.0)
        out = ops.where(ops.lt(t, W + S + D), down, ops.full_like(t, m))
        out = ops.where(ops.lt(t, W + S), ops.full_like(t, 1.0), out)
        out = ops.where(ops.lt(t, W), up, out)
        return self.peak * out


@register("tanh")
class tanh(Schedule):
    """Hyperbolic-tangent decay (timm ``TanhLRScheduler``, one cycle, no warmup).

    With :math:`r = t/T`:

    .. math:: \\eta(t) = \\text{end} + \\tfrac12(\\text{peak} - \\text{end})
        \\big(1 - \\tanh(\\text{lb}(1 - r) + \\text{ub}\\cdot r)\\big) \\ (t < T);
        \\qquad \\eta(t) = \\text{end}\\ (t \\ge T)

    Like timm, the value jumps to ``end`` at ``t = T`` (the curve itself ends at
    :math:`\\text{end} + \\tfrac12(\\text{peak}-\\text{end})(1 - \\tanh \\text{ub})`), and it starts
    slightly below ``peak`` (:math:`\\tanh(-7) \\approx -1`). timm's warmup and cycles are
    ``warmup(...)`` and ``repeat(...)``.

    Args:
        peak: timm ``lr_max`` (base lr).
        end: timm ``lr_min``.
        steps: ``T`` (timm ``t_initial``), > 0.
        lb, ub: the tanh range (timm defaults -7 and 3), ``lb < ub``.

    >>> s = tanh(1.0, 0.0, steps=10)
    >>> round(s(0), 6), round(s(7), 6), s(10)
    (0.999999, 0.5, 0.0)
    """

    peak: float = lr_field(0.1)
    end: float = lr_field(0.0)
    steps: int | str = duration_field(1, show=True)
    lb: float = -7.0
    ub: float = 3.0

    def _validate(self) -> None:
        _check_positive("tanh", "steps", self.steps)
        _check_number("tanh", "lb", self.lb)
        _check_number("tanh", "ub", self.ub)
        if self.lb >= self.ub:
            raise ValueError(f"tanh: lb must be < ub={self.ub!r}, got lb={self.lb!r}")

    @property
    def duration(self) -> int | None:
        return self.steps  # type: ignore[return-value]

    def formula(self, t, ops: Ops, state: State | None):
        T = float(self.steps)  # type: ignore[arg-type]
        r = ops.minimum(t, T) / T
        v = self.end + 0.5 * (self.peak - self.end) * (1.0 - ops.tanh(self.lb * (1.0 - r) + self.ub * r))
        return ops.where(ops.lt(t, T), v, ops.full_like(t, float(self.end)))


# ---- interpolation between knots ------------------------------------------------------------

_SHAPES = ("linear", "cos")


@register("interpolate")
class interpolate(Schedule):
    """Interpolation between ``levels`` at ``knots`` (linear or cosine), then the last value.

    For :math:`k_i < t \\le k_{i+1}` (the first piece also takes :math:`t = k_0 = 0`), with
    :math:`p = (t - k_i)/(k_{i+1} - k_i)`, :math:`a = v_i`, :math:`b = v_{i+1}`:

    .. math:: \\eta(t) = (b - a)p + a \\ \\text{(linear)};\\qquad
        \\eta(t) = b + \\tfrac{a - b}{2}(\\cos \\pi p + 1) \\ \\text{(cos)}

    and :math:`\\eta(t) = \\eta(k_\\text{last})` for :math:`t > k_\\text{last}`. These are torch
    ``OneCycleLR``'s annealing functions and phase rule; optax ``piecewise_interpolate_schedule``
    (cumulative scales) is ``levels = [init, init*s0, init*s0*s1, ...]``. Knots may be fractional.

    Args:
        knots: ``0 = k_0 < k_1 < ...`` in steps (``"Nep"``/``"P%"`` allowed), at least 2.
        levels: the lr at each knot (same length).
        shape: ``"linear"`` or ``"cos"``.

    >>> s = interpolate([0, 4, 8], [1.0, 0.1, 0.01])
    >>> [round(s(t), 12) for t in (2, 4, 6, 100)]
    [0.55, 0.1, 0.055, 0.01]
    """

    knots: tuple[int | float | str, ...] = duration_field((), show=True)
    levels: tuple[float, ...] = lr_field(())
    shape: str = "linear"

    def _validate(self) -> None:
        k, v = self.knots, self.levels
        if not isinstance(k, tuple) or len(k) < 2:
            raise ValueError(f"interpolate: needs at least 2 knots, got knots={k!r}")
        if k[0] != 0:
            raise ValueError(f"interpolate: the first knot must be 0, got knots={k!r}")
        if any(k[i + 1] <= k[i] for i in range(len(k) - 1)):  # type: ignore[operator]
            raise ValueError(f"interpolate: knots must be strictly increasing, got knots={k!r}")
        if not isinstance(v, tuple) or len(v) != len(k):
            raise ValueError(f"interpolate: needs one value per knot, got levels={v!r} for knots={k!r}")
        _check_choice("interpolate", "shape", self.shape, _SHAPES)

    @property
    def duration(self) -> int | None:
        return math.ceil(self.knots[-1])  # type: ignore[arg-type]

    def boundaries(self) -> list[int]:
        return [round(k) for k in self.knots[1:-1]]  # type: ignore[arg-type]

    def _piece(self, i: int, t, ops: Ops):
        a, b = float(self.levels[i]), float(self.levels[i + 1])
        k0, k1 = float(self.knots[i]), float(self.knots[i + 1])  # type: ignore[arg-type]
        p = ops.clip((t - k0) / (k1 - k0), 0.0, 1.0)
        if self.shape == "cos":
            return b + (a - b) / 2.0 * (ops.cos(ops.pi * p) + 1.0)
        return (b - a) * p + a

    def formula(self, t, ops: Ops, state: State | None):
        ks = [float(k) for k in self.knots]  # type: ignore[arg-type]
        tc = ops.minimum(t, ks[-1])
        n = len(ks) - 1
        if ops.name == "python":
            i = min(max(bisect.bisect_left(ks, tc) - 1, 0), n - 1)
            return self._piece(i, tc, ops)
        out = self._piece(n - 1, tc, ops)
        for i in range(n - 2, -1, -1):
            out = ops.where(ops.le(tc, ks[i + 1]), self._piece(i, tc, ops), out)
        return out
