r"""Docstrings for a terminal: reStructuredText roles and LaTeX formulas as plain Unicode text.

``lrlab show`` prints a schedule's documentation; its formulas are written for the docs site
(``.. math::`` blocks and ``:math:`` roles in LaTeX). :func:`readable` turns them into text a
terminal shows as is: Greek letters and operators as Unicode (``\eta`` -> η, ``\le`` -> ≤),
``\text{peak}`` -> peak, ``\frac{a}{b}`` -> (a)/(b) (parenthesized as a whole where it is a
function's argument, an exponent or a factor before a parenthesis: ``\cos\frac{\pi t}{T}`` ->
cos((π t)/T)), ``\tfrac12`` -> ½, cases as "a, if b; c, if d" (in braces inside a larger
expression), and reST markup (````x````, ``:class:`x```, ``.. math::``) dropped.

>>> readable(r".. math:: \eta(t) = \text{end} + (\text{peak} - \text{end}) \cdot \tfrac12(1 + \cos\frac{\pi t}{T})").strip()
'η(t) = end + (peak − end) · ½(1 + cos((π t)/T))'
>>> readable("lr at ``t = 0``; see :class:`cosine` and :math:`\\eta_0`.")
'lr at t = 0; see cosine and η₀.'
"""

from __future__ import annotations

import re

__all__ = ["readable"]

