"""The schedule core: an immutable value whose learning rate is a closed-form function of the step.

A :class:`Schedule` is a frozen dataclass registered under one name (:func:`register`). That name
drives everything else: config round-trip (:meth:`Schedule.to_config` / :func:`from_config`), the
canonical text form (``str(s)``, parsed back by :func:`lrlab.parse`), the CLI's choices, the plot
gallery and the contract tests, which are parametrized over :func:`registry`.

A subclass writes its formula once, in :meth:`Schedule.formula`, against an ``ops`` namespace (see
:mod:`lrlab.schedules._backend`), so it evaluates on Python numbers, NumPy, torch, JAX (under
``jit``) and Keras alike.

Conventions every schedule follows (and the contract tests check):

* ``step`` counts optimizer updates from 0: ``s(0)`` is the lr of the first update.
* A finite schedule (``s.duration`` is not ``None``) *holds its final value* past its end; nothing
  wraps around silently. Repetition is explicit (:class:`~lrlab.schedules.repeat`).
* A negative step is an error on the Python-number path and for NumPy arrays (it is not checked
  inside torch/JAX/Keras computations, where it would need a host sync or break ``jit``).
* Durations may be written in steps (``500``), epochs (``"5ep"``) or as a fraction of training
  (``"10%"``, at most ``100%``); the last two must be turned into steps with
  :meth:`Schedule.resolve` before the schedule is evaluated. A duration is at most
  :data:`MAX_STEPS` (``2**53``, the largest step count a float64 holds exactly).
* Every learning-rate level (``peak``, ``end``, ``value``, ``levels``, ...; the fields made with
  :func:`lr_field`) is a finite number ``>= 0``, and every family validates the rest of its
  parameters so that its values stay finite and ``>= 0`` at every step: a schedule that could
  produce a negative or non-finite lr is refused when it is built, with a :class:`ValueError`.
* Numbers are canonical: a field typed ``float`` stores a float (``constant(1)`` is
  ``constant(1.0)``), a field typed ``int`` (or a step count typed ``int | float``) stores a whole
  number as an ``int`` (``2.0`` becomes ``2``; ``2.5`` is refused for an ``int``), and booleans are
  never numbers. Equal schedules therefore print the same text.
* A schedule is a tree at most :data:`MAX_DEPTH` (64) nodes deep; deeper nesting is refused (by
  the constructor, :func:`from_config` and the parser), so no path can hit Python's recursion
  limit and evaluation time stays linear in the size of the tree.
* A step is a number in ``[0, 2**53]``: ``s(nan)``, ``s(inf)``, ``s(1e300)`` and ``s(-1)`` raise
  ``ValueError`` (checked on the Python-number and NumPy paths; torch/JAX/Keras values are not
  inspected, which would need a host sync or break ``jit``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from lrlab.schedules._backend import Ops, is_python_number, ops_for

if TYPE_CHECKING:  # tells type checkers that subclasses are frozen dataclasses (PEP 681)
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        return lambda cls: cls

__all__ = [
    "MAX_DEPTH",
    "MAX_STEPS",
    "Schedule",
    "State",
    "as_schedule",
    "duration_field",
    "from_config",
    "get",
    "lr_field",
    "register",
    "registry",
    "resolve_duration",
    "shown_field",
]

State = Mapping[str, Any]
"""Run-time state of metric-driven nodes, keyed by node name (e.g. ``{"plateau": 0.5}``)."""

MAX_DEPTH = 64
"""The deepest a schedule tree may be (a leaf is depth 1). Deeper trees are refused everywhere."""

MAX_STEPS = 2**53
"""The longest duration in steps (the largest whole number a float64 holds exactly)."""

_REGISTRY: dict[str, type[Schedule]] = {}
S = TypeVar("S", bound="type[Schedule]")


def register(name: str) -> Callable[[S], S]:
    """Class decorator: make ``cls`` a frozen dataclass and record it under ``name``."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"schedule names are lower_snake_case identifiers, got {name!r}")

    def deco(cls: S) -> S:
        if name in _REGISTRY and _REGISTRY[name].__qualname__ != cls.__qualname__:
            raise ValueError(f"schedule name {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        cls = dataclasses.dataclass(frozen=True, repr=False)(cls)  # type: ignore[assignment]
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def registry() -> dict[str, type[Schedule]]:
    """All registered schedules by name (a copy, in registration order)."""
    return dict(_REGISTRY)


def get(name: str) -> type[Schedule]:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = [n for n in _REGISTRY if n.startswith(name[:3])]
        hint = f"; did you mean {', '.join(close)}?" if close else "; `lrlab list` shows them all"
        raise ValueError(f"unknown schedule {name!r}{hint}") from None


def duration_field(default: Any = dataclasses.MISSING, *, show: bool = False) -> Any:
    """A dataclass field holding a duration: int steps, ``"Nep"`` epochs or ``"P%"`` of training.

    ``show``: the canonical text always prints it (a length a reader needs), even at its default.
    """
    meta = {"duration": True, "show": show}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def lr_field(default: Any = dataclasses.MISSING, *, show: bool = True) -> Any:
    """A dataclass field holding a learning-rate level (or a list of them): finite and ``>= 0``.

    The core checks it for every schedule (``None`` passes where the type allows it), and the
    canonical text always prints it (``show``), so ``str(s)`` never hides a level.
    """
    meta = {"lr": True, "show": show}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def shown_field(default: Any) -> Any:
    """A dataclass field the canonical text always prints (a main value such as ``factor``)."""
    return dataclasses.field(default=default, metadata={"show": True})


def as_float(v: Any) -> float | None:
    """``float(v)`` for a real number (not a bool), ``None`` for anything else or an int too large."""
    if isinstance(v, bool) or not is_python_number(v) or isinstance(v, str):
        return None
    try:
        return float(v)
    except OverflowError:
        return None


_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ep|%|steps?)?\s*$")


