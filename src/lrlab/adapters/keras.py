"""Keras 3 adapter: lrlab schedules inside compiled train steps, plateau control that works with them.

Three pieces, for the two ways a Keras optimizer can hold its learning rate:

* :class:`KerasSchedule` (the optimizer's lr *is* a schedule): a
  ``keras.optimizers.schedules.LearningRateSchedule`` that evaluates the lrlab schedule with
  ``keras.ops`` at ``optimizer.iterations`` inside the compiled train step (tested on the torch
  backend and inside the JAX backend's jitted train step; it uses ``keras.ops`` only, so TensorFlow
  should work too, but it is not installed here and not tested). It is registered with
  ``keras.saving.register_keras_serializable``, its ``get_config()`` is the lrlab config (plus the
  plateau controllers' state when the schedule has a :class:`~lrlab.plateau` node), so
  ``model.save("m.keras")`` / ``keras.saving.load_model`` restore it, mid-run state included
  (import ``lrlab.adapters.keras`` before loading: that registers the class).
* :class:`PlateauCallback` (metric-driven control for a :class:`KerasSchedule`): Keras' own
  ``ReduceLROnPlateau`` raises ``TypeError`` when the lr is a schedule (anchors quirk 16). Here the
  plateau multipliers live in non-trainable Keras Variables that the schedule reads inside the
  compiled step; the callback feeds the monitored metric to the schedule's
  :class:`~lrlab.PlateauController` at every epoch end and writes the new multiplier into the
  Variable. Counting rules come from the node's ``preset`` (``'keras'`` reproduces
  ``keras.callbacks.ReduceLROnPlateau`` exactly).
* :class:`LearningRateScheduler` (the optimizer's lr is a plain float): Keras'
  ``LearningRateScheduler`` generalised: it accepts the ``fn(epoch, lr)`` / ``fn(epoch)``
  functions Keras accepts *and* lrlab schedules, indexed by epoch (set at each epoch's start) or by
  step (set before each batch), and feeds plateau nodes from ``monitor``.

Resuming: a :class:`KerasSchedule` reads ``optimizer.iterations``, which ``model.save`` /
``load_model`` restore, so ``fit(initial_epoch=k)`` on a loaded model continues the curve. When
only the weights were restored (a fresh optimizer starts at iteration 0: tensorflow#49208), build
the schedule with ``offset=k * steps_per_epoch``. :class:`LearningRateScheduler` derives its index
from Keras' epoch number, so ``initial_epoch`` is honoured without any state.

On the JAX backend a compiled train step sees the plateau Variables as constants (they are not
optimizer variables, which is what keeps ``model.save`` files loadable by a fresh optimizer), so
:class:`PlateauCallback` rebuilds the train function whenever a multiplier changes: one retrace per
reduction, nothing per step.

>>> from lrlab.schedules import constant, warmup
>>> ks = KerasSchedule(warmup(constant(0.1), steps=10))
>>> round(float(ks(5)), 6)
0.05
>>> KerasSchedule.from_config(ks.get_config()).schedule == ks.schedule
True
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any, cast

import keras
import numpy as np

from lrlab.schedules._core import Schedule, as_schedule
from lrlab.schedules._plateau import ScheduleState

__all__ = ["KerasSchedule", "LearningRateScheduler", "PlateauCallback"]


def _as_schedule(schedule: Any, what: str) -> Schedule:
    return as_schedule(schedule, what)


def _to_float(value: Any) -> float:
    """A Python float from a number, a NumPy value or a backend tensor."""
    return float(np.asarray(keras.ops.convert_to_numpy(value)).reshape(()))


class KerasSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """An lrlab schedule as a Keras ``LearningRateSchedule``: ``lr = schedule(iterations + offset)``.

    The value is computed with ``keras.ops`` in ``keras.config.floatx()`` (float32 by default),
    inside the optimizer's compiled update, at ``step = optimizer.iterations`` (the number of
    updates already applied, so the first update uses ``schedule(offset)``). Plateau nodes read
    their multiplier from a non-trainable Keras Variable per key (1.0 until a
    :class:`PlateauCallback` or :meth:`observe` lowers it).

    Args:
        schedule: a resolved lrlab schedule (or its ``to_config()`` dict), in lr units.
        offset: steps added to ``optimizer.iterations`` (int >= 0): the schedule step of the first
            update of a run restarted with a fresh optimizer (``initial_epoch * steps_per_epoch``).
        gradient_accumulation_steps: the optimizer's own setting, when it accumulates. Keras hands
            schedules its raw micro-batch counter; the step used is ``iterations //
            gradient_accumulation_steps`` (updates, as lrlab counts them). ``None`` (default): read
            from the optimizer the first time it calls the schedule; an optimizer whose setting
            differs from a value given here raises ``ValueError``.
        plateau_state: the plateau controllers' state (``get_config()["plateau"]``), restored by
            ``from_config``; ``None`` starts fresh.

    ``get_config()`` is ``{"schedule": schedule.to_config(), "offset": ...,
    "gradient_accumulation_steps": ...}`` plus
    ``"plateau": {key: controller state}`` when the schedule has plateau nodes: plain JSON.

    >>> from lrlab.schedules import constant, plateau
    >>> ks = KerasSchedule(constant(0.1) * plateau(patience=0, factor=0.5, preset="keras"))
    >>> ks.observe(1.0, step=0), ks.observe(1.0, step=0)
    (False, True)
    >>> ks.scales, round(float(ks(0)), 6)
    ({'plateau': 0.5}, 0.05)
    """

    def __init__(self, schedule: Any, offset: int = 0, gradient_accumulation_steps: int | None = None,
                 plateau_state: Mapping[str, Any] | None = None) -> None:
        self.schedule = _as_schedule(schedule, "KerasSchedule: schedule")
        if isinstance(offset, bool) or not isinstance(offset, int | np.integer) or offset < 0:
            raise ValueError(f"KerasSchedule: offset must be an integer >= 0 (steps), got offset={offset!r}")
        g = gradient_accumulation_steps
        if g is not None and (isinstance(g, bool) or not isinstance(g, int | np.integer) or g < 1):
            raise ValueError(
                f"KerasSchedule: gradient_accumulation_steps must be an integer >= 1 or None, got gradient_accumulation_steps={g!r}"
            )
        self.offset = int(offset)
        self.gradient_accumulation_steps = None if g is None or g == 1 else int(g)
        self._adopted = False  # gradient_accumulation_steps taken from the optimizer (see __call__)
        self._runner = ScheduleState(self.schedule)
        if plateau_state is not None:
            if not isinstance(plateau_state, Mapping) or set(plateau_state) != set(self._runner.controllers):
                got = sorted(plateau_state) if isinstance(plateau_state, Mapping) else plateau_state
                raise ValueError(
                    f"KerasSchedule: plateau_state has keys {got}, the schedule's plateau keys are "
                    f"{sorted(self._runner.controllers)}"
                )
            for key, c in self._runner.controllers.items():
                c.load_state_dict(plateau_state[key])
        self._variables = {
            key: keras.Variable(c.scale, dtype=keras.config.floatx(), trainable=False, name=f"lrlab_{key}")
            for key, c in self._runner.controllers.items()
        }

    # ---- evaluation ---------------------------------------------------------------------------
    def __call__(self, step: Any) -> Any:
        self._check_caller(step, sys._getframe(1))
        if self.gradient_accumulation_steps:
            step = keras.ops.floor_divide(step, self.gradient_accumulation_steps)
        t = keras.ops.cast(step, keras.config.floatx())
        if self.offset:
            t = t + float(self.offset)
        state = {key: v.value for key, v in self._variables.items()} or None
        return self.schedule(t, state, backend="keras")

    def _check_caller(self, step: Any, frame: Any) -> None:
        """When a Keras optimizer calls this schedule, check its ``gradient_accumulation_steps``.

        Keras passes its raw micro-batch counter (``optimizer._iterations``) to the schedule of an
        optimizer that accumulates gradients; a schedule that does not know the factor would run
        that many times too fast. The optimizer is the caller (``_get_current_learning_rate``), so
        the schedule adopts its setting the first time (and it is saved with ``get_config``), and
        refuses an optimizer whose setting contradicts the one it was built with.
        """
        opt = frame.f_locals.get("self") if frame.f_code.co_name == "_get_current_learning_rate" else None
        if opt is None or getattr(opt, "_learning_rate", None) is not self or getattr(opt, "_iterations", None) is not step:
            return
        theirs = getattr(opt, "gradient_accumulation_steps", None) or None
        if theirs == self.gradient_accumulation_steps:
            return
        if theirs is not None and self.gradient_accumulation_steps is None and not self._adopted:
            self.gradient_accumulation_steps = int(theirs)
            self._adopted = True
            return
        raise ValueError(
            f"KerasSchedule: the optimizer {getattr(opt, 'name', opt)!r} has gradient_accumulation_steps={theirs}, "
            f"this schedule was built for gradient_accumulation_steps={self.gradient_accumulation_steps}; use one "
            "KerasSchedule per optimizer, built with the optimizer's setting (or none: it is read from the optimizer)"
        )

    def lr_at(self, step: int) -> float:
        """The lr of update ``step`` (float64, host side, with the current multipliers)."""
        return self._runner.lr_at(int(step) + self.offset)

    @property
    def scales(self) -> dict[str, float]:
        """The current multiplier of each plateau key (empty without plateau nodes)."""
        return self._runner.state

    @property
    def controllers(self) -> dict[str, Any]:
        """The :class:`~lrlab.PlateauController` of each plateau key."""
        return dict(self._runner.controllers)

    # ---- plateau ------------------------------------------------------------------------------
    def observe(self, metric: Any, step: int) -> bool:
        """Feed one evaluation's metric (per :meth:`lrlab.ScheduleState.observe`) at update ``step``.

        ``step`` is ``optimizer.iterations`` (the lr the controllers compare ``min_lr``/``eps``
        against is the schedule's value there). Writes the new multipliers into the Variables and
        returns whether any of them changed.
        """
        before = self._runner.state
        self._runner.step = int(step) + self.offset
        self._runner.observe(metric)
        after = self._runner.state
        for key, v in self._variables.items():
            v.assign(after[key])
        return after != before

    # ---- serialization ------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"schedule": self.schedule.to_config(), "offset": self.offset,
                               "gradient_accumulation_steps": self.gradient_accumulation_steps}
        if self._runner.controllers:
            cfg["plateau"] = {k: c.state_dict() for k, c in self._runner.controllers.items()}
        return cfg

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> KerasSchedule:
        if not isinstance(config, Mapping):
            raise ValueError(f"KerasSchedule.from_config needs a mapping, got {type(config).__name__}")
        if "name" in config:  # a bare lrlab config
            return cls(config)
        known = {"schedule", "offset", "gradient_accumulation_steps", "plateau"}
        unknown = sorted(set(config) - known)
        if unknown or "schedule" not in config:
            raise ValueError(f"KerasSchedule config has keys {sorted(config)}; expected {', '.join(sorted(known))}")
        return cls(config["schedule"], offset=config.get("offset", 0),
                   gradient_accumulation_steps=config.get("gradient_accumulation_steps"),
                   plateau_state=config.get("plateau"))

    def __repr__(self) -> str:
        return f"KerasSchedule({self.schedule}, offset={self.offset}, scales={self.scales})"


# Keras imports only its own packages when it deserializes, so a file is loadable only after
# ``import lrlab.adapters.keras``. The name written into saved files is that module
# ("lrlab.adapters.keras>KerasSchedule"), so Keras' "Could not locate class" error shows what to
# import; "lrlab>KerasSchedule" (the name of files saved by lrlab 0.1) still loads.
keras.saving.register_keras_serializable(package="lrlab", name="KerasSchedule")(KerasSchedule)
keras.saving.register_keras_serializable(package="lrlab.adapters.keras", name="KerasSchedule")(KerasSchedule)


def _find_keras_schedule(optimizer: Any) -> KerasSchedule | None:
    seen = 0
    while optimizer is not None and seen < 8:  # LossScaleOptimizer wraps an inner optimizer
        lr = getattr(optimizer, "_learning_rate", None)
        if isinstance(lr, KerasSchedule):
            return lr
        optimizer = getattr(optimizer, "inner_optimizer", None)
        seen += 1
    return None


def _retrace_if_jax(model: Any) -> None:
    """On JAX the compiled step holds plateau multipliers as constants: rebuild it."""
    if keras.backend.backend() == "jax" and getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)


def _metric_from_logs(logs: Mapping[str, Any] | None, monitor: str, skip: bool, who: str, epoch: int) -> Any:
    logs = logs or {}
    if monitor not in logs:
        if skip:
            return None
        raise ValueError(
            f"{who}: monitor={monitor!r} is not in the logs of epoch {epoch} (available: "
            f"{', '.join(sorted(logs)) or 'none'}); pass validation_data for val_* metrics, pick "
            "another monitor, or build the plateau node with on_nan='skip'"
        )
    return logs[monitor]


def _all_skip(runner: ScheduleState) -> bool:
    return all(c.node.on_nan == "skip" for c in runner.controllers.values())


class PlateauCallback(keras.callbacks.Callback):
    """Feed a monitored metric to the plateau nodes of the optimizer's :class:`KerasSchedule`.

    At the end of every epoch ``logs[monitor]`` is passed to the schedule's controllers
    (:meth:`KerasSchedule.observe`, at ``step = optimizer.iterations``); a reduction takes effect
    from the next train step. The counting rules are the node's (``preset='keras'`` for Keras'
    ``ReduceLROnPlateau``, ``'torch'``, ``'optax'``). Unlike Keras' callback, the controller state
    lives in the schedule: it carries over between ``fit`` calls and is saved with the model.

    A missing or non-finite metric raises ``ValueError`` (naming the monitor and the epoch), or is
    ignored when every plateau node has ``on_nan='skip'``.

    Args:
        monitor: the log key to watch (``'val_loss'``, ``'loss'``, ``'val_accuracy'``, ...); the
            node's ``mode`` says whether lower or higher is better.
        schedule: the :class:`KerasSchedule` to drive; by default the one the model's optimizer
            uses (found on ``fit``).
        verbose: 1 prints a line when a multiplier changes.

    ``logs["learning_rate"]`` is set to the lr of the next update (like Keras' callbacks do).
    """

    def __init__(self, monitor: str = "val_loss", schedule: KerasSchedule | None = None, verbose: int = 0) -> None:
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"PlateauCallback: monitor must be a log key such as 'val_loss', got monitor={monitor!r}")
        if schedule is not None and not isinstance(schedule, KerasSchedule):
            raise ValueError(f"PlateauCallback: schedule must be a KerasSchedule, got schedule={schedule!r}")
        self.monitor = monitor
        self.verbose = int(verbose)
        self._schedule = schedule

    def _target(self) -> KerasSchedule:
        ks = self._schedule or _find_keras_schedule(getattr(self.model, "optimizer", None))
        if ks is None:
            raise ValueError(
                "PlateauCallback drives a KerasSchedule: build the optimizer with "
                "learning_rate=KerasSchedule(schedule * lrlab.plateau(...)), or use "
                "lrlab.adapters.keras.LearningRateScheduler for a float learning rate"
            )
        if not ks.controllers:
            raise ValueError(
                f"PlateauCallback: the schedule {ks.schedule} has no plateau node; multiply it by "
                "lrlab.plateau(...) to make it metric-driven"
            )
        return ks

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._target()  # fail before the first epoch, not after it

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        ks = self._target()
        optimizer = self.model.optimizer
        metric = _metric_from_logs(logs, self.monitor, _all_skip(ks._runner), "PlateauCallback", epoch)
        step = int(_to_float(optimizer.iterations))
        if metric is not None:
            before = ks.scales
            try:
                changed = ks.observe(metric, step)
            except ValueError as e:
                raise ValueError(f"PlateauCallback: epoch {epoch}, monitor={self.monitor!r}: {e}") from None
            if changed:
                _retrace_if_jax(self.model)
                if self.verbose:
                    keras.utils.io_utils.print_msg(
                        f"\nEpoch {epoch + 1}: PlateauCallback: {self.monitor} did not improve; "
                        f"multipliers {before} -> {ks.scales}, lr now {ks.lr_at(step):.6g}."
                    )
        if logs is not None:
            logs["learning_rate"] = ks.lr_at(step)


def _refuse_keras_reduce_lr_on_plateau() -> None:
    """Make ``keras.callbacks.ReduceLROnPlateau`` refuse a :class:`KerasSchedule` at the start of ``fit``.

    Keras' callback can only set a float lr; on a schedule it raises a ``TypeError`` at its first
    reduction, possibly hours into training. Importing this module wraps its ``on_train_begin``
    (once) with a check that raises at once, naming :class:`PlateauCallback`; nothing else changes.
    """
    cls = keras.callbacks.ReduceLROnPlateau
    original = cls.on_train_begin
    if getattr(original, "_lrlab_checked", False):
        return

    def on_train_begin(self: Any, logs: Any = None) -> None:
        if _find_keras_schedule(getattr(self.model, "optimizer", None)) is not None:
            raise ValueError(
                "keras.callbacks.ReduceLROnPlateau cannot reduce the lr of an optimizer whose learning_rate is a "
                "KerasSchedule (Keras would raise TypeError at the first reduction); multiply the schedule by "
                "lrlab.plateau(preset='keras', ...) and use lrlab.adapters.keras.PlateauCallback(monitor=...)"
            )
        original(self, logs)

    on_train_begin._lrlab_checked = True  # type: ignore[attr-defined]
    cls.on_train_begin = on_train_begin  # type: ignore[method-assign]


_refuse_keras_reduce_lr_on_plateau()


def _positional_arity(fn: Callable[..., Any]) -> int:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: assume Keras' new API
        return 2
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = list(sig.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in kinds for p in params)


class LearningRateScheduler(keras.callbacks.Callback):
    """Set a float learning rate from an lrlab schedule or an ``fn(epoch, lr)``, per epoch or per batch.

    The index ``i`` passed to the schedule is

    * ``unit='epoch'``: Keras' 0-based epoch number, set at each epoch's start (what
      ``keras.callbacks.LearningRateScheduler`` does);
    * ``unit='step'``: ``epoch * steps_per_epoch + batch``, set before each batch.

    Both come from Keras' own epoch counter, so ``fit(initial_epoch=k)`` resumes at the right lr
    with no saved state. The lr is ``schedule(i, multipliers)`` for an lrlab schedule (with the
    current plateau multipliers, fed from ``monitor`` at each epoch end), ``fn(i, current_lr)`` for
    a two-argument function and ``fn(i)`` for a one-argument one (Keras' two APIs, chosen by the
    signature rather than by catching ``TypeError``). A function must return a finite number.

    Args:
        schedule: an lrlab schedule (or config dict) in lr units, or a function as above.
        unit: ``'epoch'`` or ``'step'``: required for an lrlab schedule (its durations are in
            optimizer updates unless you wrote it per epoch); a function defaults to ``'epoch'``.
        steps_per_epoch: batches per epoch for ``unit='step'``; default: ``fit``'s own count
            (``self.params["steps"]``), an error when Keras does not know it.
        monitor: log key fed to the schedule's plateau nodes at each epoch end (required when the
            schedule has plateau nodes, refused otherwise).
        verbose: 1 prints the lr each time it is set at an epoch start.

    The optimizer's lr must be a float (a Keras Variable): for a :class:`KerasSchedule` the
    schedule already gives the lr inside the compiled step. On the JAX backend a per-batch update
    syncs the train state to the Variables before each batch (slow); prefer :class:`KerasSchedule`
    for per-step curves there. ``logs["learning_rate"]`` is set at each epoch end.
    """

    def __init__(self, schedule: Any, *, unit: str | None = None, steps_per_epoch: int | None = None,
                 monitor: str | None = None, verbose: int = 0) -> None:
        super().__init__()
        if unit is not None and unit not in ("epoch", "step"):
            raise ValueError(f"LearningRateScheduler: unit must be 'epoch' or 'step', got unit={unit!r}")
        if steps_per_epoch is not None and (
            isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1
        ):
            raise ValueError(f"LearningRateScheduler: steps_per_epoch must be an integer >= 1, got steps_per_epoch={steps_per_epoch!r}")
        self.runner: ScheduleState | None = None
        self.fn: Callable[..., Any] | None = None
        if isinstance(schedule, Schedule | Mapping):
            self.runner = ScheduleState(_as_schedule(schedule, "LearningRateScheduler: schedule"))
            if self.runner.controllers and monitor is None:
                raise ValueError(
                    f"LearningRateScheduler: {self.runner.schedule} has plateau nodes; give monitor= "
                    "(e.g. 'val_loss') to feed them"
                )
            if not self.runner.controllers and monitor is not None:
                raise ValueError(
                    f"LearningRateScheduler: monitor={monitor!r} given but {self.runner.schedule} has no "
                    "plateau node to feed"
                )
            if unit is None:
                raise ValueError(
                    f"LearningRateScheduler: say which index {self.runner.schedule} is evaluated at: unit='step' "
                    "(optimizer updates, as KerasSchedule and lrlab's other adapters count) or unit='epoch' "
                    "(Keras' epoch number: a schedule written in updates then runs once per epoch)"
                )
        elif callable(schedule):
            if monitor is not None:
                raise ValueError("LearningRateScheduler: monitor= feeds lrlab plateau nodes; a plain function has none")
            self.fn = schedule
            self._arity = _positional_arity(schedule)
            if self._arity < 1:
                raise ValueError(
                    f"LearningRateScheduler: {getattr(schedule, '__name__', schedule)!r} must take (epoch) or "
                    "(epoch, lr) positionally"
                )
        else:
            raise ValueError(
                f"LearningRateScheduler: schedule must be an lrlab schedule or a function fn(epoch, lr), got {schedule!r}"
            )
        self.unit = unit or "epoch"  # a function fn(epoch, lr) is Keras' per-epoch API
        self.steps_per_epoch = steps_per_epoch
        self.monitor = monitor
        self.verbose = int(verbose)
        self._spe: int | None = steps_per_epoch
        self._epoch = 0

    # ---- helpers ------------------------------------------------------------------------------
    def _optimizer(self) -> Any:
        opt = self.model.optimizer
        if _find_keras_schedule(opt) is not None or not isinstance(
            getattr(opt, "_learning_rate", None), keras.Variable
        ):
            raise ValueError(
                "LearningRateScheduler sets a float learning rate, but this optimizer's learning_rate is "
                f"{getattr(opt, '_learning_rate', None)!r}; build it with a float lr, or use "
                "learning_rate=KerasSchedule(...) and no scheduler callback"
            )
        return opt

    def _value(self, index: int, optimizer: Any) -> float:
        if self.runner is not None:
            self.runner.step = index
            return self.runner.lr
        fn = cast(Callable[..., Any], self.fn)  # set in __init__ whenever runner is None
        if self._arity >= 2:
            out = fn(index, _to_float(optimizer.learning_rate))
        else:
            out = fn(index)
        try:
            value = _to_float(out)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or isinstance(out, bool):
            name = getattr(fn, "__name__", repr(fn))
            raise ValueError(f"LearningRateScheduler: {name}({index}, ...) must return a finite number, got {out!r}")
        return value

    def _set(self, index: int) -> float:
        optimizer = self._optimizer()
        value = self._value(index, optimizer)
        optimizer.learning_rate = value
        return value

    # ---- Keras hooks --------------------------------------------------------------------------
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._optimizer()
        if self.unit == "step" and self._spe is None:
            steps = (self.params or {}).get("steps")
            if not steps:
                raise ValueError(
                    "LearningRateScheduler(unit='step') needs the number of batches per epoch; Keras "
                    "does not know it for this data: pass steps_per_epoch="
                )
            self._spe = int(steps)

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch = int(epoch)
        if self.unit == "epoch":
            value = self._set(self._epoch)
            if self.verbose:
                keras.utils.io_utils.print_msg(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {value:.6g}.")

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.unit != "step":
            return
        if keras.backend.backend() == "jax":
            # The JAX trainer carries optimizer variables between steps: write them back first, then
            # the changed lr Variable is read when the next step fetches the state.
            self.model.jax_state_sync()
        self._set(self._epoch * int(self._spe or 0) + int(batch))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.runner is not None and self.runner.controllers:
            metric = _metric_from_logs(logs, str(self.monitor), _all_skip(self.runner), "LearningRateScheduler", epoch)
            if metric is not None:
                if self.unit == "step":
                    self.runner.step = (epoch + 1) * int(self._spe or 0) - 1
                try:
                    self.runner.observe(metric)
                except ValueError as e:
                    raise ValueError(f"LearningRateScheduler: epoch {epoch}, monitor={self.monitor!r}: {e}") from None
        if logs is not None:
            logs["learning_rate"] = _to_float(self.model.optimizer.learning_rate)
