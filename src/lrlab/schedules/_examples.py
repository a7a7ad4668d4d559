"""Representative instances of every registered schedule.

These drive the contract tests (parametrized over the registry), the adapters' parity and resume
tests and the plot gallery: the first example of each name is the one drawn in the gallery.
Adding a schedule means adding its examples here; a test fails while a registered name has none.
"""

from __future__ import annotations

import math

from lrlab.schedules import _combinators as c
from lrlab.schedules import _custom as u
from lrlab.schedules import _cyclic as y
from lrlab.schedules import _families as f
from lrlab.schedules import _plateau as pl
from lrlab.schedules._core import Schedule

__all__ = ["examples"]


@u.register_function("lrlab.examples.keras_step")
def _keras_step(epoch):
    """The seeds' Keras-tutorial drop-based step decay (0.1, halved every 10 epochs, 0-based epoch)."""
    return 0.1 * math.pow(0.5, math.floor((1 + epoch) / 10.0))


@u.register_function("lrlab.examples.halve_every_10")
def _halve_every_10(epoch, lr):
    """The seeds' Keras ``fn(epoch, lr)`` recurrence: halve every 10 epochs, not at epoch 0."""
    return lr * 0.5 if epoch > 0 and epoch % 10 == 0 else lr


@u.register_function("lrlab.examples.exp_after_5")
def _exp_after_5(epoch):
    """The seeds' custom schedule: 0.01 for 5 epochs, then 0.01*exp(0.1*(10 - epoch))."""
    return 0.01 if epoch < 5 else 0.01 * math.exp(0.1 * (10 - epoch))


