"""Cyclic schedules with a momentum curve: cyclical learning rates (CLR) and one-cycle.

Both reproduce torch's ``CyclicLR`` and ``OneCycleLR`` exactly (``tests/schedules/
test_parity_frameworks.py``) and expose the momentum (or Adam ``beta1``) curve torch cycles with
them as :meth:`momentum`, a :class:`~lrlab.schedules.Schedule` of momentum values per step that
the optimizer adapters apply.
"""

from __future__ import annotations

import math

from lrlab.schedules._backend import Ops
from lrlab.schedules._combinators import _check_factor, _check_number, _floor_div, take
from lrlab.schedules._core import Schedule, State, duration_field, lr_field, register
from lrlab.schedules._families import _check_choice, _check_int, interpolate

__all__ = ["cyclic", "onecycle"]

_CLR_MODES = ("triangular", "triangular2", "exp_range")
_SCALE_MODES = ("cycle", "iterations")


@register("cyclic")
class cyclic(Schedule):
    """Cyclical learning rate (Smith 2017), torch ``CyclicLR`` exactly.

    With :math:`N = \\text{up} + \\text{down}`, :math:`r = \\text{up}/N`,
    :math:`c = \\lfloor 1 + t/N \\rfloor` (1-based cycle), :math:`x = 1 + t/N - c`:

    .. math::
        s = \\begin{cases} x/r & x \\le r \\\\ (x - 1)/(r - 1) & x > r \\end{cases},\\qquad
        \\eta(t) = \\text{base} + (\\text{peak} - \\text{base})\\,s\\,g

    with the amplitude scale :math:`g` = 1 (``triangular``), :math:`1/2^{a-1}` (``triangular2``) or
    :math:`\\text{factor}^{a}` (``exp_range``), where :math:`a = c` if ``scale_mode`` is ``"cycle"`` and
    :math:`a = t` if ``"iterations"``. ``scale_mode=None`` takes torch's choice per mode (``cycle``
    for the triangular modes, ``iterations`` for ``exp_range``); an explicit value equals torch with
    ``scale_fn`` set to that mode's function and that ``scale_mode``. Infinite.

    The momentum curve (:meth:`momentum`) is torch's
    :math:`\\text{max\\_momentum} - (\\text{max\\_momentum} - \\text{base\\_momentum})\\,s\\,g`:
    momentum is low when the lr is high.

    Args:
        base: lr at the start of each cycle (torch ``base_lr``).
        peak: lr at the top of the first cycle (torch ``max_lr``).
        up: length of the rising phase (torch ``step_size_up``; ``"Nep"``/``"P%"`` allowed), >= 1.
        down: length of the falling phase (``None``: same as ``up``), >= 1.
        mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        factor: ``exp_range`` multiplier of the amplitude per step or cycle (torch ``gamma``), in
            (0, 1] (a factor > 1 would grow without bound).
        scale_mode: ``None``, ``"cycle"`` or ``"iterations"`` (see above).
        base_momentum: momentum at the lr peak (torch default 0.8), in [0, 1].
        max_momentum: momentum at the lr base (torch default 0.9), in [0, 1].

    >>> s = cyclic(0.1, 1.0, up=4, mode="triangular2")
    >>> [round(s(t), 4) for t in (0, 2, 4, 8, 12, 16)]
    [0.1, 0.55, 1.0, 0.1, 0.55, 0.1]
    >>> round(s.momentum()(4), 6)
    0.8
    """

    base: float = lr_field(0.001)
    peak: float = lr_field(0.006)
    up: int | float | str = duration_field(2000, show=True)
    down: int | float | str | None = duration_field(None)
    mode: str = "triangular"
    factor: float = 1.0
    scale_mode: str | None = None
    base_momentum: float = 0.8
    max_momentum: float = 0.9

    def _validate(self) -> None:
        _check_number("cyclic", "up", self.up, lo=1.0)
        if self.down is not None:
            _check_number("cyclic", "down", self.down, lo=1.0)
        _check_choice("cyclic", "mode", self.mode, _CLR_MODES)
        _check_factor("cyclic", "factor", self.factor)
        if self.scale_mode is not None:
            _check_choice("cyclic", "scale_mode", self.scale_mode, _SCALE_MODES)
        _check_number("cyclic", "base_momentum", self.base_momentum, lo=0.0, hi=1.0)
        _check_number("cyclic", "max_momentum", self.max_momentum, lo=0.0, hi=1.0)

    def _sizes(self) -> tuple[float, float]:
        up = float(self.up)  # type: ignore[arg-type]
        down = up if self.down is None else float(self.down)  # type: ignore[arg-type]
        total = up + down
        return total, up / total

    def boundaries(self) -> list[int]:
        total, r = self._sizes()
        out = []
        for k in range(6):
            out += [round(k * total + r * total), round((k + 1) * total)]
        return out

    def _effective_scale_mode(self) -> str:
        if self.scale_mode is not None:
            return self.scale_mode
        return "iterations" if self.mode == "exp_range" else "cycle"

    def _shape(self, t, ops: Ops):
        """``s * g`` of the docstring, as torch computes it (``s`` first, then times ``g``)."""
        total, r = self._sizes()
        cycle = 1.0 + _floor_div(t, total, ops)  # torch: floor(1 + t/total), exact at cycle ends
        x = 1.0 + t / total - cycle
        s = ops.where(ops.le(x, r), x / r, (x - 1.0) / (r - 1.0)) if r < 1.0 else x / r
        a = cycle if self._effective_scale_mode() == "cycle" else t
        if self.mode == "triangular":
            g = None
        elif self.mode == "triangular2":
            g = ops.pow(0.5, a - 1.0)  # = torch's 1 / 2**(a - 1) exactly; no overflow far out
        else:
            g = ops.pow(float(self.factor), a)
        return s, g

    def _curve(self, lo: float, hi: float, t, ops: Ops):
        s, g = self._shape(t, ops)
        height = (hi - lo) * s
        return lo + (height if g is None else height * g)

    def formula(self, t, ops: Ops, state: State | None):
        return self._curve(float(self.base), float(self.peak), t, ops)

    def momentum(self) -> Schedule:
        """The momentum torch ``CyclicLR`` sets with this lr: a ``cyclic`` from ``max_momentum`` to
        ``base_momentum`` on the same cycle (exactly torch's value)."""
        return cyclic(
            base=self.max_momentum, peak=self.base_momentum, up=self.up, down=self.down, mode=self.mode,
            factor=self.factor, scale_mode=self.scale_mode, base_momentum=self.base_momentum,
            max_momentum=self.max_momentum,
        )


