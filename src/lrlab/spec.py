"""Schedules as text and as config files: the spec parser and JSON/YAML/TOML I/O.

The text form is what a person types on a command line and what ``str(schedule)`` prints::

    linear(0.0, 0.1, steps=500) >> cosine(0.1, 1e-5, steps=9500)

Its grammar is in :mod:`lrlab.schedules._text`: ``>>`` joins phases into a sequence, ``*``
multiplies schedules (or scales one by a number), parentheses group, calls take positional
arguments in field order and keyword arguments, and values are numbers, durations (``500``,
``5ep``, ``10%``), words, quoted strings, ``true``/``false``/``none``, lists and nested schedules.
The parser is a hand-written tokenizer and recursive-descent parser: nothing is evaluated.

Limits, so that no input can exhaust the stack, the memory or the clock: a spec is at most
:data:`MAX_SPEC_CHARS` (100,000) characters; parentheses, brackets and calls nest at most
:data:`~lrlab.schedules.MAX_DEPTH` (64) levels deep (config files too); a config file is at most
:data:`MAX_CONFIG_CHARS` (1,000,000) characters, and YAML aliases (``*name``, the way to write an
exponentially large document in a few lines) are refused. Each limit is a one-line error.

A mistake raises :class:`SpecError` (a :class:`ValueError`): its first line says what is wrong and
where (``expected ')' at column 17``), the next two lines show the text with a caret under the
offending token::

    >>> from lrlab.spec import parse
    >>> parse("constant(0.1, steps=5) >> constant(0.01")
    Traceback (most recent call last):
    ...
    lrlab.spec.SpecError: expected ',' or ')' at column 40, found the end of the text
      constant(0.1, steps=5) >> constant(0.01
                                             ^

Configs are the mappings of :meth:`~lrlab.Schedule.to_config` (``{"name": ..., param: value}``)
in JSON, YAML (read with :func:`safe_yaml`: PyYAML's safe loader, aliases refused) or TOML (read only). A config may also hold a text
spec, either as the whole document or as ``{"schedule": "<spec>"}``, and a parameter that takes a
schedule may be given as a spec string:

    >>> from lrlab.spec import dumps, loads
    >>> s = parse("constant(0.1, steps=5) >> constant(0.01)")
    >>> loads(dumps(s, "yaml"), "yaml") == s == loads('{"schedule": "%s"}' % s)
    True
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lrlab.schedules._core import MAX_DEPTH, Schedule, registry
from lrlab.schedules._text import KEYWORDS

__all__ = [
    "MAX_CONFIG_CHARS",
    "MAX_SPEC_CHARS",
    "SpecError",
    "dump",
    "dumps",
    "from_data",
    "load",
    "loads",
    "parse",
    "safe_yaml",
    "schedule_from_arg",
]

FORMATS = ("json", "yaml", "text")
"""What :func:`dumps` writes and :func:`loads` reads (``"text"`` is the spec itself)."""

MAX_SPEC_CHARS = 100_000
"""The longest schedule spec :func:`parse` reads (in characters)."""

MAX_CONFIG_CHARS = 1_000_000
"""The longest config document :func:`loads` (and :func:`load`) reads (in characters)."""

_SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
class SpecError(ValueError):
    """A mistake in a schedule spec: a one-line reason, then the text with a caret under it.

    Attributes: ``reason`` (the first line, without the caret), ``text`` (the whole spec) and
    ``pos`` (0-based character offset of the offending token; -1 when the error is about the
    whole text, which then has no caret line).
    """

    def __init__(self, reason: str, text: str, pos: int) -> None:
        self.reason, self.text, self.pos = reason, text, pos
        if pos < 0:  # nothing to point at (e.g. the text is too long to show)
            super().__init__(reason)
            return
        line_start = text.rfind("\n", 0, pos) + 1
        line_end = text.find("\n", pos)
        line = text[line_start : len(text) if line_end < 0 else line_end]
        col = pos - line_start
        if len(line) > 2 * _SHOWN:  # a long line: show a window around the mistake
            lo = max(0, col - _SHOWN)
            head = "..." if lo else ""
            tail = "..." if lo + 2 * _SHOWN < len(line) else ""
            line, col = head + line[lo : lo + 2 * _SHOWN] + tail, col - lo + len(head)
        super().__init__(f"{reason}\n  {line}\n  {' ' * col}^")


_SHOWN = 60  # characters shown on each side of a mistake in a long line


def _where(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"column {column}" if "\n" not in text else f"line {line}, column {column}"


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Tok:
    kind: str  # NUMBER, DURATION, WORD, STRING, OP, END
    value: Any
    pos: int
    text: str  # the source text of the token (for messages)


_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.:]*")
_SPACE = re.compile(r"\s+")
_OPS = (">>", "(", ")", "[", "]", ",", "=", "*")


def _describe(tok: _Tok) -> str:
    if tok.kind == "END":
        return "the end of the text"
    return f"'{tok.text}'"


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        m = _SPACE.match(text, i)
        if m:
            i = m.end()
            continue
        c = text[i]
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op is not None:
            toks.append(_Tok("OP", op, i, op))
            i += len(op)
            continue
        if c == "-" and text[i + 1 : i + 4].lower() == "inf" and not _WORD.match(text, i + 4):
            toks.append(_Tok("NUMBER", -math.inf, i, text[i : i + 4]))
            i += 4
            continue
        m = _NUMBER.match(text, i)
        if m and m.group() != "-":
            i = m.end()
            raw = m.group()
            unit = re.compile(r"ep|%").match(text, i)
            tail = _WORD.match(text, i + (len(unit.group()) if unit else 0))
            if tail or (unit is None and i < n and text[i] == "."):
                bad = _WORD.match(text, i) or re.compile(r"\S+").match(text, i)
                raise SpecError(
                    f"unexpected '{raw}{bad.group() if bad else ''}' at {_where(text, m.start())}: "
                    "numbers are written 500, 0.1 or 1e-5 and durations 500 (steps), 5ep or 10%",
                    text,
                    m.start(),
                )
            if unit:
                if raw.startswith("-"):
                    raise SpecError(f"a duration cannot be negative, got '{raw}{unit.group()}' at {_where(text, m.start())}", text, m.start())
                i = unit.end()
                toks.append(_Tok("DURATION", raw + unit.group(), m.start(), raw + unit.group()))
            elif re.fullmatch(r"-?[0-9]{1,18}", raw):  # longer: a float (int() refuses 4300+ digits)
                toks.append(_Tok("NUMBER", int(raw), m.start(), raw))
            else:
                toks.append(_Tok("NUMBER", float(raw), m.start(), raw))
            continue
        m = _WORD.match(text, i)
        if m:
            toks.append(_Tok("WORD", m.group(), i, m.group()))
            i = m.end()
            continue
        if c in "'\"":
            j, out = i + 1, []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n and text[j + 1] in "\\'\"":
                    j += 1
                out.append(text[j])
                j += 1
            if j >= n:
                raise SpecError(f"unterminated string starting at {_where(text, i)}", text, i)
            toks.append(_Tok("STRING", "".join(out), i, text[i : j + 1]))
            i = j + 1
            continue
        hint = {">": "; a sequence is written a >> b", "+": "; a sequence is written a >> b",
                "-": "; quote text that is not a plain word, e.g. shape='1-sqrt'"}.get(c, "")  # fmt: skip
        raise SpecError(f"unexpected character {c!r} at {_where(text, i)}{hint}", text, i)
    toks.append(_Tok("END", None, n, ""))
    return toks


# ---------------------------------------------------------------------------------------------
# Types of fields (read from the dataclass annotations, as strings)
# ---------------------------------------------------------------------------------------------
_KIND_OF = {
    "float": "number", "int": "number", "bool": "bool", "str": "str", "None": "none",
    "Schedule": "schedule", "tuple": "list", "list": "list", "Sequence": "list", "Literal": "str",
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _Type:
    """What a field accepts: a set of kinds (None: anything), and for lists the element type."""

    kinds: frozenset[str] | None
    item: _Type | None = None

    def describe(self) -> str:
        names = {"number": "a number", "bool": "true/false", "str": "a word or string",
                 "none": "none", "schedule": "a schedule", "list": "a list [...]"}  # fmt: skip
        return " or ".join(names[k] for k in sorted(self.kinds or ()))


_ANY = _Type(None)


def _split_top(s: str, sep: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in s:
        depth += ch == "["
        depth -= ch == "]"
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur]


def _parse_annotation(ann: Any) -> _Type:
    if not isinstance(ann, str):
        ann = getattr(ann, "__name__", str(ann))
    kinds: set[str] = set()
    item: _Type | None = None
    for part in (p.strip() for p in _split_top(ann.replace("Optional[", "None | ["), "|")):
        base = part.split("[", 1)[0].strip().rsplit(".", 1)[-1]
        if base not in _KIND_OF:
            return _ANY  # an annotation this checker does not know: accept anything
        kinds.add(_KIND_OF[base])
        if base in ("tuple", "list", "Sequence") and "[" in part:
            inner = _split_top(part[part.index("[") + 1 : part.rindex("]")], ",")[0]
            item = _parse_annotation(inner)
    return _Type(frozenset(kinds), item)


def _fields(cls: type[Schedule]) -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(cls)  # type: ignore[arg-type]  # every registered Schedule is a dataclass


_FIELD_TYPES: dict[type, dict[str, tuple[_Type, bool]]] = {}


def _field_types(cls: type[Schedule]) -> dict[str, tuple[_Type, bool]]:
    """``{field: (type, is_duration)}`` for a schedule class (read once per class; not mutated)."""
    if cls not in _FIELD_TYPES:
        _FIELD_TYPES[cls] = {f.name: (_parse_annotation(f.type), bool(f.metadata.get("duration"))) for f in _fields(cls)}
    return _FIELD_TYPES[cls]


def _kind(v: Any) -> str:
    if isinstance(v, Schedule):
        return "schedule"
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "str"
    return "list"


def _shown(v: Any) -> str:
    from lrlab.schedules._text import format_value

    return {"schedule": "the schedule ", "number": "the number ", "str": "the string ",
            "list": "the list ", "bool": "", "none": ""}[_kind(v)] + format_value(v)  # fmt: skip


def _coerce(v: Any, typ: _Type, duration: bool) -> tuple[Any, str | None]:
    """``(value, None)`` or ``(v, reason)``: checks the kind of ``v`` against the field's type (the
    schedule's constructor then stores numbers canonically: ``1e3`` as ``1000`` in an int field)."""
    kind = _kind(v)
    if typ.kinds is None:
        return v, None
    allowed = set(typ.kinds) | ({"str", "number"} if duration and "list" not in typ.kinds else set())
    if kind not in allowed:
        return v, f"expected {_Type(frozenset(allowed)).describe()}, got {_shown(v)}"
    if kind == "list" and typ.item is not None:
        out = []
        for x in v:
            x2, why = _coerce(x, typ.item, duration)
            if why:
                return v, f"in the list: {why}"
            out.append(x2)
        return tuple(out), None
    return v, None


