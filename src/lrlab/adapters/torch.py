"""PyTorch adapter: an lrlab schedule as a ``torch.optim.lr_scheduler.LRScheduler``.

:class:`LRLabScheduler` sets every param group's lr to the schedule's value at the number of
optimizer updates that *really happened*. It counts them with
``optimizer.register_step_post_hook``, so:

* an AMP ``GradScaler`` step skipped for inf/NaN gradients does not advance the schedule;
* with gradient accumulation, calling ``scheduler.step()`` after every micro-batch is harmless;
* calling ``scheduler.step()`` before ``optimizer.step()`` cannot skip a value, so it does not warn
  (torch warns, and a skipped AMP step trips that warning falsely);
* calling ``step()`` twice (accelerate does, with several processes) changes nothing.

The lr is right for *every* update whatever the cadence of ``scheduler.step()``: a step pre-hook
writes ``schedule(updates so far)`` into the optimizer just before each ``optimizer.step()``, and the
post-hook writes the next update's lr right after it. So Lightning's ``"interval": "epoch"`` (its
default) gives the same per-update lrs as ``"interval": "step"``, and a loop that never calls
``scheduler.step()`` still follows the schedule. ``scheduler.step()`` stays harmless (it writes the
same value); ``scheduler.step(metric)`` / ``scheduler.observe(metric)`` feed the schedule's
``plateau`` nodes.

Overwrites: an lr changed behind the scheduler's back (torch's ``ReduceLROnPlateau`` on the same
optimizer, another scheduler, code setting ``param_group["lr"]``) would be undone at the next
update. The scheduler notices (the group's lr differs from the one it wrote last) and warns with
:class:`LRLabOverwriteWarning` (a ``UserWarning``) naming the group and both values, then writes the
schedule's value back. Put such changes in the schedule instead (``* lrlab.plateau(...)`` fed by
``scheduler.observe(metric)``, or another schedule); if the overwrite is deliberate, silence it with
``warnings.filterwarnings("ignore", category=LRLabOverwriteWarning)``. ``state_dict()`` is plain JSON (the step, the plateau controllers, the schedule configs), so
it survives ``json.dumps`` and ``torch.load(..., weights_only=True)``.

Units (``absolute``):
    lrlab schedules are written in lr units (``cosine(peak=0.1, ...)``), so by default
    (``absolute=True``) ``group["lr"] = schedule(step)`` and the optimizer's own ``lr`` is ignored.
    With ``absolute=False`` the schedule is a multiplier: ``group["lr"] = initial_lr_g ·
    schedule(step)`` with ``initial_lr_g`` the group's lr when the scheduler was built (torch's
    ``LambdaLR`` convention), which keeps per-group ratios (e.g. a lower lr for a backbone).

>>> import torch
>>> from lrlab.schedules import constant, warmup
>>> p = torch.nn.Parameter(torch.zeros(1))
>>> opt = torch.optim.SGD([p], lr=1.0)
>>> sched = LRLabScheduler(opt, warmup(constant(0.1), steps=2))
>>> lrs = []
>>> for _ in range(3):
...     lrs.append(opt.param_groups[0]["lr"])
...     p.grad = torch.ones(1); opt.step(); sched.step()
>>> lrs
[0.0, 0.05, 0.1]
"""

from __future__ import annotations

import math
import sys
import types
import warnings
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lrlab.schedules._combinators import product, scale
from lrlab.schedules._core import Schedule
from lrlab.schedules._plateau import ScheduleState
from lrlab.spec import parse

__all__ = ["LRLabOverwriteWarning", "LRLabResumeWarning", "LRLabScheduler", "momentum_schedule"]

_FORMAT = "lrlab.torch/1"
_MOMENTUM_MODES = (None, "auto", "momentum", "beta1")


def momentum_schedule(schedule: Schedule) -> Schedule | None:
    """The momentum curve that goes with ``schedule`` (``schedule.momentum()``), or ``None``.

    Looked up on the schedule itself and, through ``product``/``scale`` (which keep the step
    axis), on its factors; a momentum curve inside a sequence or warmup would need the phase's
    local step and is not followed.
    """
    fn = getattr(schedule, "momentum", None)
    if callable(fn):
        m = fn()
        if m is not None:
            return m
    if isinstance(schedule, scale):
        return momentum_schedule(schedule.schedule)
    if isinstance(schedule, product):
        found = [m for m in (momentum_schedule(f) for f in schedule.factors) if m is not None]
        if len(found) > 1:
            raise ValueError(f"{schedule} has several factors with a momentum curve; cycle at most one")
        return found[0] if found else None
    return None


