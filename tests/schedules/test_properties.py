"""Property-based checks (hypothesis): bounds and monotonicity wherever a schedule promises them.

Decays are non-increasing, warmups non-decreasing, and every value stays within [floor, peak].
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lrlab.schedules import (
    constant,
    cooldown,
    cosine,
    cyclic,
    exponential,
    inverse_sqrt,
    inverse_time,
    linear,
    multistep,
    onecycle,
    polynomial,
    repeat,
    restarts,
    step_decay,
    tanh,
    triangle,
    warmup,
    wsd,
)

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
lr = st.floats(1e-5, 10.0)
frac = st.floats(0.0, 0.99)
length = st.integers(1, 300)
TOL = 1e-12


def non_increasing(v: np.ndarray) -> bool:
    return bool(np.all(np.diff(v) <= TOL * max(1.0, float(np.max(np.abs(v))))))


def non_decreasing(v: np.ndarray) -> bool:
    return non_increasing(-v)


def within(v: np.ndarray, lo: float, hi: float) -> bool:
    tol = TOL * max(abs(lo), abs(hi), 1.0)
    return bool(np.all((v >= lo - tol) & (v <= hi + tol)))


@SETTINGS
@given(peak=lr, f=frac, steps=length, exponent=st.floats(0.2, 4.0))
def test_cosine_decays_within_floor_and_peak(peak, f, steps, exponent):
    end = peak * f
    v = cosine(peak, end, steps=steps, exponent=exponent).values(steps + 20)
    assert non_increasing(v) and within(v, end, peak)


@SETTINGS
@given(peak=lr, f=frac, steps=length, power=st.floats(0.2, 6.0))
def test_polynomial_and_linear_decay(peak, f, steps, power):
    end = peak * f
    for s in (polynomial(peak, end, steps=steps, power=power), linear(peak, end, steps=steps)):
        v = s.values(steps + 20)
        assert non_increasing(v) and within(v, end, peak)


@SETTINGS
@given(peak=lr, rate=st.floats(0.01, 0.999), every=st.integers(1, 50), staircase=st.booleans(),
       begin=st.integers(0, 40))
def test_exponential_and_inverse_time_decay(peak, rate, every, staircase, begin):
    for s in (exponential(peak, factor=rate, every=every, staircase=staircase, begin=begin),
              inverse_time(peak, rate=1 - rate, every=every, staircase=staircase)):
        v = s.values(400)
        assert non_increasing(v) and within(v, 0.0, peak)


@SETTINGS
@given(peak=lr, factor=st.floats(0.01, 1.0), every=st.integers(1, 60), offset=st.integers(0, 59),
       ms=st.lists(st.integers(0, 300), min_size=1, max_size=5))
def test_step_decays(peak, factor, every, offset, ms):
    v = step_decay(peak, factor=factor, every=every, offset=min(offset, every - 1)).values(400)
    assert non_increasing(v) and within(v, 0.0, peak)
    v = multistep(peak, milestones=tuple(ms), factor=factor).values(400)
    assert non_increasing(v) and within(v, 0.0, peak)


@SETTINGS
@given(peak=lr, f=frac, period=st.integers(1, 40), mult=st.floats(1.0, 3.0), decay=st.floats(0.1, 1.0))
def test_restarts_and_repeat_stay_within_floor_and_peak(peak, f, period, mult, decay):
    end = peak * f
    v = restarts(peak, end, period=period, mult=mult, factor=decay).values(400)
    assert within(v, end, peak)
    v = repeat(cosine(peak, end, steps=period), mult=mult, factor=decay, limit=4).values(400)
    assert within(v, 0.0, peak)


@SETTINGS
@given(lo=lr, span=lr, up=st.integers(1, 30), down=st.integers(1, 30),
       mode=st.sampled_from(["triangular", "triangular2", "exp_range"]), gamma=st.floats(0.9, 1.0))
def test_cyclic_within_low_and_high(lo, span, up, down, mode, gamma):
    s = cyclic(lo, lo + span, up=up, down=down, mode=mode, factor=gamma)
    assert within(s.values(300), lo, lo + span)
    assert within(s.momentum().values(300), 0.8, 0.9)


@SETTINGS
@given(peak=lr, steps=st.integers(10, 300), pct=st.floats(0.15, 0.45), three=st.booleans(),
       anneal=st.sampled_from(["cos", "linear"]))
def test_onecycle_rises_then_falls(peak, steps, pct, three, anneal):
    s = onecycle(peak, steps=steps, pct_start=pct, three_phase=three, anneal=anneal)
    v = s.values(steps + 10)
    top = int(np.argmax(v))
    assert non_decreasing(v[: top + 1]) and within(v, peak / 25 / 1e4, peak)
    if not three:
        assert non_increasing(v[top:])


@SETTINGS
@given(peak=lr, w=st.integers(0, 50), rest=st.integers(1, 200),
       shape=st.sampled_from(["linear", "cosine", "exponential"]))
def test_warmups_rise_then_decays_fall(peak, w, rest, shape):
    start = peak / 100
    s = warmup(cosine(peak, 0.0, steps=rest), steps=w, start=start, shape=shape)
    v = s.values(w + rest + 10)
    assert non_decreasing(v[: w + 1]) and non_increasing(v[w:]) and within(v, 0.0, peak)
    v = triangle(peak, warmup=w, steps=w + rest).values(w + rest + 10)
    assert non_decreasing(v[: w + 1]) and non_increasing(v[w:]) and within(v, 0.0, peak)
    v = inverse_sqrt(peak, warmup=w).values(w + 300)
    assert non_decreasing(v[: w + 1]) and non_increasing(v[w:]) and within(v, 0.0, peak)


@SETTINGS
@given(peak=lr, w=st.integers(0, 30), stable=st.integers(0, 30), d=st.integers(0, 60), m=st.floats(0.0, 1.0),
       ws=st.sampled_from(["linear", "cosine", "1-sqrt"]), ds=st.sampled_from(["linear", "cosine", "1-sqrt"]))
def test_wsd_trapezoid(peak, w, stable, d, m, ws, ds):
    v = wsd(peak, warmup=w, stable=stable, decay=d, warmup_shape=ws, decay_shape=ds, end=m * peak).values(w + stable + d + 10)
    assert non_decreasing(v[: w + 1]) and non_increasing(v[w:]) and within(v, 0.0, peak)


@SETTINGS
@given(peak=lr, start=st.integers(0, 100), n=st.integers(0, 100), f=frac,
       shape=st.sampled_from(["linear", "cosine", "1-sqrt"]))
def test_cooldown_decays_from_the_current_value(peak, start, n, f, shape):
    end = peak * f
    v = cooldown(constant(peak), begin=start, steps=n, end=end, shape=shape).values(start + n + 10)
    assert non_increasing(v) and within(v, end, peak)


@SETTINGS
@given(peak=lr, f=frac, steps=length)
def test_tanh_decays(peak, f, steps):
    end = peak * f
    v = tanh(peak, end, steps=steps).values(steps + 10)
    assert non_increasing(v) and within(v, end, peak)
