"""lrlab: exact, portable, measurable learning-rate schedules.

>>> import lrlab
>>> s = lrlab.parse("linear(start=0.0, end=0.1, steps=5) >> cosine(peak=0.1, end=0.0, steps=10)")
>>> round(s(5), 6), round(s(10), 6)
(0.1, 0.05)

``import lrlab`` imports NumPy only; torch, JAX, Keras and matplotlib are imported by the adapter
or feature module that needs them.
"""

from importlib.metadata import PackageNotFoundError, version

from lrlab.schedules import *  # noqa: F403
from lrlab.schedules import __all__ as _schedules_all
from lrlab.spec import dump, dumps, load, loads, parse

try:
    __version__ = version("lrlab")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__", "dump", "dumps", "load", "loads", "parse", *_schedules_all]


def __getattr__(name: str):
    if name == "find":  # the LR range test (lrlab.finder.find); imports torch/keras only when called
        from lrlab.finder import find

        return find
    raise AttributeError(f"module 'lrlab' has no attribute {name!r}")
