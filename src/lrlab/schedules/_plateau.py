"""Metric-driven control: the ``plateau`` multiplier, its controller and the stateful runner.

A schedule stays a pure function of the step. Reacting to a validation metric needs state, and
lrlab keeps that state *outside* the schedule, in a small controller whose only output is a
multiplier:

* :class:`plateau` is a registered schedule node whose value is ``state[key]`` (1.0 when the
  state does not say otherwise). It composes like any factor:
  ``warmup(cosine(peak=0.1, steps=900), steps=100) * plateau(patience=3)``.
* :class:`PlateauController` is the state machine that turns a metric trace into that multiplier,
  with the counting rules of PyTorch's ``ReduceLROnPlateau``, Keras' ``ReduceLROnPlateau``
  callback or ``optax.contrib.reduce_on_plateau`` (``preset=``), reproduced exactly.
* :class:`ScheduleState` is the one stateful runner every adapter uses: the optimizer-update count
  plus one controller per plateau key, with a JSON-able ``state_dict``.
* :func:`simulate` gives the lr over steps for a per-epoch metric trace (for plots and tests).

Because the controller multiplies the *schedule's* value, a reduction survives everything the
schedule does afterwards (warmup ends, cosine decays): ``lr(t) = s(t) · m``, with ``m`` the
product of the reductions so far. ``min_lr`` and the torch ``eps`` rule are in lr units and are
checked when a reduction happens, against the lr at that step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

from lrlab.schedules._backend import Ops, is_python_number, ops_for
from lrlab.schedules._core import Schedule, State, from_config, register

__all__ = ["PlateauController", "ScheduleState", "plateau", "simulate"]

_PRESETS = ("torch", "keras", "optax")
_PRESET_THRESHOLD_MODE = {"torch": "rel", "keras": "abs", "optax": "rel"}
_STATE_VERSION = 1
_PY_OPS = ops_for(0)


def _check_finite(field: str, v: Any, *, lo: float | None = None, hi: float | None = None,
                  hi_open: bool = False, lo_open: bool = False) -> None:
    if isinstance(v, bool) or not is_python_number(v) or not math.isfinite(v):
        raise ValueError(f"plateau: {field} must be a finite number, got {field}={v!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"plateau: {field} must be {'>' if lo_open else '>='} {lo}, got {field}={v!r}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"plateau: {field} must be {'<' if hi_open else '<='} {hi}, got {field}={v!r}")


def _check_count(field: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
        raise ValueError(f"plateau: {field} must be an integer >= 0 (epochs), got {field}={v!r}")


@register("plateau")
class plateau(Schedule):
    """A multiplier driven by a metric: reduce the lr by ``factor`` when the metric stops improving.

    As a schedule it is the current multiplier, read from the run-time state:

    .. math:: \\eta(t) = m_{\\text{key}}, \\qquad m_{\\text{key}} = \\text{state}[\\text{key}]
              \\ (1 \\text{ when absent}),

    so ``s * plateau()`` is ``s(t)`` times the product of the reductions so far. The multiplier
    is updated by a :class:`PlateauController` (run for you by :class:`ScheduleState` and every
    adapter) once per evaluation, e.g. at the end of each epoch:

    * improvement (``mode='min'``): ``a < best·(1 − threshold)`` (``'rel'``) or
      ``a < best − threshold`` (``'abs'``); for ``mode='max'``: ``a > best·(1 + threshold)`` or
      ``a > best + threshold``. The first value always improves.
    * a reduction is ``m ← min(m, max(m·factor, min_scale, min_lr / lr))``, with ``lr`` the
      schedule's value at the current step without this multiplier (in lr units).
    * *when* to reduce follows ``preset`` (anchors quirks 11 and 12):

      - ``'torch'`` (``torch.optim.lr_scheduler.ReduceLROnPlateau``): count a bad evaluation, zero
        it during cooldown, reduce when the count **exceeds** ``patience`` (after ``patience + 1``
        bad evaluations); a reduction that lowers the lr by ``eps`` or less (lr units) is skipped,
        but the counters reset as torch does.
      - ``'keras'`` (``keras.callbacks.ReduceLROnPlateau``): the cooldown counter is decremented
        *before* the check, so ``cooldown=c`` waits ``c − 1`` evaluations (``cooldown=1`` acts
        like 0, as in Keras); reduce when the count **reaches** ``patience``; nothing resets while
        the multiplier is already at its floor.
      - ``'optax'`` (``optax.contrib.reduce_on_plateau`` with ``accumulation_size=1``): reduce
        when the count **equals** ``patience`` (so ``patience=0`` reduces at the first evaluation
        and at every improvement, never on a bad one, as optax does); ``threshold`` is its
        ``rtol`` (``'rel'``) or ``atol`` (``'abs'``). optax is min-only; ``mode='max'`` mirrors
        the test (``a > (1 + rtol)·best + atol``).

      Keras and optax make the improvement comparison in float32 (``keras.ops`` in the default
      floatx, optax's float32 state); their presets do the same, so a metric that improves by
      exactly the threshold is judged as they judge it.

    Deliberate differences from the three frameworks:

    * a NaN/inf metric is an error (``on_nan='raise'``) or ignored (``'skip'``); torch, Keras and
      optax all count it as a bad epoch, so a diverged run quietly looks like a plateau.
    * the state (best, counters, multiplier) is checkpointed with the run; Keras' callback resets
      it at every ``fit``.
    * ``min_lr`` bounds the lr at the step a reduction happens; a schedule that keeps decaying may
      take the lr below it later (wrap in ``clamp(..., min=...)`` for a floor at every step).
    * ``threshold_mode='rel'`` under ``'keras'`` and ``mode='max'`` under ``'optax'`` are lrlab
      extensions; optax's ``accumulation_size`` is not modelled (average the values yourself and
      observe the mean).

    Args:
        key: name of this multiplier in the run-time state (two nodes with the same key share it).
        mode: ``'min'`` (a loss) or ``'max'`` (an accuracy).
        factor: multiplier applied at each reduction, ``0 < factor < 1``.
        patience: evaluations without improvement tolerated (counted per ``preset``).
        threshold: minimal change that counts as an improvement (relative or absolute).
        threshold_mode: ``'rel'`` or ``'abs'``; ``None`` takes the preset's default
            (torch ``'rel'``, keras ``'abs'`` (its ``min_delta``), optax ``'rel'`` (its ``rtol``)).
        cooldown: evaluations after a reduction during which bad evaluations are not counted.
        min_scale: floor of the multiplier (optax's ``min_scale``), in ``[0, 1]``.
        min_lr: floor in lr units (torch/keras ``min_lr``), applied when a reduction happens.
        eps: ``'torch'`` only: a reduction of the lr by ``eps`` or less is skipped (lr units).
        preset: ``'torch'``, ``'keras'`` or ``'optax'``: whose counting rules to follow.
        on_nan: a NaN/inf/missing metric raises ``ValueError`` (``'raise'``) or is ignored
            (``'skip'``: no counter changes).

    >>> from lrlab.schedules import constant
    >>> s = constant(0.1) * plateau(patience=1)
    >>> s(0), s(0, {"plateau": 0.5})
    (0.1, 0.05)
    >>> st = ScheduleState(s)
    >>> [st.observe(loss) for loss in [1.0, 1.0, 1.0]]
    [0.1, 0.1, 0.010000000000000002]
    """

    key: str = "plateau"
    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str | None = None
    cooldown: int = 0
    min_scale: float = 0.0
    min_lr: float = 0.0
    eps: float = 1e-8
    preset: str = "torch"
    on_nan: str = "raise"

    metric_driven: ClassVar[bool] = True
    """Marks a node whose value comes from run-time state rather than from the step."""

    def _validate(self) -> None:
        if not isinstance(self.key, str) or not self.key.isidentifier():
            raise ValueError(f"plateau: key must be an identifier such as 'plateau', got key={self.key!r}")
        if self.mode not in ("min", "max"):
            raise ValueError(f"plateau: mode must be 'min' or 'max', got mode={self.mode!r}")
        if self.preset not in _PRESETS:
            raise ValueError(f"plateau: preset must be one of {', '.join(_PRESETS)}, got preset={self.preset!r}")
        if self.threshold_mode not in (None, "rel", "abs"):
            raise ValueError(f"plateau: threshold_mode must be 'rel', 'abs' or none, got threshold_mode={self.threshold_mode!r}")
        if self.on_nan not in ("raise", "skip"):
            raise ValueError(f"plateau: on_nan must be 'raise' or 'skip', got on_nan={self.on_nan!r}")
        _check_finite("factor", self.factor, lo=0.0, lo_open=True, hi=1.0, hi_open=True)
        _check_count("patience", self.patience)
        _check_count("cooldown", self.cooldown)
        _check_finite("threshold", self.threshold, lo=0.0)
        if self.mode == "min" and self.effective_threshold_mode == "rel" and self.threshold >= 1:
            raise ValueError(
                f"plateau: a relative threshold must be < 1 in mode 'min' (nothing could improve), got threshold={self.threshold!r}"
            )
        _check_finite("min_scale", self.min_scale, lo=0.0, hi=1.0)
        _check_finite("min_lr", self.min_lr, lo=0.0)
        _check_finite("eps", self.eps, lo=0.0)

    @property
    def effective_threshold_mode(self) -> str:
        """``threshold_mode``, or the preset's default when it is ``None``."""
        return self.threshold_mode or _PRESET_THRESHOLD_MODE[self.preset]

    def max_value(self) -> float:
        return 1.0  # a multiplier that only ever reduces

    def formula(self, t, ops: Ops, state: State | None):
        value = 1.0 if state is None else state.get(self.key, 1.0)
        return ops.full_like(t, value)


class PlateauController:
    """The state machine behind one :class:`plateau` node: metric in, multiplier out.

    ``observe(metric, lr=None)`` is called once per evaluation (typically per epoch) and returns
    the new multiplier. ``lr`` is the schedule's current value *without* this multiplier, in lr
    units; it is needed for ``min_lr`` and for the torch ``eps`` rule (without it the multiplier
    itself is taken as the lr, i.e. ``lr=1``). :class:`ScheduleState` passes it for you.

    Attributes: ``scale`` (the multiplier), ``best`` (best metric so far, ``None`` before the
    first), ``num_bad`` (bad evaluations counted), ``cooldown_counter``, ``num_observed``
    (evaluations seen, NaNs skipped included) and ``num_reductions``.

    >>> c = PlateauController(plateau(patience=0, factor=0.5))
    >>> [c.observe(x) for x in [3.0, 2.0, 2.0, 2.5, 1.0]]
    [1.0, 1.0, 0.5, 0.25, 0.25]
    >>> c.best, c.num_reductions
    (1.0, 2)
    """

    def __init__(self, node: plateau) -> None:
        if not isinstance(node, plateau):
            raise ValueError(f"PlateauController needs a plateau node, got {node!r}")
        self.node = node
        self.reset()

    def reset(self) -> None:
        self.scale = 1.0
        self.best: float | None = None
        self.num_bad = 0
        self.cooldown_counter = 0
        self.num_observed = 0
        self.num_reductions = 0

    # ---- the rules ----------------------------------------------------------------------------
    def _improved(self, a: float) -> bool:
        if self.best is None:
            return True
        n, best = self.node, self.best
        thr = float(n.threshold)
        rel = n.effective_threshold_mode == "rel"
        lower = n.mode == "min"
        if n.preset == "keras":
            # Keras: monitor_op(current -/+ min_delta, best) through keras.ops, i.e. in float32.
            f32 = np.float32
            if rel:
                bound = best * (1.0 - thr) if lower else best * (1.0 + thr)
                return bool(f32(a) < f32(bound)) if lower else bool(f32(a) > f32(bound))
            return bool(f32(a + thr) < f32(best)) if lower else bool(f32(a - thr) > f32(best))
        if n.preset == "optax":
            # optax: avg < (1 - rtol) * best - atol, in the float32 of its state.
            f32 = np.float32
            rtol, atol = (thr, 0.0) if rel else (0.0, thr)
            if lower:
                return bool(f32(a) < f32(1.0 - rtol) * f32(best) - f32(atol))
            return bool(f32(a) > f32(1.0 + rtol) * f32(best) + f32(atol))
        if lower:
            return a < best * (1.0 - thr) if rel else a < best - thr
        return a > best * (1.0 + thr) if rel else a > best + thr

    def _reduced_scale(self, lr: float | None) -> float:
        n = self.node
        floor = float(n.min_scale)
        if n.min_lr > 0:
            if lr is None:
                raise ValueError(
                    f"plateau {n.key!r}: min_lr={n.min_lr!r} is in lr units; pass the current lr "
                    "(observe(metric, lr=...)) or use min_scale"
                )
            if lr > 0:
                floor = max(floor, n.min_lr / lr)
        return min(self.scale, max(self.scale * n.factor, floor))

    def _metric(self, metric: Any) -> float | None:
        key = self.node.key
        if isinstance(metric, bool) or metric is None:
            value = math.nan if metric is None else None
        else:
            try:
                value = float(metric)
            except (TypeError, ValueError):
                value = None
        if value is None:
            raise ValueError(f"plateau {key!r}: the metric must be a number, got metric={metric!r}")
        if math.isfinite(value):
            return value
        if self.node.on_nan == "skip":
            return None
        raise ValueError(
            f"plateau {key!r}: the metric is not finite (metric={metric!r}); fix the run, or build "
            "the node with on_nan='skip' to ignore such evaluations"
        )

    def observe(self, metric: Any, lr: float | None = None) -> float:
        """Feed one evaluation's metric; return the new multiplier."""
        a = self._metric(metric)
        if lr is not None:
            lr = float(lr)
            if not math.isfinite(lr) or lr < 0:
                raise ValueError(f"plateau {self.node.key!r}: lr must be a finite number >= 0, got lr={lr!r}")
        self.num_observed += 1
        if a is None:
            return self.scale
        step = {"torch": self._torch, "keras": self._keras, "optax": self._optax}[self.node.preset]
        step(a, lr)
        return self.scale

    def _apply(self, new: float) -> None:
        if new < self.scale:
            self.num_reductions += 1
        self.scale = new

    def _torch(self, a: float, lr: float | None) -> None:
        # torch/optim/lr_scheduler.py ReduceLROnPlateau.step and _reduce_lr
        n = self.node
        if self._improved(a):
            self.best, self.num_bad = a, 0
        else:
            self.num_bad += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0
        if self.num_bad > n.patience:
            new = self._reduced_scale(lr)
            unit = 1.0 if lr is None else lr
            if (self.scale - new) * unit > n.eps:
                self._apply(new)
            self.cooldown_counter = n.cooldown
            self.num_bad = 0

    def _keras(self, a: float, lr: float | None) -> None:
        # keras/src/callbacks/reduce_lr_on_plateau.py on_epoch_end
        n = self.node
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0
        if self._improved(a):
            self.best, self.num_bad = a, 0
        elif self.cooldown_counter == 0:
            self.num_bad += 1
            if self.num_bad >= n.patience:
                new = self._reduced_scale(lr)
                if new < self.scale:  # Keras: only when old_lr > min_lr
                    self._apply(new)
                    self.cooldown_counter = n.cooldown
                    self.num_bad = 0

    def _optax(self, a: float, lr: float | None) -> None:
        # optax/contrib/_reduce_on_plateau.py _update_scale (accumulation_size=1)
        n = self.node
        improved = self._improved(a)
        if improved:
            self.best = float(np.float32(a))  # optax keeps its best value in float32
        count = 0 if improved else self.num_bad + 1
        if self.cooldown_counter > 0:
            self.num_bad = 0
            self.cooldown_counter -= 1
        elif count == n.patience:
            self.num_bad = 0
            self._apply(self._reduced_scale(lr))
            self.cooldown_counter = n.cooldown
        else:
            self.num_bad = count

    # ---- checkpointing ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The controller's state as a plain JSON-able dict."""
        return {
            "key": self.node.key,
            "scale": float(self.scale),
            "best": None if self.best is None else float(self.best),
            "num_bad": int(self.num_bad),
            "cooldown_counter": int(self.cooldown_counter),
            "num_observed": int(self.num_observed),
            "num_reductions": int(self.num_reductions),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (checks the key and every value)."""
        if not isinstance(state, Mapping):
            raise ValueError(f"plateau state must be a mapping, got {type(state).__name__}")
        expected = set(self.state_dict())
        if set(state) != expected:
            raise ValueError(f"plateau state has keys {sorted(state)}, expected {sorted(expected)}")
        if state["key"] != self.node.key:
            raise ValueError(f"plateau state is for key {state['key']!r}, this controller's key is {self.node.key!r}")
        scale, best = state["scale"], state["best"]
        if isinstance(scale, bool) or not is_python_number(scale) or not 0.0 <= scale <= 1.0:
            raise ValueError(f"plateau state: scale must be a number in [0, 1], got scale={scale!r}")
        if best is not None and (isinstance(best, bool) or not is_python_number(best) or not math.isfinite(best)):
            raise ValueError(f"plateau state: best must be a finite number or null, got best={best!r}")
        for k in ("num_bad", "cooldown_counter", "num_observed", "num_reductions"):
            if isinstance(state[k], bool) or not isinstance(state[k], int) or state[k] < 0:
                raise ValueError(f"plateau state: {k} must be an integer >= 0, got {k}={state[k]!r}")
        self.scale = float(scale)
        self.best = None if best is None else float(best)
        self.num_bad = state["num_bad"]
        self.cooldown_counter = state["cooldown_counter"]
        self.num_observed = state["num_observed"]
        self.num_reductions = state["num_reductions"]

    def __repr__(self) -> str:
        return (f"PlateauController({self.node}, scale={self.scale!r}, best={self.best!r}, "
                f"num_bad={self.num_bad}, cooldown_counter={self.cooldown_counter})")


def _plateau_nodes(schedule: Schedule) -> dict[str, plateau]:
    nodes: dict[str, plateau] = {}
    for n in schedule.walk():
        if isinstance(n, plateau):
            if n.key in nodes and nodes[n.key] != n:
                raise ValueError(
                    f"two plateau nodes share key {n.key!r} with different settings ({nodes[n.key]} and {n}); "
                    "give each its own key"
                )
            nodes[n.key] = n
    return nodes


class ScheduleState:
    """A schedule plus the state of a run: the optimizer-update count and the plateau controllers.

    The one stateful object every adapter uses. ``lr`` is the value for the *next* optimizer
    update, ``advance()`` moves on by updates that really happened, ``observe(metric)`` feeds
    every plateau controller (call it once per evaluation). ``state_dict()`` holds only the step,
    the controllers' states and ``schedule.to_config()``: plain JSON, no pickled code.

    Args:
        schedule: a resolved schedule (see :meth:`Schedule.resolve`).
        step: number of optimizer updates already done (the lr returned is ``schedule(step)``).

    >>> from lrlab.schedules import constant
    >>> st = ScheduleState(constant(0.1, steps=2) >> constant(0.01))
    >>> st.lr, st.advance(2), st.lr
    (0.1, 2, 0.01)
    """

    def __init__(self, schedule: Schedule, step: int = 0) -> None:
        if not isinstance(schedule, Schedule):
            raise ValueError(f"ScheduleState needs an lrlab schedule, got {schedule!r}")
        schedule._check_resolved()
        self.schedule = schedule
        self.step = _check_step("step", step)
        self.controllers = {k: PlateauController(n) for k, n in _plateau_nodes(schedule).items()}

    @property
    def state(self) -> dict[str, float]:
        """The mapping passed to ``schedule(step, state)``: each plateau key's multiplier."""
        return {k: c.scale for k, c in self.controllers.items()}

    def _value(self, step: int, state: State) -> float:
        # schedule(step, state) on the Python fast path; resolution was checked once in __init__
        # (Schedule.__call__ re-checks it on every call, which costs more than the formula).
        return float(self.schedule.formula(float(step), _PY_OPS, state))

    @property
    def lr(self) -> float:
        """The schedule's value at the current step, with the current multipliers."""
        return self._value(self.step, self.state)

    def lr_at(self, step: int) -> float:
        """The value at another step with the current multipliers (e.g. for a lookahead)."""
        return self._value(_check_step("step", step), self.state)

    def advance(self, n: int = 1) -> int:
        """Count ``n`` optimizer updates; return the new step."""
        self.step += _check_step("n", n)
        return self.step

    def observe(self, metric: Any) -> float:
        """Feed one evaluation's metric to every plateau controller; return the new ``lr``.

        ``metric`` is a number (fed to every controller) or a mapping ``{key: number}`` naming a
        metric for each plateau key. Each controller is told the lr it multiplies (the schedule
        at the current step with its own multiplier set to 1), so ``min_lr`` and ``eps`` are in
        lr units.
        """
        if not self.controllers:
            raise ValueError(
                f"observe(): the schedule {self.schedule} has no plateau node to feed a metric to; "
                "multiply it by plateau(...) to make it metric-driven"
            )
        if isinstance(metric, Mapping):
            unknown = sorted(set(metric) - set(self.controllers))
            missing = sorted(set(self.controllers) - set(metric))
            if unknown or missing:
                raise ValueError(
                    f"observe(): metrics given for keys {sorted(metric)}, the plateau keys are {sorted(self.controllers)}"
                )
        state = self.state
        for key, c in self.controllers.items():
            value = metric[key] if isinstance(metric, Mapping) else metric
            unscaled = self._value(self.step, {**state, key: 1.0})
            c.observe(value, lr=unscaled)
        return self.lr

    # ---- checkpointing ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"version", "step", "plateau": {key: controller state}, "schedule": config}`` (JSON-able)."""
        return {
            "version": _STATE_VERSION,
            "step": int(self.step),
            "plateau": {k: c.state_dict() for k, c in self.controllers.items()},
            "schedule": self.schedule.to_config(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; the saved schedule config must equal this one's."""
        if not isinstance(state, Mapping) or set(state) != {"version", "step", "plateau", "schedule"}:
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"not an lrlab ScheduleState state_dict (expected version, step, plateau, schedule), got {got}")
        if state["version"] != _STATE_VERSION:
            raise ValueError(f"ScheduleState state_dict version {state['version']!r} is not supported (expected {_STATE_VERSION})")
        saved = state["schedule"]
        if _canonical(saved) != _canonical(self.schedule.to_config()):
            try:
                saved_text = str(from_config(saved))
            except ValueError:
                saved_text = repr(saved)
            raise ValueError(
                f"the state_dict was saved for schedule {saved_text}, but this runner's schedule is "
                f"{self.schedule}; build the runner with the saved schedule (lrlab.from_config(state['schedule']))"
            )
        plateau_state = state["plateau"]
        if not isinstance(plateau_state, Mapping) or set(plateau_state) != set(self.controllers):
            raise ValueError(f"state_dict has plateau keys {sorted(plateau_state)}, the schedule has {sorted(self.controllers)}")
        step = _check_step("step", state["step"])
        for k, c in self.controllers.items():
            c.load_state_dict(plateau_state[k])
        self.step = step

    def __repr__(self) -> str:
        return f"ScheduleState({self.schedule}, step={self.step}, state={self.state})"


def _canonical(cfg: Any) -> Any:
    """Configs compared across JSON round trips: tuples as lists, ints equal to floats kept apart."""
    if isinstance(cfg, Mapping):
        return {str(k): _canonical(v) for k, v in cfg.items()}
    if isinstance(cfg, list | tuple):
        return [_canonical(v) for v in cfg]
    if isinstance(cfg, np.generic):
        return cfg.item()
    return cfg


def _check_step(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
        raise ValueError(f"{name} must be an integer >= 0 (optimizer updates), got {name}={v!r}")
    return int(v)


def simulate(schedule: Schedule, metrics: Iterable[Any], steps_per_epoch: int, *,
             total_steps: int | None = None) -> np.ndarray:
    """The lr at every step of a run whose per-epoch metric trace is ``metrics``.

    Epoch ``e`` covers steps ``e·steps_per_epoch .. (e+1)·steps_per_epoch − 1`` at the
    multipliers reached after the metrics of epochs ``0..e−1``; ``metrics[e]`` is observed at the
    end of epoch ``e`` (a schedule without plateau nodes ignores them). An unresolved schedule is resolved with ``steps_per_epoch`` and
    ``total_steps`` (default ``len(metrics)·steps_per_epoch``).

    Returns:
        float64 array of length ``len(metrics) · steps_per_epoch``.

    >>> from lrlab.schedules import constant
    >>> s = constant(1.0) * plateau(patience=0, factor=0.5)
    >>> simulate(s, [2.0, 2.0, 1.0], steps_per_epoch=2).tolist()
    [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    """
    trace = list(metrics)
    _check_step("steps_per_epoch", steps_per_epoch)
    if steps_per_epoch == 0:
        raise ValueError("steps_per_epoch must be >= 1, got steps_per_epoch=0")
    n = len(trace) * steps_per_epoch
    if not schedule.is_resolved():
        schedule = schedule.resolve(total_steps=n if total_steps is None else total_steps, steps_per_epoch=steps_per_epoch)
    st = ScheduleState(schedule)
    out = np.empty(n, dtype=np.float64)
    for e, metric in enumerate(trace):
        lo = e * steps_per_epoch
        out[lo:lo + steps_per_epoch] = schedule.values(np.arange(lo, lo + steps_per_epoch, dtype=np.float64), st.state)
        st.advance(steps_per_epoch)
        if st.controllers:
            st.observe(metric)
    return out

