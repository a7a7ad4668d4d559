"""Parity of lrlab schedules with the REAL torch, Keras, optax and transformers implementations.

Every comparison is in float64 to 1e-12 relative (plus 1e-12 of the peak absolute, for values that
cross 0):

* torch: the scheduler is stepped on an SGD/Adam optimizer over a float64 parameter and the lr
  (and momentum / beta1) actually written to ``param_groups`` before each update is read back.
* Keras: the ``keras.optimizers.schedules`` object is called at each step with ``floatx`` set to
  float64 for the test (Keras computes in float32 otherwise).
* optax: the schedule is evaluated on a float64 step array under ``jax.enable_x64(True)``.
* transformers: the ``LambdaLR`` from ``get_*_schedule`` is stepped like torch's.

Exceptions (documented, tested as such): torch ``CosineAnnealingLR`` is compared within
``T_max`` only (torch keeps oscillating after it, lrlab holds ``end``); torch ``OneCycleLR`` over
its ``total_steps`` updates (it raises past them; lrlab holds the final value); optax's one-cycle
schedules are the ``interpolate`` with optax's knots ``int(pct*T)`` and ``T`` (one step later than
torch's ``pct*T - 1`` and ``T - 1``).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from lrlab.schedules import (
    constant,
    cosine,
    cyclic,
    exponential,
    interpolate,
    inverse_sqrt,
    inverse_time,
    linear,
    multistep,
    onecycle,
    piecewise,
    polynomial,
    repeat,
    restarts,
    step_decay,
    triangle,
    warmup,
    wsd,
)

torch = pytest.importorskip("torch")
lr_scheduler = torch.optim.lr_scheduler

pytestmark = [pytest.mark.filterwarnings("ignore:.*epoch parameter.*:UserWarning")]


def close(actual, expected) -> None:
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    scale = float(np.max(np.abs(expected))) or 1.0
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * scale)


# ---- torch ----------------------------------------------------------------------------------


def _optimizer(lr: float, kind: str = "sgd"):
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    if kind == "adam":
        return torch.optim.Adam([p], lr=lr)
    return torch.optim.SGD([p], lr=lr, momentum=0.9)


def run_torch(make, n: int, lr: float = 0.1, kind: str = "sgd"):
    """(lrs, momenta) used by updates 0..n-1 of a real torch scheduler."""
    opt = _optimizer(lr, kind)
    sched = make(opt)
    lrs, moms = [], []
    for _ in range(n):
        g = opt.param_groups[0]
        lrs.append(g["lr"])
        moms.append(g["betas"][0] if kind == "adam" else g["momentum"])
        opt.step()
        sched.step()
    return np.array(lrs), np.array(moms)


TORCH_CASES = [
    ("StepLR", lambda o: lr_scheduler.StepLR(o, step_size=7, gamma=0.5), step_decay(0.1, factor=0.5, every=7)),
    ("MultiStepLR", lambda o: lr_scheduler.MultiStepLR(o, milestones=[30, 10, 10, 50], gamma=0.3),
     multistep(0.1, milestones=(30, 10, 10, 50), factor=0.3)),
    ("ExponentialLR", lambda o: lr_scheduler.ExponentialLR(o, gamma=0.97), exponential(0.1, factor=0.97)),
    ("LinearLR", lambda o: lr_scheduler.LinearLR(o, start_factor=0.25, end_factor=0.75, total_iters=40),
     linear(0.1 * 0.25, 0.1 * 0.75, steps=40)),
    ("PolynomialLR", lambda o: lr_scheduler.PolynomialLR(o, total_iters=50, power=2.0),
     polynomial(0.1, 0.0, steps=50, power=2.0)),
    ("CosineAnnealingLR", lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=100, eta_min=0.002),
     cosine(peak=0.1, end=0.002, steps=100)),
    ("CosineAnnealingWarmRestarts", lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.001),
     restarts(0.1, 0.001, period=5, mult=2.0)),
    ("CosineAnnealingWarmRestarts-1", lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=13),
     restarts(0.1, 0.0, period=13)),
    ("CosineAnnealingWarmRestarts-3", lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=3),
     restarts(0.1, 0.0, period=2, mult=3.0)),
]


@pytest.mark.parametrize(("name", "make", "sched"), TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_torch_parity(name, make, sched):
    n = 101 if name == "CosineAnnealingLR" else 250  # torch's cosine oscillates past T_max
    lrs, _ = run_torch(make, n)
    close(sched.values(n), lrs)


CLR_CASES = [
    dict(mode="triangular"),
    dict(mode="triangular2"),
    dict(mode="exp_range", gamma=0.995),
    dict(mode="triangular", step_size_down=17),
    dict(mode="triangular2", step_size_down=5),
]


@pytest.mark.parametrize("kw", CLR_CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_torch_cyclic_parity(kw, kind):
    def make(o):
        return lr_scheduler.CyclicLR(o, base_lr=0.01, max_lr=0.2, step_size_up=8, **kw)

    lrs, moms = run_torch(make, 200, kind=kind)
    s = cyclic(0.01, 0.2, up=8, down=kw.get("step_size_down"), mode=kw["mode"], factor=kw.get("gamma", 1.0))
    close(s.values(200), lrs)
    close(s.momentum().values(200), moms)


@pytest.mark.parametrize(("mode", "scale_mode"), [("triangular2", "iterations"), ("exp_range", "cycle")])
def test_torch_cyclic_explicit_scale_mode(mode, scale_mode):
    """An explicit scale_mode equals torch with that mode's scale_fn and that scale_mode."""
    fn = (lambda x: 1 / (2.0 ** (x - 1))) if mode == "triangular2" else (lambda x: 0.9**x)

    def make(o):
        return lr_scheduler.CyclicLR(o, base_lr=0.01, max_lr=0.2, step_size_up=6, scale_fn=fn, scale_mode=scale_mode)

    lrs, moms = run_torch(make, 80)
    s = cyclic(0.01, 0.2, up=6, mode=mode, factor=0.9, scale_mode=scale_mode)
    close(s.values(80), lrs)
    close(s.momentum().values(80), moms)


