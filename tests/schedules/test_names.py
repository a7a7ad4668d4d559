"""One vocabulary (README "Parameter names"): the same idea has the same name in every family, numbers
are stored canonically, and the canonical text shows every value a reader needs."""

from __future__ import annotations

import dataclasses

import pytest

from lrlab import parse
from lrlab.schedules import examples, inverse_sqrt, registry
from lrlab.schedules._core import _field_info

EXAMPLES = [(f"{name}[{i}]", s) for name, items in examples().items() for i, s in enumerate(items)]

# The words a parameter may have, and where the retired spellings are still meaningful.
VOCABULARY = {
    # levels (lr units)
    "peak", "start", "end", "base", "value", "levels", "min", "max",
    # multipliers and rates
    "factor", "rate", "mult", "power", "exponent", "lb", "ub",
    # durations
    "steps", "every", "period", "warmup", "stable", "decay", "up", "down", "begin", "milestones",
    "bounds", "knots", "steps_per_epoch", "durations", "offset", "timescale", "cycles", "limit", "horizon",
    # composition
    "schedule", "phases", "factors", "function",
    # shapes and switches
    "shape", "warmup_shape", "decay_shape", "switch", "mode", "scale_mode", "staircase", "cycle",
    # torch's onecycle / momentum names, kept so torch recipes transfer
    "pct_start", "anneal", "div_factor", "final_div_factor", "three_phase", "base_momentum", "max_momentum",
    # plateau (torch/keras/optax ReduceLROnPlateau)
    "key", "patience", "threshold", "threshold_mode", "cooldown", "min_scale", "min_lr", "eps", "preset", "on_nan",
}  # fmt: skip


@pytest.mark.parametrize("name", list(registry()))
def test_every_parameter_name_is_in_the_vocabulary(name):
    fields = {f.name for f in dataclasses.fields(registry()[name])}  # type: ignore[arg-type]
    assert fields <= VOCABULARY, fields - VOCABULARY
    assert not fields & {"initial", "min_ratio", "low", "high", "gamma"}  # the retired spellings
    if "rate" in fields:
        assert name == "inverse_time"  # the k of 1/(1 + k t), not a per-event multiplier
    if name in ("cooldown", "exponential"):
        assert "begin" in fields and "start" not in fields  # a step, not an lr level


def test_families_share_their_words():
    def has(word: str) -> set[str]:
        return {n for n, cls in registry().items() if word in {f.name for f in dataclasses.fields(cls)}}  # type: ignore[arg-type]

    assert {"step_decay", "multistep", "exponential", "inverse_time", "cosine", "restarts", "snapshot",
            "triangle", "inverse_sqrt", "wsd", "tanh", "onecycle", "cyclic"} <= has("peak")  # fmt: skip
    assert {"step_decay", "multistep", "exponential", "restarts", "repeat", "cyclic", "plateau", "scale"} <= has("factor")
    assert {"linear", "polynomial", "cosine", "restarts", "triangle", "wsd", "tanh", "cooldown"} <= has("end")


def _int_fields(s) -> list[str]:
    return [fi.name for fi in _field_info(type(s)) if fi.number == "int" and isinstance(getattr(s, fi.name), int)]


@pytest.mark.parametrize(("label", "s"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_int_fields_refuse_fractions_and_bools_and_store_whole_floats_as_ints(label, s):
    for field in _int_fields(s):
        v = getattr(s, field)
        with pytest.raises(ValueError, match=field):
            dataclasses.replace(s, **{field: v + 0.5})
        with pytest.raises(ValueError, match=field):
            dataclasses.replace(s, **{field: True})
        same = dataclasses.replace(s, **{field: float(v)})
        assert type(getattr(same, field)) is int and same == s and str(same) == str(s)


@pytest.mark.parametrize(("label", "s"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_equal_schedules_print_the_same_and_show_every_level(label, s):
    changes = {}
    for fi in _field_info(type(s)):
        v = getattr(s, fi.name)
        if fi.number == "float" and isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
            changes[fi.name] = int(v)  # an int given to a float field is stored as a float
        elif fi.number == "whole" and isinstance(v, int) and not isinstance(v, bool):
            changes[fi.name] = float(v)  # a whole float given to a step count is stored as an int
    other = dataclasses.replace(s, **changes)
    assert other == s and str(other) == str(s)
    assert parse(str(s)) == s
    if type(s).name not in ("sequence", "product", "scale"):  # written with operators
        text = str(s)
        for fi in _field_info(type(s)):
            f = next(f for f in dataclasses.fields(s) if f.name == fi.name)
            v = getattr(s, fi.name)
            if f.metadata.get("show") and v is not None and v != ():
                assert f"{fi.name}=" in text, f"{label}: {text} hides {fi.name}"


def test_the_issue_examples():
    assert str(inverse_sqrt(1.0, timescale=324.0)) == str(inverse_sqrt(1.0, timescale=324)) == (
        "inverse_sqrt(peak=1.0, warmup=0, timescale=324)")
    assert str(parse("cosine(0.1, 1e-5, steps=9500)")) == "cosine(peak=0.1, end=1e-05, steps=9500)"
    assert str(parse("cosine(end=1e-5, steps=9500)")) == "cosine(peak=0.1, end=1e-05, steps=9500)"
