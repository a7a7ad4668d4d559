"""A catalogue of bad (and borderline valid) inputs, each with the outcome it must have.

Every class of failure issue 10 lists has entries here, with more of our own: inputs that used to
end in a traceback, a hang, a wrong result, or a refusal of valid input. Each row is
``(id, class, kind, input, expected)``:

* ``kind``: ``"spec"`` (parse, resolve with 1000 steps / 10 per epoch, evaluate at a few steps),
  ``"api"`` (a Python callable), ``"yaml"`` / ``"json"`` (a config document for
  :func:`lrlab.spec.loads`) or ``"cli"`` (``lrlab`` arguments, run in-process).
* ``expected``: ``Refused(pattern)`` (the library's ``ValueError`` whose first line matches, or for
  the CLI exit 2 with one ``lrlab: error: ...`` line matching, never a traceback) or ``Ok(value)``
  (the result, or a predicate on it).

Run as a script to print the outcome counts (``PYTHONPATH=src python tests/test_bad_input.py``).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrlab.cli import main
from lrlab.schedules import (
    MAX_DEPTH,
    Schedule,
    clamp,
    constant,
    cooldown,
    cosine,
    custom,
    cyclic,
    exponential,
    from_config,
    inverse_sqrt,
    linear,
    multistep,
    onecycle,
    per_epoch,
    piecewise,
    polynomial,
    register_function,
    repeat,
    restarts,
    scale,
    step_decay,
    take,
    warmup,
    wsd,
)
from lrlab.spec import loads, parse


@dataclass(frozen=True)
class Refused:
    pattern: str


@dataclass(frozen=True)
class Ok:
    value: Any  # the expected result, or a predicate on it


@register_function("tests.bad_input.negative")
def _negative(epoch):
    return -0.1 if epoch >= 3 else 0.1


@register_function("tests.bad_input.nan")
def _nan(epoch):
    return math.nan


def _nested_dict(depth: int) -> dict:
    cfg: dict = {"name": "constant", "value": 0.1, "steps": 1}
    for _ in range(depth - 1):
        cfg = {"name": "warmup", "schedule": cfg, "steps": 1}
    return cfg


def _nested(cls: Callable[..., Schedule], depth: int, **kw: Any) -> Schedule:
    s: Schedule = constant(0.1, steps=4)
    for _ in range(depth - 1):
        s = cls(s, **kw)
    return s


def _deep_python(depth: int) -> Schedule:
    return _nested(lambda s: warmup(s, steps=1), depth)


_BILLION_LAUGHS = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(9)
)


def _torch_first_lr(s: Schedule) -> float:
    import torch

    from lrlab.adapters.torch import LRLabScheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    LRLabScheduler(opt, s)
    return opt.param_groups[0]["lr"]


def _float32_linear_end() -> bool:
    import torch

    s = linear(0.1, 3e-5, steps=1000)
    v = s(torch.tensor([999.0, 1000.0, 1001.0, 1e6], dtype=torch.float32))
    return bool(v[1:].eq(torch.tensor(3e-5, dtype=torch.float32)).all() and (v >= 0).all())


CATALOGUE: list[tuple[str, str, str, Any, Any]] = [
    # ---- tracebacks: depth ---------------------------------------------------------------------
    ("parens 5000 deep", "traceback", "spec", "(" * 5000 + "constant(0.1)" + ")" * 5000, Refused("nested deeper than 64 levels")),
    ("brackets 3000 deep", "traceback", "spec", "[" * 3000 + "]" * 3000, Refused("nested deeper than 64 levels")),
    ("warmup calls 100 deep", "traceback", "spec", "warmup(" * 100 + "constant(0.1)" + ", steps=1)" * 100, Refused("nested deeper than 64 levels")),
    ("64 levels are fine", "traceback", "spec", "warmup(" * 63 + "constant(0.1)" + ", steps=1)" * 63, Ok(lambda v: v[0] == 0.0 and v[-1] == 0.1)),
    ("json config 100 deep", "traceback", "json", json.dumps(_nested_dict(100)), Refused("nest at most 64 levels deep")),
    ("yaml config 100 deep", "traceback", "yaml", json.dumps(_nested_dict(100)), Refused("nest at most 64 levels deep")),
    ("json arrays 100000 deep", "traceback", "json", "[" * 100_000 + "]" * 100_000, Refused("JSON nested too deeply")),
    ("yaml flow 20000 deep", "traceback", "yaml", "[" * 20_000 + "]" * 20_000, Refused("YAML nested too deeply")),
    ("from_config 100 deep", "traceback", "api", lambda: from_config(_nested_dict(100)), Refused("nest at most 64 levels deep")),
    ("python nesting 65 deep", "traceback", "api", lambda: _deep_python(MAX_DEPTH + 1), Refused("nest at most 64 levels deep")),
    # ---- tracebacks: missing or absurd values --------------------------------------------------
    ("per_epoch without a schedule", "traceback", "spec", "per_epoch(steps_per_epoch=1ep)", Refused("schedule must be a schedule, got None")),
    ("per_epoch(None) in python", "traceback", "api", lambda: per_epoch(None, steps_per_epoch="1ep"), Refused("schedule must be a schedule")),
    ("warmup() without a schedule", "traceback", "spec", "warmup(steps=5)", Refused("schedule must be a schedule")),
    ("1e400% duration", "traceback", "spec", "constant(0.1, steps=1e400%)", Refused("at most 100%")),
    ("1e400ep duration", "traceback", "spec", "constant(0.1, steps=1e400ep)", Refused("at most 2\\*\\*53 steps")),
    ("1e400 steps", "traceback", "spec", "cosine(0.1, steps=1e400)", Refused("steps in \\[0, 2\\*\\*53\\]")),
    ("5000-digit number", "traceback", "spec", "constant(" + "1" * 5000 + ")", Refused("finite number >= 0")),
    ("30-digit int steps", "traceback", "spec", "cosine(0.1, steps=" + "9" * 30 + ")", Refused("steps in \\[0, 2\\*\\*53\\]")),
    ("30-digit int cycles is harmless", "traceback", "spec", "snapshot(0.1, cycles=" + "9" * 30 + ", steps=10)", Ok(lambda v: (v == 0.1).all())),
    ("int beyond 2**53 steps", "traceback", "api", lambda: take(constant(0.1), steps=2**60), Refused("steps in \\[0, 2\\*\\*53\\]")),
    ("int too large for a float", "traceback", "api", lambda: cosine(10**400, steps=10), Refused("peak must be a learning rate")),
    ("step_decay every 10**400", "traceback", "api", lambda: step_decay(0.1, every=10**400), Refused("every must be a number of steps")),
    ("onecycle 1e400 div_factor", "traceback", "spec", "onecycle(0.1, steps=100, div_factor=1e400)", Refused("div_factor must be a finite number")),
    ("bool as an int", "traceback", "api", lambda: step_decay(0.1, every=10, offset=True), Refused("offset must be an integer")),
    ("2.5 for an int", "traceback", "api", lambda: constant(0.1, steps=2.5), Refused("steps must be a whole number, got 2.5")),
    # ---- tracebacks: the CLI -------------------------------------------------------------------
    ("plot -o into a missing folder", "traceback", "cli", ["plot", "constant(0.1, steps=5)", "-o", "{tmp}/no/such/dir/lr.png"], Refused("no/such/dir/lr.png: No such file or directory")),
    ("plot -o with an unknown format", "traceback", "cli", ["plot", "constant(0.1, steps=5)", "-o", "{tmp}/lr.xyz"], Refused("Format 'xyz' is not supported")),
    ("gallery into a file", "traceback", "cli", ["gallery", "{tmp}/afile", "--name", "constant"], Refused("afile")),
    ("values --steps 10**12", "traceback", "cli", ["values", "constant(0.1)", "--steps", "10**12"], Refused("Invalid value for '--steps'")),
    ("unknown verb", "traceback", "cli", ["valuez"], Refused("No such command 'valuez'. Did you mean 'values'")),
    ("unknown option", "traceback", "cli", ["values", "constant(0.1)", "--bogus"], Refused("No such option: --bogus")),
    ("missing argument", "traceback", "cli", ["values"], Refused("Missing argument 'SCHEDULE'")),
    ("values --steps 10^12 spelled out", "traceback", "cli", ["values", "constant(0.1)", "--steps", "1000000000000"], Refused("at most 10,000,000")),
    ("values of a 2**53-step schedule", "traceback", "cli", ["values", "constant(0.1, steps=9007199254740992)"], Refused("at most 10,000,000")),
    ("values --every huge is fine", "traceback", "cli", ["values", "constant(0.1)", "--steps", "1000000000000", "--every", "1000000000"], Ok(lambda out: out.count("\n") == 1001)),
    ("deep spec on the CLI", "traceback", "cli", ["values", "(" * 500 + "constant(0.1)" + ")" * 500], Refused("nested deeper than 64 levels")),
    ("@missing config", "traceback", "cli", ["values", "@{tmp}/missing.yaml"], Refused("missing.yaml: cannot read it")),
    ("@folder as config", "traceback", "cli", ["values", "@{tmp}/folder.json"], Refused("folder.json: cannot read it")),
    ("@binary config", "traceback", "cli", ["values", "@{tmp}/binary.json"], Refused("binary.json: not UTF-8 text")),
    ("unknown --format", "traceback", "cli", ["values", "constant(0.1)", "--format", "xml"], Refused("--format must be csv or json")),
    ("unknown schedule on show", "traceback", "cli", ["show", "cosin"], Refused("unknown schedule 'cosin'")),
    ("unresolved duration on the CLI", "traceback", "cli", ["values", "constant(0.1, steps=10%)"], Refused("give total_steps")),
    # ---- hangs ---------------------------------------------------------------------------------
    ("warmup nested 60 deep", "hang", "api", lambda: _nested(lambda s: warmup(s, steps=2), 60).values(200), Ok(lambda v: v[-1] == 0.1)),
    ("cooldown nested 60 deep", "hang", "api", lambda: _nested(lambda s: cooldown(s, begin=2, steps=2), 60).values(50),
     Ok(lambda v: v[0] == 0.1 and v[-1] == 0.0)),
    ("repeat nested 20 deep", "hang", "api", lambda: _nested(lambda s: repeat(s, limit=2), 20)(123.0), Ok(0.1)),
    ("yaml alias bomb", "hang", "yaml", _BILLION_LAUGHS, Refused("YAML aliases \\(\\*name\\) are not allowed")),
    ("a single yaml alias", "hang", "yaml", "v: &v 0.1\nname: constant\nvalue: *v\n", Refused("YAML aliases")),
    ("10 MB spec", "hang", "spec", "constant(0.1)" + " " * 10_000_000, Refused("at most 100,000 characters")),
    ("2 MB json config", "hang", "json", json.dumps({"name": "constant", "value": 0.1}) + " " * 2_000_000, Refused("at most 1,000,000 characters")),
    ("3000-factor product", "hang", "spec", " * ".join(["constant(1.0)"] * 3000), Ok(lambda v: v[0] == 1.0)),
    ("3000-phase sequence", "hang", "spec", " >> ".join(["constant(0.1, steps=1)"] * 3000), Ok(lambda v: v[-1] == 0.1)),
    ("repeat limit 10**15 plots", "hang", "cli", ["values", "repeat(cosine(0.1, steps=10), limit=1000000000000000)", "--steps", "3"],
     Ok(f"step,lr\n0,0.1\n1,{cosine(0.1, steps=10)(1)!r}\n2,{cosine(0.1, steps=10)(2)!r}\n")),
    ("snapshot with 10**9 cycles plots", "hang", "api", lambda: len(parse("snapshot(0.1, cycles=1000000000, steps=2000000000)").boundaries()), Ok(100)),
    # ---- wrong success -------------------------------------------------------------------------
    ("constant(-0.1)", "wrong success", "spec", "constant(-0.1)", Refused("value must be a learning rate: a finite number >= 0, got -0.1")),
    ("constant(-0.1) in python", "wrong success", "api", lambda: constant(-0.1), Refused("value must be a learning rate")),
    ("constant(nan)", "wrong success", "spec", "constant(nan)", Refused("value must be a learning rate")),
    ("constant(inf)", "wrong success", "spec", "constant(inf)", Refused("value must be a learning rate")),
    ("restarts growing amplitude", "wrong success", "api", lambda: restarts(0.1, 0.2, period=10, factor=2.0), Refused("factor must be <= 1.0")),
    ("restarts with a huge mult", "wrong success", "api", lambda: restarts(0.1, period=1, mult=1e300), Refused("mult must be <= 1000000.0")),
    ("restarts with a sub-step period", "wrong success", "api", lambda: restarts(0.1, period=1e-300), Refused("period must be >= 1.0")),
    ("restarts far out", "wrong success", "api", lambda: restarts(0.1, 0.0, period=1, mult=1e6).values(np.array([0.0, 1e6, 2.0**53])).tolist(), Ok(lambda v: all(0 <= x <= 0.1 for x in v))),
    ("cyclic with sub-step phases", "wrong success", "api", lambda: cyclic(0.1, 1.0, up=1e-300), Refused("up must be >= 1.0")),
    ("restarts below its floor", "wrong success", "api", lambda: restarts(0.1, 0.2, period=10, factor=0.5).values(200).min(), Ok(lambda v: v >= 0.1 - 1e-15)),
    ("step_decay(factor=3)", "wrong success", "spec", "step_decay(factor=3)", Refused("factor must be <= 1.0, got factor=3.0")),
    ("multistep growing", "wrong success", "api", lambda: multistep(0.1, milestones=[5], factor=2.0), Refused("factor must be <= 1.0")),
    ("cyclic exp_range growing", "wrong success", "api", lambda: cyclic(0.1, 1.0, up=4, mode="exp_range", factor=1.5), Refused("factor must be <= 1.0")),
    ("exponential growing without a ceiling", "wrong success", "api", lambda: exponential(0.1, factor=1.1), Refused("give end= \\(the ceiling\\)")),
    ("exponential growing to its ceiling", "wrong success", "api", lambda: exponential(0.1, factor=1.1, end=1.0)(1e15), Ok(1.0)),
    ("exponential from 0 growing", "wrong success", "api", lambda: exponential(0.0, factor=10.0, end=1.0).values(np.array([0.0, 1e9])).tolist(), Ok([0.0, 0.0])),
    ("s(nan)", "wrong success", "api", lambda: cosine(0.1, steps=10)(math.nan), Refused(r"step must be a number in \[0, 2\*\*53\], got nan")),
    ("s(inf)", "wrong success", "api", lambda: cosine(0.1, steps=10)(math.inf), Refused(r"step must be a number in \[0, 2\*\*53\]")),
    ("s(-1)", "wrong success", "api", lambda: cosine(0.1, steps=10)(-1), Refused(r"step must be a number in \[0, 2\*\*53\]")),
    ("s(1e300)", "wrong success", "api", lambda: restarts(0.1, period=1, mult=1e6)(1e300), Refused(r"step must be a number in \[0, 2\*\*53\]")),
    ("values with a nan step", "wrong success", "api", lambda: cosine(0.1, steps=10).values(np.array([1.0, math.nan])), Refused(r"steps must be numbers in \[0, 2\*\*53\]")),
    ("steps=200%", "wrong success", "spec", "constant(0.1, steps=200%)", Refused("a fraction of training is at most 100%")),
    ("cosine over 150%", "wrong success", "spec", "cosine(0.1, steps=150%)", Refused("at most 100%")),
    ("negative scale", "wrong success", "spec", "-1 * constant(0.1)", Refused("factor must be >= 0.0")),
    ("negative scale in python", "wrong success", "api", lambda: scale(constant(0.1), factor=-2.0), Refused("factor must be >= 0.0")),
    ("negative clamp ceiling", "wrong success", "api", lambda: clamp(constant(0.1), max=-1.0), Refused("max must be a learning rate")),
    ("negative piecewise level", "wrong success", "api", lambda: piecewise([5], [0.1, -0.1]), Refused("levels must be a learning rate")),
    ("negative interpolate level", "wrong success", "spec", "interpolate([0, 5], [0.1, -0.1])", Refused("levels must be a learning rate")),
    ("negative warmup start", "wrong success", "api", lambda: warmup(constant(0.1), steps=5, start=-0.1), Refused("start must be a learning rate")),
    ("negative cooldown end", "wrong success", "api", lambda: cooldown(constant(0.1), begin=5, steps=5, end=-1.0), Refused("end must be a learning rate")),
    ("negative polynomial start", "wrong success", "api", lambda: polynomial(-1.0, 0.0, steps=10), Refused("start must be a learning rate")),
    ("wsd end above peak", "wrong success", "api", lambda: wsd(0.1, decay=10, end=0.2), Refused("end must be <= peak")),
    ("onecycle tiny div_factor", "wrong success", "api", lambda: onecycle(1e300, steps=100, div_factor=1e-300), Refused("must be finite")),
    ("negative momentum", "wrong success", "api", lambda: cyclic(0.1, 1.0, base_momentum=-0.5), Refused("base_momentum must be >= 0.0")),
    ("custom returning negative", "wrong success", "api", lambda: custom("tests.bad_input.negative")(5), Refused("returned -0.1 at step 5")),
    ("custom returning nan", "wrong success", "api", lambda: custom("tests.bad_input.nan").values(3), Refused("returned nan at step 0")),
    ("product overflowing", "wrong success", "api", lambda: constant(1e300) * constant(1e300), Refused("can reach inf")),
    ("scale overflowing", "wrong success", "spec", "1e300 * constant(1e10)", Refused("can reach inf")),
    ("linear past its end in float32", "wrong success", "api", _float32_linear_end, Ok(True)),
    # ---- valid input refused -------------------------------------------------------------------
    ("exponential begin 100000 scalar", "valid refused", "api", lambda: exponential(0.1, factor=0.99, begin=100000)(0), Ok(0.1)),
    ("exponential begin 100000 numpy", "valid refused", "api", lambda: exponential(0.1, factor=0.99, begin=100000).values(3).tolist(), Ok([0.1, 0.1, 0.1])),
    ("exponential begin 100000 torch adapter", "valid refused", "api", lambda: _torch_first_lr(exponential(0.1, factor=0.99, begin=100000)), Ok(0.1)),
    ("exponential begin 2**52", "valid refused", "spec", "exponential(0.1, factor=0.5, begin=4503599627370496)", Ok(lambda v: v[0] == 0.1)),
    ("yaml 1e-3 as a number", "valid refused", "yaml", "name: constant\nvalue: 1e-3\n", Ok(constant(0.001))),
    ("whole float for an int", "valid refused", "spec", "constant(0.1, steps=2.0)", Ok(lambda v: True)),
    ("whole float is stored as int", "valid refused", "api", lambda: str(constant(0.1, steps=2.0)), Ok("constant(value=0.1, steps=2)")),
    ("timescale prints canonically", "valid refused", "api", lambda: str(inverse_sqrt(1.0, timescale=324.0)), Ok("inverse_sqrt(peak=1.0, warmup=0, timescale=324)")),
    ("100% is fine", "valid refused", "spec", "constant(0.1, steps=100%) >> constant(0.01)", Ok(lambda v: v[0] == 0.1)),
    ("zero lr is fine", "valid refused", "spec", "constant(0.0)", Ok(lambda v: not v.any())),
    # ---- rich markup in user text --------------------------------------------------------------
    ("plot -o into a[ folder", "markup", "cli", ["plot", "constant(0.1, steps=5)", "-o", "{tmp}/a[/b].png"], Ok(lambda out: out.endswith("a[/b].png\n"))),
    ("markup in a spec error", "markup", "cli", ["values", "constant('[bold]x[/bold]')"], Refused("got the string '\\[bold\\]x\\[/bold\\]'")),
]


def _setup(tmp: Path) -> None:
    (tmp / "afile").write_text("x")
    (tmp / "folder.json").mkdir(exist_ok=True)
    (tmp / "binary.json").write_bytes(b"\xff\xfe\x00")
    (tmp / "a[").mkdir(exist_ok=True)


def _run_cli(argv: list[str], tmp: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = [a.replace("{tmp}", str(tmp)) for a in argv]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def _evaluate(s: Schedule) -> np.ndarray:
    s = s.resolve(total_steps=1000, steps_per_epoch=10)
    steps = [0.0, 1.0, 10.0, 999.0, 1e6]
    scalar = np.array([s(t) for t in steps])
    np.testing.assert_array_equal(scalar, s.values(np.array(steps)))
    return scalar


def outcome(kind: str, given: Any, expected: Any, tmp: Path) -> tuple[str, str]:
    """``(outcome, detail)``: outcome is ``"refused"``, ``"ok"`` or what else happened."""
    if kind == "cli":
        code, out, err = _run_cli(given, tmp)
        if "Traceback" in err:
            return "traceback", err[-300:]
        if code == 0:
            return "ok", out
        lines = err.strip().splitlines()
        first = lines[0] if lines else ""
        if code == 2 and first.startswith("lrlab: error: "):
            return "refused", err
        return f"exit {code}", err
    try:
        if kind == "spec":
            result: Any = _evaluate(parse(given))
        elif kind in ("yaml", "json"):
            result = loads(given, kind)
        else:
            result = given()
    except ValueError as e:  # SpecError is a ValueError
        return "refused", str(e)
    except Exception as e:
        return f"raised {type(e).__name__}", str(e)[:300]
    return "ok", result


def _matches(expected: Any, result: str, detail: Any) -> bool:
    if isinstance(expected, Refused):
        if result != "refused":
            return False
        text = detail if isinstance(detail, str) else ""
        first = text.splitlines()[0] if text.strip() else ""
        lines = [ln for ln in text.splitlines() if ln.strip()]
        one_line = len(lines) == 1 or (isinstance(detail, str) and "\n  " in text)  # a spec error adds the caret lines
        return bool(re.search(expected.pattern, first)) and one_line
    if result != "ok":
        return False
    if callable(expected.value) and not isinstance(expected.value, Schedule):
        return bool(expected.value(detail))
    if isinstance(detail, np.ndarray):
        return False
    return detail == expected.value


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad_input")
    _setup(path)
    return path


@pytest.mark.parametrize(("name", "cls", "kind", "given", "expected"), CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_catalogue(name, cls, kind, given, expected, tmp):
    result, detail = outcome(kind, given, expected, tmp)
    assert _matches(expected, result, detail), f"{name} [{cls}]: expected {expected}, got {result}: {str(detail)[:400]}"


def test_refusals_are_one_line_without_a_traceback(tmp):
    """A CLI refusal is exactly one ``lrlab: error:`` line (plus a spec's caret lines)."""
    for name, _, kind, given, expected in CATALOGUE:
        if kind != "cli" or not isinstance(expected, Refused):
            continue
        code, _, err = _run_cli(given, tmp)
        lines = err.rstrip("\n").split("\n")
        assert code == 2 and lines[0].startswith("lrlab: error: "), name
        assert len(lines) in (1, 3), f"{name}: {err}"


def counts(tmp: Path) -> Counter[tuple[str, str]]:
    """``{(class, outcome): n}`` over the catalogue (the script's report)."""
    out: Counter[tuple[str, str]] = Counter()
    for name, cls, kind, given, expected in CATALOGUE:
        result, detail = outcome(kind, given, expected, tmp)
        verdict = "as expected" if _matches(expected, result, detail) else f"WRONG ({result})"
        out[(cls, f"{'refused' if isinstance(expected, Refused) else 'ok'}: {verdict}")] += 1
        if verdict != "as expected":
            print(f"  {name}: {result}: {str(detail)[:200]!r}")
    return out


if __name__ == "__main__":  # pragma: no cover - the report's counts
    import tempfile

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    with tempfile.TemporaryDirectory() as d:
        _setup(Path(d))
        c = counts(Path(d))
    print(f"{sum(c.values())} inputs")
    for (cls, verdict), n in sorted(c.items()):
        print(f"{n:4d}  {cls:14s} {verdict}")