ONECYCLE_CASES = [
    dict(total_steps=100),
    dict(total_steps=100, anneal_strategy="linear"),
    dict(total_steps=120, three_phase=True),
    dict(total_steps=97, three_phase=True, anneal_strategy="linear", pct_start=0.25),
    dict(total_steps=10, pct_start=0.25, div_factor=10.0, final_div_factor=100.0),
]


@pytest.mark.parametrize("kw", ONECYCLE_CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_torch_onecycle_parity(kw, kind):
    T = kw["total_steps"]
    lrs, moms = run_torch(lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.5, **kw), T, kind=kind)
    s = onecycle(
        0.5, steps=T, pct_start=kw.get("pct_start", 0.3), anneal={"linear": "linear"}.get(kw.get("anneal_strategy"), "cos"),
        div_factor=kw.get("div_factor", 25.0), final_div_factor=kw.get("final_div_factor", 1e4),
        three_phase=kw.get("three_phase", False),
    )
    close(s.values(T), lrs)
    close(s.momentum().values(T), moms)
    assert s(T + 1000) == s(T - 1)  # lrlab holds where torch raises


def test_torch_onecycle_raises_past_total_steps_where_lrlab_holds():
    opt = _optimizer(0.1)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10)
    for _ in range(10):
        opt.step()
        sched.step()
    with pytest.raises(ValueError, match="Tried to step"):
        opt.step()
        sched.step()
    assert onecycle(1.0, steps=10)(11) == onecycle(1.0, steps=10)(9)


def test_torch_sequential_warmup_cosine():
    """SequentialLR(LinearLR, CosineAnnealingLR) is ``warmup(cosine)`` with a nonzero start."""

    def make(o):
        w = lr_scheduler.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=10)
        c = lr_scheduler.CosineAnnealingLR(o, T_max=50, eta_min=0.001)
        return lr_scheduler.SequentialLR(o, [w, c], milestones=[10])

    lrs, _ = run_torch(make, 60)
    close(warmup(cosine(0.1, 0.001, steps=50), steps=10, start=0.01).values(60), lrs)


# ---- Keras ----------------------------------------------------------------------------------


@pytest.fixture
def kschedules():
    keras = pytest.importorskip("keras")
    old = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        yield keras.optimizers.schedules
    finally:
        keras.config.set_floatx(old)


def run_keras(sched, n: int) -> np.ndarray:
    return np.array([float(sched(t)) for t in range(n)])


