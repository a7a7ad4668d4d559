"""The plateau node, its controller and ScheduleState, checked against the REAL implementations:
torch.optim.lr_scheduler.ReduceLROnPlateau, keras.callbacks.ReduceLROnPlateau (driven through
on_epoch_end on a tiny compiled model) and optax.contrib.reduce_on_plateau, epoch by epoch."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lrlab.schedules import constant, from_config, warmup
from lrlab.schedules._plateau import PlateauController, ScheduleState, plateau, simulate

RNG = np.random.default_rng(1234)
TRACES = {
    "constant": [1.0] * 24,
    "noisy_decreasing": [float(v) for v in 1.0 / (1.0 + 0.3 * np.arange(40)) + 0.04 * RNG.random(40)],
    "improving_then_flat": [1.0, 0.8, 0.65, 0.55, 0.5] + [0.5] * 12 + [0.49995, 0.3] + [0.3] * 8,
    "slow_descent": [100.0 - 0.007 * i for i in range(20)],  # rel 1e-4 sees a gain every 2 epochs
    "oscillating": [float(v) for v in 0.5 + 0.1 * np.sin(np.arange(36)) + 0.01 * RNG.random(36)],
}
# (factor, patience, cooldown, threshold, threshold_mode, min_lr)
SETTINGS = [
    (0.1, 0, 0, 1e-4, "rel", 0.0),
    (0.5, 2, 0, 1e-4, "rel", 0.0),
    (0.5, 1, 1, 1e-4, "abs", 0.0),
    (0.5, 2, 2, 0.01, "abs", 0.0),
    (0.3, 3, 1, 0.05, "rel", 0.0),
    (0.5, 1, 0, 1e-4, "rel", 0.004),  # min_lr reached: reductions stop, counters go on
]
BASE_LR = 0.1


def _node(preset, factor, patience, cooldown, threshold, threshold_mode, min_lr, **kw):
    return plateau(factor=factor, patience=patience, cooldown=cooldown, threshold=threshold,
                   threshold_mode=threshold_mode, min_lr=min_lr, preset=preset, **kw)


def _lrlab_trace(node, trace, lr=BASE_LR):
    c = PlateauController(node)
    return [lr * c.observe(x, lr=lr) for x in trace]


# ---- torch -----------------------------------------------------------------------------------
def _torch_trace(trace, factor, patience, cooldown, threshold, mode, min_lr, lr=BASE_LR, metric_mode="min", eps=1e-8):
    import torch

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    s = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=metric_mode, factor=factor, patience=patience, cooldown=cooldown,
        threshold=threshold, threshold_mode=mode, min_lr=min_lr, eps=eps,
    )
    out = []
    for x in trace:
        s.step(x)
        out.append(opt.param_groups[0]["lr"])
    return out


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("trace", sorted(TRACES))
def test_torch_preset_matches_torch_reduce_lr_on_plateau(trace, setting):
    got = _lrlab_trace(_node("torch", *setting), TRACES[trace])
    want = _torch_trace(TRACES[trace], *setting)
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("trace", ["noisy_decreasing", "oscillating"])
def test_torch_preset_max_mode(trace):
    flipped = [1.0 - x for x in TRACES[trace]]
    for setting in SETTINGS[:5]:
        got = _lrlab_trace(_node("torch", *setting, mode="max"), flipped)
        np.testing.assert_allclose(got, _torch_trace(flipped, *setting, metric_mode="max"), rtol=1e-12)


def test_torch_eps_rule_skips_tiny_reductions_in_lr_units():
    # lr 1e-7: the first reduction lowers it by 5e-8 > eps=1e-8, then 2.5e-8, 1.25e-8, then 6.25e-9 <= eps.
    trace = [1.0] * 12
    got = _lrlab_trace(_node("torch", 0.5, 0, 0, 1e-4, "rel", 0.0), trace, lr=1e-7)
    want = _torch_trace(trace, 0.5, 0, 0, 1e-4, "rel", 0.0, lr=1e-7)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[-1] == pytest.approx(1e-7 / 8)


# ---- keras -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keras_model():
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=BASE_LR), loss="mse")
    return model


def _keras_trace(model, trace, factor, patience, cooldown, threshold, mode, min_lr, metric_mode="min"):
    import keras

    assert mode == "abs"  # Keras' min_delta is absolute
    model.optimizer.learning_rate = BASE_LR
    cb = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=factor, patience=patience,
                                           mode=metric_mode, min_delta=threshold, cooldown=cooldown, min_lr=min_lr)
    cb.set_model(model)
    cb.on_train_begin()
    out = []
    for epoch, x in enumerate(trace):
        cb.on_epoch_end(epoch, {"val_loss": x})
        out.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
    return out


@pytest.mark.keras
@pytest.mark.parametrize("trace", sorted(TRACES))
def test_keras_preset_matches_keras_callback(keras_model, trace):
    for factor, patience, cooldown, threshold, _, min_lr in SETTINGS:
        for metric_mode in ("min", "max"):
            values = TRACES[trace] if metric_mode == "min" else [1.0 - x for x in TRACES[trace]]
            setting = (factor, patience, cooldown, threshold, "abs", min_lr)
            got = _lrlab_trace(_node("keras", *setting, mode=metric_mode), values)
            want = _keras_trace(keras_model, values, *setting, metric_mode=metric_mode)
            # Keras keeps the lr in a float32 variable: agreement to float32 rounding.
            np.testing.assert_allclose(got, want, rtol=2e-7, err_msg=f"{setting} {metric_mode}")


def _drops(preset, patience, cooldown, n=10):
    c = PlateauController(plateau(patience=patience, cooldown=cooldown, preset=preset, factor=0.5))
    out, prev = [], 1.0
    for i in range(n):
        scale = c.observe(1.0)
        if scale < prev:
            out.append(i)
        prev = scale
    return out


def test_keras_cooldown_is_off_by_one_like_keras():
    # anchors quirk 12 (0-based epochs, constant metric, patience=2): cooldown=1 acts like 0.
    assert _drops("keras", 2, 0) == [2, 4, 6, 8]
    assert _drops("keras", 2, 1) == [2, 4, 6, 8]
    assert _drops("keras", 2, 2) == [2, 5, 8]
    assert _drops("torch", 2, 1) == [3, 7]  # torch: patience+1 bad epochs, then a real cooldown


# ---- optax -----------------------------------------------------------------------------------
_OPTAX_CACHE: dict = {}


def _optax_trace(trace, factor, patience, cooldown, threshold, mode, min_scale=0.0):
    import jax
    import jax.numpy as jnp
    from optax import contrib

    key = (factor, patience, cooldown, threshold, mode, min_scale)
    if key not in _OPTAX_CACHE:  # one jitted update per setting, shared by the traces
        rtol, atol = (threshold, 0.0) if mode == "rel" else (0.0, threshold)
        tx = contrib.reduce_on_plateau(factor=factor, patience=patience, rtol=rtol, atol=atol,
                                       cooldown=cooldown, min_scale=min_scale)
        _OPTAX_CACHE[key] = (tx, jax.jit(lambda p, st, v, tx=tx: tx.update(p, st, p, value=v)[1]))
    tx, update = _OPTAX_CACHE[key]
    params = jnp.zeros(1)
    state = tx.init(params)
    out = []
    for x in trace:
        state = update(params, state, jnp.asarray(x, dtype=jnp.float32))
        out.append(float(state.scale))
    return out


@pytest.mark.jax
@pytest.mark.parametrize("trace", sorted(TRACES))
def test_optax_preset_matches_optax_reduce_on_plateau(trace):
    for factor, patience, cooldown, threshold, mode, _ in SETTINGS:
        for min_scale in (0.0, 0.02):
            node = plateau(factor=factor, patience=patience, cooldown=cooldown, threshold=threshold,
                           threshold_mode=mode, min_scale=min_scale, preset="optax")
            c = PlateauController(node)
            got = [c.observe(x) for x in TRACES[trace]]
            want = _optax_trace(TRACES[trace], factor, patience, cooldown, threshold, mode, min_scale)
            # optax multiplies its scale in float32: up to ~20 roundings of 6e-8 each.
            np.testing.assert_allclose(got, want, rtol=2e-6, err_msg=str((factor, patience, cooldown, threshold, mode)))


# ---- hand-computed tables --------------------------------------------------------------------
@pytest.mark.parametrize(("preset", "at"), [("torch", [3, 6, 9]), ("keras", [2, 4, 6, 8]), ("optax", [2, 4, 6, 8])])
def test_constant_metric_reduction_epochs(preset, at):
    # anchors "measured constant metric, patience=2: PT reduces at steps 4,7; K3 and OX at 3,5,7" (1-based)
    assert _drops(preset, 2, 0) == at


def test_optax_patience_zero_reduces_even_on_improvement():
    c = PlateauController(plateau(patience=0, preset="optax", factor=0.5))
    assert [c.observe(x) for x in [3.0, 2.0, 1.0]] == [0.5, 0.25, 0.125]


def test_relative_vs_absolute_threshold_quirk_11():
    trace = [100.0 - 0.005 * i for i in range(20)]
    torch_like = PlateauController(plateau(patience=1))
    keras_like = PlateauController(plateau(patience=1, preset="keras"))  # abs 1e-4: each step improves
    assert [torch_like.observe(x) for x in trace][2] == pytest.approx(0.1)
    assert all(keras_like.observe(x) == 1.0 for x in trace)


def test_min_lr_is_in_lr_units_and_checked_at_reduction():
    s = constant(0.1) * plateau(patience=0, factor=0.1, min_lr=0.002)
    st = ScheduleState(s)
    assert [st.observe(1.0) for _ in range(4)] == pytest.approx([0.1, 0.01, 0.002, 0.002])
    assert st.controllers["plateau"].num_reductions == 2
    bare = PlateauController(plateau(min_lr=1e-3, patience=0))
    bare.observe(1.0)
    with pytest.raises(ValueError, match="min_lr"):
        bare.observe(1.0)  # a reduction without the lr it multiplies


# ---- NaN and bad metrics ---------------------------------------------------------------------
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None, "x"])
def test_non_finite_metric_raises_naming_the_metric(bad):
    c = PlateauController(plateau(patience=1))
    c.observe(1.0)
    with pytest.raises(ValueError, match="metric"):
        c.observe(bad)
    assert c.num_observed == 1 and c.num_bad == 0  # nothing corrupted


def test_skip_ignores_nan_like_the_trace_without_it():
    trace = [1.0, 0.9, math.nan, 0.9, math.nan, 0.9, 0.9, 0.8, math.inf, 0.8, 0.8, 0.8]
    skip = PlateauController(plateau(patience=1, factor=0.5, on_nan="skip"))
    got = [skip.observe(x) for x in trace]
    clean = PlateauController(plateau(patience=1, factor=0.5))
    want, last = [], 1.0
    for x in trace:
        if math.isfinite(x):
            last = clean.observe(x)
        want.append(last)
    assert got == want and skip.num_observed == len(trace)
    # torch itself counts NaN as a bad epoch (NaN < best is False): lrlab refuses to guess.
    assert _torch_trace([1.0, math.nan, math.nan], 0.5, 1, 0, 1e-4, "rel", 0.0)[-1] == 0.05


# ---- controller and runner state -------------------------------------------------------------
@pytest.mark.parametrize("preset", ["torch", "keras", "optax"])
def test_controller_state_dict_round_trip_mid_trace(preset):
    node = plateau(patience=2, cooldown=1, factor=0.5, preset=preset, threshold_mode="abs", threshold=0.01)
    trace = TRACES["noisy_decreasing"] + TRACES["constant"]
    full = PlateauController(node)
    want = [full.observe(x) for x in trace]
    a = PlateauController(node)
    got = [a.observe(x) for x in trace[:17]]
    saved = json.loads(json.dumps(a.state_dict()))
    b = PlateauController(node)
    b.load_state_dict(saved)
    got += [b.observe(x) for x in trace[17:]]
    assert got == want


def test_controller_load_rejects_bad_state():
    c = PlateauController(plateau())
    good = c.state_dict()
    with pytest.raises(ValueError, match="key"):
        c.load_state_dict({**good, "key": "other"})
    with pytest.raises(ValueError, match="scale"):
        c.load_state_dict({**good, "scale": 2.0})
    with pytest.raises(ValueError, match="num_bad"):
        c.load_state_dict({**good, "num_bad": -1})
    with pytest.raises(ValueError, match="keys"):
        c.load_state_dict({"scale": 1.0})


def test_schedule_state_resume_is_exact_and_json():
    s = warmup(constant(0.1), steps=5) * plateau(patience=1, factor=0.5, cooldown=1)
    metrics = TRACES["improving_then_flat"]

    def run(st, epochs):
        out = []
        for m in epochs:
            for _ in range(3):
                out.append(st.lr)
                st.advance()
            st.observe(m)
        return out

    full = run(ScheduleState(s), metrics)
    a = ScheduleState(s)
    first = run(a, metrics[:9])
    blob = json.dumps(a.state_dict())
    b = ScheduleState(from_config(json.loads(blob)["schedule"]))
    b.load_state_dict(json.loads(blob))
    assert first + run(b, metrics[9:]) == full  # bit for bit
    assert b.step == 3 * len(metrics)


def test_schedule_state_load_checks_the_schedule():
    a = ScheduleState(constant(0.1) * plateau(patience=1))
    b = ScheduleState(constant(0.2) * plateau(patience=1))
    with pytest.raises(ValueError, match=r"saved for schedule .*0\.1"):
        b.load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="not an lrlab ScheduleState"):
        b.load_state_dict({"step": 3})


def test_schedule_state_basics():
    st = ScheduleState(constant(0.1, steps=2) >> constant(0.01))
    assert st.lr == 0.1 and st.state == {}
    assert st.advance(2) == 2 and st.lr == 0.01 and st.lr_at(0) == 0.1
    with pytest.raises(ValueError, match="no plateau node"):
        st.observe(1.0)
    with pytest.raises(ValueError, match="n must be an integer"):
        st.advance(-1)
    with pytest.raises(ValueError, match="step must be an integer"):
        ScheduleState(constant(0.1), step=-1)
    with pytest.raises(ValueError, match="resolve"):
        ScheduleState(constant(0.1, steps="5ep"))


def test_schedule_state_two_keys_and_mapping_metrics():
    s = constant(1.0) * plateau(key="val", patience=0, factor=0.5) * plateau(key="train", patience=0, factor=0.1)
    st = ScheduleState(s)
    st.observe({"val": 1.0, "train": 1.0})
    st.observe({"val": 0.5, "train": 1.0})  # val improves, train does not
    assert st.state == {"val": 1.0, "train": 0.1} and st.lr == pytest.approx(0.1)
    with pytest.raises(ValueError, match="plateau keys"):
        st.observe({"val": 1.0})
    with pytest.raises(ValueError, match="share key"):
        ScheduleState(constant(1.0) * plateau(patience=1) * plateau(patience=2))


def test_plateau_node_evaluates_on_every_backend():
    import torch

    node = constant(0.1) * plateau()
    assert node(3) == 0.1 and node(3, {"plateau": 0.25}) == 0.025
    v = node(np.arange(4.0), {"plateau": 0.5})
    assert v.shape == (4,) and np.allclose(v, 0.05)
    t = node(torch.arange(4), {"plateau": 0.5})
    assert t.shape == (4,) and torch.allclose(t, torch.full((4,), 0.05, dtype=torch.float64))
    assert plateau().duration is None and plateau().is_resolved()


def test_plateau_text_and_config_round_trip():
    p = plateau(patience=3, preset="keras", mode="max")
    assert str(p) == "plateau(mode=max, patience=3, preset=keras)"
    assert from_config(json.loads(json.dumps(p.to_config()))) == p


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"factor": 1.0}, "factor"), ({"factor": 0.0}, "factor"), ({"factor": math.nan}, "factor"),
    ({"patience": -1}, "patience"), ({"patience": 1.5}, "patience"), ({"cooldown": -2}, "cooldown"),
    ({"mode": "up"}, "mode"), ({"threshold": -1e-4}, "threshold"), ({"threshold": 1.0}, "threshold"),
    ({"threshold_mode": "pct"}, "threshold_mode"), ({"min_scale": 1.5}, "min_scale"),
    ({"min_lr": -1.0}, "min_lr"), ({"eps": -1.0}, "eps"), ({"preset": "timm"}, "preset"),
    ({"on_nan": "zero"}, "on_nan"), ({"key": "a b"}, "key"), ({"patience": True}, "patience"),
])
def test_plateau_validation_names_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        plateau(**kwargs)


# ---- simulate --------------------------------------------------------------------------------
def test_simulate_table():
    s = constant(1.0) * plateau(patience=1, factor=0.5)
    lrs = simulate(s, [3.0, 3.0, 3.0, 2.0, 2.0, 2.0], steps_per_epoch=2)
    # epoch 2 is the second bad one (reduce); 2.0 improves at epoch 3; epoch 5 reduces after the end.
    assert lrs.tolist() == [1.0] * 6 + [0.5] * 6


def test_simulate_resolves_epochs_and_matches_schedule_state():
    s = warmup(constant(0.1), steps="1ep") * plateau(patience=0, factor=0.5)
    lrs = simulate(s, [1.0, 1.0, 0.5], steps_per_epoch=4)
    assert lrs.shape == (12,)
    assert lrs[:4].tolist() == pytest.approx([0.0, 0.025, 0.05, 0.075])
    assert lrs[4:8].tolist() == pytest.approx([0.1] * 4) and lrs[8:].tolist() == pytest.approx([0.05] * 4)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        simulate(s, [1.0], steps_per_epoch=0)