_SYMBOLS = {
    "eta": "η", "tau": "τ", "pi": "π", "alpha": "α", "beta": "β", "gamma": "γ", "lambda": "λ", "sigma": "σ",
    "cdot": "·", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "in": "∈", "prod": "∏", "sum": "∑",
    "infty": "∞", "times": "×", "to": "→", "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉",
    "bmod": "mod", "min": "min", "max": "max", "cos": "cos", "sin": "sin", "tanh": "tanh", "log": "log",
    "exp": "exp", "sqrt": "√", "quad": "  ", "qquad": "    ", "big": "", "Big": "", "left": "", "right": "",
    "neq": "≠", "approx": "≈", "ldots": "…", "dots": "…",
}
_SUBSCRIPTS = str.maketrans("0123456789+-=()aeioruvx", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑᵢₒᵣᵤᵥₓ")
# a fraction is parenthesized as a whole when it is a function's argument or an exponent, or is
# multiplied by juxtaposition with a parenthesis after it: cos((π t)/T), x^((a)/(b)), (a/2)(1 + c)
_OPERAND_BEFORE = r"(?:\\(?:cos|sin|tan|tanh|exp|log|ln|sqrt)|\^)\s*$"
_FACTOR_AFTER = r"\s*(?:\\left|\\big|\\Big)?\("
_FRACS = {"12": "½", "13": "⅓", "14": "¼", "23": "⅔", "34": "¾"}


def _group(s: str, i: int) -> tuple[str, int]:
    """The braced group (or single character) starting at ``s[i]`` and the index after it."""
    if i < len(s) and s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            depth += {"{": 1, "}": -1}.get(s[j], 0)
            if depth == 0:
                return s[i + 1:j], j + 1
    return (s[i], i + 1) if i < len(s) else ("", i)


def _atom(s: str) -> str:
    """``s`` as one operand: parenthesized unless it is a single word or number."""
    return s if re.fullmatch(r"\\?[\w.]+|\x00[^\x00]*\x00", s.strip()) else f"({s})"


def _fracs(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        m = re.match(r"\\[td]?frac\s*", s[i:])
        if not m:
            out.append(s[i])
            i += 1
            continue
        a, j = _group(s, i + m.end())
        b, k = _group(s, j)
        a, b = _fracs(a), _fracs(b)
        if len(a) == len(b) == 1 and a + b in _FRACS:
            out.append(_FRACS[a + b])
        elif re.search(_OPERAND_BEFORE, "".join(out)) or re.match(_FACTOR_AFTER, s[k:]):
            out.append(f"({_atom(a)}/{_atom(b)})")  # cos((π t)/T), not cos(π t)/T
        else:
            out.append(f"{_atom(a)}/{_atom(b)}")
        i = k
    return "".join(out)


def _sqrts(s: str) -> str:
    r"""``\sqrt{x}`` as √ and ``x`` as one operand (``√((t + τ)/τ)``, not ``√(t + τ)/τ``)."""
    out, i = [], 0
    while (m := re.compile(r"\\sqrt\s*(?=\{)").search(s, i)) is not None:
        inner, j = _group(s, m.end())
        out.append(s[i:m.start()] + "√" + _atom(_sqrts(inner)))
        i = j
    return "".join(out) + s[i:]


def _cases(m: re.Match[str]) -> str:
    """A cases block as "a, if b; c, if d", in braces unless it is the whole right-hand side (so
    ``peak · {…}`` and a condition after the block do not read as part of its last case)."""
    rows = "; ".join(", if ".join(p.strip() for p in row.split("&")) for row in
                     re.split(r"\\\\", m.group(1)) if row.strip())
    whole = re.search(r"=\s*$", m.string[:m.start()]) and not m.string[m.end():].strip(" .")
    return rows if whole else f"\x02{rows}\x03"


def _latex(s: str) -> str:
    s = re.sub(r"\\begin\{cases\}(.*?)\\end\{cases\}", _cases, s, flags=re.S)
    # literal braces, underscores and # first; \text{..} between NULs so a command right before
    # it does not run into its letters (\cdot\text{x} is "· x", not "\cdotx")
    s = s.replace(r"\{", "\x02").replace(r"\}", "\x03").replace(r"\_", "\x01").replace(r"\#", "#")
    s = re.sub(r"\\(?:text|mathrm|operatorname|mathit)\{([^{}]*)\}", "\x00\\1\x00", s)
    s = _sqrts(_fracs(s))
    s = re.sub(r"_\{([^{}]*)\}|_\x00([^\x00]*)\x00", lambda m: _sub(m.group(1) or m.group(2)), s)
    s = re.sub(r"_([0-9a-z])", lambda m: _sub(m.group(1)), s)
    s = re.sub(r"\^\{([^{}]*)\}", lambda m: "^" + (m.group(1) if len(m.group(1)) == 1 else f"({m.group(1)})"), s)
    s = re.sub(r"\\([A-Za-z]+)", lambda m: _symbol(m.group(1)), s)
    s = s.replace(r"\_", "_").replace(r"\,", " ").replace(r"\ ", " ").replace(r"\;", " ").replace(r"\!", "")
    s = s.replace("{", "").replace("}", "").replace(" - ", " − ")
    s = re.sub(r"\x00+", " ", s).replace("\x01", "_").replace("\x02", "{").replace("\x03", "}")
    s = re.sub(r"([/(\[])\s+", r"\1", re.sub(r"\s+([\^\[/])", r"\1", s))
    s = re.sub(r"\s+([,;)}·])", r"\1", s).replace("( ", "(").replace("· ", "·").replace("·", " · ")
    return re.sub(r"[ \t]+", " ", s).strip()


def _symbol(name: str) -> str:
    """A command's Unicode; a known command glued to a variable (``\\cdott``) keeps them apart."""
    if name in _SYMBOLS:
        return _SYMBOLS[name]
    for k in sorted(_SYMBOLS, key=len, reverse=True):
        if name.startswith(k) and len(k) >= 2:
            return _SYMBOLS[k] + " " + name[len(k):]
    return name


def _sub(text: str) -> str:
    t = _latex(text) if "\\" in text else text
    return t.translate(_SUBSCRIPTS) if all(c in "0123456789+-=()aeioruvx" for c in t) else f"_{t}"


def readable(doc: str) -> str:
    """``doc`` with its LaTeX as Unicode and its reST markup dropped (see the module docstring)."""
    lines = doc.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)\.\. math::\s*(.*)$", lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent, body = m.group(1), [m.group(2)]
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            if not lines[i].strip() and (i + 1 >= len(lines) or not lines[i + 1].startswith(indent + " ")):
                break
            body.append(lines[i].strip())
            i += 1
        out.append(indent + "    " + _latex(" ".join(b for b in body if b)))
    text = "\n".join(out)
    text = re.sub(r":math:`([^`]*)`", lambda m: _latex(m.group(1)), text)
    text = re.sub(r":(?:class|func|meth|attr|data|mod|obj|ref):`~?([^`]*)`", r"\1", text)
    return re.sub(r"``([^`]*)``", r"\1", text)