@pytest.mark.keras
def test_keras_parity(kschedules):
    K = kschedules
    n = 160
    cases = [
        (K.ExponentialDecay(0.1, 7, 0.8), exponential(0.1, factor=0.8, every=7)),
        (K.ExponentialDecay(0.1, 7, 0.8, staircase=True), exponential(0.1, factor=0.8, every=7, staircase=True)),
        (K.InverseTimeDecay(0.1, 10, 0.5), inverse_time(0.1, rate=0.5, every=10)),
        (K.InverseTimeDecay(0.1, 10, 0.5, staircase=True), inverse_time(0.1, rate=0.5, every=10, staircase=True)),
        (K.PiecewiseConstantDecay([10, 20, 75], [1.0, 0.5, 0.1, 0.02]),
         piecewise((10, 20, 75), (1.0, 0.5, 0.1, 0.02), switch="after")),
        (K.PolynomialDecay(0.1, 40, 0.001, power=2.0), polynomial(0.1, 0.001, steps=40, power=2.0)),
        (K.PolynomialDecay(0.1, 10, 0.0, power=1.0, cycle=True), polynomial(0.1, 0.0, steps=10, cycle=True)),
        (K.PolynomialDecay(0.1, 30, 0.01, power=0.5, cycle=True), polynomial(0.1, 0.01, steps=30, power=0.5, cycle=True)),
        (K.CosineDecay(0.1, 100, alpha=0.05), cosine(0.1, 0.05 * 0.1, steps=100)),
        (K.CosineDecay(0.0, 100, alpha=0.1, warmup_target=0.2, warmup_steps=20),
         warmup(cosine(0.2, 0.1 * 0.2, steps=100), steps=20, start=0.0)),
        (K.CosineDecay(0.01, 50, warmup_target=0.1, warmup_steps=15), warmup(cosine(0.1, 0.0, steps=50), steps=15, start=0.01)),
        (K.CosineDecayRestarts(0.1, 5, t_mul=2.0, m_mul=0.7, alpha=0.02), restarts(0.1, 0.002, period=5, mult=2.0, factor=0.7)),
        (K.CosineDecayRestarts(0.1, 4, t_mul=1.5, m_mul=1.0), restarts(0.1, 0.0, period=4, mult=1.5)),
        (K.CosineDecayRestarts(0.1, 9, t_mul=1.0, m_mul=0.5, alpha=0.1), restarts(0.1, 0.01, period=9, factor=0.5)),
    ]
    for k, s in cases:
        close(s.values(n), run_keras(k, n))


@pytest.mark.keras
def test_keras_seeds_step_decay_is_the_callback_value(kschedules):
    """The seeds' LearningRateScheduler function (0-based Keras epochs) equals step_decay(offset=1)."""

    def step_decay_fn(epoch):
        return 0.1 * math.pow(0.5, math.floor((1 + epoch) / 10.0))

    s = step_decay(0.1, factor=0.5, every=10, offset=1)
    close(s.values(60), [step_decay_fn(e) for e in range(60)])


# ---- optax ----------------------------------------------------------------------------------


@pytest.fixture
def x64():
    jax = pytest.importorskip("jax")
    pytest.importorskip("optax")
    with jax.enable_x64(True):
        yield


def run_optax(fn, n: int) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    out = np.asarray(jax.vmap(fn)(jnp.arange(n, dtype=jnp.float64)), dtype=np.float64)
    assert out.dtype == np.float64
    return out


@pytest.mark.jax
def test_optax_parity(x64):
    import optax

    n = 220
    cases = [
        (optax.exponential_decay(0.1, 10, 0.5, transition_begin=15, end_value=0.004),
         exponential(0.1, factor=0.5, every=10, begin=15, end=0.004)),
        (optax.exponential_decay(0.1, 10, 0.5, transition_begin=15, staircase=True),
         exponential(0.1, factor=0.5, every=10, begin=15, staircase=True)),
        (optax.exponential_decay(0.01, 20, 1.5, end_value=0.05), exponential(0.01, factor=1.5, every=20, end=0.05)),
        (optax.polynomial_schedule(0.1, 0.001, power=3.0, transition_steps=120),
         polynomial(0.1, 0.001, steps=120, power=3.0)),
        (optax.polynomial_schedule(0.1, 0.001, power=2.0, transition_steps=100, transition_begin=30),
         constant(0.1, steps=30) >> polynomial(0.1, 0.001, steps=100, power=2.0)),
        (optax.linear_schedule(0.0, 0.1, 50), linear(0.0, 0.1, steps=50)),
        (optax.cosine_decay_schedule(0.1, 150, alpha=0.05, exponent=2.0), cosine(0.1, 0.005, steps=150, exponent=2.0)),
        (optax.warmup_cosine_decay_schedule(0.001, 0.1, 20, 150, end_value=0.002),
         warmup(cosine(0.1, 0.002, steps=130), steps=20, start=0.001)),
        (optax.piecewise_constant_schedule(0.1, {40: 0.5, 90: 0.2, 150: 0.1}),
         piecewise((40, 90, 150), (0.1, 0.1 * 0.5, 0.1 * 0.5 * 0.2, 0.1 * 0.5 * 0.2 * 0.1))),
        (optax.join_schedules([optax.linear_schedule(0.0, 0.1, 30), optax.cosine_decay_schedule(0.1, 100)], [30]),
         linear(0.0, 0.1, steps=30) >> cosine(0.1, 0.0, steps=100)),
        (optax.cosine_onecycle_schedule(200, 0.5), interpolate((0, 60, 200), (0.5 / 25, 0.5, 0.5 / 25 / 1e4), shape="cos")),
        (optax.linear_onecycle_schedule(200, 0.5),
         interpolate((0, 60, 170, 200), (0.5 / 25, 0.5, 0.5 / 25, 0.5 / 25 / 1e4))),
    ]
    for fn, s in cases:
        close(s.values(n), run_optax(fn, n))


