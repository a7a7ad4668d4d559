"""The schedule core: registry, durations and resolution, config errors, validation, composition
sugar, backends, custom functions and the combinators' own rules."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import lrlab
from lrlab.schedules import (
    Schedule,
    clamp,
    constant,
    cooldown,
    cosine,
    custom,
    cyclic,
    exponential,
    from_config,
    get,
    interpolate,
    inverse_sqrt,
    inverse_time,
    linear,
    multistep,
    onecycle,
    per_epoch,
    piecewise,
    polynomial,
    product,
    register,
    register_function,
    repeat,
    restarts,
    scale,
    sequence,
    snapshot,
    step_decay,
    take,
    tanh,
    triangle,
    warmup,
    wsd,
)
from lrlab.schedules._backend import ops_for


def test_import_lrlab_pulls_in_no_framework():
    code = ("import sys, lrlab; bad = [m for m in ('torch', 'jax', 'keras', 'matplotlib', 'optax', 'typer', 'optuna')"
            " if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- registry and config --------------------------------------------------------------------


def test_register_rejects_bad_and_duplicate_names():
    with pytest.raises(ValueError, match="lower_snake_case"):
        register("Bad-Name")
    with pytest.raises(ValueError, match="already registered"):

        @register("cosine")
        class other(Schedule):
            pass


def test_get_unknown_name_suggests():
    assert get("cosine") is cosine
    with pytest.raises(ValueError, match=r"unknown schedule 'cosin'.*did you mean.*cosine"):
        get("cosin")


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ([1, 2], "mapping"),
        ({"peak": 0.1}, "needs a 'name'"),
        ({"name": "cosine", "peek": 0.1}, "no parameter.*peek"),
        ({"name": "nope"}, "unknown schedule"),
        ({"name": "sequence", "phases": [{"name": "cosine", "steps": -3}]}, "steps"),
        ({"name": "custom", "function": "tests.core.never_registered"}, "not registered"),
    ],
)
def test_from_config_errors(cfg, match):
    with pytest.raises(ValueError, match=match):
        from_config(cfg)


def test_nested_config_round_trip_and_text():
    s = warmup(cosine(0.1, 0.001, steps=100), steps=10) >> constant(0.001)
    cfg = s.to_config()
    assert cfg["name"] == "sequence" and cfg["phases"][0]["schedule"]["name"] == "cosine"
    assert from_config(cfg) == s
    assert str(s) == "warmup(schedule=cosine(peak=0.1, end=0.001, steps=100), steps=10) >> constant(value=0.001)"


# ---- durations --------------------------------------------------------------------------------


def test_durations_resolve_from_epochs_and_fractions():
    s = warmup(cosine(0.1, steps="90%"), steps="2ep")
    assert not s.is_resolved()
    with pytest.raises(ValueError, match="resolve"):
        s(0)
    r = s.resolve(total_steps=1000, steps_per_epoch=50)
    assert r == warmup(cosine(0.1, steps=900), steps=100)
    assert r.duration == 1000
    with pytest.raises(ValueError, match="steps_per_epoch"):
        s.resolve(total_steps=1000)
    with pytest.raises(ValueError, match="total_steps"):
        s.resolve(steps_per_epoch=50)


def test_bad_durations_are_rejected():
    with pytest.raises(ValueError, match="steps"):
        cosine(0.1, steps="ten")
    with pytest.raises(ValueError, match="steps"):
        linear(0.1, 0.0, steps=-1)


def test_per_epoch_resolves_inner_durations_in_epochs():
    s = per_epoch(polynomial(0.1, 0.0, steps="100%", power=5.0), steps_per_epoch="1ep")
    r = s.resolve(total_steps=400, steps_per_epoch=4)
    assert r == per_epoch(polynomial(0.1, 0.0, steps=100, power=5.0), steps_per_epoch=4)
    assert r.duration == 400
    assert r(3) == 0.1 and r(4) == pytest.approx(0.1 * 0.99**5, rel=1e-15)
    assert per_epoch(step_decay(0.1, every="5ep"), steps_per_epoch=3).resolve(steps_per_epoch=3).schedule.every == 5


# ---- evaluation -----------------------------------------------------------------------------


def test_backends_and_errors():
    s = cosine(1.0, 0.0, steps=10)
    assert isinstance(s(3), float) and isinstance(s(np.int64(3)), float)
    assert s.values(3).dtype == np.float64
    assert s([0, 5]).tolist() == pytest.approx([1.0, 0.5])
    with pytest.raises(ValueError, match="unknown backend"):
        s(1.0, backend="cuda")
    with pytest.raises(TypeError, match="cannot evaluate"):
        s("3")
    assert ops_for(1.0, "numpy").name == "numpy"
    for bad in (-0.5, math.nan, math.inf, 2.0**53 + 2):  # a step is in [0, 2**53] on both checked paths
        with pytest.raises(ValueError, match=r"step must be a number in \[0, 2\*\*53\]"):
            s(bad)
        with pytest.raises(ValueError, match=r"steps must be numbers in \[0, 2\*\*53\]"):
            s.values(np.array([0.0, bad]))


def test_sugar_builds_flat_sequences_and_products():
    a, b, c = constant(1.0, steps=2), constant(0.5, steps=2), constant(0.25)
    assert (a >> b) >> c == a >> (b >> c) == sequence(phases=(a, b, c))
    assert (a * b) * c == product(factors=(a, b, c))
    assert 0.5 * c == scale(c, factor=0.5) == c * 0.5
    with pytest.raises(TypeError):
        a >> 3


# ---- validation: every bad argument names itself ------------------------------------------------


BAD = [
    (lambda: step_decay(0.1, factor=0.0, every=10), "factor"),
    (lambda: step_decay(0.1, every=10, offset=10), "offset"),
    (lambda: step_decay(0.1, every=0), "every"),
    (lambda: multistep(0.1, milestones=()), "milestones"),
    (lambda: multistep(0.1, milestones=(3,), factor=-1.0), "factor"),
    (lambda: piecewise((10, 5), (1.0, 0.5, 0.1)), "bounds"),
    (lambda: piecewise((10,), (1.0,)), "levels"),
    (lambda: piecewise((10,), (1.0, 0.5), switch="before"), "switch"),
    (lambda: exponential(0.1, factor=0.0), "factor"),
    (lambda: exponential(0.1, factor=0.5, every=0), "every"),
    (lambda: exponential(0.1, staircase=1), "staircase"),
    (lambda: exponential(float("nan")), "peak"),
    (lambda: inverse_time(0.1, rate=-1.0), "rate"),
    (lambda: linear(0.1, "x", steps=3), "end"),
    (lambda: polynomial(0.1, 0.0, steps=0), "steps"),
    (lambda: polynomial(0.1, 0.0, steps=10, power=0.0), "power"),
    (lambda: cosine(0.1, steps=0), "steps"),
    (lambda: cosine(0.1, steps=10, exponent=-1.0), "exponent"),
    (lambda: restarts(0.1, period=10, mult=0.5), "mult"),
    (lambda: restarts(0.1, period=10, factor=0.0), "factor"),
    (lambda: snapshot(0.1, cycles=0, steps=10), "cycles"),
    (lambda: snapshot(0.1, cycles=2, steps=0), "steps"),
    (lambda: triangle(0.1, warmup=10, steps=10), "steps"),
    (lambda: inverse_sqrt(0.1, timescale=0.0), "timescale"),
    (lambda: wsd(0.1, warmup=1, stable=1, decay=1, decay_shape="sqrt"), "decay_shape"),
    (lambda: wsd(0.1, end=1.5), "end"),
    (lambda: tanh(0.1, steps=10, lb=3.0, ub=-7.0), "lb"),
    (lambda: interpolate((1, 2), (0.1, 0.2)), "first knot"),
    (lambda: interpolate((0, 2, 2), (0.1, 0.2, 0.3)), "knots"),
    (lambda: interpolate((0, 2), (0.1,)), "levels"),
    (lambda: interpolate((0, 2), (0.1, 0.2), shape="cosine"), "shape"),
    (lambda: cyclic(0.1, 1.0, up=0), "up"),
    (lambda: cyclic(0.1, 1.0, up=4, mode="triangle"), "mode"),
    (lambda: cyclic(0.1, 1.0, up=4, scale_mode="epochs"), "scale_mode"),
    (lambda: onecycle(0.1, steps=1), "steps"),
    (lambda: onecycle(0.1, steps=100, anneal="cosine"), "anneal"),
    (lambda: onecycle(0.1, steps=10, pct_start=0.05), "pct_start"),
    (lambda: onecycle(0.1, steps=100, div_factor=0.0), "div_factor"),
    (lambda: repeat(cosine(0.1, steps=10), mult=0.9), "mult"),
    (lambda: repeat(cosine(0.1, steps=10), limit=0), "limit"),
    (lambda: repeat(exponential(0.1)), "finite"),
    (lambda: repeat(cosine(0.1, steps=10), period=0), "period"),
    (lambda: per_epoch(constant(0.1), steps_per_epoch=0), "steps_per_epoch"),
    (lambda: per_epoch(3.0), "schedule"),
    (lambda: cooldown(constant(0.1), begin=3, steps=3, shape="step"), "shape"),
    (lambda: cooldown(constant(0.1), begin=3, steps=3, end=float("inf")), "end"),
    (lambda: custom("tests.core.never_registered"), "not registered"),
    (lambda: custom("tests.core.rec"), "start"),
    (lambda: custom("tests.core.closed", horizon=-1), "horizon"),
    (lambda: warmup(constant(0.1), steps=3, shape="exponential"), "start"),
    (lambda: clamp(constant(0.1)), "min, max"),
    (lambda: take(3.0, steps=3), "schedule"),
]


@register_function("tests.core.rec")
def _rec(epoch, lr):
    return lr * 0.9


@register_function("tests.core.closed")
def _closed(epoch):
    return 1.0 / (1.0 + epoch)


@pytest.mark.parametrize(("make", "word"), BAD, ids=[f"{i}-{w}" for i, (_, w) in enumerate(BAD)])
def test_bad_arguments_raise_value_error_naming_them(make, word):
    with pytest.raises(ValueError, match=word.replace("(", r"\(")):
        make()


# ---- custom functions -------------------------------------------------------------------------


def test_register_function_rejects_bad_names_and_signatures():
    with pytest.raises(ValueError, match="name"):
        register_function("no spaces")
    with pytest.raises(ValueError, match="style"):
        register_function("tests.core.x", style="closed")
    with pytest.raises(ValueError, match="3 positional"):
        register_function("tests.core.three")(lambda a, b, c: 0.1)


def test_custom_recurrence_folds_like_keras_learning_rate_scheduler():
    s = custom("tests.core.rec", start=1.0)
    assert s(0) == 0.9 and s(3) == pytest.approx(0.9**4, rel=1e-15)
    assert s(2.7) == s(2)  # the argument is floor(t)
    np.testing.assert_allclose(s.values(6), [0.9 ** (e + 1) for e in range(6)], rtol=1e-15)
    assert from_config(s.to_config()) == s


def test_custom_needs_a_horizon_for_array_frameworks():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="horizon"):
        custom("tests.core.closed")(torch.arange(3))
    s = custom("tests.core.closed", horizon=4)
    out = s(torch.arange(8, dtype=torch.float64))
    assert out.tolist() == [1.0, 0.5, 1 / 3, 0.25, 0.2, 0.2, 0.2, 0.2]
    assert s.duration == 4


def test_re_registering_a_function_drops_its_cached_fold():
    register_function("tests.core.tmp")(lambda e, lr: lr * 0.5)
    s = custom("tests.core.tmp", start=1.0)
    assert s(2) == 0.125
    register_function("tests.core.tmp")(lambda e, lr: lr * 0.1)
    assert s(2) == pytest.approx(1e-3, rel=1e-12)


# ---- combinator rules ------------------------------------------------------------------------


def test_repeat_defaults_to_the_inner_duration_and_stretches_cycles():
    s = repeat(linear(1.0, 0.0, steps=4), mult=2.0)
    assert [s(t) for t in (0, 2, 4, 6, 8, 12)] == [1.0, 0.5, 1.0, 0.75, 0.5, 1.0]
    assert s.duration is None and repeat(linear(1.0, 0.0, steps=4), limit=2).duration == 8


def test_cooldown_branches_off_the_value_at_its_start():
    base = exponential(1.0, factor=0.5)
    s = cooldown(base, begin=3, steps=2, end=0.0)
    assert [s(t) for t in range(6)] == [1.0, 0.5, 0.25, 0.125, 0.0625, 0.0]
    assert s.duration == 5 and s.boundaries() == [3, 5]


def test_momentum_curves_follow_torch_defaults():
    c = cyclic(0.1, 1.0, up=4)
    assert c.momentum()(0) == 0.9 and c.momentum()(4) == 0.8
    o = onecycle(1.0, steps=100)
    assert o.momentum()(0) == 0.95 and o.momentum()(29) == pytest.approx(0.85) and o.momentum()(99) == 0.95
    assert o.momentum().duration == 100


def test_lrlab_reexports():
    for name in ("cosine", "onecycle", "repeat", "per_epoch", "cooldown", "custom", "register_function"):
        assert getattr(lrlab, name) is getattr(lrlab.schedules, name)