def _close(word: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(near)}?" if near else ""


def _suggest_schedule(name: str) -> str:
    return _close(name, list(registry())) or "; `lrlab list` shows them all"


def _unknown_schedule(name: str) -> str:
    return f"unknown schedule {name!r}{_suggest_schedule(name)}"


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0  # open parentheses, brackets and calls around the current token

    def enter(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested deeper than {MAX_DEPTH} levels", tok, " (the limit for schedule specs)")

    # -- helpers
    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def error(self, head: str, tok: _Tok | None = None, tail: str = "") -> SpecError:
        """``SpecError("<head> at column N<tail>")`` pointing at ``tok`` (default: the current one)."""
        tok = tok or self.tok
        return SpecError(f"{head} at {_where(self.text, tok.pos)}{tail}", self.text, tok.pos)

    def expect(self, op: str, what: str | None = None) -> _Tok:
        tok = self.tok
        if tok.kind != "OP" or tok.value != op:
            raise self.error(f"expected {what or repr(op)}", tok, f", found {_describe(tok)}")
        self.i += 1
        return tok

    def at(self, op: str) -> bool:
        return self.tok.kind == "OP" and self.tok.value == op

    # -- grammar
    def parse(self) -> Schedule:
        if self.tok.kind == "END":
            raise SpecError("empty schedule spec: write e.g. constant(0.1) or linear(0.0, 0.1, steps=100) >> constant(0.1)", self.text, 0)
        start = self.tok
        value = self.expr()
        if self.tok.kind != "END":
            hint = "; join phases with >> and multiply with *" if self.tok.kind != "OP" or self.tok.value in "([" else ""
            raise self.error(f"unexpected {_describe(self.tok)}", tail=hint)
        if not isinstance(value, Schedule):
            raise self.error("expected a schedule", start, f", got {_shown(value)}{self._call_hint(value)}")
        return value

    @staticmethod
    def _call_hint(value: Any) -> str:
        if isinstance(value, str) and value in registry():
            return f"; call it: {value}(...)"
        if isinstance(value, int | float) and not isinstance(value, bool):
            return f"; a constant rate is constant({value})"
        return ""

    def expr(self) -> Any:
        start = self.tok
        first = self.product()
        if not self.at(">>"):
            return first
        phases, where = [first], [start]
        while self.at(">>"):
            self.i += 1
            where.append(self.tok)
            phases.append(self.product())
        for p, tok in zip(phases, where):
            if not isinstance(p, Schedule):
                raise self.error("expected a schedule on each side of >>", tok, f", got {_shown(p)}{self._call_hint(p)}")
        return self.build("sequence", {"phases": tuple(phases)}, start)

    def product(self) -> Any:
        start = self.tok
        acc = self.atom()
        chain: list[Schedule] = []  # factors of the product being built (built once, at its end)
        while self.at("*"):
            self.i += 1
            tok = self.tok
            rhs = self.atom()
            a_num, b_num = _is_number(acc), _is_number(rhs)
            if isinstance(acc, Schedule) and isinstance(rhs, Schedule):
                chain = chain or [acc]
                chain.append(rhs)
                acc = rhs
                continue
            if chain:  # a number after a chain of schedules scales their product
                acc, chain = self.build("product", {"factors": tuple(chain)}, start), []
            if a_num and isinstance(rhs, Schedule):
                acc = self.build("scale", {"schedule": rhs, "factor": float(acc)}, start)
            elif isinstance(acc, Schedule) and b_num:
                acc = self.build("scale", {"schedule": acc, "factor": float(rhs)}, start)
            else:
                bad, bad_tok = (rhs, tok) if isinstance(acc, Schedule) or a_num else (acc, start)
                raise self.error(f"cannot multiply {_shown(bad)}", bad_tok, ": * multiplies schedules, or a schedule by a number")
        if chain:
            acc = self.build("product", {"factors": tuple(chain)}, start)
        return acc

    def atom(self) -> Any:
        tok = self.tok
        if tok.kind in ("NUMBER", "DURATION", "STRING"):
            self.i += 1
            return tok.value
        if tok.kind == "WORD":
            self.i += 1
            if self.at("("):
                return self.call(tok)
            low = tok.value.lower()
            if low in KEYWORDS:
                return {"true": True, "false": False, "none": None, "inf": math.inf, "nan": math.nan}[low]
            return tok.value
        if self.at("("):
            self.enter(tok)
            self.i += 1
            inner = self.expr()
            self.expect(")", "')' to close the '(' at " + _where(self.text, tok.pos))
            self.depth -= 1
            return inner
        if self.at("["):
            self.enter(tok)
            self.i += 1
            items: list[Any] = []
            while not self.at("]"):
                items.append(self.expr())
                if not self.at("]"):
                    self.expect(",", "',' or ']'")
            self.i += 1
            self.depth -= 1
            return tuple(items)
        raise self.error("expected a schedule or a value", tok, f", found {_describe(tok)}")

    def call(self, name_tok: _Tok) -> Schedule:
        name = name_tok.value
        cls = registry().get(name)
        if cls is None:
            raise self.error(f"unknown schedule {name!r}", name_tok, _suggest_schedule(name))
        fields = [f.name for f in _fields(cls)]
        self.enter(name_tok)
        self.expect("(")
        kwargs: dict[str, Any] = {}
        arg_toks: dict[str, _Tok] = {}
        seen_keyword = False
        while not self.at(")"):
            tok = self.tok
            if tok.kind == "WORD" and self.toks[self.i + 1].kind == "OP" and self.toks[self.i + 1].value == "=":
                key = tok.value
                if key not in fields:
                    raise self.error(
                        f"unknown parameter {key!r}", tok,
                        f": {name} takes {', '.join(fields) or 'no parameters'}{_close(key, fields)}",
                    )
                self.i += 2
                seen_keyword = True
            else:
                if seen_keyword:
                    raise self.error(f"positional argument after keyword arguments in {name}(...)", tok)
                index = len(kwargs)
                if index >= len(fields):
                    raise self.error(
                        "too many positional arguments", tok, f": {name} takes {len(fields)} ({', '.join(fields)})"
                    )
                key = fields[index]
            if key in kwargs:
                raise self.error(f"parameter {key!r} of {name} given twice", tok)
            value_tok = self.tok
            kwargs[key] = self.expr()
            arg_toks[key] = value_tok
            if not self.at(")"):
                self.expect(",", "',' or ')'")
        self.i += 1
        self.depth -= 1
        return self.build(name, kwargs, name_tok, arg_toks)

    def build(self, name: str, kwargs: dict[str, Any], tok: _Tok, arg_toks: dict[str, _Tok] | None = None) -> Schedule:
        try:
            return _construct(name, kwargs)
        except _ArgError as e:
            raise self.error(f"bad {name}({e.key}=...)", (arg_toks or {}).get(e.key, tok), f": {e}") from None
        except ValueError as e:
            raise self.error(f"invalid {name}(...)", tok, f": {str(e).splitlines()[0]}") from None


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class _ArgError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _construct(name: str, kwargs: dict[str, Any]) -> Schedule:
    """``cls(**kwargs)`` after checking names and types; errors name the schedule and parameter."""
    cls = registry().get(name)
    if cls is None:
        raise ValueError(_unknown_schedule(name))
    types = _field_types(cls)
    clean = {}
    for key, value in kwargs.items():
        if key not in types:
            raise _ArgError(key, f"{name} has no parameter {key!r}{_close(key, list(types))}; it takes {', '.join(types)}")
        typ, duration = types[key]
        clean[key], why = _coerce(value, typ, duration)
        if why:
            raise _ArgError(key, f"wrong type: {why}")
    missing = [f.name for f in _fields(cls)
               if f.name not in clean and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]  # fmt: skip
    if missing:
        raise ValueError(f"{name}: missing required parameter(s) {', '.join(missing)}")
    return cls(**clean)


def parse(text: str) -> Schedule:
    """Parse a schedule spec (the text ``str(schedule)`` prints, or one typed by hand).

    Args:
        text: the spec, e.g. ``"warmup(constant(0.1), steps=5ep)"``.

    Returns:
        The schedule (durations such as ``5ep`` or ``10%`` stay unresolved until
        :meth:`~lrlab.Schedule.resolve`).

    Raises:
        SpecError: (a ``ValueError``) with the column and a caret line.

    >>> s = parse("warmup(constant(0.1), steps=4, start=0.02)")
    >>> [round(s(t), 3) for t in range(6)]
    [0.02, 0.04, 0.06, 0.08, 0.1, 0.1]
    >>> parse(str(s)) == s
    True
    """
    if not isinstance(text, str):
        raise ValueError(f"a schedule spec is a string, got {type(text).__name__}")
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError(f"a schedule spec is at most {MAX_SPEC_CHARS:,} characters, this one has {len(text):,}", text, -1)
    return _Parser(text).parse()


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------
_FLOAT_TEXT = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$|^[-+]?(?:inf|nan)$", re.I)


def from_data(data: Any, *, where: str = "config") -> Schedule:
    """A schedule from decoded config data: a ``to_config`` mapping, ``{"schedule": ...}`` or a spec.

    Inside a mapping, a parameter that takes a schedule may be a spec string, and a number written
    as a string (YAML 1.1 reads ``1e-5`` as a string) is read as a number. Errors are
    ``ValueError`` naming the key path, e.g. ``config.phases[1].steps: ...``.

    >>> from_data({"name": "warmup", "schedule": "constant(0.1)", "steps": 10})
    <lrlab warmup(schedule=constant(value=0.1), steps=10)>
    """
    return _from_data(data, where, 1)


def _from_data(data: Any, where: str, depth: int) -> Schedule:
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: schedule configs nest at most {MAX_DEPTH} levels deep")
    if isinstance(data, str):
        try:
            return parse(data)
        except SpecError as e:
            raise SpecError(f"{where}: {e.reason}", e.text, e.pos) from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a schedule (a mapping with a 'name', or a spec string), got {_type_name(data)}")
    if "name" not in data:
        if "schedule" in data:
            extra = sorted(set(map(str, data)) - {"schedule"})
            if extra:
                raise ValueError(f"{where}: unexpected key(s) {', '.join(extra)} next to 'schedule'")
            return _from_data(data["schedule"], f"{where}.schedule", depth)
        raise ValueError(f"{where}: a schedule config needs a 'name' key (or a 'schedule' key), got keys {sorted(map(str, data))}")
    name = data["name"]
    if not isinstance(name, str) or name not in registry():
        raise ValueError(f"{where}.name: {_unknown_schedule(name) if isinstance(name, str) else f'expected a schedule name, got {name!r}'}")
    types = _field_types(registry()[name])
    kwargs = {}
    for key, value in data.items():
        if key == "name":
            continue
        if key not in types:
            raise ValueError(f"{where}: {name} has no parameter {key!r}{_close(str(key), list(types))}; it takes {', '.join(types)}")
        kwargs[key] = _from_value(value, types[key][0], f"{where}.{key}", depth)
    try:
        return _construct(name, kwargs)
    except _ArgError as e:
        raise ValueError(f"{where}.{e.key}: {e}") from None
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _from_value(v: Any, typ: _Type, where: str, depth: int) -> Any:
    kinds = typ.kinds or frozenset()
    if isinstance(v, Mapping):
        return _from_data(v, where, depth + 1)
    if isinstance(v, list | tuple):
        item = typ.item or _ANY
        return tuple(_from_value(x, item, f"{where}[{i}]", depth) for i, x in enumerate(v))
    if isinstance(v, str) and "schedule" in kinds and "str" not in kinds:
        return _from_data(v, where, depth + 1)
    if isinstance(v, str) and "number" in kinds and "str" not in kinds and _FLOAT_TEXT.match(v.strip()):
        return float(v)
    return v


def _type_name(v: Any) -> str:
    return {list: "a list", int: "a number", float: "a number", bool: "a boolean", type(None): "nothing"}.get(type(v), type(v).__name__)


def dumps(schedule: Schedule, fmt: str = "json") -> str:
    """A schedule as text: its config in ``"json"`` or ``"yaml"``, or ``"text"`` (the spec).

    YAML output starts with a comment holding the spec, for people reading the file.

    >>> from lrlab.schedules import constant
    >>> print(dumps(constant(0.1, steps=5) >> constant(0.01), "yaml"))
    # constant(value=0.1, steps=5) >> constant(value=0.01)
    name: sequence
    phases:
    - name: constant
      value: 0.1
      steps: 5
    - name: constant
      value: 0.01
      steps: null
    durations:
    - null
    - null
    <BLANKLINE>
    """
    if not isinstance(schedule, Schedule):
        raise ValueError(f"dumps: expected a schedule, got {type(schedule).__name__}")
    if fmt == "json":
        return json.dumps(schedule.to_config(), indent=2) + "\n"
    if fmt == "yaml":
        import yaml

        text = str(schedule)
        head = f"# {text}\n" if "\n" not in text else ""
        return head + yaml.safe_dump(schedule.to_config(), sort_keys=False, allow_unicode=True)
    if fmt == "text":
        return str(schedule) + "\n"
    raise ValueError(f"dumps: fmt must be one of {', '.join(FORMATS)}, got fmt={fmt!r}")


def loads(text: str, fmt: str = "json", *, where: str = "config") -> Schedule:
    """The schedule in ``text``, written as ``"json"``, ``"yaml"``, ``"toml"`` or ``"text"`` (a spec).

    >>> loads('name: constant\\nvalue: 1e-3', "yaml")
    <lrlab constant(value=0.001)>
    """
    if fmt == "text":
        return from_data(text.strip(), where=where)
    if isinstance(text, str) and len(text) > MAX_CONFIG_CHARS:
        raise ValueError(f"{where}: a config is at most {MAX_CONFIG_CHARS:,} characters, this one has {len(text):,}")
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not valid JSON: {e}") from None
        except RecursionError:
            raise ValueError(f"{where}: JSON nested too deeply (schedules nest at most {MAX_DEPTH} levels)") from None
    elif fmt == "yaml":
        data = safe_yaml(text, where)
    elif fmt == "toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise ValueError(f"{where}: reading TOML needs Python >= 3.11 (tomllib); use JSON or YAML") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{where}: not valid TOML: {e}") from None
        except RecursionError:
            raise ValueError(f"{where}: TOML nested too deeply (schedules nest at most {MAX_DEPTH} levels)") from None
    else:
        raise ValueError(f"loads: fmt must be one of json, yaml, toml, text, got fmt={fmt!r}")
    return from_data(data, where=where)