def resolve_duration(value: Any, *, total_steps: int | None, steps_per_epoch: int | None, what: str) -> Any:
    """Turn a duration (int steps, ``"5ep"``, ``"10%"``) into steps; ``None`` stays ``None``."""
    if value is None or (is_python_number(value) and not isinstance(value, str)):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a number of steps, 'Nep' or 'P%', got {value!r}")
    m = _DURATION_RE.match(value)
    if not m:
        raise ValueError(f"{what}={value!r} is not a duration; write steps (500), epochs ('5ep') or a fraction ('10%')")
    number, unit = float(m.group(1)), m.group(2)
    if unit == "%" and number > 100:
        raise ValueError(f"{what}={value!r}: a fraction of training is at most 100%")
    if unit in (None, "step", "steps"):
        steps = number
    elif unit == "ep":
        if steps_per_epoch is None:
            raise ValueError(f"{what}={value!r} is in epochs: give steps_per_epoch to resolve it")
        steps = number * steps_per_epoch
    else:
        if total_steps is None:
            raise ValueError(f"{what}={value!r} is a fraction of training: give total_steps to resolve it")
        steps = number / 100.0 * total_steps
    if not steps <= MAX_STEPS:  # also catches inf ('1e400ep') and nan
        raise ValueError(f"{what}={value!r} is {steps:g} steps; a duration is at most 2**53 steps")
    return round(steps)


# A nominal run used to validate schedules whose durations are still in epochs or fractions.
_NOMINAL_TOTAL = 1_000_000
_NOMINAL_EPOCH = 1_000


def _check_duration(v: Any, what: str) -> None:
    if v is None:
        return
    if isinstance(v, bool) or not (is_python_number(v) or isinstance(v, str)):
        raise ValueError(f"{what} must be a duration (steps, 'Nep' or 'P%'), got {v!r}")
    if isinstance(v, str):
        resolve_duration(v, total_steps=1, steps_per_epoch=1, what=what)
        return
    f = as_float(v)
    if f is None or not 0 <= f <= MAX_STEPS:
        raise ValueError(f"{what} must be a number of steps in [0, 2**53], got {v!r}")


def _check_lr(v: Any, what: str) -> None:
    f = as_float(v)
    if f is None or not math.isfinite(f) or f < 0:
        raise ValueError(f"{what} must be a learning rate: a finite number >= 0, got {v!r}")


_INT_WORD = re.compile(r"\bint\b")


@dataclasses.dataclass(frozen=True)
class _FieldInfo:
    """What the core checks on one field, read once per class from its annotation and metadata."""

    name: str
    number: str | None  # "float", "int" (int only) or "whole" (int | float: whole floats -> int)
    schedule: bool
    none_ok: bool
    duration: bool
    lr: bool


_FIELD_INFO: dict[type, tuple[_FieldInfo, ...]] = {}


def _field_info(cls: type) -> tuple[_FieldInfo, ...]:
    info = _FIELD_INFO.get(cls)
    if info is None:
        out = []
        for f in dataclasses.fields(cls):
            ann = str(f.type)
            has_int, has_float = bool(_INT_WORD.search(ann)), "float" in ann
            number = "float" if has_float and not has_int else "int" if has_int and not has_float else "whole" if has_int else None
            out.append(_FieldInfo(f.name, number, "Schedule" in ann, "None" in ann,
                                  bool(f.metadata.get("duration")), bool(f.metadata.get("lr"))))
        info = _FIELD_INFO[cls] = tuple(out)
    return info


