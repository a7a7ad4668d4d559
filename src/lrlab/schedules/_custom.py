"""User functions as schedules, registered by name so that configs refer to them by reference.

A plain Python function cannot be serialized (torch drops lambdas from ``state_dict``; pickling
them fails). lrlab never stores the function: :func:`register_function` records it under a name,
and the :class:`custom` schedule stores only that name, so ``to_config`` / ``from_config`` and the
text form work as long as the process that loads the config has registered the same name (import
the module that defines it first).

Two styles, detected from the signature (or given with ``style=``):

* ``fn(epoch) -> lr``: closed form, :math:`\\eta(t) = fn(\\lfloor t \\rfloor)`.
* ``fn(epoch, lr) -> lr``: Keras ``LearningRateScheduler`` style, a recurrence
  :math:`\\eta_e = fn(e, \\eta_{e-1})` with :math:`\\eta_{-1}` = ``start``, evaluated by folding
  from 0 (the fold is cached per function and start value, so a training loop costs one call
  per new step).

The argument is the integer step of the schedule (``floor(t)``). To run a per-epoch function per
optimizer step, wrap it: ``per_epoch(custom("my_fn"), steps_per_epoch="1ep")``.

Backends: Python numbers and NumPy arrays call the function directly. torch, JAX (also under
``jit``) and Keras need a declared ``horizon``: the values at ``0..horizon`` are computed once in
Python and looked up by index (the value at ``horizon`` holds afterwards, on every backend). Without
a horizon those backends raise :class:`ValueError`.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from lrlab.schedules._backend import Ops
from lrlab.schedules._core import Schedule, State, lr_field, register

__all__ = ["custom", "register_function", "registered_functions"]

_FUNCTIONS: dict[str, tuple[Callable[..., float], str]] = {}
_STYLES = ("epoch", "recurrence")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:]*$")
_FOLDS: dict[tuple[str, int, float | None], list[float]] = {}


def register_function(name: str, *, style: str | None = None) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator: record ``fn`` under ``name`` for :class:`custom` schedules.

    ``style`` is ``"epoch"`` for ``fn(epoch)`` or ``"recurrence"`` for ``fn(epoch, lr)``; by
    default it is read from the number of required positional parameters (1 or 2). Registering a
    name again replaces the function (its cached fold is dropped).

    >>> @register_function("halve_every_10")
    ... def halve(epoch, lr):
    ...     return lr * 0.5 if epoch > 0 and epoch % 10 == 0 else lr
    >>> s = custom("halve_every_10", start=0.1)
    >>> s(9), s(10), s(20)
    (0.1, 0.05, 0.025)
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"register_function: name must be an identifier (dots and colons allowed), got name={name!r}")
    if style is not None and style not in _STYLES:
        raise ValueError(f"register_function: style must be 'epoch' or 'recurrence', got style={style!r}")

    def deco(fn: Callable[..., float]) -> Callable[..., float]:
        if not callable(fn):
            raise ValueError(f"register_function({name!r}): expected a function, got {fn!r}")
        kind = style or _style_of(name, fn)
        _FUNCTIONS[name] = (fn, kind)
        for key in [k for k in _FOLDS if k[0] == name]:
            del _FOLDS[key]
        return fn

    return deco


def _style_of(name: str, fn: Callable[..., float]) -> str:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        raise ValueError(f"register_function({name!r}): cannot read the signature of {fn!r}; pass style=") from None
    required = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    if len(required) == 1:
        return "epoch"
    if len(required) == 2:
        return "recurrence"
    raise ValueError(
        f"register_function({name!r}): the function must take (epoch) or (epoch, lr), "
        f"it requires {len(required)} positional arguments; pass style= to choose"
    )


def registered_functions() -> dict[str, str]:
    """The registered function names and their styles."""
    return {k: v[1] for k, v in _FUNCTIONS.items()}


@register("custom")
class custom(Schedule):
    """A registered user function as a schedule (see the module docs for the two styles).

    .. math:: \\eta(t) = fn(\\lfloor t \\rfloor) \\quad\\text{or}\\quad
        \\eta(t) = \\eta_{\\lfloor t \\rfloor},\\ \\eta_e = fn(e, \\eta_{e-1}),\\ \\eta_{-1} = \\text{start}

    evaluated at :math:`\\min(t, \\text{horizon})` when a horizon is given.

    Args:
        function: the name given to :func:`register_function`.
        start: :math:`\\eta_{-1}`, the lr the recurrence starts from (required there; unused
            otherwise).
        horizon: last step computed (integer >= 0); the value there holds afterwards. Needed for
            torch/JAX/Keras evaluation; makes the schedule finite.

    >>> @register_function("keras_tutorial_step")
    ... def step(epoch):
    ...     return 0.1 * 0.5 ** math.floor((1 + epoch) / 10)
    >>> s = custom("keras_tutorial_step", horizon=30)
    >>> s(8), s(9), s(1000)
    (0.1, 0.05, 0.0125)
    """

    function: str = ""
    start: float | None = lr_field(None)
    horizon: int | None = None

    def _validate(self) -> None:
        if self.function not in _FUNCTIONS:
            known = ", ".join(sorted(_FUNCTIONS)) or "none yet"
            raise ValueError(
                f"custom: function={self.function!r} is not registered (registered: {known}); "
                "decorate it with @lrlab.register_function(name) and import its module first"
            )
        if self._style() == "recurrence" and self.start is None:
            raise ValueError(f"custom: function {self.function!r} is a recurrence fn(epoch, lr); give start=")
        if self.horizon is not None and (isinstance(self.horizon, bool) or not isinstance(self.horizon, int) or self.horizon < 0):
            raise ValueError(f"custom: horizon must be an integer >= 0 or none, got horizon={self.horizon!r}")

    def _style(self) -> str:
        return _FUNCTIONS[self.function][1]

    @property
    def duration(self) -> int | None:
        return self.horizon

    def _fold(self, upto: int) -> list[float]:
        fn = _FUNCTIONS[self.function][0]
        key = (self.function, id(fn), self.start)
        vals = _FOLDS.setdefault(key, [])
        lr = vals[-1] if vals else float(self.start)  # type: ignore[arg-type]
        for e in range(len(vals), upto + 1):
            lr = self._checked(e, fn(e, lr))
            vals.append(lr)
        return vals

    def _checked(self, e: int, value: Any) -> float:
        """``value`` as a float, or a ValueError when the function did not return a valid lr."""
        try:
            v = float(value)
        except (TypeError, ValueError, OverflowError):
            v = math.nan
        if not 0 <= v < math.inf:
            raise ValueError(
                f"custom: function {self.function!r} returned {value!r} at step {e}; an lr is a finite number >= 0"
            )
        return v

    def _value(self, e: int) -> float:
        if self._style() == "recurrence":
            return self._fold(e)[e]
        return self._checked(e, _FUNCTIONS[self.function][0](e))

    def _table(self, upto: int) -> np.ndarray:
        if self._style() == "recurrence":
            return np.asarray(self._fold(upto)[: upto + 1], dtype=np.float64)
        fn = _FUNCTIONS[self.function][0]
        return np.asarray([self._checked(e, fn(e)) for e in range(upto + 1)], dtype=np.float64)

    def formula(self, t, ops: Ops, state: State | None):
        h = self.horizon
        if ops.name == "python":
            e = math.floor(t)
            return self._value(e if h is None else min(e, h))
        if ops.name == "numpy":
            idx = np.floor(np.asarray(t)).astype(np.int64)
            if h is not None:
                idx = np.minimum(idx, h)
            if idx.size == 0:
                return np.zeros(idx.shape, dtype=np.float64)
            if self._style() == "recurrence":
                table = self._table(int(idx.max()))
                return table[idx]
            uniq, inv = np.unique(idx, return_inverse=True)
            fn = _FUNCTIONS[self.function][0]
            return np.asarray([self._checked(int(e), fn(int(e))) for e in uniq], dtype=np.float64)[inv].reshape(idx.shape)
        if h is None:
            raise ValueError(
                f"custom({self.function!r}) runs on Python numbers and NumPy only; give horizon=N to "
                f"evaluate it on {ops.name} (the values at 0..N are tabulated once)"
            )
        table = self._table(h)
        return ops.lookup(table, ops.minimum(ops.floor(t), float(h)))