@pytest.mark.jax
def test_optax_sgdr(x64):
    """sgdr_schedule = warmup_cosine_decay cycles joined: the same cycles with ``sequence``."""
    import optax

    kw = [dict(init_value=0.0, peak_value=0.1, warmup_steps=5, decay_steps=40, end_value=0.001),
          dict(init_value=0.0, peak_value=0.05, warmup_steps=5, decay_steps=60, end_value=0.001)]
    s = (warmup(cosine(0.1, 0.001, steps=35), steps=5)
         >> warmup(cosine(0.05, 0.001, steps=55), steps=5))
    close(s.values(150), run_optax(optax.sgdr_schedule(kw), 150))


@pytest.mark.jax
def test_optax_onecycle_is_one_step_after_torch(x64):
    """optax's knots are at int(pct*T) and T; torch's at pct*T - 1 and T - 1."""
    import optax

    ox = run_optax(optax.cosine_onecycle_schedule(100, 1.0), 101)
    pt = onecycle(1.0, steps=100).values(100)
    assert ox[30] == pytest.approx(1.0, rel=1e-12) and pt[29] == pytest.approx(1.0, rel=1e-12)
    close(ox[30:101], pt[29:100])


# ---- transformers ---------------------------------------------------------------------------


def run_hf(getter, n: int, **kw) -> np.ndarray:
    opt = _optimizer(1.0)
    sched = getter(opt, **kw)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


@pytest.fixture
def hf():
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    return pytest.importorskip("transformers.optimization")


def test_transformers_parity(hf):
    close(triangle(1.0, warmup=10, steps=80).values(100),
          run_hf(hf.get_linear_schedule_with_warmup, 100, num_warmup_steps=10, num_training_steps=80))
    close(inverse_sqrt(1.0, warmup=10).values(100), run_hf(hf.get_inverse_sqrt_schedule, 100, num_warmup_steps=10))
    close(inverse_sqrt(1.0, warmup=10, timescale=25).values(100),
          run_hf(hf.get_inverse_sqrt_schedule, 100, num_warmup_steps=10, timescale=25))
    for wt, dt in [("linear", "cosine"), ("cosine", "1-sqrt"), ("1-sqrt", "linear")]:
        s = wsd(1.0, warmup=7, stable=20, decay=30, warmup_shape=wt, decay_shape=dt, end=0.1)
        hf_lrs = run_hf(hf.get_wsd_schedule, 80, num_warmup_steps=7, num_stable_steps=20, num_decay_steps=30,
                        warmup_type=wt, decay_type=dt, min_lr_ratio=0.1)
        close(s.values(80), hf_lrs)
    # cosine_with_min_lr: warmup(cosine) with an absolute floor; cosine_with_restarts: repeat(limit=n)
    close(warmup(cosine(1.0, 0.1, steps=90), steps=10).values(100),
          run_hf(hf.get_cosine_with_min_lr_schedule_with_warmup, 100, num_warmup_steps=10,
                 num_training_steps=100, min_lr_rate=0.1))
    close(warmup(repeat(cosine(1.0, 0.0, steps=30), limit=3), steps=10).values(100),
          run_hf(hf.get_cosine_with_hard_restarts_schedule_with_warmup, 100, num_warmup_steps=10,
                 num_training_steps=100, num_cycles=3))
