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
