"""Contract tests, parametrized over every registered schedule and its examples.

Every example must: round-trip through its config (also through JSON); be pure (same value twice,
unchanged, hashable); give finite values; agree between the Python-number path, NumPy, torch
(float64), ``jax.jit`` (x64) and Keras ops (float32); evaluate a million NumPy steps; hold its
final value past its end when finite; and be continuous where a composition promises it.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import lrlab
from lrlab.schedules import cooldown, examples, from_config, registry, sequence, warmup

EXAMPLES = examples()
CASES = [pytest.param(s, id=f"{name}[{i}]") for name, group in EXAMPLES.items() for i, s in enumerate(group)]
FIRST = [pytest.param(group[0], id=name) for name, group in EXAMPLES.items()]


def horizon(s) -> int:
    d = s.duration
    return 300 if d is None else int(d) + 50


def grid(s) -> np.ndarray:
    """Every integer step to the horizon, plus the boundaries +- 1 and some fractional steps."""
    n = horizon(s)
    extra = [b + e for b in s.boundaries() for e in (-1.0, -0.5, 0.0, 0.5, 1.0) if b + e >= 0]
    return np.unique(np.concatenate([np.arange(n, dtype=np.float64), np.linspace(0, n, 37), extra]))


def assert_close(actual, expected, rtol: float) -> None:
    expected = np.asarray(expected, dtype=np.float64)
    scale = float(np.max(np.abs(expected))) or 1.0
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=rtol * scale)


def test_every_registered_name_has_examples():
    missing = [n for n in registry() if not EXAMPLES.get(n)]
    assert not missing, f"registered schedules without examples: {missing}"
    assert set(EXAMPLES) <= set(registry())


@pytest.mark.parametrize("s", CASES)
def test_resolved_and_round_trips(s):
    assert s.is_resolved()
    cfg = s.to_config()
    assert from_config(cfg) == s
    assert from_config(json.loads(json.dumps(cfg))) == s
    assert lrlab.from_config(json.loads(json.dumps(cfg))).values(40).tolist() == s.values(40).tolist()


@pytest.mark.parametrize("s", CASES)
def test_pure_and_hashable(s):
    before = json.dumps(s.to_config())
    a = [s(t) for t in (0, 7, 123)]
    b = [s(t) for t in (0, 7, 123)]
    assert a == b
    assert json.dumps(s.to_config()) == before
    assert hash(s) == hash(from_config(s.to_config()))
    with pytest.raises(AttributeError):
        s.name_of_a_field_that_does_not_exist = 1  # frozen


@pytest.mark.parametrize("s", CASES)
def test_finite_and_vectorized_equals_scalar(s):
    steps = grid(s)
    scalar = np.array([s(float(t)) for t in steps])
    assert np.all(np.isfinite(scalar))
    # NumPy's cos/exp may differ from libm's by an ulp or two: 1e-15 relative
    assert_close(s.values(steps), scalar, 1e-15)
    ints = np.arange(horizon(s))
    assert s(ints).dtype == np.float64 or np.ndim(s(ints)) == 0


@pytest.mark.parametrize("s", CASES)
def test_torch_float64_equals_scalar(s):
    torch = pytest.importorskip("torch")
    steps = grid(s)
    out = s(torch.as_tensor(steps, dtype=torch.float64))
    out = out if isinstance(out, torch.Tensor) else torch.as_tensor(out)
    assert out.dtype == torch.float64
    assert_close(out.numpy(), [s(float(t)) for t in steps], 1e-15)
    out_int = s(torch.arange(5))  # integer steps become float64
    assert torch.as_tensor(out_int).dtype == torch.float64


@pytest.mark.jax
@pytest.mark.parametrize("s", CASES)
def test_jax_jit_x64(s):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    steps = grid(s)
    with jax.enable_x64(True):
        out = jax.jit(lambda t: jnp.broadcast_to(s(t), t.shape))(jnp.asarray(steps, dtype=jnp.float64))
        assert out.dtype == jnp.float64
        assert_close(np.asarray(out), [s(float(t)) for t in steps], 1e-12)


@pytest.mark.jax
@pytest.mark.parametrize("s", CASES)
def test_jax_jit_float32(s):
    """XLA in float32 (it may turn ``t / d`` into ``t * (1/d)``): staircases and ends stay put."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    steps = np.arange(horizon(s), dtype=np.float32)
    out = jax.jit(lambda t: jnp.broadcast_to(s(t), t.shape))(jnp.asarray(steps))
    assert out.dtype == jnp.float32
    assert_close(np.asarray(out), s.values(steps.astype(np.float64)), 1e-5)


