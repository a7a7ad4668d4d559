"""Canonical text form of a schedule (the inverse of :func:`lrlab.parse`).

Grammar printed here (and accepted by the parser in :mod:`lrlab.spec`)::

    expr     := product ('>>' product)*          # a sequence of phases, each on its local step
    product  := atom ('*' atom)*                 # product of schedules, or NUMBER * schedule
    atom     := NAME '(' [arg (',' arg)*] ')' | NUMBER | '(' expr ')'
    arg      := [NAME '='] value                 # positional arguments come first, in field order
    value    := NUMBER | DURATION | WORD | 'quoted' | true | false | none | '[' values ']' | expr

* ``>>`` binds loosest, then ``*``; parentheses group. ``a >> b >> c`` is one sequence of three
  phases; ``(a >> b) >> c`` keeps ``(a >> b)`` as a single phase (the same values, another tree).
* ``a * b`` is a :class:`~lrlab.schedules.product`; ``0.5 * a`` (or ``a * 0.5``) is a
  :class:`~lrlab.schedules.scale`.
* Numbers: ``500`` (an int), ``0.1``, ``1e-5``, ``-2.5``, ``inf``, ``nan``. Durations:
  ``500`` (steps), ``5ep`` (epochs), ``10%`` (of training). Words that are not keywords
  (``linear``, ``my_module.fn``) are strings; any other string is quoted, ``'like this'``.
  ``true``, ``false`` and ``none`` (any case) are the booleans and ``None``.

The printed form is canonical: ``name(k=v, ...)`` with every lr level and main length (the
fields marked ``show``, e.g. ``cosine``'s ``peak``, ``end`` and ``steps``) and every other
parameter that differs from its default, by keyword, in field order; numbers with ``repr`` (the shortest string that round-trips);
operators for sequences (whose durations are all implied), products and scales, with the fewest
parentheses that keep the tree. ``lrlab.parse(str(s)) == s`` holds for every schedule.

>>> from lrlab.schedules import constant, warmup
>>> print(warmup(constant(0.1, steps=90), steps=10) >> 0.1 * constant(1.0))
warmup(schedule=constant(value=0.1, steps=90), steps=10) >> 0.1 * constant(value=1.0)
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from lrlab.schedules._backend import is_python_number

__all__ = ["KEYWORDS", "format_schedule", "format_value"]

_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:]*$")
_DURATION = re.compile(r"^(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?(ep|%)$")
KEYWORDS = frozenset({"true", "false", "none", "inf", "nan"})
"""Words the parser reads as values (compared lower-case); strings spelled like them are quoted."""


def format_value(v: Any) -> str:
    """One parameter value as spec text (numbers, durations, strings, lists, nested schedules)."""
    from lrlab.schedules._core import Schedule

    if isinstance(v, Schedule):
        return format_schedule(v)
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if is_python_number(v):
        if isinstance(v, float | np.floating):
            f = float(v)
            if math.isnan(f):
                return "nan"
            return repr(f)  # 'inf' and '-inf' are read back as numbers too
        return str(int(v))
    if isinstance(v, str):
        if (_WORD.match(v) and v.lower() not in KEYWORDS) or _DURATION.match(v):
            return v
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(v, tuple | list):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    raise TypeError(f"cannot format {v!r} as schedule text")


def _call(s: Any) -> str:
    args = ", ".join(f"{k}={format_value(v)}" for k, v in s.params().items())
    return f"{s.name}({args})"


def _operator(s: Any) -> str | None:
    """The operator ``str(s)`` is written with at its top level: ``'>>'``, ``'*'`` or ``None``."""
    from lrlab.schedules._combinators import product, scale, sequence

    if isinstance(s, sequence) and len(s.phases) >= 2 and all(d is None for d in s.durations):
        return ">>"
    if (isinstance(s, product) and len(s.factors) >= 2) or isinstance(s, scale):
        return "*"
    return None


def format_schedule(s: Any) -> str:
    """``str(s)``: operators for sequence/product/scale, ``name(k=v, ...)`` for everything else."""
    op = _operator(s)
    if op == ">>":
        return " >> ".join(_operand(p, in_product=False) for p in s.phases)
    if op == "*" and hasattr(s, "factors"):
        return " * ".join(_operand(f, in_product=True) for f in s.factors)
    if op == "*":
        return f"{format_value(s.factor)} * {_operand(s.schedule, in_product=True)}"
    return _call(s)


def _operand(s: Any, *, in_product: bool) -> str:
    text = format_schedule(s)
    op = _operator(s)
    needs_parens = op == ">>" or (in_product and op == "*")
    return f"({text})" if needs_parens else text
