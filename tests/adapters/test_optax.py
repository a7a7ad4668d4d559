"""optax adapter: the lr optax really applies equals the schedule; the plateau transform reproduces
optax.contrib.reduce_on_plateau and lrlab's PlateauController; current_lr reads the state back."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrlab.adapters.optax import PlateauState, current_lr, reduce_on_plateau, to_optax
from lrlab.schedules import examples
from lrlab.schedules._combinators import constant, warmup
from lrlab.schedules._plateau import PlateauController, plateau

pytestmark = pytest.mark.jax

N_STEPS = 300


def _all_examples():
    return {f"{name}[{i}]": s for name, group in examples().items() for i, s in enumerate(group)}


EXAMPLES = _all_examples()


@pytest.fixture(scope="module")
def applied():
    """{id: (direct, wrapped)} for every example, under x64 and one jit (compiling once keeps this fast).

    direct: the lr ``optax.sgd(schedule)`` really applies at each of N_STEPS updates (update =
    -lr * grad with grad = 1); wrapped: ``to_optax(schedule)`` at counts 0..N_STEPS-1.
    """
    ids = list(EXAMPLES)
    with jax.enable_x64(True):
        opts = [optax.sgd(EXAMPLES[i]) for i in ids]
        fns = [to_optax(EXAMPLES[i]) for i in ids]
        params = jnp.zeros((), jnp.float64)

        @jax.jit
        def run(states):
            def body(sts, _):
                out = [opt.update(jnp.ones((), jnp.float64), st, params) for opt, st in zip(opts, sts)]
                return [st for _, st in out], [-u for u, _ in out]
            direct = jax.lax.scan(body, states, None, length=N_STEPS)[1]
            counts = jnp.arange(N_STEPS, dtype=jnp.int32)
            return direct, [jax.vmap(f)(counts) for f in fns]

        direct, wrapped = run([opt.init(params) for opt in opts])
    return {i: (np.asarray(d, np.float64), np.asarray(w, np.float64)) for i, d, w in zip(ids, direct, wrapped)}


@pytest.mark.parametrize("sid", list(EXAMPLES))
def test_sgd_applies_the_schedule(sid, applied):
    """Every registered schedule, used directly and through to_optax, under jit with x64."""
    expected = EXAMPLES[sid].values(N_STEPS)
    direct, wrapped = applied[sid]
    # float64 end to end: only the last bits of exp/pow/cos may differ between NumPy and XLA.
    np.testing.assert_allclose(direct, expected, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(wrapped, expected, rtol=1e-7, atol=1e-12)


def test_to_optax_values_and_errors():
    s = constant(1.0, steps=2) >> constant(0.5)
    f = to_optax(s)
    out = f(3)
    assert isinstance(out, jax.Array) and float(out) == 0.5
    assert f.schedule is s and f.__name__ == f"lrlab:{s}"
    assert float(jax.jit(f)(jnp.int32(1))) == 1.0
    with pytest.raises(ValueError, match="lrlab schedule"):
        to_optax(lambda c: 0.1)
    with pytest.raises(ValueError, match="resolve"):
        to_optax(constant(0.1, steps="5ep") >> constant(0.01))


# ---- plateau transform --------------------------------------------------------------------------
TRACES = {
    "constant": [1.0] * 24,
    "noisy_decreasing": list(1.0 / (1 + 0.3 * np.arange(24)) + 0.02 * np.sin(np.arange(24) * 2.1)),
    "improving_then_flat": [1.0, 0.8, 0.6, 0.5, 0.45] + [0.45] * 19,
    "tiny_improvements": [100.0 - 0.005 * i for i in range(24)],
}


def _run_transform(tx, values, dtype=None):
    """Scales applied by ``tx`` for each value (updates of ones) and the states, under jit.

    ``values`` is one trace, or a 2-d array of traces run side by side (vmap: one compile);
    ``dtype``: the params' dtype (default: JAX's default float).
    """
    values = jnp.asarray(values)

    def one(vals):
        def body(st, v):
            u, st = tx.update(jnp.ones((), dtype), st, value=v)
            return st, (u, st)
        return jax.lax.scan(body, tx.init(jnp.zeros((), dtype)), vals)[1]

    scales, states = jax.jit(jax.vmap(one) if values.ndim == 2 else one)(values)
    return np.asarray(scales, np.float64), states


OPTAX_SETTINGS = [
    dict(factor=0.5, patience=2, rtol=1e-4, atol=0.0, cooldown=0, min_scale=0.0, accumulation_size=1),
    dict(factor=0.1, patience=0, rtol=1e-4, atol=0.0, cooldown=1, min_scale=0.0, accumulation_size=1),
    dict(factor=0.5, patience=1, rtol=0.0, atol=0.01, cooldown=2, min_scale=0.1, accumulation_size=1),
    dict(factor=0.3, patience=3, rtol=1e-3, atol=0.0, cooldown=0, min_scale=0.0, accumulation_size=3),
]


@pytest.mark.parametrize("cfg", OPTAX_SETTINGS, ids=lambda c: "p{patience}-cd{cooldown}-acc{accumulation_size}".format(**c))
def test_matches_optax_contrib_reduce_on_plateau(cfg):
    ours_node = plateau(
        preset="optax", on_nan="skip", factor=cfg["factor"], patience=cfg["patience"], cooldown=cfg["cooldown"],
        min_scale=cfg["min_scale"],
        threshold=cfg["rtol"] if cfg["rtol"] > 0 else cfg["atol"],
        threshold_mode="rel" if cfg["rtol"] > 0 else "abs",
    )
    traces = np.array(list(TRACES.values()))  # every trace, side by side
    theirs, _ = _run_transform(optax.contrib.reduce_on_plateau(**cfg), traces)
    ours, _ = _run_transform(reduce_on_plateau(ours_node, accumulation_size=cfg["accumulation_size"]), traces)
    np.testing.assert_array_equal(ours, theirs)
    assert ours[0, -1] < 1.0  # the constant trace reduces: the comparison is not vacuous


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optax_preset_compares_in_the_params_dtype_as_optax_does(dtype):
    # Steps of 1e-8 are improvements beyond atol=1e-9 in float64 and no change at all in float32.
    trace = 1.0 - 1e-8 * np.arange(8)
    node = plateau(preset="optax", patience=1, factor=0.5, threshold=1e-9, threshold_mode="abs")
    with jax.enable_x64(True):
        theirs, their_state = _run_transform(optax.contrib.reduce_on_plateau(factor=0.5, patience=1, atol=1e-9, rtol=0.0),
                                             trace, dtype)
        ours, states = _run_transform(reduce_on_plateau(node), trace, dtype)
    np.testing.assert_array_equal(ours, theirs)
    assert states.best.dtype == their_state.best_value.dtype == dtype
    assert (ours[-1] == 1.0) if dtype == "float64" else (ours[-1] < 1.0)  # the dtype decided


CONTROLLER_NODES = [
    plateau(preset="torch", patience=2, factor=0.5),
    plateau(preset="torch", patience=1, factor=0.5, cooldown=2, threshold=0.01, threshold_mode="abs"),
    plateau(preset="torch", patience=0, factor=0.5, min_scale=0.2),
    plateau(preset="keras", patience=2, factor=0.5),
    plateau(preset="keras", patience=1, factor=0.5, cooldown=2),
    plateau(preset="keras", patience=0, factor=0.1, cooldown=1, min_scale=0.005),
    plateau(preset="optax", patience=2, factor=0.5, cooldown=1),
    plateau(preset="optax", patience=0, factor=0.5),
    plateau(preset="torch", mode="max", patience=1, factor=0.5),
    plateau(preset="keras", mode="max", patience=1, factor=0.5, threshold=0.02),
]


@pytest.mark.parametrize("node", CONTROLLER_NODES, ids=str)
def test_matches_plateau_controller(node):
    """The jnp rules equal the host controller, value by value, on every trace (float64: bit for bit)."""
    sign = 1.0 if node.mode == "min" else -1.0
    traces = sign * np.array(list(TRACES.values()))
    # The host controller's optax preset compares in float32, as optax does with float32 params.
    dtype = jnp.float32 if node.preset == "optax" else None
    with jax.enable_x64(True):  # on_nan='skip': no NaN here, and no host callback under vmap
        got, states = _run_transform(reduce_on_plateau(dataclasses.replace(node, on_nan="skip")), traces, dtype)
    for i, name in enumerate(TRACES):
        c = PlateauController(node)
        expected = [c.observe(v) for v in traces[i]]
        np.testing.assert_array_equal(got[i], expected, err_msg=name)
        assert int(states.num_reductions[i, -1]) == c.num_reductions, name
        assert int(states.num_bad[i, -1]) == c.num_bad, name
        assert int(states.cooldown_counter[i, -1]) == c.cooldown_counter, name
        assert float(states.best[i, -1]) == c.best, name


def test_min_lr_and_eps_in_lr_units_with_schedule():
    s = constant(0.1)
    node = plateau(preset="torch", patience=0, factor=0.5, min_lr=0.02)
    values = [1.0] * 6
    c = PlateauController(node)
    expected = [c.observe(v, lr=0.1) for v in values]
    with jax.enable_x64(True):
        got, _ = _run_transform(reduce_on_plateau(node, schedule=s), values)
    np.testing.assert_array_equal(got, expected)
    assert got[-1] == pytest.approx(0.2)  # 0.1 * 0.2 = min_lr
    # eps: a reduction of the lr by <= eps is skipped (torch)
    tiny = plateau(preset="torch", patience=0, factor=0.5, eps=0.03)
    with jax.enable_x64(True):
        got, _ = _run_transform(reduce_on_plateau(tiny, schedule=s), values)
    c = PlateauController(tiny)
    assert got.tolist() == [c.observe(v, lr=0.1) for v in values]
    # 1 -> 0.5 moves the lr by 0.05 > eps; 0.5 -> 0.25 would move it by 0.025 <= eps: skipped
    assert got.tolist() == [1.0, 0.5, 0.5, 0.5, 0.5, 0.5]


def test_argument_errors():
    with pytest.raises(ValueError, match="min_lr"):
        reduce_on_plateau(plateau(min_lr=1e-3))
    with pytest.raises(ValueError, match="node"):
        reduce_on_plateau(constant(0.1))
    with pytest.raises(ValueError, match="accumulation_size"):
        reduce_on_plateau(plateau(), accumulation_size=0)


def test_nan_value_raises_or_is_skipped():
    skip = reduce_on_plateau(plateau(patience=0, factor=0.5, preset="keras", on_nan="skip"))
    scales, states = _run_transform(skip, [1.0, math.nan, 1.0, math.inf])
    assert scales.tolist() == [1.0, 1.0, 0.5, 0.5]
    assert float(states.best[-1]) == 1.0
    strict = reduce_on_plateau(plateau(patience=0, factor=0.5))
    with pytest.raises(Exception, match="not finite"):
        _run_transform(strict, [1.0, math.nan])[0].tolist()


def test_chain_with_sgd_and_current_lr():
    """sgd(schedule) then the plateau transform: the update is -s(k) * scale_k, and current_lr says so."""
    s = warmup(constant(0.1), steps=4)
    node = plateau(preset="keras", patience=1, factor=0.5)
    spe = 3
    opt = optax.chain(optax.sgd(to_optax(s)), reduce_on_plateau(node, accumulation_size=spe))
    params = jnp.zeros(())
    state = opt.init(params)
    losses = [1.0, 1.0, 1.0, 0.9, 0.9, 0.9] + [0.9] * 6
    c = PlateauController(node)
    step = jax.jit(lambda st, v: opt.update(jnp.ones(()), st, params, value=v))
    for k, v in enumerate(losses):
        assert current_lr(state, s) == pytest.approx(s(k) * c.scale, rel=1e-6)
        if (k + 1) % spe == 0:
            c.observe(v)  # the epoch's mean (constant within an epoch here)
        u, state = step(state, v)
        assert float(-u) == pytest.approx(s(k) * c.scale, rel=1e-6)
    assert c.num_reductions >= 1


def test_current_lr_through_inject_hyperparams():
    s = warmup(constant(0.1), steps=4)
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=s)
    params = jnp.zeros(())
    state = opt.init(params)
    assert current_lr(state) == pytest.approx(s(0))  # before any update: the first update's lr
    for k in range(6):
        _, state = opt.update(jnp.ones(()), state, params)
        assert current_lr(state) == pytest.approx(s(k))  # the lr the latest update applied
        assert current_lr(state, s) == pytest.approx(s(k + 1))  # the next update's
    with pytest.raises(ValueError, match="stores no learning rate"):
        current_lr(optax.sgd(0.1).init(params))
    with pytest.raises(ValueError, match="no update counter"):
        current_lr(optax.sgd(0.1).init(params), s)


def test_state_is_a_pytree_of_arrays():
    tx = reduce_on_plateau(plateau())
    st = tx.init(jnp.zeros(3))
    assert isinstance(st, PlateauState)
    assert all(isinstance(x, jax.Array) and x.shape == () for x in jax.tree.leaves(st))
