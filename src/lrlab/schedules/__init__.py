"""The schedule library: every schedule a closed-form, registered, serializable value of the step.

Modules (private; everything public is re-exported here and from :mod:`lrlab`):

* ``_backend``      the math ops for Python numbers, NumPy, torch, JAX and Keras
* ``_core``         :class:`Schedule`, the registry, config round-trip, durations
* ``_text``         the canonical text form (``str(schedule)``)
* ``_combinators``  constant, sequence (``>>``), product (``*``), scale, clamp, take, warmup, repeat, ...
* ``_families``     step, exponential, inverse time, linear, polynomial, cosine, restarts, WSD, ...
* ``_cyclic``       cyclic (CLR) and one-cycle, with their momentum curves
* ``_custom``       user functions registered by name (Keras ``fn(epoch, lr)`` style included)
* ``_plateau``      the metric-driven plateau multiplier and its controller

Parameter names (one word per idea, in every family; README "Parameter names"):

* ``peak``: the level a decaying or cyclic schedule starts from or rises to; ``start``/``end``: the
  two ends of an interpolation, ``end`` always an absolute final value or floor; ``base``: the
  level a ``cyclic`` cycle starts from; ``value``/``levels``: constant levels.
* ``factor``: a multiplier per event (per ``every`` steps, milestone, cycle, plateau cut), in
  (0, 1] for decays; ``rate``: only ``inverse_time``'s ``k`` in ``1/(1 + k t)``.
* ``steps``: a schedule's or phase's length; ``every``: the interval of a repeated event;
  ``period``/``mult``: the first cycle's length and the growth of the next; ``warmup``,
  ``stable``, ``decay``, ``up``, ``down``: named phases inside a family; ``begin``: the step where
  something begins (``exponential``'s decay, ``cooldown``).
* ``onecycle`` and the momentum curves keep torch's names (``pct_start``, ``div_factor``,
  ``base_momentum``, ...). Integer parameters take whole numbers only (``2.0`` is stored as ``2``).
"""

from lrlab.schedules import _combinators, _custom, _cyclic, _families, _plateau
from lrlab.schedules._combinators import *  # noqa: F403
from lrlab.schedules._core import (
    MAX_DEPTH,
    MAX_STEPS,
    Schedule,
    State,
    from_config,
    get,
    register,
    registry,
    resolve_duration,
)
from lrlab.schedules._custom import *  # noqa: F403
from lrlab.schedules._cyclic import *  # noqa: F403
from lrlab.schedules._examples import examples
from lrlab.schedules._families import *  # noqa: F403
from lrlab.schedules._plateau import *  # noqa: F403

__all__ = [
    "MAX_DEPTH",
    "MAX_STEPS",
    "Schedule",
    "State",
    "examples",
    "from_config",
    "get",
    "register",
    "registry",
    "resolve_duration",
    *_combinators.__all__,
    *_custom.__all__,
    *_cyclic.__all__,
    *_families.__all__,
    *_plateau.__all__,
]