class LRLabOverwriteWarning(UserWarning):
    """A param group's lr was changed outside :class:`LRLabScheduler`, which sets it back.

    Raised (as a warning) when the lr found in the optimizer differs from the one the scheduler
    wrote last: another scheduler (torch's ``ReduceLROnPlateau``) or user code changed it, and the
    change is undone at the next update. Express the change in the schedule (``* lrlab.plateau``),
    or ``warnings.filterwarnings("ignore", category=LRLabOverwriteWarning)`` if it is deliberate.
    """


class LRLabResumeWarning(UserWarning):
    """A resumed run cannot feed the plateau exactly as the uninterrupted one did.

    Raised by the Lightning and transformers callbacks when training resumes from a checkpoint
    saved after an epoch's last update but before that epoch's evaluation, which neither framework
    runs again: the plateau misses one observation. Save checkpoints after evaluating.
    """


def _float_lr(v: Any) -> float:
    return float(v.item()) if isinstance(v, torch.Tensor) else float(v)


def _set(group: dict[str, Any], key: str, value: Any) -> None:
    cur = group[key]
    if isinstance(cur, torch.Tensor):
        cur.fill_(value)
    else:
        group[key] = value


class LRLabScheduler(LRScheduler):
    """Drive a torch optimizer's lr (and optionally momentum) with lrlab schedules.

    Args:
        optimizer: the torch optimizer.
        schedule: one schedule for every param group (or give ``per_group``): a
            :class:`~lrlab.schedules.Schedule` or its text (``"warmup(cosine(0.1, 0.0, steps=900),
            steps=100)"``, parsed by :func:`lrlab.parse`).
        per_group: one schedule (or text) per param group, in order.
        absolute: ``True`` (default): lr = schedule(step), schedules in lr units. ``False``:
            lr = group's initial lr × schedule(step), schedules as multipliers.
        momentum: ``None`` (default): leave momentum alone. ``"momentum"``: set
            ``group["momentum"]`` (SGD, RMSprop), ``"beta1"``: set ``group["betas"][0]`` (Adam
            family), ``"auto"``: whichever the group has, from the schedule's ``momentum()`` curve
            (cyclic and one-cycle schedules provide one). A group with momentum 0 raises: cycling
            would switch momentum on (torch's ``OneCycleLR`` silently sets 0.95).
        total_steps, steps_per_epoch: used to resolve durations written as ``"10%"`` / ``"5ep"``.

    Attributes:
        states: one :class:`~lrlab.schedules.ScheduleState` per param group.
        last_epoch: the number of optimizer updates counted so far (torch's name).

    Plateau: ``step(metric)`` or ``observe(metric)`` once per evaluation feeds every ``plateau``
    node (each group has its own controller, as torch's ``ReduceLROnPlateau`` reduces each group
    on its own). A schedule without a plateau node raises on a metric rather than dropping it.
    In Lightning and the transformers ``Trainer`` let :mod:`lrlab.adapters.lightning` /
    :mod:`lrlab.adapters.transformers` do it (once per evaluation, never during the sanity check,
    never twice on resume).

    The lr of every update is ``schedule(updates so far)`` however often ``step()`` is called (see
    the module docstring); an lr changed outside the scheduler raises
    :class:`LRLabOverwriteWarning` and is set back.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedule: Schedule | None = None,
        *,
        per_group: Sequence[Schedule] | None = None,
        absolute: bool = True,
        momentum: str | None = None,
        total_steps: int | None = None,
        steps_per_epoch: int | None = None,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        groups = optimizer.param_groups
        if (schedule is None) == (per_group is None):
            raise ValueError("give exactly one of schedule (all groups) and per_group (one per group)")
        if per_group is not None:
            per_group = list(per_group)
            if len(per_group) != len(groups):
                raise ValueError(f"per_group has {len(per_group)} schedules, the optimizer has {len(groups)} param groups")
        given = list(per_group) if per_group is not None else [schedule] * len(groups)
        schedules: list[Schedule] = []
        for i, s in enumerate(given):
            if isinstance(s, str):
                s = parse(s)
            if not isinstance(s, Schedule):
                raise ValueError(f"schedule for param group {i} must be an lrlab Schedule or its text, got {s!r}")
            schedules.append(s)
        if not isinstance(absolute, bool):
            raise ValueError(f"absolute must be True or False, got absolute={absolute!r}")
        if momentum not in _MOMENTUM_MODES:
            raise ValueError(f"momentum must be None, 'auto', 'momentum' or 'beta1', got momentum={momentum!r}")

        resolved, applied = [], []
        for i, s in enumerate(schedules):
            if not s.is_resolved():
                if total_steps is None and steps_per_epoch is None:
                    raise ValueError(
                        f"schedule for param group {i} ({s}) has durations in epochs or percent: "
                        "pass total_steps= and/or steps_per_epoch="
                    )
                s = s.resolve(total_steps=total_steps, steps_per_epoch=steps_per_epoch)
            resolved.append(s)
            if not absolute:
                base = _float_lr(groups[i].get("initial_lr", groups[i]["lr"]))
                s = base * s  # a ``scale`` node: its config records the base lr
            applied.append(s)

        self.absolute = absolute
        self.momentum_mode = momentum
        self.states = [ScheduleState(s) for s in applied]
        self._momentum = self._momentum_plan(optimizer, resolved, momentum)
        self._written: list[float] | None = None  # the lrs written last (None: nothing to compare)
        self._observed = 0  # observations so far: with the step, the key of the cached lrs
        self._cached: tuple[tuple[int, int], list[float]] | None = None
        self._handles = [optimizer.register_step_pre_hook(_hook(self, "_before_optimizer_step")),
                         optimizer.register_step_post_hook(_hook(self, "_on_optimizer_step"))]
        super().__init__(optimizer, last_epoch=-1)

    # ---- momentum -----------------------------------------------------------------------------
    @staticmethod
    def _momentum_plan(optimizer: Optimizer, schedules: list[Schedule], mode: str | None) -> list[tuple[str, Schedule] | None]:
        if mode is None:
            return [None] * len(schedules)
        plan: list[tuple[str, Schedule] | None] = []
        for i, (group, s) in enumerate(zip(optimizer.param_groups, schedules)):
            curve = momentum_schedule(s)
            if curve is None:
                raise ValueError(f"momentum={mode!r}, but the schedule for param group {i} ({s}) has no momentum curve")
            curve._check_resolved()
            key = mode
            if mode == "auto":
                key = "beta1" if "betas" in group else "momentum" if "momentum" in group else ""
            if key == "beta1":
                if "betas" not in group:
                    raise ValueError(f"momentum='beta1': param group {i} of {type(optimizer).__name__} has no betas")
            elif key == "momentum":
                if "momentum" not in group:
                    raise ValueError(f"momentum='momentum': param group {i} of {type(optimizer).__name__} has no momentum")
                if _float_lr(group["momentum"]) == 0.0:
                    raise ValueError(
                        f"param group {i} has momentum=0: cycling it would switch momentum on. Build "
                        f"{type(optimizer).__name__} with momentum > 0 (e.g. 0.9) or pass momentum=None"
                    )
            else:
                raise ValueError(f"momentum='auto': {type(optimizer).__name__} has neither momentum nor betas to cycle")
            plan.append((key, curve))
        return plan

    # ---- the torch scheduler API --------------------------------------------------------------
    @property
    def step_count(self) -> int:
        """Optimizer updates counted so far (the step the next update's lr is taken at)."""
        return self.states[0].step

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """The lr each param group gets on the next update (no warning, unlike torch's)."""
        return list(self._lrs())

    def _lrs(self) -> list[float]:
        """The groups' lrs at the current step, computed once per (step, observation)."""
        key = (self.states[0].step, self._observed)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, [st.lr for st in self.states])
        return self._cached[1]

    def step(self, metric: Any = None, epoch: Any = None) -> None:  # type: ignore[override]
        """Write the lr (and momentum) for the next update; ``metric`` also feeds the plateau nodes.

        The step count itself comes from the optimizer (updates that really happened), so the
        call order relative to ``optimizer.step()`` and repeated calls do not matter.
        """
        if epoch is not None:
            raise ValueError(
                "LRLabScheduler counts optimizer updates itself; step(epoch=...) is not supported "
                "(build the schedule in steps, or resolve '5ep' with steps_per_epoch)"
            )
        self._step_count = getattr(self, "_step_count", 0) + 1
        if metric is not None:
            self._check_overwrites()
            self._observe(metric)
        self._apply()

    def observe(self, metric: Any) -> list[float]:
        """Feed one evaluation's metric to every plateau node; apply and return the new lrs."""
        self._check_overwrites()
        self._observe(metric)
        self._apply()
        return [float(v) for v in self._last_lr]

    def _observe(self, metric: Any) -> None:
        for st in self.states:
            st.observe(metric)
        self._observed += 1

    def _check_overwrites(self) -> None:
        """Warn when a group's lr is not the one this scheduler wrote last (see LRLabOverwriteWarning)."""
        if self._written is None:
            return
        for i, (group, mine) in enumerate(zip(self.optimizer.param_groups, self._written)):
            found = _float_lr(group["lr"])
            if found != mine and not (math.isnan(found) and math.isnan(mine)):
                warnings.warn(
                    f"LRLabScheduler: param group {i}'s lr was changed from {mine!r} to {found!r} outside the "
                    "scheduler (another lr scheduler such as torch's ReduceLROnPlateau on the same optimizer, "
                    "or code setting param_group['lr']); the scheduler sets it back to the schedule's value. "
                    "Put the change in the schedule (e.g. * lrlab.plateau(...) fed by scheduler.observe(metric)), "
                    "or filter LRLabOverwriteWarning if it is deliberate",
                    LRLabOverwriteWarning,
                    stacklevel=_caller_level(),
                )

    def _apply(self, check: bool = True) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.states):
            raise ValueError(
                f"the optimizer now has {len(groups)} param groups, the scheduler was built for {len(self.states)}; "
                "build a new LRLabScheduler after add_param_group"
            )
        if check:
            self._check_overwrites()
        lrs = self._lrs()
        for group, lr, plan, st in zip(groups, lrs, self._momentum, self.states):
            if not math.isfinite(lr):
                raise ValueError(f"the schedule gave a non-finite lr {lr!r} at step {st.step}")
            _set(group, "lr", lr)
            if plan is not None:
                key, curve = plan
                m = float(curve(st.step))
                if key == "momentum":
                    _set(group, "momentum", m)
                else:
                    b1, b2 = group["betas"]
                    if isinstance(b1, torch.Tensor):
                        b1.fill_(m)
                    else:
                        group["betas"] = (m, b2)
        self.last_epoch = self.states[0].step
        written = [_float_lr(g["lr"]) for g in groups]
        self._last_lr = written  # type: ignore[assignment]  # torch types it list[float | Tensor]
        self._written = list(written)

    def _before_optimizer_step(self) -> None:
        self._apply()  # this update's lr, whether or not step() was called since the last update

    def _on_optimizer_step(self) -> None:
        for st in self.states:
            st.advance()
        self._apply(check=False)  # the next update's lr, readable (and logged) between updates

    # ---- checkpointing ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """``{"format": "lrlab.torch/1", "groups": [ScheduleState.state_dict(), ...]}``: plain JSON."""
        return {"format": _FORMAT, "groups": [st.state_dict() for st in self.states]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Restore :meth:`state_dict` output and write the restored lr into the optimizer at once.

        The saved schedule configs must match this scheduler's (same schedules, same ``absolute``
        and, for ``absolute=False``, the same initial lrs); otherwise a ``ValueError`` says which.
        """
        if not isinstance(state_dict, dict) or state_dict.get("format") != _FORMAT:
            got = state_dict.get("format") if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"not an LRLabScheduler state_dict (format {_FORMAT!r} expected, got {got!r})")
        saved = state_dict.get("groups")
        if not isinstance(saved, list) or len(saved) != len(self.states):
            n = len(saved) if isinstance(saved, list) else saved
            raise ValueError(f"state_dict has {n} param groups, this scheduler has {len(self.states)}")
        before = [st.state_dict() for st in self.states]
        for i, (st, s) in enumerate(zip(self.states, saved)):
            try:
                st.load_state_dict(s)
            except ValueError as e:
                for st_back, b in zip(self.states, before):  # all or nothing
                    st_back.load_state_dict(b)
                raise ValueError(f"param group {i}: {e}") from None
        self._observed += 1  # the plateau multipliers may have changed: recompute the cached lrs
        # The optimizer's own load_state_dict may have set its saved lr (the same value): no check.
        self._apply(check=False)

    def close(self) -> None:
        """Detach from the optimizer (stop counting its steps and writing its lr)."""
        for h in self._handles:
            h.remove()


def check_feed(monitor: Any, scheduler: Any, example: str) -> None:
    """Validate a metric-feeding callback's arguments (the Lightning and transformers callbacks)."""
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"LRLabCallback: monitor must be a metric name such as {example!r}, got monitor={monitor!r}")
    if scheduler is not None and not isinstance(scheduler, LRLabScheduler):
        raise ValueError(f"LRLabCallback: scheduler must be an LRLabScheduler, got {type(scheduler).__name__}")


def require_plateau(scheduler: LRLabScheduler, monitor: str) -> None:
    """Refuse to feed a metric to a scheduler whose schedule has no plateau node."""
    if not scheduler.states[0].controllers:
        raise ValueError(
            f"LRLabCallback: the schedule {scheduler.states[0].schedule} has no plateau node to feed "
            f"{monitor!r} to; multiply it by lrlab.plateau(...), or drop the callback"
        )


def _caller_level() -> int:
    """``stacklevel`` for a warning raised in this module: the first frame outside lrlab's torch
    adapter and torch itself (the line that called ``optimizer.step()`` or ``scheduler.step()``)."""
    frame: types.FrameType | None = sys._getframe(2)
    level = 2  # level 1: the function calling warnings.warn
    while frame is not None and frame.f_globals.get("__name__", "").startswith((__name__, "torch.")):
        frame, level = frame.f_back, level + 1
    return level


def _hook(sched: LRLabScheduler, method: str):
    """An optimizer step hook calling ``sched.<method>()``; it holds the scheduler weakly."""
    ref = weakref.ref(sched)

    def hook(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        s = ref()
        if s is not None:
            getattr(s, method)()

    return hook
