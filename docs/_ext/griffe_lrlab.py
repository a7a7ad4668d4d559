"""A griffe extension that lets mkdocstrings render lrlab's docstrings as they are written.

lrlab's docstrings use Google "Args:" sections (which mkdocstrings parses) inside a
reStructuredText habit that Markdown does not know: ``:func:`x``` roles, ``.. math::``
directives, ``::`` literal blocks, simple ``====`` tables and bare ``>>>`` doctests. Rather
than rewrite hundreds of docstrings (which `python -m doctest`, ``lrlab show`` and the source
reader all read as they are), :func:`rst_to_markdown` turns those few constructs into Markdown
when the site is built: roles become inline code, math and literal blocks fenced code,
doctests ``pycon`` blocks and tables Markdown tables.

Schedules are frozen dataclasses made by the ``@register("name")`` decorator (a
``dataclass_transform``), which griffe's own dataclass support does not recognise; the
extension gives each registered class the ``__init__`` signature ``dataclasses`` generates, so
the reference shows ``cosine(peak=0.1, end=0.0, steps=1)`` and checks the documented "Args:"
against the real fields.

mkdocs.yml loads it as ``docs/_ext/griffe_lrlab.py:LrlabDocstrings``; tests/test_docs.py tests it.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

_ROLE = re.compile(r":(?:[a-z]+:)?[a-z]+:`~?([^`]+)`")
_TABLE_BORDER = re.compile(r"^=+( +=+)+\s*$")
_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Attributes|Keyword Args):\s*$")
_SHARED_ITEM = re.compile(r"^(\s*)([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)+)(\s*\([^)]*\))?:(\s.*|)$")
_REGISTER = "lrlab.schedules._core.register"
# the core's dataclass field helpers; their first argument is the field's default
_FIELD_HELPERS = {f"lrlab.schedules._core.{n}" for n in ("duration_field", "lr_field", "shown_field")}


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def _indented_block(lines: list[str], start: int, indent: int) -> tuple[list[str], int]:
    """The lines from ``start`` indented deeper than ``indent`` (blank lines inside kept), and
    the index after them."""
    end = start
    block_end = start
    while end < len(lines):
        line = lines[end]
        if line.strip():
            if _indent_of(line) <= indent:
                break
            block_end = end + 1
        end += 1
    return lines[start:block_end], block_end


def _fence(body: list[str], lang: str, indent: int) -> list[str]:
    pad = " " * indent
    text = textwrap.dedent("\n".join(body)).strip("\n")
    return [f"{pad}```{lang}", *(pad + ln if ln else "" for ln in text.splitlines()), f"{pad}```"]


def _table(lines: list[str], indent: int) -> list[str]:
    """A reStructuredText simple table (border, header, border, rows, border) as Markdown."""
    border = lines[0].strip()
    spans = [(m.start(), m.end()) for m in re.finditer(r"=+", border)]
    rows: list[list[str]] = []
    for line in lines[1:]:
        text = line[indent:]
        if _TABLE_BORDER.match(text.strip()):
            continue
        cells = []
        for k, (a, _b) in enumerate(spans):
            b = spans[k + 1][0] if k + 1 < len(spans) else len(text)
            cells.append(text[a:b].strip().replace("|", "\\|"))
        if rows and not cells[0] and len(rows) > 1:  # a continuation line of the previous row
            rows[-1] = [f"{p} {c}".strip() for p, c in zip(rows[-1], cells)]
        else:
            rows.append(cells)
    pad = " " * indent
    out = [pad + "| " + " | ".join(rows[0]) + " |", pad + "|" + "---|" * len(spans)]
    out += [pad + "| " + " | ".join(r) + " |" for r in rows[1:]]
    return out


def split_shared_args(text: str) -> str:
    """Give each name of a shared "Args:" entry (``a, b: what both are``) its own entry.

    lrlab documents parameters that go together on one line; Google-style parsers expect one
    name per entry, so the entry (with its continuation lines) is repeated for each name.
    """
    lines = text.splitlines()
    out: list[str] = []
    section_indent: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if _SECTION.match(line):
            section_indent = _indent_of(line)
        elif line.strip() and section_indent is not None and _indent_of(line) <= section_indent:
            section_indent = None
        m = _SHARED_ITEM.match(line) if section_indent is not None else None
        if m is None:
            out.append(line)
            i += 1
            continue
        rest, i = _indented_block(lines, i + 1, _indent_of(line))
        for name in re.split(r"\s*,\s*", m.group(2)):
            out += [f"{m.group(1)}{name}{m.group(3) or ''}:{m.group(4)}", *rest]
    return "\n".join(out)


def rst_to_markdown(text: str) -> str:
    """Turn the reStructuredText constructs lrlab's docstrings use into Markdown.

    Everything else (Markdown-compatible ````code````, ``*emphasis*``, lists, Google sections)
    passes through unchanged.
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = _indent_of(line)
        if stripped.startswith(".. math::"):
            first = stripped[len(".. math::") :].strip()
            body, i = _indented_block(lines, i + 1, indent)
            out += ["", *_fence(([" " * (indent + 1) + first] if first else []) + body, "tex", indent), ""]
            continue
        if stripped.startswith(">>>"):
            end = i
            while end < len(lines) and lines[end].strip():
                end += 1
            out += _fence(lines[i:end], "pycon", indent)
            i = end
            continue
        if _TABLE_BORDER.match(stripped):
            end, borders = i, 0
            while end < len(lines) and lines[end].strip() and borders < 3:
                borders += bool(_TABLE_BORDER.match(lines[end].strip()))
                end += 1
            out += _table(lines[i:end], indent)
            i = end
            continue
        if stripped.endswith("::") and i + 1 < len(lines) and not lines[i + 1].strip():
            intro = _ROLE.sub(r"`\1`", line.rstrip()[:-2]).rstrip()
            body, end = _indented_block(lines, i + 1, indent)
            if body:
                out += ([intro + ":"] if intro.strip() else []) + ["", *_fence(body, "text", indent)]
                i = end
                continue
        out.append(_ROLE.sub(r"`\1`", line))
        i += 1
    return "\n".join(out)