def _canonical_number(v: Any, number: str | None, what: str) -> Any:
    """``v`` stored canonically for a field of kind ``number`` (see the module docstring)."""
    if number is None or isinstance(v, bool | str) or not is_python_number(v):
        return v
    f = as_float(v)
    if number == "float":
        return v if f is None else f
    if isinstance(v, int | np.integer):
        return int(v)
    if f is not None and math.isfinite(f) and f.is_integer():
        return int(f)
    if number == "int" and f is not None and math.isfinite(f):
        raise ValueError(f"{what} must be a whole number, got {v!r}")
    return v


def _is_unresolved(value: Any) -> bool:
    return isinstance(value, str)


@dataclass_transform(frozen_default=True)
class Schedule:
    """Base class of every schedule. Subclasses are created with :func:`register`.

    Subclasses implement :meth:`formula` and, when finite, :attr:`duration`. Validation
    goes in :meth:`_validate` and raises :class:`ValueError` naming the argument and its value.
    """

    name: ClassVar[str] = "schedule"

    # ---- what a subclass provides -------------------------------------------------------------
    def formula(self, t: Any, ops: Ops, state: State | None) -> Any:
        """The lr at float step ``t >= 0`` (a backend value), written with ``ops`` only."""
        raise NotImplementedError

    @property
    def duration(self) -> int | None:
        """Steps until the schedule reaches its final value (``None``: it never does)."""
        return None

    def _validate(self) -> None:
        pass

    def boundaries(self) -> list[int]:
        """Steps where a phase of this schedule begins (for plots): none by default."""
        return []

    def max_value(self) -> float:
        """An upper bound of the values (lr units): by default the largest lr level of this node
        and of its children. Families whose values can exceed their levels override it; products
        and scales multiply, and refuse to be built when the bound is not a finite float."""
        levels = [self.__dict__[fi.name] for fi in _field_info(type(self)) if fi.lr]
        flat = [float(x) for v in levels for x in (v if isinstance(v, tuple) else (v,)) if x is not None]
        return max([*flat, *(c.max_value() for c in self.children())], default=0.0)

    # ---- machinery ----------------------------------------------------------------------------
    def __post_init__(self) -> None:
        depth = 1
        for fi in _field_info(type(self)):
            v = getattr(self, fi.name)
            what = f"{self.name}: {fi.name}"
            if isinstance(v, list | tuple):
                v = tuple(_canonical_number(x, fi.number, what) for x in v)
                object.__setattr__(self, fi.name, v)
            elif fi.number is not None:
                v = _canonical_number(v, fi.number, what)
                object.__setattr__(self, fi.name, v)
            items = v if isinstance(v, tuple) else (v,)
            if fi.schedule:
                for x in items:
                    if isinstance(x, Schedule):
                        depth = max(depth, x.__dict__["_lrlab_depth"] + 1)
                    elif not (x is None and fi.none_ok):
                        raise ValueError(f"{what} must be a schedule, got {x!r}")
            if fi.duration:
                for x in items:
                    _check_duration(x, what)
            if fi.lr:
                for x in items:
                    if x is not None or not fi.none_ok:
                        _check_lr(x, what)
        if depth > MAX_DEPTH:
            raise ValueError(f"{self.name}: schedules nest at most {MAX_DEPTH} levels deep, this one {depth}")
        object.__setattr__(self, "_lrlab_depth", depth)
        resolved = all(not _is_unresolved(v) and (not isinstance(v, Schedule) or v.is_resolved())
                       for v in self._flat_field_values())
        # Instances are frozen and children immutable: decide once, not on every evaluation.
        object.__setattr__(self, "_lrlab_resolved", resolved)
        if resolved:
            self._validate()
        else:
            # Validate what does not depend on the durations now (a misspelt shape should not wait
            # for resolve()): check a copy resolved against a nominal long run.
            self.resolve(total_steps=_NOMINAL_TOTAL, steps_per_epoch=_NOMINAL_EPOCH)

    def __call__(self, step: Any = None, state: State | None = None, *, backend: str | None = None) -> Any:
        """The learning rate at ``step`` (a number, an array or a tensor of steps).

        ``state`` carries the run-time values of metric-driven nodes (see :class:`plateau`).
        Python numbers give a Python ``float``; arrays and tensors give the same kind back.
        """
        if step is None or (state is not None and not isinstance(state, Mapping)):
            _misuse(self, step, state)
        self._check_resolved()
        ops = ops_for(step, backend)
        if ops.name == "python":
            if not 0 <= step <= MAX_STEPS:  # also refuses nan and inf
                raise ValueError(f"step must be a number in [0, 2**53], got {step!r}")
            return float(self.formula(float(step), ops, state))
        t = ops.asfloat(step)
        if ops.name == "numpy" and t.size and not (np.min(t) >= 0 and np.max(t) <= MAX_STEPS):
            bad = t[~((t >= 0) & (t <= MAX_STEPS))].flat[0]
            raise ValueError(f"steps must be numbers in [0, 2**53], got {bad!r}")
        return self.formula(t, ops, state)

    def values(self, steps: int | np.ndarray, state: State | None = None) -> np.ndarray:
        """Float64 NumPy values at ``steps`` (an array of steps, or ``n`` for ``0..n-1``)."""
        if is_python_number(steps):
            steps = np.arange(int(steps), dtype=np.float64)
        out = self(np.asarray(steps, dtype=np.float64), state)
        return np.broadcast_to(np.asarray(out, dtype=np.float64), np.shape(steps)).copy()

    def is_resolved(self) -> bool:
        """Whether every duration is in steps (no ``"5ep"`` or ``"10%"`` left anywhere below)."""
        return bool(self.__dict__["_lrlab_resolved"])

    def _flat_field_values(self) -> Iterator[Any]:
        for f in _fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                yield from v
            elif f.metadata.get("duration") or isinstance(v, Schedule):
                yield v

    def _check_resolved(self) -> None:
        if not self.is_resolved():
            raise ValueError(
                f"{self} has durations in epochs or fractions of training: call "
                ".resolve(total_steps=..., steps_per_epoch=...) before evaluating it"
            )

    def resolve(self, total_steps: int | None = None, steps_per_epoch: int | None = None) -> Schedule:
        """A copy with every duration in steps (``"5ep"`` needs ``steps_per_epoch``, ``"10%"`` ``total_steps``)."""
        changes: dict[str, Any] = {}
        kw = {"total_steps": total_steps, "steps_per_epoch": steps_per_epoch}
        for f in _fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Schedule):
                changes[f.name] = v.resolve(**kw)
            elif isinstance(v, tuple) and any(isinstance(x, Schedule) for x in v):
                changes[f.name] = tuple(x.resolve(**kw) if isinstance(x, Schedule) else x for x in v)
            elif f.metadata.get("duration"):
                if isinstance(v, tuple):
                    changes[f.name] = tuple(resolve_duration(x, what=f"{self.name}: {f.name}", **kw) for x in v)
                else:
                    changes[f.name] = resolve_duration(v, what=f"{self.name}: {f.name}", **kw)
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def children(self) -> list[Schedule]:
        out: list[Schedule] = []
        for f in _fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Schedule):
                out.append(v)
            elif isinstance(v, tuple):
                out.extend(x for x in v if isinstance(x, Schedule))
        return out

    def walk(self) -> Iterator[Schedule]:
        """This node and every node below it, depth first."""
        yield self
        for c in self.children():
            yield from c.walk()

    # ---- config and text ----------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"name": ..., field: value, ...}``, nested schedules as dicts."""
        cfg: dict[str, Any] = {"name": self.name}
        for f in _fields(self):
            cfg[f.name] = _to_plain(getattr(self, f.name))
        return cfg

    def params(self) -> dict[str, Any]:
        """What the canonical text shows: every field without a default, every level and main
        length (fields marked ``show``, unless ``None``), and every other field that differs from
        its default."""
        out = {}
        for f in _fields(self):
            v = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and _same(v, f.default):
                shown = f.metadata.get("show") and v is not None and v != ()
                if not shown:
                    continue
            out[f.name] = v
        return out

    def __str__(self) -> str:
        from lrlab.schedules._text import format_schedule

        return format_schedule(self)

    def __repr__(self) -> str:
        return f"<lrlab {self}>"

    # ---- composition sugar --------------------------------------------------------------------
    def __rshift__(self, other: Schedule) -> Schedule:
        from lrlab.schedules._combinators import sequence

        if not isinstance(other, Schedule):
            return NotImplemented
        def phases(s: Schedule) -> tuple[Schedule, ...]:
            # Flatten only sequences whose phase lengths are implied: explicit durations belong to
            # their own sequence (and print as one), so it stays one phase.
            if isinstance(s, sequence) and all(d is None for d in s.durations):
                return s.phases
            return (s,)

        return sequence(phases=(*phases(self), *phases(other)))

    def __mul__(self, other: Any) -> Schedule:
        from lrlab.schedules._combinators import product, scale

        if isinstance(other, Schedule):
            left = self.factors if isinstance(self, product) else (self,)
            right = other.factors if isinstance(other, product) else (other,)
            return product(factors=(*left, *right))
        if is_python_number(other):
            return scale(self, factor=float(other))
        return NotImplemented

    def __rmul__(self, other: Any) -> Schedule:
        if is_python_number(other):
            return self.__mul__(other)
        return NotImplemented