@pytest.mark.keras
@pytest.mark.parametrize("s", FIRST)
def test_keras_ops_float32(s):
    keras = pytest.importorskip("keras")
    steps = np.arange(horizon(s), dtype=np.float64)
    out = s(keras.ops.convert_to_tensor(steps.astype(np.float32)), backend="keras")
    out = keras.ops.convert_to_numpy(keras.ops.broadcast_to(out, steps.shape))
    assert out.dtype == np.float32
    expected = np.array([s(float(t)) for t in steps])
    assert_close(out, expected, 1e-5)  # float32: a few ulps (pow/exp of an exponent in the hundreds)


@pytest.mark.parametrize("s", FIRST)
def test_a_million_numpy_steps(s):
    v = s.values(1_000_000)
    assert v.shape == (1_000_000,) and np.all(np.isfinite(v))
    assert v[-1] == s(999_999)


@pytest.mark.parametrize("s", [c for c in CASES if c.values[0].duration is not None])
def test_finite_schedules_hold_their_final_value(s):
    d = s.duration
    end = s(d)
    for k in (0.5, 1, 17, 1e6):
        assert s(d + k) == end
    np.testing.assert_array_equal(s.values(np.array([d, d + 3.0, d + 1e6])), [end, end, end])


def _continuity_points(s):
    if isinstance(s, warmup) and s.steps:
        yield float(s.steps)
    if isinstance(s, cooldown) and s.steps:  # steps=0 drops at once, by definition
        yield float(s.begin)
        yield float(s.begin + s.steps)
    if isinstance(s, sequence):
        start = 0.0
        for i, p in enumerate(s.phases[:-1]):
            start += s._length(i)
            nxt = s.phases[i + 1]
            if math.isclose(p(float(p.duration)), nxt(0.0), rel_tol=1e-12):  # phases that match
                yield start


CONTINUOUS = [c for c in CASES if list(_continuity_points(c.values[0]))]


@pytest.mark.parametrize("s", CONTINUOUS)
def test_continuous_where_promised(s):
    for b in _continuity_points(s):
        left, right = s(b - 1e-7), s(b)
        assert left == pytest.approx(right, rel=1e-5, abs=1e-9), f"jump at {b}: {left} -> {right}"


def test_momentum_curves_are_schedules():
    for name in ("cyclic", "onecycle"):
        for s in EXAMPLES[name]:
            m = s.momentum()
            assert isinstance(m, lrlab.Schedule)
            assert from_config(m.to_config()) == m
            v = m.values(horizon(s))
            assert np.all((v >= min(s.base_momentum, s.max_momentum) - 1e-12) & (v <= max(s.base_momentum, s.max_momentum) + 1e-12))


_KERAS_JAX = """
import numpy as np, keras
from lrlab.schedules import examples
bad = []
for name, group in examples().items():
    for i, s in enumerate(group):
        steps = np.arange(120, dtype=np.float32)
        out = s(keras.ops.convert_to_tensor(steps), backend="keras")
        out = np.asarray(keras.ops.convert_to_numpy(keras.ops.broadcast_to(out, steps.shape)))
        exp = s.values(120)
        if not np.allclose(out, exp, rtol=1e-5, atol=1e-6 * np.abs(exp).max()):
            bad.append(f"{name}[{i}]")
print(bad)
"""


@pytest.mark.keras
@pytest.mark.jax
def test_keras_ops_on_the_jax_backend():
    """Keras fixes its backend at import: the jax backend is checked in a subprocess."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, KERAS_BACKEND="jax")
    out = subprocess.run([sys.executable, "-c", _KERAS_JAX], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