def _registered(cls: griffe.Class) -> bool:
    return any(d.callable_path == _REGISTER for d in cls.decorators)


def _field_parameters(cls: griffe.Class) -> list[griffe.Parameter]:
    """The dataclass fields of one registered class, in source order, as ``__init__`` parameters."""
    params = []
    for member in cls.members.values():
        if member.is_alias or not member.is_attribute or member.annotation is None:
            continue
        if "property" in member.labels or (
            "class-attribute" in member.labels and "instance-attribute" not in member.labels
        ):
            continue  # a property, or a ClassVar
        default: Any = member.value
        if isinstance(default, griffe.ExprCall) and default.function.canonical_path in _FIELD_HELPERS:
            default = default.arguments[0] if default.arguments else None
        params.append(
            griffe.Parameter(
                member.name,
                annotation=member.annotation,
                kind=griffe.ParameterKind.positional_or_keyword,
                default=default,
            )
        )
    return params


def _add_dataclass_init(cls: griffe.Class) -> None:
    try:
        mro = [c for c in reversed(cls.mro()) if isinstance(c, griffe.Class)]
    except ValueError:
        mro = []
    fields: dict[str, griffe.Parameter] = {}
    for c in [*mro, cls]:
        if _registered(c):
            fields.update({p.name: p for p in _field_parameters(c)})
    init = griffe.Function(
        "__init__",
        lineno=0,
        endlineno=0,
        parent=cls,
        parameters=griffe.Parameters(
            griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword),
            *fields.values(),
        ),
        returns="None",
    )
    cls.set_member("__init__", init)
    cls.labels.add("dataclass")


def _walk(obj: griffe.Object, seen: set[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    if obj.docstring is not None:
        obj.docstring.value = rst_to_markdown(split_shared_args(obj.docstring.value))
    if isinstance(obj, griffe.Class) and _registered(obj) and "__init__" not in obj.members:
        _add_dataclass_init(obj)
    for member in list(obj.members.values()):
        if not member.is_alias:
            _walk(member, seen)  # type: ignore[arg-type]


class LrlabDocstrings(griffe.Extension):
    """Converts lrlab's docstrings and adds the registered schedules' signatures."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _walk(pkg, set())