def _fields(obj: Any) -> tuple[dataclasses.Field, ...]:
    """The dataclass fields of a schedule instance or class (every registered one is a dataclass)."""
    return dataclasses.fields(obj)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b) and not (is_python_number(a) and is_python_number(b)):
        return False
    return bool(a == b)


def _to_plain(v: Any) -> Any:
    if isinstance(v, Schedule):
        return v.to_config()
    if isinstance(v, tuple):
        return [_to_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _from_plain(v: Any, where: str, depth: int) -> Any:
    if isinstance(v, Mapping):
        return _from_config(v, where, depth + 1)
    if isinstance(v, list | tuple):
        return tuple(_from_plain(x, f"{where}[{i}]", depth) for i, x in enumerate(v))
    return v


def as_schedule(value: Any, what: str = "schedule", *, configs: bool = True) -> Schedule:
    """``value`` as a resolved schedule (a :class:`Schedule`, or its config when ``configs``).

    The check every adapter makes at its boundary: a clear ValueError for anything else, and for a
    schedule whose durations are still in epochs or fractions of training.
    """
    if configs and isinstance(value, Mapping):
        value = from_config(value, where=what)
    if not isinstance(value, Schedule):
        kinds = "an lrlab schedule or its config" if configs else "an lrlab schedule"
        raise ValueError(f"{what} must be {kinds}, got {value!r}")
    if not value.is_resolved():
        raise ValueError(
            f"{what}: {value} has durations in epochs or fractions of training; call "
            ".resolve(total_steps=..., steps_per_epoch=...) first"
        )
    return value


def from_config(config: Mapping[str, Any], *, where: str = "config") -> Schedule:
    """Rebuild a schedule from :meth:`Schedule.to_config` output (also loaded JSON/YAML).

    Configs nested deeper than :data:`MAX_DEPTH` are refused before anything deeper is read.
    """
    return _from_config(config, where, 1)


def _from_config(config: Mapping[str, Any], where: str, depth: int) -> Schedule:
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: schedule configs nest at most {MAX_DEPTH} levels deep")
    if not isinstance(config, Mapping):
        raise ValueError(f"{where}: a schedule config is a mapping with a 'name', got {type(config).__name__}")
    if "name" not in config:
        raise ValueError(f"{where}: a schedule config needs a 'name' key, got keys {sorted(config)}")
    cls = get(str(config["name"]))
    fields = {f.name for f in _fields(cls)}
    unknown = sorted(set(config) - fields - {"name"})
    if unknown:
        raise ValueError(f"{where}: {cls.name} has no parameter(s) {', '.join(unknown)}; it takes {', '.join(sorted(fields))}")
    kwargs = {k: _from_plain(v, f"{where}.{k}", depth) for k, v in config.items() if k != "name"}
    try:
        return cls(**kwargs)
    except TypeError as e:  # missing required arguments
        raise ValueError(f"{where}: {cls.name}: {e}") from None
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _misuse(schedule: Schedule, step: Any, state: Any) -> None:
    """Raise a clear error for the two calls frameworks make on a schedule they take for their own.

    Keras calls a plain callable ``learning_rate`` with no argument; Keras' ``LearningRateScheduler``
    calls ``schedule(epoch, lr)``. The second is a ``ValueError`` on purpose: Keras catches a
    ``TypeError`` there and retries ``schedule(epoch)``, which would run the curve per epoch silently.
    """
    if step is None:
        raise TypeError(
            f"{schedule} was called without a step. Keras calls a plain callable learning_rate that way: "
            "wrap the schedule, keras.optimizers.SGD(learning_rate=lrlab.adapters.keras.KerasSchedule(schedule))"
        )
    raise ValueError(
        f"{schedule} was called with state={state!r}, which is not a mapping {{plateau key: multiplier}}. "
        "keras.callbacks.LearningRateScheduler calls schedule(epoch, lr) that way: use "
        "learning_rate=lrlab.adapters.keras.KerasSchedule(schedule) (per update, plateau through "
        "PlateauCallback), or lrlab.adapters.keras.LearningRateScheduler(schedule, unit='step' or 'epoch')"
    )
