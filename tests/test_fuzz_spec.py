"""Fuzzing the spec parser and the evaluation paths (hypothesis).

Two promises, checked on generated texts rather than hand-picked examples:

1. *Parsing is total*: any text either parses or raises :class:`lrlab.spec.SpecError` (never a
   ``RecursionError``, ``OverflowError``, ``TypeError``, a hang, ...).
2. *Whatever parses is safe to run*: resolving it either succeeds or raises the library's
   ``ValueError``; a resolved schedule gives a finite lr >= 0 at every step, and the Python-number,
   NumPy and torch paths agree.

The texts come from a grammar-aware generator (every registered schedule with random subsets of
its parameters: extreme numbers, bad durations, words, lists, nested schedules, ``>>`` and ``*``),
plus random edits of those texts and deep nesting. Run this file as a script for a long run that
counts outcomes instead of failing at the first one::

    PYTHONPATH=src python tests/test_fuzz_spec.py 20000
"""

from __future__ import annotations

import dataclasses
import re
import signal
import sys
from collections import Counter
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrlab.schedules import Schedule, registry
from lrlab.spec import SpecError, parse

# ---- the generator ------------------------------------------------------------------------------

_NUMBERS = st.one_of(
    st.sampled_from([
        "0", "1", "0.1", "1e-5", "1e-3", "0.5", "0.9", "2", "3", "10", "100", "1e3", "2.5", "-0.1",
        "-1", "1e400", "-1e400", "1e308", "1.7e308", "inf", "-inf", "nan", "1e-320", "5e-324",
        "99999999999999999999", "1" * 40, "1" * 5000, "0.0", "-0.0", "1.0", "324", "324.0",
    ]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**6, 10**22).map(str),
    st.floats(0, 1).map(repr),
)
_DURATIONS = st.one_of(
    st.sampled_from([
        "0", "1", "2", "10", "100", "5ep", "10%", "100%", "200%", "0%", "1e400%", "1e400ep",
        "1e400", "0.5", "2.5", "1e20", "1e15", "1e300", "50%", "0.5ep", "3ep", "1e-3%",
    ]),
    st.integers(0, 10**6).map(str),
    st.integers(0, 300).map(lambda i: f"{i}%"),
    st.integers(0, 50).map(lambda i: f"{i}ep"),
)
_WORDS = st.sampled_from([
    "linear", "cos", "cosine", "exponential", "1-sqrt", "'1-sqrt'", "at", "after", "triangular",
    "triangular2", "exp_range", "cycle", "iterations", "min", "max", "torch", "keras", "optax", "rel",
    "abs", "raise", "skip", "plateau", "true", "false", "none", "'x'", "''", "nan", "bogus",
])


@dataclasses.dataclass(frozen=True)
class _Pools:
    """Where parameter values come from: adversarial (extremes, wrong types) or sane."""

    numbers: st.SearchStrategy[str]
    durations: st.SearchStrategy[str]
    wrong: bool


_ADVERSARIAL = _Pools(_NUMBERS, _DURATIONS, wrong=True)
_SANE = _Pools(
    st.one_of(st.floats(0, 2).map(repr), st.sampled_from(["0.1", "1e-3", "0.5", "1", "0.9", "0"])),
    st.one_of(st.integers(1, 500).map(str), st.sampled_from(["1", "5", "10", "3ep", "10%", "50%", "100%"])),
    wrong=False,
)


def _value(field: dataclasses.Field, child: st.SearchStrategy[str], pools: _Pools) -> st.SearchStrategy[str]:
    """A text for one parameter, mostly of a type the field takes, sometimes not."""
    ann = str(field.type)
    scalar: list[st.SearchStrategy[str]] = []
    if field.metadata.get("duration"):
        scalar.append(pools.durations)
    if "Schedule" in ann:
        scalar.append(child)
    if not pools.wrong and re.search(r"\bint\b", ann) and "float" not in ann:
        scalar.append(st.integers(1, 50).map(str))  # a whole number where only those are valid
    elif "float" in ann or "int" in ann:
        scalar.append(pools.numbers)
    if "str" in ann and not field.metadata.get("duration"):
        scalar.append(_WORDS)
    if "bool" in ann:
        scalar.append(st.sampled_from(["true", "false"]))
    main = st.one_of(*scalar) if scalar else pools.numbers
    if "tuple" in ann:
        main = st.lists(main, max_size=6).map(lambda xs: "[" + ", ".join(xs) + "]")
    if not pools.wrong:
        return main
    wrong = st.one_of(_NUMBERS, _WORDS, _DURATIONS, child, st.just("[]"), st.just("none"))
    return st.one_of(main, main, main, main, wrong)


