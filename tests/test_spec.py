"""The text spec and config files: round trips over the whole registry, the grammar, the errors."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrlab.schedules import clamp, constant, examples, product, scale, sequence, take, warmup
from lrlab.spec import SpecError, dump, dumps, from_data, load, loads, parse, schedule_from_arg

EXAMPLES = [(f"{name}[{i}]", s) for name, items in examples().items() for i, s in enumerate(items)]
IDS = [i for i, _ in EXAMPLES]
SCHEDULES = [s for _, s in EXAMPLES]


# ---- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize("s", SCHEDULES, ids=IDS)
def test_text_round_trip(s):
    text = str(s)
    back = parse(text)
    assert back == s
    assert str(back) == text  # the printed form is canonical
    horizon = (s.duration or 100) + 5
    np.testing.assert_array_equal(back.values(horizon), s.values(horizon))


@pytest.mark.parametrize("fmt", ["json", "yaml", "text"])
@pytest.mark.parametrize("s", SCHEDULES, ids=IDS)
def test_config_round_trip(s, fmt):
    assert loads(dumps(s, fmt), fmt) == s


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_file_round_trip(tmp_path, suffix):
    s = examples()["warmup"][0]
    path = tmp_path / f"sched{suffix}"
    dump(s, path)
    assert load(path) == s
    assert schedule_from_arg(f"@{path}") == s


def test_json_config_is_the_to_config_mapping():
    s = constant(0.1, steps=5) >> constant(0.01)
    assert json.loads(dumps(s)) == s.to_config()


# ---- the grammar ---------------------------------------------------------------------------------
def test_positional_arguments_follow_field_order_and_mix_with_keywords():
    assert parse("constant(0.1, 5)") == constant(value=0.1, steps=5)
    assert parse("constant(0.1, steps=5)") == constant(0.1, steps=5)
    assert parse("warmup(constant(1.0), 4, start=0.5)") == warmup(constant(1.0), steps=4, start=0.5)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.1", 0.1), ("1e-5", 1e-05), (".5", 0.5), ("3.", 3.0), ("1E+3", 1000.0),
        ("7", 7.0), ("1e-300", 1e-300), ("0.30000000000000004", 0.30000000000000004),
    ],
)  # fmt: skip
def test_numbers(text, value):
    assert parse(f"1.0 * constant(1.0) * {text}").factor == value  # a scale factor: any finite number >= 0
    if value >= 0:
        assert parse(f"constant({text})").value == value
        assert isinstance(parse(f"constant({text})").value, float)  # ints are widened for float fields


@pytest.mark.parametrize(("text", "value"), [("500", 500), ("5ep", "5ep"), ("10%", "10%"), ("2.5ep", "2.5ep"), ("0.5%", "0.5%"), ("1e3ep", "1e3ep")])
def test_durations(text, value):
    s = parse(f"constant(0.1, steps={text})")
    assert s.steps == value and type(s.steps) is type(value)


def test_whole_floats_are_steps_and_ints_are_rates():
    s = parse("constant(1, steps=1e3)")
    assert (s.value, s.steps) == (1.0, 1000) and type(s.value) is float and type(s.steps) is int
    assert str(s) == "constant(value=1.0, steps=1000)"
    with pytest.raises(SpecError, match=r"steps must be a whole number, got 2\.5"):
        parse("constant(0.1, steps=2.5)")  # an int field refuses a fraction (a fractional step count
    assert parse("restarts(0.1, period=2.5)").period == 2.5  # is allowed where typed int | float)
    m = parse("multistep(milestones=[6e1, 120], factor=1)")
    assert m.milestones == (60, 120) and all(type(x) is int for x in m.milestones)


def test_durations_resolve_after_parsing():
    s = parse("warmup(constant(0.1, steps=90%), steps=2ep)")
    assert not s.is_resolved()
    r = s.resolve(total_steps=1000, steps_per_epoch=50)
    assert r == warmup(constant(0.1, steps=900), steps=100)


def test_words_strings_keywords_and_lists():
    assert parse("warmup(constant(1.0), steps=4, shape=cosine)").shape == "cosine"
    assert parse("warmup(constant(1.0), steps=4, shape='cosine')").shape == "cosine"
    assert parse('warmup(constant(1.0), steps=4, shape="cosine")').shape == "cosine"
    assert parse("constant(0.1, steps=NONE)") == constant(0.1)
    assert parse("clamp(constant(1.0), min=none, max=0.5)") == clamp(constant(1.0), max=0.5)
    seq = parse("sequence([constant(1.0), constant(0.5)], durations=[3, none])")
    assert seq == sequence(phases=(constant(1.0), constant(0.5)), durations=(3, None))
    assert str(seq) == "sequence(phases=[constant(value=1.0), constant(value=0.5)], durations=[3, none])"


def test_operators_and_precedence():
    a, b, c = constant(1.0, steps=2), constant(0.5, steps=2), constant(0.25)
    assert parse(f"{a} >> {b} >> {c}") == a >> b >> c == sequence(phases=(a, b, c))
    assert parse(f"{a} * {b} * {c}") == a * b * c == product(factors=(a, b, c))
    assert parse(f"0.5 * {a}") == parse(f"{a} * 0.5") == scale(a, factor=0.5) == 0.5 * a
    # * binds tighter than >>
    assert parse(f"0.5 * {a} >> {c}") == sequence(phases=(scale(a, factor=0.5), c))
    assert parse(f"{a} >> 2 * {c}") == sequence(phases=(a, scale(c, factor=2.0)))
    # parentheses keep a group as one node (same values, another tree), so nested trees round-trip
    nested = sequence(phases=(sequence(phases=(a, b)), c))
    assert str(nested) == f"({a} >> {b}) >> {c}"
    assert parse(str(nested)) == nested
    np.testing.assert_array_equal(nested.values(8), (a >> b >> c).values(8))
    assert parse(f"({a} * {b}) * {c}") == product(factors=(product(factors=(a, b)), c))
    assert parse(f"0.5 * (0.2 * {c})") == scale(scale(c, factor=0.2), factor=0.5)
    assert parse(f"0.5 * {a} * {b}") == product(factors=(scale(a, factor=0.5), b)) == 0.5 * a * b
    assert parse(f"(({c}))") == c


def test_whitespace_and_newlines_are_free():
    assert parse("  constant( 0.1 ,steps = 5 )\n>>\tconstant(0.01)  ") == constant(0.1, steps=5) >> constant(0.01)


def test_values_round_trip_through_format_value():
    # strings, keywords, inf and lists at the value level (no registered schedule takes inf)
    from lrlab.schedules._text import format_value
    from lrlab.spec import _Parser

    values = ["it's", 'say "hi"', "back\\slash", "5", "none", "True", "a b", "", "inf", "-x", "x\ny", "5ep", "a.b:c",
              math.inf, -math.inf, 1e-05, -0.0, 3, True, False, None, (1, "x", (2.5, None)), ()]  # fmt: skip
    for v in values:
        text = format_value(v)
        back = _Parser(text).expr()
        assert back == v and type(back) is type(v), text
    assert math.isnan(_Parser(format_value(math.nan)).expr())


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=0.0, allow_nan=False, allow_infinity=False))
def test_every_float_round_trips_exactly(x):
    s = constant(x)
    back = parse(str(s))
    assert back == s and back.value == x  # bit-exact (-0.0 equals the default 0.0 and is not printed)


_leaves = st.sampled_from([s for s in SCHEDULES if s.duration is not None])


@st.composite
def _trees(draw, depth=3):
    if depth == 0 or draw(st.booleans()):
        return draw(_leaves)
    kind = draw(st.sampled_from(["seq", "prod", "scale", "nested_seq", "warmup"]))
    a, b = draw(_trees(depth - 1)), draw(_trees(depth - 1))
    if kind == "seq":
        return a >> b
    if kind == "nested_seq":
        return sequence(phases=(a, b), durations=(draw(st.sampled_from([None, 7])), None))
    if kind == "prod":
        return a * b
    if kind == "scale":
        return draw(st.floats(0, 3, allow_nan=False)) * a
    return warmup(a, steps=draw(st.integers(0, 9)), start=draw(st.sampled_from([0.0, 1e-3])))


@settings(max_examples=40, deadline=None)
@given(_trees())
def test_random_compositions_round_trip(s):
    assert parse(str(s)) == s
    assert loads(dumps(s, "json")) == s


# ---- configs ---------------------------------------------------------------------------------------
def test_a_config_may_hold_a_spec():
    s = constant(0.1, steps=5) >> constant(0.01)
    assert from_data(str(s)) == s
    assert loads(json.dumps({"schedule": str(s)})) == s
    assert loads(f"schedule: {str(s)!r}\n", "yaml") == s
    assert loads(json.dumps(str(s))) == s
    assert loads(str(s), "text") == s
    # a parameter that takes a schedule may be a spec string, also inside lists
    cfg = {"name": "sequence", "phases": ["constant(0.1, steps=5)", {"name": "constant", "value": 0.01}]}
    assert from_data(cfg) == s
    assert from_data({"schedule": {"name": "warmup", "schedule": "constant(1.0)", "steps": 3}}) == warmup(constant(1.0), steps=3)


def test_yaml_numbers_written_without_a_dot_are_numbers():
    # YAML 1.1 (PyYAML) reads 1e-3 as the string '1e-3'
    assert loads("name: constant\nvalue: 1e-3\n", "yaml") == constant(0.001)
    assert loads("name: warmup\nschedule: constant(1.0)\nsteps: 5ep\nstart: 1e-4\n", "yaml") == warmup(constant(1.0), steps="5ep", start=1e-4)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python >= 3.11")
def test_toml_is_read(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('schedule = "constant(0.1, steps=5) >> constant(0.01)"\n')
    assert load(path) == constant(0.1, steps=5) >> constant(0.01)
    path.write_text('name = "warmup"\nsteps = 3\n[schedule]\nname = "constant"\nvalue = 1.0\n')
    assert load(path) == warmup(constant(1.0), steps=3)
    with pytest.raises(ValueError, match="does not write it"):
        dump(constant(0.1), path)


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        ('{"name": "sequnce", "phases": []}', "json", r"config\.name: unknown schedule 'sequnce'; did you mean sequence\?"),
        ('{"name": "constant", "vlue": 0.1}', "json", r"config: constant has no parameter 'vlue'; did you mean value\?; it takes value, steps"),
        ('{"value": 0.1}', "json", r"config: a schedule config needs a 'name' key \(or a 'schedule' key\), got keys \['value'\]"),
        ('{"schedule": "constant(0.1)", "steps": 3}', "json", r"config: unexpected key\(s\) steps next to 'schedule'"),
        ('[1, 2]', "json", r"config: expected a schedule \(a mapping with a 'name', or a spec string\), got a list"),
        ('{"name": "sequence", "phases": [{"name": "constant", "value": 1.0, "steps": 2}, {"name": "constant", "value": "x"}]}',
         "json", r"config\.phases\[1\]\.value: wrong type: expected a number, got the string x"),
        ('{"name": "warmup", "schedule": "constant(0.1", "steps": 3}', "json", r"config\.schedule: expected ',' or '\)' at column 13"),
        ('{"name": "clamp", "schedule": {"name": "constant", "value": 1.0}}', "json", r"config: clamp: give min, max or both"),
        ("{", "json", r"config: not valid JSON"),
        ("name: [", "yaml", r"config: not valid YAML"),
        ("name: !!python/object:os.system x", "yaml", r"config: not valid YAML"),
    ],
)  # fmt: skip
def test_malformed_configs_name_the_key(data, fmt, message):
    with pytest.raises(ValueError, match=message):
        loads(data, fmt)


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: constant\nvalue: [1]\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: config\.value: wrong type: expected a number, got the list \[1\]"):
        load(path)
    with pytest.raises(ValueError, match=r"unknown config type '\.cfg'"):
        load(tmp_path / "x.cfg")
    with pytest.raises(ValueError, match=r"missing\.json: cannot read it"):
        load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="fmt must be one of json, yaml, text, got fmt='xml'"):
        dumps(constant(0.1), "xml")


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "first_line", "column"),
    [
        ("constant(0.1, steps=5) >> constant(0.01", "expected ',' or ')' at column 40, found the end of the text", 40),
        ("warmpu(constant(0.1))", "unknown schedule 'warmpu' at column 1; did you mean warmup?", 1),
        ("zzzz(0.1)", "unknown schedule 'zzzz' at column 1; `lrlab list` shows them all", 1),
        ("constant(vlue=0.1)", "unknown parameter 'vlue' at column 10: constant takes value, steps; did you mean value?", 10),
        ("warmup(0.1, steps=5)", "bad warmup(schedule=...) at column 8: wrong type: expected a schedule, got the number 0.1", 8),
        ("constant(true)", "bad constant(value=...) at column 10: wrong type: expected a number, got true", 10),
        ("clamp(constant(0.1))", "invalid clamp(...) at column 1: clamp: give min, max or both", 1),
        ("constant(0.1) >> 3", "expected a schedule on each side of >> at column 18, got the number 3; a constant rate is constant(3)", 18),
        ("0.1", "expected a schedule at column 1, got the number 0.1; a constant rate is constant(0.1)", 1),
        ("constant", "expected a schedule at column 1, got the string constant; call it: constant(...)", 1),
        ("constant(0.1) + constant(1.0)", "unexpected character '+' at column 15; a sequence is written a >> b", 15),
        ("cooldown(constant(0.1), begin=5, steps=5, shape=1-sqrt)",
         "unexpected character '-' at column 50; quote text that is not a plain word, e.g. shape='1-sqrt'", 50),
        ("constant(0.1) constant(1.0)", "unexpected 'constant' at column 15; join phases with >> and multiply with *", 15),
        ("constant(5xe)", "unexpected '5xe' at column 10: numbers are written 500, 0.1 or 1e-5 and durations 500 (steps), 5ep or 10%", 10),
        ("constant(0.1, 5, 6)", "too many positional arguments at column 18: constant takes 2 (value, steps)", 18),
        ("constant(value=0.1, value=1)", "parameter 'value' of constant given twice at column 21", 21),
        ("constant(value=0.1, 5)", "positional argument after keyword arguments in constant(...) at column 21", 21),
        ("2 * 3", "cannot multiply the number 3 at column 5: * multiplies schedules, or a schedule by a number", 5),
        ("sequence([constant(1.0)], durations=5)",
         "bad sequence(durations=...) at column 37: wrong type: expected a list [...], got the number 5", 37),
        ("multistep(milestones=[5, [6]])",
         "bad multistep(milestones=...) at column 22: wrong type: in the list: expected a number or a word or string, got the list [6]", 22),
        ("take(constant(0.1), steps=-5ep)", "a duration cannot be negative, got '-5ep' at column 27", 27),
        ("constant('abc)", "unterminated string starting at column 10", 10),
        ("(constant(0.1)", "expected ')' to close the '(' at column 1 at column 15, found the end of the text", 15),
        ("sequence([constant(0.1, steps=1) constant(1.0)])", "expected ',' or ']' at column 34, found 'constant'", 34),
        ("", "empty schedule spec: write e.g. constant(0.1) or linear(0.0, 0.1, steps=100) >> constant(0.1)", 1),
        ("__import__('os')", "unknown schedule '__import__' at column 1; `lrlab list` shows them all", 1),
        ("__import__('os').system('true')", "unexpected character '.' at column 17", 17),
    ],
)  # fmt: skip
def test_errors_give_one_line_and_a_caret(text, first_line, column):
    with pytest.raises(SpecError) as info:
        parse(text)
    lines = str(info.value).split("\n")
    assert lines[0] == first_line
    assert info.value.reason == first_line
    assert len(lines) == 3
    assert lines[1] == "  " + text
    assert lines[2] == "  " + " " * (column - 1) + "^"
    assert isinstance(info.value, ValueError)


def test_errors_on_multi_line_specs_name_the_line():
    with pytest.raises(SpecError) as info:
        parse("constant(0.1, steps=5)\n>> warmpu(constant(0.01))")
    assert str(info.value).split("\n") == [
        "unknown schedule 'warmpu' at line 2, column 4; did you mean warmup?",
        "  >> warmpu(constant(0.01))",
        "     ^",
    ]


def test_parse_rejects_non_strings():
    with pytest.raises(ValueError, match="a schedule spec is a string, got int"):
        parse(3)  # type: ignore[arg-type]


def test_parse_never_evaluates(monkeypatch):
    import builtins

    def forbidden(*args, **kwargs):
        raise AssertionError("the parser must not evaluate text")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert parse("take(constant(0.1), steps=60) >> constant(0.01)")(60) == 0.01


def test_the_take_warmup_spec_computes_the_documented_values():
    s = parse("warmup(take(constant(0.1), steps=6) >> constant(0.01), steps=4, start=0.02)")
    assert [round(s(t), 12) for t in range(12)] == [0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01]
    assert s == warmup(take(constant(0.1), steps=6) >> constant(0.01), steps=4, start=0.02)
