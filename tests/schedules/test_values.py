"""Value tables: each schedule at its edge steps (0, b-1, b, b+1, the horizon, far past it).

Expected numbers are written by hand from the formula (plain ``math``, never by calling lrlab),
including the worked numbers of the seeds and of the framework docs quoted in
/work/shared/reference/anchors-schedules.md. Checked on the Python-number path and on NumPy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrlab.schedules import (
    constant,
    cooldown,
    cosine,
    custom,
    cyclic,
    exponential,
    interpolate,
    inverse_sqrt,
    inverse_time,
    linear,
    multistep,
    onecycle,
    per_epoch,
    piecewise,
    polynomial,
    register_function,
    repeat,
    restarts,
    snapshot,
    step_decay,
    tanh,
    triangle,
    warmup,
    wsd,
)

FAR = 1_000_000
cos, pi = math.cos, math.pi


@register_function("tests.values.keras_step")
def _keras_step(epoch):
    return 0.1 * math.pow(0.5, math.floor((1 + epoch) / 10))


@register_function("tests.values.halve_every_3")
def _halve_every_3(epoch, lr):
    return lr / 2 if epoch > 0 and epoch % 3 == 0 else lr


TABLES = {
    # seeds: drop-based step decay 0.1, drop 0.5 every 10 (Keras tutorial, 0-based epoch): epoch 9 -> 0.05
    "step_decay keras tutorial": (step_decay(0.1, factor=0.5, every=10, offset=1),
                                  {0: 0.1, 8: 0.1, 9: 0.05, 10: 0.05, 18: 0.05, 19: 0.025, FAR: 0.1 * 0.5 ** 100000}),
    # PyImageSearch StepDecay: 0.1 * 0.25^floor((1+e)/15)
    "step_decay pyimagesearch": (step_decay(0.1, factor=0.25, every=15, offset=1),
                                 {13: 0.1, 14: 0.025, 28: 0.025, 29: 0.1 * 0.25**2}),
    # torch StepLR(step_size=10, gamma=0.5): drops at t = 10
    "step_decay torch": (step_decay(0.1, factor=0.5, every=10), {0: 0.1, 9: 0.1, 10: 0.05, 11: 0.05, 20: 0.025}),
    # torch MultiStepLR([3, 6]) measured: 1,1,1,.1,.1,.1,.01,.01
    "multistep": (multistep(1.0, milestones=(6, 3)),
                  {0: 1.0, 2: 1.0, 3: 0.1, 4: 0.1, 5: 0.1, 6: 0.1 * 0.1, 7: 0.1 * 0.1, FAR: 0.1 * 0.1}),
    "multistep duplicate": (multistep(1.0, milestones=(3, 3), factor=0.5), {2: 1.0, 3: 0.25, FAR: 0.25}),
    # Keras PiecewiseConstantDecay b=10: t=10 -> 1.0, t=11 -> 0.5
    "piecewise after": (piecewise((10, 20), (1.0, 0.5, 0.1), switch="after"),
                        {0: 1.0, 10: 1.0, 11: 0.5, 20: 0.5, 21: 0.1, FAR: 0.1}),
    # optax {10: .5, 20: .2}: t=10 -> 0.5, t=20 -> 0.1
    "piecewise at": (piecewise((10, 20), (1.0, 0.5, 0.1)), {9: 1.0, 10: 0.5, 19: 0.5, 20: 0.1, FAR: 0.1}),
    # Keras ExponentialDecay(0.1, 10, 0.96, staircase) (the seeds' course)
    "exponential staircase": (exponential(0.1, factor=0.96, every=10, staircase=True),
                              {0: 0.1, 9: 0.1, 10: 0.1 * 0.96, 25: 0.1 * 0.96**2}),
    "exponential smooth": (exponential(0.1, factor=0.96, every=10), {5: 0.1 * 0.96**0.5, 10: 0.1 * 0.96}),
    # seeds: lr0 * e^(-d t) with d = 0.01
    "exponential seeds": (exponential(0.1, factor=math.exp(-0.01)), {0: 0.1, 100: 0.1 * math.exp(-1.0)}),
    # optax begin/end: constant until begin, floor at end
    "exponential begin end": (exponential(1.0, factor=0.5, every=10, begin=5, end=0.1),
                              {0: 1.0, 5: 1.0, 6: 0.5**0.1, 15: 0.5, 38: 0.5**3.3, 39: 0.1, FAR: 0.1}),
    "exponential growth bound": (exponential(0.01, factor=2.0, every=1, end=0.05), {0: 0.01, 2: 0.04, 3: 0.05, FAR: 0.05}),
    # seeds: time-based decay 0.1 / (1 + 0.001 * it)
    "inverse_time seeds": (inverse_time(0.1, rate=0.001), {0: 0.1, 1000: 0.05, 9000: 0.01}),
    # Keras InverseTimeDecay(1, 10, .5) measured: t=10 -> 0.6667
    "inverse_time keras": (inverse_time(1.0, rate=0.5, every=10), {10: 1 / 1.5, 5: 1 / 1.25}),
    "inverse_time staircase": (inverse_time(1.0, rate=0.5, every=10, staircase=True), {9: 1.0, 10: 1 / 1.5, 19: 1 / 1.5}),
    # seeds: linear decay 0.1 * (1 - e/100)
    "linear": (linear(0.1, 0.0, steps=100), {0: 0.1, 50: 0.1 - 0.1 * 0.5, 99: 0.1 - 0.1 * 0.99, 100: 0.0, FAR: 0.0}),
    "linear zero steps": (linear(0.3, 0.2, steps=0), {0: 0.2, FAR: 0.2}),
    # seeds: power-5 decay over 100 epochs: 0.1 * (1 - e/100)^5
    "polynomial seeds": (polynomial(0.1, 0.0, steps=100, power=5),
                         {0: 0.1, 50: 0.1 * 0.5**5, 90: 0.1 * (1 - 0.9) ** 5, 99: 0.1 * 0.01**5, 100: 0.0, FAR: 0.0}),
    # Keras PolynomialDecay(cycle) measured D=10, end=0: 10 -> 0, 11 -> .45, 20 -> 0, 21 -> .3
    "polynomial keras cycle": (polynomial(1.0, 0.0, steps=10, cycle=True),
                               {0: 1.0, 5: 0.5, 10: 0.0, 11: 1 - 11 / 20, 20: 0.0, 21: 1 - 21 / 30}),
    "cosine": (cosine(1.0, 0.0, steps=10), {0: 1.0, 5: 0.5 * (1 + cos(pi * 0.5)), 9: 0.5 * (1 + cos(pi * 0.9)), 10: 0.0, FAR: 0.0}),
    "cosine floor exponent": (cosine(1.0, 0.1, steps=10, exponent=2.0),
                              {4: 0.1 + 0.9 * (0.5 * (1 + cos(pi * 0.4))) ** 2, 10: 0.1, FAR: 0.1}),
    # Keras CosineDecay(0, 10, alpha=.1, warmup_target=1, warmup_steps=5) measured: 0,.2,.8,1,.55,.1,.1
    "keras cosine warmup": (warmup(cosine(1.0, 0.1, steps=10), steps=5),
                            {0: 0.0, 1: 0.2, 4: 0.8, 5: 1.0, 10: 0.55, 15: 0.1, 20: 0.1}),
    # torch CAWR T_0=2, T_mult=2 measured: 1,.5,1,.8536,.5,.1464,1
    "restarts torch": (restarts(1.0, 0.0, period=2, mult=2.0),
                       {0: 1.0, 1: 0.5, 2: 1.0, 3: 0.5 * (1 + cos(pi / 4)), 4: 0.5, 5: 0.5 * (1 + cos(3 * pi / 4)),
                        6: 1.0, 13: 0.5 * (1 + cos(7 * pi / 8)), 14: 1.0}),
    # float multiplier: starts 0, 4, 10, 19, 32.5; decay per cycle on the amplitude above the floor
    "restarts float": (restarts(1.0, 0.1, period=4, mult=1.5, factor=0.5),
                       {3: 0.1 + 0.9 * 0.5 * (1 + cos(pi * 3 / 4)), 4: 0.1 + 0.9 * 0.5, 9: 0.1 + 0.45 * 0.5 * (1 + cos(pi * 5 / 6)),
                        10: 0.1 + 0.9 * 0.25, 19: 0.1 + 0.9 * 0.125, 32: 0.1 + 0.9 * 0.125 * 0.5 * (1 + cos(pi * 13 / 13.5)),
                        33: 0.1 + 0.9 * 0.0625 * 0.5 * (1 + cos(pi * 0.5 / 20.25))}),
    # seeds' snapshot ensembles: T=100, M=5 -> period 20
    "snapshot": (snapshot(0.2, cycles=5, steps=100),
                 {0: 0.2, 10: 0.1 * (cos(pi * 0.5) + 1), 19: 0.1 * (cos(pi * 19 / 20) + 1), 20: 0.2, 99: 0.1 * (cos(pi * 19 / 20) + 1),
                  100: 0.1 * (cos(pi * 19 / 20) + 1), FAR: 0.1 * (cos(pi * 19 / 20) + 1)}),
    "snapshot uneven": (snapshot(1.0, cycles=3, steps=10), {3: 0.5 * (cos(pi * 3 / 4) + 1), 4: 1.0, 8: 1.0, 9: 0.5 * (cos(pi / 4) + 1)}),
    "triangle": (triangle(1.0, warmup=4, steps=12), {0: 0.0, 3: 0.75, 4: 1.0, 5: 7 / 8, 11: 1 / 8, 12: 0.0, FAR: 0.0}),
    "triangle floor": (triangle(1.0, warmup=0, steps=10, end=0.1), {0: 1.0, 5: 0.1 + 0.9 * 0.5, 10: 0.1, FAR: 0.1}),
    "inverse_sqrt": (inverse_sqrt(1.0, warmup=4), {0: 0.0, 3: 0.75, 4: 1.0, 16: 0.5, 40: 1 / math.sqrt(10)}),
    "inverse_sqrt no warmup": (inverse_sqrt(1.0), {0: 1.0, 30000: 0.5}),
    # HF warmup_stable_decay W=2, S=3, D=4, m=.1 computed: .1,.55,1,1,1,1,.8682,.55,.2318,.1,.1
    "wsd": (wsd(1.0, warmup=2, stable=3, decay=4, end=0.1),
            {0: 0.1, 1: 0.55, 2: 1.0, 4: 1.0, 5: 1.0, 6: 0.5 * (1 + cos(pi / 4)) * 0.9 + 0.1, 7: 0.55,
             8: 0.5 * (1 + cos(3 * pi / 4)) * 0.9 + 0.1, 9: 0.1, FAR: 0.1}),
    "wsd 1-sqrt": (wsd(1.0, warmup=4, stable=0, decay=4, warmup_shape="1-sqrt", decay_shape="1-sqrt"),
                   {1: 1 - math.sqrt(0.75), 4: 1.0, 5: 1 - math.sqrt(0.25), 8: 0.0}),
    "tanh": (tanh(1.0, 0.0, steps=10), {0: 0.5 * (1 - math.tanh(-7.0)), 5: 0.5 * (1 - math.tanh(-3.5 + 1.5)),
                                        9: 0.5 * (1 - math.tanh(-7 * 0.1 + 3 * 0.9)), 10: 0.0, FAR: 0.0}),
    "interpolate linear": (interpolate((0, 4, 8), (1.0, 0.1, 0.01)), {0: 1.0, 2: 0.55, 6: 0.055, 8: 0.01, FAR: 0.01}),
    "interpolate cos": (interpolate((0, 10), (0.0, 1.0), shape="cos"), {5: 0.5, 10: 1.0, FAR: 1.0}),
    # CyclicLR base .1, max 1, up 4 triangular2: peaks 1.0, .55, .325
    "cyclic triangular2": (cyclic(0.1, 1.0, up=4, mode="triangular2"),
                           {0: 0.1, 2: 0.55, 4: 1.0, 8: 0.1, 12: 0.55, 20: 0.325, 24: 0.1}),
    "cyclic asymmetric": (cyclic(0.0, 1.0, up=2, down=6), {1: 0.5, 2: 1.0, 5: 0.5, 8: 0.0, 10: 1.0}),
    "cyclic exp_range": (cyclic(0.0, 1.0, up=2, mode="exp_range", factor=0.5), {1: 0.5 * 0.5, 2: 0.25, 6: 0.5**6}),
    # OneCycleLR T=100, max=1 measured: t0=.04, t29=1.0, t99=4e-6; holds past the end
    "onecycle": (onecycle(1.0, steps=100), {0: 0.04, 29: 1.0, 99: 4e-6, 100: 4e-6, FAR: 4e-6}),
    "onecycle 3 phase linear": (onecycle(1.0, steps=100, three_phase=True, anneal="linear"),
                                {0: 0.04, 29: 1.0, 58: 0.04, 99: 4e-6, FAR: 4e-6}),
    "constant": (constant(0.3), {0: 0.3, FAR: 0.3}),
    "repeat": (repeat(linear(1.0, 0.0, steps=4), mult=2.0, factor=0.5, limit=3),
               {0: 1.0, 3: 0.25, 4: 0.5, 8: 0.5 * 0.5, 11: 0.5 * (1 - 7 / 8), 12: 0.25, 27: 0.25 * (1 - 15 / 16),
                28: 0.0, FAR: 0.0}),
    "repeat forever": (repeat(cosine(1.0, 0.0, steps=10)), {0: 1.0, 9: 0.5 * (1 + cos(0.9 * pi)), 10: 1.0, 999_990: 1.0}),
    # seeds: per-epoch power decay run per step (spe = 10)
    "per_epoch": (per_epoch(polynomial(0.1, 0.0, steps=100, power=5), steps_per_epoch=10),
                  {0: 0.1, 9: 0.1, 10: 0.1 * 0.99**5, 505: 0.1 * 0.5**5, 1000: 0.0}),
    "cooldown linear": (cooldown(constant(0.1), begin=10, steps=4), {9: 0.1, 10: 0.1, 12: 0.05, 14: 0.0, FAR: 0.0}),
    "cooldown 1-sqrt": (cooldown(constant(1.0), begin=10, steps=4, end=0.1, shape="1-sqrt"),
                        {10: 1.0, 11: 0.1 + 0.9 * 0.5, 14: 0.1}),
    "cooldown cosine off exp": (cooldown(exponential(1.0, factor=0.5), begin=2, steps=2, shape="cosine"),
                                {1: 0.5, 2: 0.25, 3: 0.125, 4: 0.0}),
    "custom epoch": (custom("tests.values.keras_step", horizon=30), {0: 0.1, 8: 0.1, 9: 0.05, 30: 0.1 * 0.5**3, FAR: 0.1 * 0.5**3}),
    "custom recurrence": (custom("tests.values.halve_every_3", start=1.0), {0: 1.0, 2: 1.0, 3: 0.5, 6: 0.25, 10: 0.125}),
}


@pytest.mark.parametrize("name", list(TABLES))
def test_value_table(name):
    s, table = TABLES[name]
    steps = sorted(table)
    got = [s(t) for t in steps]
    assert got == pytest.approx([table[t] for t in steps], rel=1e-12, abs=1e-15), name
    arr = s.values(np.asarray(steps, dtype=np.float64))
    np.testing.assert_allclose(arr, [table[t] for t in steps], rtol=1e-12, atol=1e-15)


def test_restart_boundaries_are_exact_despite_log_roundoff():
    """Every cycle start gives the (decayed) peak, for float multipliers too, on Python and NumPy."""
    for mult in (1.1, 1.5, 2.0, 3.0):
        s = restarts(1.0, 0.0, period=3, mult=mult, factor=0.9)
        starts = [3 * (mult**i - 1) / (mult - 1) for i in range(12)]
        for i, b in enumerate(starts):
            assert s(b) == pytest.approx(0.9**i, rel=1e-12)
            assert s.values(np.array([b]))[0] == pytest.approx(0.9**i, rel=1e-12)
            if i:
                assert s(b - 1e-9 * b) < 0.9 ** (i - 1) * 1e-6 + 1e-6


@pytest.mark.parametrize("name", ["step_decay torch", "cosine", "custom epoch", "onecycle"])
def test_negative_step_raises(name):
    s = TABLES[name][0]
    with pytest.raises(ValueError, match="step"):
        s(-1)
    with pytest.raises(ValueError, match="step"):
        s.values(np.array([0.0, -2.0]))


@pytest.mark.jax
@pytest.mark.parametrize(("start", "end", "steps"),
                         [(0.1, 3e-5, 1000), (0.0, 0.1, 7), (1e-3, 1e-7, 9500), (0.1, 0.1, 3), (2e-5, 0.0, 333), (0.3, 0.7, 9)])
def test_linear_ends_exactly_and_stays_in_range_under_jit_float32(start, end, steps):
    """XLA turns ``t / T`` into ``t * (1/T)``: the end must still be ``end`` exactly, and no value
    may leave ``[min(start, end), max(start, end)]`` (it used to miss ``end`` past the end and dip
    below 0 for a decay to 0)."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    s = linear(start, end, steps=steps)
    out = np.asarray(jax.jit(lambda t: s(t))(jnp.arange(0, 2 * steps + 5, dtype=jnp.float32)))
    assert out.dtype == np.float32
    assert (out[steps:] == np.float32(end)).all()
    assert ((out >= np.float32(min(start, end))) & (out <= np.float32(max(start, end)))).all()