def examples() -> dict[str, list[Schedule]]:
    """``{name: [instances]}`` for every registered schedule (fully resolved, finite where natural)."""
    cos_like = c.take(c.constant(0.1), steps=60) >> c.constant(0.01)
    cos = f.cosine(peak=0.1, end=0.001, steps=100)
    return {
        "constant": [c.constant(0.1), c.constant(0.05, steps=100)],
        "sequence": [
            f.linear(0.0, 0.1, steps=20) >> f.cosine(peak=0.1, end=0.0, steps=180),
            cos_like,
            c.constant(1.0, steps=3) >> c.constant(0.5, steps=4) >> c.constant(0.25),
        ],
        "product": [c.product(factors=(f.cosine(peak=1.0, steps=200), f.exponential(0.1, factor=0.99))),
                    c.product(factors=(c.constant(0.1), cos_like))],
        "scale": [0.5 * cos, 0.5 * cos_like],
        "clamp": [c.clamp(f.exponential(0.1, factor=0.97), min=0.01), c.clamp(cos_like, min=0.0, max=0.05)],
        "take": [c.take(f.inverse_sqrt(0.1, warmup=20), steps=150), c.take(cos_like, steps=80)],
        "warmup": [
            c.warmup(cos, steps=20),
            c.warmup(cos_like, steps=10, start=0.01, shape="exponential"),
            c.warmup(cos_like, steps=15, start=0.001, shape="cosine"),
        ],
        "repeat": [
            c.repeat(f.cosine(peak=0.1, end=0.001, steps=20), mult=1.5, factor=0.7, limit=4),
            c.repeat(f.linear(0.1, 0.0, steps=30)),
            c.repeat(f.cosine(peak=1.0, steps=10), period=25, factor=0.5),
        ],
        "per_epoch": [
            c.per_epoch(f.polynomial(0.1, 0.0, steps=20, power=5.0), steps_per_epoch=10),
            c.per_epoch(f.step_decay(0.1, factor=0.5, every=10, offset=1), steps_per_epoch=7),
        ],
        "cooldown": [
            c.cooldown(c.constant(0.1), begin=150, steps=50, shape="1-sqrt"),
            c.cooldown(c.warmup(c.constant(0.1), steps=10), begin=60, steps=40, end=0.001, shape="cosine"),
            c.cooldown(f.exponential(0.1, factor=0.99), begin=30, steps=0, end=0.0),
        ],
        "step_decay": [
            f.step_decay(0.1, factor=0.5, every=30),
            f.step_decay(0.1, factor=0.5, every=10, offset=1),
            f.step_decay(0.1, factor=0.25, every=15, offset=1),
        ],
        "multistep": [
            f.multistep(0.1, milestones=(60, 120, 160), factor=0.2),
            f.multistep(1.0, milestones=(3, 6, 6), factor=0.1),
        ],
        "piecewise": [
            f.piecewise((50, 150), (0.1, 0.05, 0.01)),
            f.piecewise((10, 20), (1.0, 0.5, 0.1), switch="after"),
        ],
        "exponential": [
            f.exponential(0.1, factor=0.98),
            f.exponential(0.1, factor=0.96, every=10, staircase=True),
            f.exponential(0.1, factor=0.5, every=20, begin=30, end=0.01),
            f.exponential(0.01, factor=2.0, every=25, end=0.05),
        ],
        "inverse_time": [
            f.inverse_time(0.1, rate=0.05),
            f.inverse_time(0.1, rate=0.5, every=10, staircase=True),
        ],
        "linear": [f.linear(0.1, 0.0, steps=200), f.linear(0.0, 0.1, steps=1), f.linear(0.1, 0.05, steps=0)],
        "polynomial": [
            f.polynomial(0.1, 0.0, steps=200, power=5.0),
            f.polynomial(0.1, 0.001, steps=50, power=2.0, cycle=True),
            f.polynomial(0.1, 0.01, steps=100, power=0.5),
        ],
        "cosine": [
            f.cosine(peak=0.1, end=0.001, steps=200),
            f.cosine(peak=0.1, end=0.0, steps=1),
            f.cosine(peak=0.1, end=0.01, steps=100, exponent=2.0),
        ],
        "restarts": [
            f.restarts(0.1, 0.001, period=20, mult=2.0),
            f.restarts(0.1, 0.0, period=10, mult=1.5, factor=0.8),
            f.restarts(0.1, 0.01, period=30),
        ],
        "snapshot": [f.snapshot(0.1, cycles=5, steps=200), f.snapshot(0.1, cycles=3, steps=100)],
        "triangle": [f.triangle(0.1, warmup=20, steps=200), f.triangle(0.1, warmup=0, steps=50, end=0.01)],
        "inverse_sqrt": [f.inverse_sqrt(0.1, warmup=20), f.inverse_sqrt(0.1, warmup=0, timescale=50.0)],
        "wsd": [
            f.wsd(0.1, warmup=20, stable=130, decay=50),
            f.wsd(0.1, warmup=10, stable=20, decay=30, warmup_shape="cosine", decay_shape="1-sqrt", end=0.01),
            f.wsd(0.1, warmup=0, stable=10, decay=10, decay_shape="linear"),
        ],
        "tanh": [f.tanh(0.1, 0.0, steps=200), f.tanh(0.1, 0.01, steps=50, lb=-5.0, ub=5.0)],
        "interpolate": [
            f.interpolate((0, 50, 200), (0.004, 0.1, 0.0001), shape="cos"),
            f.interpolate((0, 10, 20.5, 40), (1.0, 0.1, 0.01, 0.5)),
        ],
        "cyclic": [
            y.cyclic(0.01, 0.1, up=25, mode="triangular2"),
            y.cyclic(0.01, 0.1, up=10, down=30),
            y.cyclic(0.01, 0.1, up=15, mode="exp_range", factor=0.99),
            y.cyclic(0.01, 0.1, up=5, mode="exp_range", factor=0.9, scale_mode="cycle"),
        ],
        "onecycle": [
            y.onecycle(0.1, steps=200),
            y.onecycle(0.1, steps=100, three_phase=True, anneal="linear"),
            y.onecycle(0.1, steps=10, pct_start=0.25),
        ],
        "plateau": [
            c.warmup(f.cosine(peak=0.1, end=0.001, steps=180), steps=20) * pl.plateau(patience=3),
            pl.plateau(patience=2, preset="keras"),
            f.exponential(0.1, factor=0.99) * pl.plateau(key="second", factor=0.5, preset="optax"),
        ],
        "custom": [
            u.custom("lrlab.examples.keras_step", horizon=200),
            u.custom("lrlab.examples.halve_every_10", start=0.1, horizon=60),
            u.custom("lrlab.examples.exp_after_5", horizon=40),
        ],
    }