def _call(name: str, child: st.SearchStrategy[str], pools: _Pools) -> st.SearchStrategy[str]:
    fields = dataclasses.fields(registry()[name])  # type: ignore[arg-type]

    @st.composite
    def build(draw: Any) -> str:
        args = []
        positional = draw(st.booleans())
        for i, f in enumerate(fields):
            if not draw(st.integers(0, 2)):  # about a third of the parameters left out
                positional = False
                continue
            text = draw(_value(f, child, pools))
            args.append(text if positional and i == len(args) else f"{f.name}={text}")
            positional = positional and i == len(args) - 1
        if pools.wrong and draw(st.integers(0, 30)) == 0:
            args.append("bogus=1")
        return f"{name}({', '.join(args)})"

    return build()


def _texts(pools: _Pools) -> st.SearchStrategy[str]:
    plain = [n for n, cls in registry().items()
             if not any("Schedule" in str(f.type) for f in dataclasses.fields(cls))]  # type: ignore[arg-type]
    leaf = st.sampled_from(plain).flatmap(lambda n: _call(n, st.just("constant(0.1)"), pools))

    def extend(child: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.sampled_from(list(registry())).flatmap(lambda n: _call(n, child, pools)),
            st.lists(child, min_size=2, max_size=4).map(" >> ".join),
            st.lists(child, min_size=2, max_size=3).map(" * ".join),
            st.tuples(pools.numbers, child).map(lambda p: f"{p[0]} * {p[1]}"),
            child.map(lambda c: f"({c})"),
        )

    return st.recursive(leaf, extend, max_leaves=8)


SCHEDULE_TEXTS = _texts(_ADVERSARIAL)
SANE_TEXTS = _texts(_SANE)
"""Texts with plausible values of the right types: most of them parse, so evaluation is exercised."""

_NOISE = "()[],=*>%ep.-'\"0123456789 abc_"


@st.composite
def _edited(draw: Any) -> str:
    """A generated text with a few random character edits (deletions, insertions, duplications)."""
    text = draw(SCHEDULE_TEXTS)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.integers(0, 2))
        if op == 0:
            text = text[:i] + text[i + 1:]
        elif op == 1:
            text = text[:i] + draw(st.sampled_from(_NOISE)) + text[i:]
        else:
            j = draw(st.integers(i, min(len(text), i + 20)))
            text = text[:j] + text[i:j] + text[j:]
    return text


_DEEP = st.one_of(
    st.integers(1, 3000).map(lambda n: "(" * n + "constant(0.1)" + ")" * n),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 400).map(lambda n: "warmup(" * n + "constant(0.1)" + ", steps=1)" * n),
    st.integers(1, 400).map(lambda n: "cooldown(" * n + "constant(0.1)" + ", begin=2, steps=2)" * n),
    st.integers(1, 400).map(lambda n: "cooldown(" * n + "constant(0.1)" + ", start=2, steps=2)" * n),
    st.integers(1, 3000).map(lambda n: "constant(0.1)" + " * constant(1.0)" * n),
    st.integers(1, 3000).map(lambda n: " >> ".join(["constant(0.1, steps=1)"] * n)),
)

TEXTS = st.one_of(SCHEDULE_TEXTS, SCHEDULE_TEXTS, _edited(), _DEEP)

# ---- the checks ----------------------------------------------------------------------------------

_STEPS = [0.0, 1.0, 2.0, 7.0, 99.0, 1000.0, 12_345.0, 1e6, 1e9, 1e12, 2.0**53]