_ANNEAL = ("cos", "linear")


@register("onecycle")
class onecycle(Schedule):
    """One-cycle policy (Smith & Topin 2018), torch ``OneCycleLR`` exactly.

    With :math:`T` = ``steps``, :math:`\\eta_0 = \\text{peak}/\\text{div\\_factor}` and
    :math:`\\eta_{min} = \\eta_0/\\text{final\\_div\\_factor}`, the lr is an
    :class:`~lrlab.schedules.interpolate` (``shape`` = ``anneal``) through the knots

    * two phases: :math:`(0, \\eta_0)`, :math:`(\\text{pct}\\cdot T - 1, \\text{peak})`,
      :math:`(T - 1, \\eta_{min})`;
    * three phases: :math:`(0, \\eta_0)`, :math:`(\\text{pct}\\cdot T - 1, \\text{peak})`,
      :math:`(2\\,\\text{pct}\\cdot T - 2, \\eta_0)`, :math:`(T - 1, \\eta_{min})`;

    with torch's annealing functions ``cos``: :math:`b + \\frac{a-b}{2}(\\cos\\pi p + 1)` and
    ``linear``: :math:`(b - a)p + a`. The momentum curve (:meth:`momentum`) goes
    ``max_momentum -> base_momentum -> max_momentum`` (three phases: ``... -> max_momentum`` held).

    The last update of a ``T``-step run uses :math:`\\eta_{min}` at ``t = T - 1``. torch raises
    ``ValueError`` when stepped past ``T`` (and its value at ``t = T`` is extrapolated past
    :math:`\\eta_{min}`); lrlab holds :math:`\\eta_{min}` for every ``t >= T - 1``. optax's
    ``cosine_onecycle_schedule`` puts its knots at ``int(pct*T)`` and ``T`` instead (one step later);
    it is the :class:`~lrlab.schedules.interpolate` with those knots.

    Args:
        peak: the maximum lr (torch ``max_lr``).
        steps: total steps ``T`` (steps, ``"Nep"`` or ``"P%"``), >= 2.
        pct_start: fraction of ``T`` spent increasing, in (0, 1).
        anneal: ``"cos"`` or ``"linear"`` (torch ``anneal_strategy``).
        div_factor: ``peak / initial lr`` (> 0).
        final_div_factor: ``initial lr / final lr`` (> 0).
        three_phase: torch's symmetric three-phase variant.
        base_momentum: momentum at the lr peak (torch default 0.85).
        max_momentum: momentum at the start and end (torch default 0.95).

    >>> s = onecycle(1.0, steps=100)
    >>> round(s(0), 12), s(29), s(99), s(500)
    (0.04, 1.0, 4e-06, 4e-06)
    >>> round(s.momentum()(29), 6)
    0.85
    """

    peak: float = lr_field(0.1)
    steps: int | str = duration_field(2, show=True)
    pct_start: float = 0.3
    anneal: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False
    base_momentum: float = 0.85
    max_momentum: float = 0.95

    def _validate(self) -> None:
        _check_int("onecycle", "steps", self.steps, lo=2)
        _check_number("onecycle", "pct_start", self.pct_start)
        _check_choice("onecycle", "anneal", self.anneal, _ANNEAL)
        _check_number("onecycle", "div_factor", self.div_factor, lo=0.0, lo_open=True)
        _check_number("onecycle", "final_div_factor", self.final_div_factor, lo=0.0, lo_open=True)
        if not isinstance(self.three_phase, bool):
            raise ValueError(f"onecycle: three_phase must be true or false, got three_phase={self.three_phase!r}")
        _check_number("onecycle", "base_momentum", self.base_momentum, lo=0.0, hi=1.0)
        _check_number("onecycle", "max_momentum", self.max_momentum, lo=0.0, hi=1.0)
        initial = self.peak / self.div_factor
        if not math.isfinite(initial / self.final_div_factor) or not math.isfinite(initial):
            raise ValueError(
                f"onecycle: peak / div_factor / final_div_factor must be finite, got peak={self.peak!r}, "
                f"div_factor={self.div_factor!r}, final_div_factor={self.final_div_factor!r}"
            )
        knots = self._knots()
        if any(knots[i + 1] <= knots[i] for i in range(len(knots) - 1)):
            raise ValueError(
                f"onecycle: pct_start={self.pct_start!r} with steps={self.steps!r} leaves an empty phase "
                f"(phase ends at {knots[1:]}); use a pct_start in (1/steps, {'0.5' if self.three_phase else '1'})"
            )

    def max_value(self) -> float:
        return max(self.peak, self.peak / self.div_factor)

    def _knots(self) -> tuple[float, ...]:
        T = int(self.steps)  # type: ignore[arg-type]
        e1 = float(self.pct_start * T) - 1
        if self.three_phase:
            return (0.0, e1, float(2 * self.pct_start * T) - 2, float(T - 1))
        return (0.0, e1, float(T - 1))

    def _lr_curve(self) -> interpolate:
        initial = self.peak / self.div_factor
        low = initial / self.final_div_factor
        values = (initial, self.peak, initial, low) if self.three_phase else (initial, self.peak, low)
        return interpolate(knots=self._knots(), levels=values, shape=self.anneal)

    @property
    def duration(self) -> int | None:
        return self.steps  # type: ignore[return-value]

    def boundaries(self) -> list[int]:
        return [math.floor(k) + 1 for k in self._knots()[1:-1]]

    def formula(self, t, ops: Ops, state: State | None):
        return self._lr_curve().formula(t, ops, state)

    def momentum(self) -> Schedule:
        """The momentum torch ``OneCycleLR`` sets with this lr (an ``interpolate`` on the same knots)."""
        hi, lo = self.max_momentum, self.base_momentum
        values = (hi, lo, hi, hi) if self.three_phase else (hi, lo, hi)
        return take(interpolate(knots=self._knots(), levels=values, shape=self.anneal), steps=self.steps)