_YAML_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


def safe_yaml(text: str, where: str = "config") -> Any:
    """``yaml.safe_load(text)`` without aliases: a one-line ``ValueError`` for an alias or bad YAML.

    Numbers such as ``1e-3`` are read as floats (PyYAML's YAML 1.1 wants ``1.0e-3`` and returns
    the string otherwise).

    Aliases (``*name``) are what makes a "billion laughs" document: a few lines that expand to an
    exponentially large tree. Configs never need them, so they are refused while reading.
    """
    import yaml

    class _NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise ValueError(
                    f"{where}: YAML aliases (*name) are not allowed in lrlab configs "
                    f"(line {mark.line + 1}, column {mark.column + 1}); write the value out"
                )
            return super().compose_node(parent, index)

    def number(loader: Any, node: Any) -> Any:
        v = loader.construct_scalar(node)
        return float(v.replace("_", "")) if _YAML_FLOAT.match(v) else loader.construct_yaml_float(node)

    # YAML 1.1 (PyYAML) reads `1e-3` as the string "1e-3"; configs mean the number
    _NoAliasLoader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML_FLOAT, list("-+0123456789."))
    _NoAliasLoader.add_constructor("tag:yaml.org,2002:float", number)

    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except yaml.YAMLError as e:
        raise ValueError(f"{where}: not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise ValueError(f"{where}: YAML nested too deeply (schedules nest at most {MAX_DEPTH} levels)") from None


def _format_of(path: Path) -> str:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown config type {path.suffix!r}; use .json, .yaml, .yml or .toml")
    return fmt


def load(path: str | Path) -> Schedule:
    """Read a schedule from a ``.json``, ``.yaml``/``.yml`` or ``.toml`` file (by extension).

    Errors name the file and the key path: ``warmup.yaml: config.schedule.steps: ...``.
    """
    path = Path(path)
    fmt = _format_of(path)
    try:
        with path.open(encoding="utf-8") as f:
            text = f.read(MAX_CONFIG_CHARS + 1)  # never more than the limit into memory
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        return loads(text, fmt)
    except SpecError as e:
        raise SpecError(f"{path}: {e.reason}", e.text, e.pos) from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def dump(schedule: Schedule, path: str | Path) -> None:
    """Write a schedule's config to a ``.json`` or ``.yaml``/``.yml`` file (by extension)."""
    path = Path(path)
    fmt = _format_of(path)
    if fmt == "toml":
        raise ValueError(f"{path}: lrlab reads TOML but does not write it; use .json or .yaml")
    path.write_text(dumps(schedule, fmt), encoding="utf-8")


def schedule_from_arg(arg: str) -> Schedule:
    """A command-line schedule argument: a spec, or ``@path`` to a JSON/YAML/TOML config file.

    >>> schedule_from_arg("constant(0.1)")
    <lrlab constant(value=0.1)>
    """
    if arg.startswith("@"):
        return load(arg[1:])
    return parse(arg)