def _probe_steps(s: Schedule) -> list[float]:
    extra = []
    for b in (s.boundaries()[:20] + ([s.duration] if s.duration is not None else [])):
        extra += [b - 1.0, float(b), b + 1.0]
    return sorted({x for x in _STEPS + extra if 0 <= x <= 2.0**53})


def outcome(text: str) -> str:
    """``'refused'`` (SpecError/ValueError from the library), ``'ok'``, or what went wrong."""
    try:
        s = parse(text)
    except SpecError:
        return "refused: SpecError"
    except Exception as e:  # the finding: anything else escaping the parser
        return f"parse raised {type(e).__name__}"
    try:
        s = s.resolve(total_steps=1000, steps_per_epoch=10)
    except SpecError:
        return "resolve: SpecError"
    except ValueError:
        return "refused at resolve: ValueError"
    except Exception as e:
        return f"resolve raised {type(e).__name__}"
    return evaluate(s)


def evaluate(s: Schedule) -> str:
    """Check a resolved schedule at probe steps: finite, >= 0, and the three paths agree."""
    import torch

    try:
        steps = _probe_steps(s)
        scalar = np.array([s(t) for t in steps])
        vec = s.values(np.array(steps))
        tor = s(torch.tensor(steps, dtype=torch.float64)).numpy()
    except ValueError:  # e.g. a custom function without a horizon on torch: a documented refusal
        return "refused at evaluation: ValueError"
    except Exception as e:
        return f"evaluation raised {type(e).__name__}"
    for name, v in (("scalar", scalar), ("numpy", vec), ("torch", tor)):
        v = np.broadcast_to(v, (len(steps),))
        if not np.all(np.isfinite(v)):
            return f"non-finite lr ({name})"
        if np.any(v < 0):
            return f"negative lr ({name})"
    if not (np.allclose(scalar, vec, rtol=1e-9, atol=0) and np.allclose(scalar, tor, rtol=1e-9, atol=0)):
        return "paths disagree"
    return "ok"


_GOOD = {"ok", "refused: SpecError", "refused at resolve: ValueError", "refused at evaluation: ValueError"}


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=TEXTS)
def test_every_text_parses_or_is_refused_and_every_schedule_is_safe(text):
    result = outcome(text)
    assert result in _GOOD, f"{result}: {text[:300]!r}"


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=SANE_TEXTS)
def test_plausible_schedules_are_safe_at_every_step(text):
    result = outcome(text)
    assert result in _GOOD, f"{result}: {text[:300]!r}"


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(SCHEDULE_TEXTS, SANE_TEXTS))
def test_what_parses_prints_and_parses_back(text):
    try:
        s = parse(text)
    except SpecError:
        return
    assert parse(str(s)) == s and str(parse(str(s))) == str(s)


class _Hang(BaseException):  # not caught by the checks' except Exception
    pass


def _timeout(*_: Any) -> None:  # pragma: no cover
    raise _Hang


def main(n: int) -> None:  # pragma: no cover - the long run behind the report's counts
    import resource
    import warnings

    import torch  # noqa: F401 - imported before the memory limit below

    warnings.simplefilter("ignore")
    resource.setrlimit(resource.RLIMIT_AS, (12 * 2**30, 12 * 2**30))  # a runaway allocation fails here
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}

    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(text=TEXTS)
    def run(text: str) -> None:
        signal.signal(signal.SIGALRM, _timeout)
        signal.setitimer(signal.ITIMER_REAL, 3.0, 0.5)  # again every 0.5 s if one is swallowed
        try:
            r = outcome(text)
        except _Hang:
            r = "hang (> 3 s)"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        counts[r] += 1
        examples.setdefault(r, text[:200])
        if sum(counts.values()) % 500 == 0:
            print(sum(counts.values()), dict(counts), flush=True)

    run()
    total = sum(counts.values())
    print(f"{total} texts")
    for k, v in counts.most_common():
        print(f"{v:7d}  {k}" + ("" if k in _GOOD else f"   e.g. {examples[k]!r}"))


if __name__ == "__main__":  # pragma: no cover
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
