"""Canonical text form of a schedule (the inverse of :func:`lrlab.parse`).

Grammar printed here (and accepted by the parser)::

    expr     := product ('>>' product)*          # a sequence of phases, each on its local step
    product  := atom ('*' atom)*                 # product of schedules, or NUMBER * schedule
    atom     := NAME '(' [arg (',' arg)*] ')' | NUMBER | '(' expr ')'
    arg      := [NAME '='] value
    value    := NUMBER | DURATION | WORD | 'quoted' | true | false | none | '[' values ']' | expr

Numbers are printed with ``repr`` (shortest round-trip form), durations as ``500``, ``5ep`` or
``10%``, identifier-like strings bare, other strings single-quoted. Every parameter that differs
from its default is printed by keyword, in field order.
"""

from __future__ import annotations

import re
from typing import Any

from lrlab.schedules._backend import is_python_number

_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:]*$")
_DURATION = re.compile(r"^[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?(ep|%)$")
_KEYWORDS = {"true", "false", "none"}


def format_value(v: Any) -> str:
    from lrlab.schedules._core import Schedule

    if isinstance(v, Schedule):
        return format_schedule(v)
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if is_python_number(v):
        if isinstance(v, float) or hasattr(v, "dtype") and v.dtype.kind == "f":
            return repr(float(v))
        return str(int(v))
    if isinstance(v, str):
        if (_WORD.match(v) and v.lower() not in _KEYWORDS) or _DURATION.match(v):
            return v
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(v, tuple | list):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    raise TypeError(f"cannot format {v!r} as schedule text")


def _call(s: Any) -> str:
    args = ", ".join(f"{k}={format_value(v)}" for k, v in s.params().items())
    return f"{s.name}({args})"


def format_schedule(s: Any) -> str:
    """``str(s)``: operators for sequence/product/scale, ``name(k=v, ...)`` for everything else."""
    from lrlab.schedules._combinators import product, scale, sequence

    if isinstance(s, sequence) and len(s.phases) >= 2 and all(d is None for d in s.durations):
        return " >> ".join(_operand(p, in_product=False) for p in s.phases)
    if isinstance(s, product) and len(s.factors) >= 2:
        return " * ".join(_operand(f, in_product=True) for f in s.factors)
    if isinstance(s, scale):
        return f"{format_value(s.factor)} * {_operand(s.schedule, in_product=True)}"
    return _call(s)


def _operand(s: Any, *, in_product: bool) -> str:
    from lrlab.schedules._combinators import product, scale, sequence

    text = format_schedule(s)
    needs_parens = isinstance(s, sequence) and text.find(" >> ") >= 0
    if in_product:
        needs_parens = needs_parens or (isinstance(s, product | scale) and " * " in text)
    return f"({text})" if needs_parens else text
