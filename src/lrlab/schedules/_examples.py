"""Representative instances of every registered schedule.

These drive the contract tests (parametrized over the registry), the adapters' parity and resume
tests and the plot gallery: the first example of each name is the one drawn in the gallery.
Adding a schedule means adding its examples here; a test fails while a registered name has none.
"""

from __future__ import annotations

from lrlab.schedules import _combinators as c
from lrlab.schedules._core import Schedule

__all__ = ["examples"]


def examples() -> dict[str, list[Schedule]]:
    """``{name: [instances]}`` for every registered schedule (fully resolved, finite where natural)."""
    cos_like = c.take(c.constant(0.1), steps=60) >> c.constant(0.01)
    return {
        "constant": [c.constant(0.1), c.constant(0.05, steps=100)],
        "sequence": [cos_like, c.constant(1.0, steps=3) >> c.constant(0.5, steps=4) >> c.constant(0.25)],
        "product": [c.product(factors=(c.constant(0.1), cos_like))],
        "scale": [0.5 * cos_like],
        "clamp": [c.clamp(cos_like, min=0.02), c.clamp(cos_like, min=0.0, max=0.05)],
        "take": [c.take(cos_like, steps=80)],
        "warmup": [
            c.warmup(cos_like, steps=20),
            c.warmup(cos_like, steps=10, start=0.01, shape="exponential"),
            c.warmup(cos_like, steps=15, start=0.001, shape="cosine"),
        ],
    }
