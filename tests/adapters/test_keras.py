"""Keras adapter on the torch backend (in process) and the JAX backend (one subprocess).

Tolerance for lrs computed by Keras: Keras evaluates schedules in its floatx, float32 (2^-24 ≈ 6e-8
relative rounding per operation). A formula chains ~10-20 roundings and cos/exp/pow turn a phase
error into an lr error scaled by the curve's amplitude, so the float32 value differs from the
float64 schedule by O(1e-6) of the curve's peak (measured worst: 1.4e-6 for a cyclic schedule).
We compare with ``atol = 1e-5 * max|schedule|`` over the window: relative error alone is
meaningless where a curve passes through 0.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from lrlab.adapters.keras import KerasSchedule, LearningRateScheduler, PlateauCallback
from lrlab.schedules import examples
from lrlab.schedules._combinators import constant, take, warmup
from lrlab.schedules._plateau import PlateauController, plateau

pytestmark = pytest.mark.keras

_SHARED = Path(__file__).with_name("_keras_jax_check.py")
_spec = importlib.util.spec_from_file_location("lrlab_tests_keras_shared", _SHARED)
shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shared)
FIT_SPE, FIT_EPOCHS = shared.FIT_SPE, shared.FIT_EPOCHS
PLATEAU_SCHEDULE, PLATEAU_TRACE = shared.PLATEAU_SCHEDULE, shared.PLATEAU_TRACE
LrRecorder, TraceMetric, data, tiny_model = shared.LrRecorder, shared.TraceMetric, shared.data, shared.tiny_model
expected_fit_plateau, expected_step_scheduler = shared.expected_fit_plateau, shared.expected_step_scheduler

N_STEPS = 300
EXAMPLES = {f"{name}[{i}]": s for name, group in examples().items() for i, s in enumerate(group)}


def _close(got, expected, what="", peak=None):
    """|got - expected| <= 1e-5 * peak, peak = max|expected| unless given (see the module docstring)."""
    expected = np.asarray(expected, np.float64)
    peak = float(np.max(np.abs(expected))) if peak is None else peak
    atol = 1e-5 * max(peak, 1e-12)
    np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=0, atol=atol, err_msg=what)


def _probe_steps(s, n=N_STEPS):
    """Steps where the optimizer is checked update by update: edges, boundaries ±1 and a stride."""
    pts = {0, 1, n - 1, *range(0, n, 23)}
    for b in [*s.boundaries(), *([s.duration] if s.duration is not None else [])]:
        pts.update({b - 1, b, b + 1})
    return sorted(p for p in pts if 0 <= p < n)


# ---- parity on the torch backend ----------------------------------------------------------------
@pytest.mark.parametrize("sid", list(EXAMPLES))
def test_sgd_applies_the_schedule_torch(sid):
    """The lr SGD really applies (recovered from the update of a weight reset to 0 with gradient 1)."""
    s = EXAMPLES[sid]
    ks = KerasSchedule(s)
    var = keras.Variable(0.0)
    opt = keras.optimizers.SGD(learning_rate=ks)
    opt.build([var])
    one = keras.ops.ones(())
    steps = _probe_steps(s)
    applied = []
    for k in steps:
        opt.iterations.assign(k)  # the update about to be applied is update number k
        var.assign(0.0)
        opt.apply([one], [var])
        applied.append(-float(keras.ops.convert_to_numpy(var)))
    expected = s.values(N_STEPS)
    _close(applied, expected[steps], sid, peak=float(np.abs(expected).max()))
    # and the whole curve, as the compiled step computes it (vector of steps, same ops)
    _close(keras.ops.convert_to_numpy(ks(keras.ops.arange(N_STEPS))), expected, sid)


# ---- the same on the JAX backend, in one subprocess ---------------------------------------------
def _run_jax_check(tmp_path):
    out = tmp_path / "results.json"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(_SHARED), str(out), str(N_STEPS)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.jax
def test_jax_backend(tmp_path):
    """One subprocess on the JAX backend (one test, so xdist never starts it twice):

    * stateless_apply inside jax.jit (what Keras' JAX trainer runs) applies every schedule;
    * model.fit with a KerasSchedule * plateau and PlateauCallback: reductions reach the compiled
      step (the callback retraces it) and move the weight;
    * LearningRateScheduler(unit='step') sets the lr before each batch (state synced);
    * the plateau state survives model.save / load_model.
    """
    res = _run_jax_check(tmp_path)
    assert res["backend"] == "jax"
    assert set(res["parity"]) == set(EXAMPLES)
    for sid, lrs in res["parity"].items():
        _close(lrs, EXAMPLES[sid].values(N_STEPS), sid)

    fit = res["fit_plateau"]
    np.testing.assert_allclose(fit["lrs"], expected_fit_plateau(fit["trace"]), rtol=1e-6)
    assert min(fit["lrs"]) < max(fit["lrs"])  # a reduction happened inside compiled training
    np.testing.assert_allclose(fit["deltas"], fit["lrs"], rtol=1e-6, atol=5e-7)  # and moved the weight
    np.testing.assert_allclose(res["step_scheduler"]["lrs"], expected_step_scheduler(), rtol=1e-6)
    ks = KerasSchedule.from_config(res["saved_config"])
    assert ks.scales == res["saved_scales"] and min(ks.scales.values()) < 1.0


# ---- fit with a KerasSchedule and the plateau callback (torch backend) ----------------------------
def test_fit_with_schedule_and_plateau_callback_matches_keras_reduce_lr_on_plateau():
    """A KerasSchedule ``constant * plateau(preset='keras')`` reduces exactly where Keras' own
    ReduceLROnPlateau (on a float lr) does, on the same metric trace; then with a warmup+cosine-like
    curve the applied lr is the curve times that multiplier, step by step."""
    trace = [1.0, 0.9, 0.9, 0.9, 0.85, 0.85, 0.85, 0.85, 0.84995, 0.7, 0.7, 0.7]
    x, y = data()
    ref_model = tiny_model(0.125)
    ref_rec = LrRecorder()
    ref_model.fit(x, y, batch_size=4, epochs=len(trace), shuffle=False, verbose=0, callbacks=[
        TraceMetric(trace), keras.callbacks.ReduceLROnPlateau(monitor="trace", mode="min", factor=0.5, patience=1,
                                                             min_delta=1e-4, cooldown=1), ref_rec])
    ks = KerasSchedule(constant(0.125) * plateau(preset="keras", factor=0.5, patience=1, threshold=1e-4, cooldown=1))
    model = tiny_model(ks)
    rec = LrRecorder()
    model.fit(x, y, batch_size=4, epochs=len(trace), shuffle=False, verbose=0,
              callbacks=[TraceMetric(trace), PlateauCallback(monitor="trace"), rec])
    assert rec.lrs == ref_rec.lrs
    assert rec.deltas == pytest.approx(ref_rec.deltas, rel=1e-6)
    assert len(set(rec.lrs)) >= 3  # reduced at least twice

    # a non-constant curve times the multiplier, through the JAX-shared scenario
    model = tiny_model(KerasSchedule(PLATEAU_SCHEDULE))
    rec = LrRecorder()
    model.fit(x, y, batch_size=4, epochs=FIT_EPOCHS, shuffle=False, verbose=0,
              callbacks=[TraceMetric(PLATEAU_TRACE), PlateauCallback(monitor="trace"), rec])
    np.testing.assert_allclose(rec.lrs, expected_fit_plateau(PLATEAU_TRACE), rtol=1e-6)
    # the weight really moved by lr; w (|w| <= ~1.5) is float32, so each read is within ulp(1.5) ~ 1.2e-7
    np.testing.assert_allclose(rec.deltas, rec.lrs, rtol=1e-6, atol=5e-7)



def test_plateau_callback_errors():
    x, y = data()
    with pytest.raises(ValueError, match="no plateau node"):
        tiny_model(KerasSchedule(constant(0.1))).fit(x, y, epochs=1, verbose=0, callbacks=[PlateauCallback("loss")])
    with pytest.raises(ValueError, match="drives a KerasSchedule"):
        tiny_model(0.1).fit(x, y, epochs=1, verbose=0, callbacks=[PlateauCallback("loss")])
    with pytest.raises(ValueError, match=r"monitor='val_loss' is not in the logs of epoch 0"):
        tiny_model(KerasSchedule(constant(0.1) * plateau())).fit(x, y, epochs=1, verbose=0, callbacks=[PlateauCallback()])
    with pytest.raises(ValueError, match="not finite"):
        tiny_model(KerasSchedule(constant(0.1) * plateau())).fit(
            x, y, epochs=1, verbose=0, callbacks=[TraceMetric([float("nan")]), PlateauCallback("trace")])
    # on_nan='skip': NaN and missing values are ignored, no counter moves
    ks = KerasSchedule(constant(0.1) * plateau(patience=0, preset="keras", on_nan="skip"))
    tiny_model(ks).fit(x, y, epochs=3, verbose=0, callbacks=[TraceMetric([1.0, float("nan"), 1.0]), PlateauCallback("trace")])
    assert ks.controllers["plateau"].num_reductions == 1  # only the third epoch counted as bad
    with pytest.raises(ValueError, match="monitor"):
        PlateauCallback(monitor="")


def test_keras_own_callback_refuses_a_schedule_at_the_start_of_fit():
    """Why PlateauCallback exists: Keras' ReduceLROnPlateau cannot touch a schedule's lr (quirk 16).
    Keras would raise at its first reduction; with the adapter imported it refuses before any batch."""
    x, y = data()
    model = tiny_model(KerasSchedule(constant(0.1)))
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau cannot reduce .*KerasSchedule.*PlateauCallback"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[
            TraceMetric([1.0, 1.0]), keras.callbacks.ReduceLROnPlateau(monitor="trace", mode="min", patience=0)])
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0  # not a single update ran
    plain = tiny_model(0.1)  # a float lr: Keras' callback works as before
    plain.fit(x, y, epochs=2, verbose=0, callbacks=[
        TraceMetric([1.0, 1.0]), keras.callbacks.ReduceLROnPlateau(monitor="trace", mode="min", patience=0)])
    assert float(keras.ops.convert_to_numpy(plain.optimizer.learning_rate)) == pytest.approx(0.01)


# ---- save / load ----------------------------------------------------------------------------------
def test_save_load_round_trip_resumes_the_curve_and_the_plateau_state(tmp_path):
    """Train 4 epochs, save, load, continue with initial_epoch=4: same lrs and weights as 8 straight."""
    x, y = data()
    trace = [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8]

    straight = tiny_model(KerasSchedule(PLATEAU_SCHEDULE))
    rec = LrRecorder()
    straight.fit(x, y, batch_size=4, epochs=8, shuffle=False, verbose=0,
                 callbacks=[TraceMetric(trace), PlateauCallback("trace"), rec])

    first = tiny_model(KerasSchedule(PLATEAU_SCHEDULE))
    rec1 = LrRecorder()
    first.fit(x, y, batch_size=4, epochs=4, shuffle=False, verbose=0,
              callbacks=[TraceMetric(trace), PlateauCallback("trace"), rec1])
    path = tmp_path / "m.keras"
    first.save(path)
    loaded = keras.saving.load_model(path)
    ks = loaded.optimizer._learning_rate
    assert isinstance(ks, KerasSchedule) and ks.schedule == PLATEAU_SCHEDULE
    assert ks.scales == first.optimizer._learning_rate.scales
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 4 * FIT_SPE
    rec2 = LrRecorder()
    loaded.fit(x, y, batch_size=4, epochs=8, initial_epoch=4, shuffle=False, verbose=0,
               callbacks=[TraceMetric(trace), PlateauCallback("trace"), rec2])
    assert rec1.lrs + rec2.lrs == rec.lrs
    np.testing.assert_array_equal(loaded.get_weights()[0], straight.get_weights()[0])
    assert ks.controllers["plateau"].num_reductions >= 1  # the restored state was not trivial


def test_config_is_the_lrlab_config_and_validates():
    s = warmup(constant(0.1), steps=5)
    ks = KerasSchedule(s, offset=7)
    cfg = ks.get_config()
    assert cfg == {"schedule": s.to_config(), "offset": 7, "gradient_accumulation_steps": None}
    assert json.loads(json.dumps(cfg)) == cfg
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(ks))
    assert isinstance(again, KerasSchedule) and again.schedule == s and again.offset == 7
    assert KerasSchedule.from_config(s.to_config()).schedule == s  # a bare lrlab config works too
    assert float(ks(0)) == pytest.approx(s(7))
    with pytest.raises(ValueError, match="offset"):
        KerasSchedule(s, offset=-1)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        KerasSchedule(s, gradient_accumulation_steps=0)
    with pytest.raises(ValueError, match="resolve"):
        KerasSchedule(take(constant(0.1), steps="10%"))
    with pytest.raises(ValueError, match="plateau_state"):
        KerasSchedule(s, plateau_state={"plateau": {}})
    with pytest.raises(ValueError, match="lrlab schedule"):
        KerasSchedule(0.1)


# ---- LearningRateScheduler: fn(epoch, lr), lrlab schedules, epoch and step cadence, resume ---------
def step_decay(epoch):
    """The seeds' Keras step decay (000): lr0 * drop^floor((1 + epoch) / epochs_drop)."""
    import math

    return 0.1 * math.pow(0.5, math.floor((1 + epoch) / 3.0))


def custom_lr_scheduler(epoch, lr):
    """The seeds' custom decay (002): halve every 3 epochs, not at epoch 0."""
    return lr * 0.5 if epoch % 3 == 0 and epoch else lr


@pytest.mark.parametrize("fn", [step_decay, custom_lr_scheduler], ids=lambda f: f.__name__)
def test_fn_callback_matches_keras_learning_rate_scheduler(fn):
    x, y = data()
    runs = []
    for cb in (keras.callbacks.LearningRateScheduler(fn), LearningRateScheduler(fn)):
        model = tiny_model(0.1)
        rec = LrRecorder()
        model.fit(x, y, batch_size=4, epochs=8, shuffle=False, verbose=0, callbacks=[cb, rec])
        runs.append((rec.epoch_lrs, model.get_weights()[0]))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert len(set(runs[0][0])) > 1


def test_lrlab_schedule_epoch_and_step_cadence_and_initial_epoch_resume():
    x, y = data()
    s = warmup(take(constant(0.1), steps=10) >> constant(0.01), steps=4)
    # epoch cadence: lr of epoch e is s(e); resuming at epoch 3 on a fresh model gives s(3), s(4), ...
    for initial in (0, 3):
        rec = LrRecorder()
        tiny_model(0.5).fit(x, y, batch_size=4, epochs=6, initial_epoch=initial, shuffle=False, verbose=0,
                            callbacks=[LearningRateScheduler(s, unit="epoch"), rec])
        assert rec.epoch_lrs == pytest.approx([s(e) for e in range(initial, 6)], rel=1e-6)
    # step cadence: lr of batch b of epoch e is s(e * steps_per_epoch + b), also after a resume
    for initial in (0, 2):
        lrs = shared.step_scheduler_run(initial)
        assert lrs == pytest.approx(expected_step_scheduler(initial), rel=1e-6)


def test_learning_rate_scheduler_feeds_plateau_nodes_from_monitor():
    x, y = data()
    node = plateau(patience=0, factor=0.5, preset="keras")
    s = constant(0.2) * node
    rec = LrRecorder()
    trace = [1.0, 1.0, 0.5, 0.5, 0.5]
    tiny_model(0.5).fit(x, y, batch_size=4, epochs=len(trace), shuffle=False, verbose=0,
                        callbacks=[TraceMetric(trace), LearningRateScheduler(s, unit="epoch", monitor="trace"), rec])
    c = PlateauController(node)
    expected = []
    for v in trace:
        expected.append(0.2 * c.scale)
        c.observe(v)
    assert rec.epoch_lrs == pytest.approx(expected, rel=1e-6)


def test_learning_rate_scheduler_errors():
    x, y = data()
    with pytest.raises(ValueError, match="float learning rate"):
        tiny_model(KerasSchedule(constant(0.1))).fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(constant(0.1), unit="epoch")])
    with pytest.raises(ValueError, match="must return a finite number"):
        tiny_model(0.1).fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: "fast")])
    with pytest.raises(ValueError, match="unit"):
        LearningRateScheduler(constant(0.1), unit="batch")
    with pytest.raises(ValueError, match="monitor"):
        LearningRateScheduler(constant(0.1) * plateau())
    with pytest.raises(ValueError, match="no plateau node"):
        LearningRateScheduler(constant(0.1), monitor="loss")
    with pytest.raises(ValueError, match="steps_per_epoch"):
        LearningRateScheduler(constant(0.1), unit="step", steps_per_epoch=0)
    with pytest.raises(ValueError, match="schedule must be"):
        LearningRateScheduler(0.1)
    with pytest.raises(ValueError, match=r"must take \(epoch\)"):
        LearningRateScheduler(lambda: 0.1)


def test_offset_restarts_a_fresh_optimizer_mid_curve():
    """Weights-only restore (iterations back at 0): offset = initial_epoch * steps_per_epoch."""
    x, y = data()
    s = warmup(take(constant(0.1), steps=10) >> constant(0.01), steps=4)
    rec = LrRecorder()
    tiny_model(KerasSchedule(s, offset=2 * FIT_SPE)).fit(
        x, y, batch_size=4, epochs=4, initial_epoch=2, shuffle=False, verbose=0, callbacks=[rec])
    assert rec.lrs == pytest.approx([s(k) for k in range(2 * FIT_SPE, 4 * FIT_SPE)], rel=1e-6)


def test_gradient_accumulation_counts_updates_not_micro_batches():
    """Keras gives schedules its raw micro-batch counter; gradient_accumulation_steps undoes that."""
    s = warmup(take(constant(0.1), steps=6) >> constant(0.01), steps=3)
    var = keras.Variable(0.0)
    opt = keras.optimizers.SGD(learning_rate=KerasSchedule(s, gradient_accumulation_steps=2), gradient_accumulation_steps=2)
    opt.build([var])
    applied = []
    for _ in range(12):  # 12 updates = 24 micro-batches
        before = float(keras.ops.convert_to_numpy(var))
        for _ in range(2):
            opt.apply([keras.ops.ones(())], [var])
        applied.append(before - float(keras.ops.convert_to_numpy(var)))
    assert applied == pytest.approx([s(k) for k in range(12)], rel=1e-5, abs=1e-7)
    assert KerasSchedule.from_config(opt._learning_rate.get_config()).gradient_accumulation_steps == 2


def test_fn_returning_a_tensor_is_accepted():
    """The seeds' exponential example (003) returns a tensor; Keras' own callback rejects it, ours takes it."""
    import math

    def custom_exp(epoch):
        return 0.01 if epoch < 2 else 0.01 * keras.ops.exp(0.1 * (2 - epoch))

    x, y = data()
    rec = LrRecorder()
    tiny_model(0.5).fit(x, y, batch_size=4, epochs=5, shuffle=False, verbose=0,
                        callbacks=[LearningRateScheduler(custom_exp), rec])
    assert rec.epoch_lrs == pytest.approx([0.01, 0.01, 0.01, 0.01 * math.exp(-0.1), 0.01 * math.exp(-0.2)], rel=1e-6)
    with pytest.raises(ValueError, match="should be a float"):
        tiny_model(0.5).fit(x, y, epochs=3, verbose=0, callbacks=[keras.callbacks.LearningRateScheduler(custom_exp)])


# ---- misuse gives errors that say what to do (issue 10) -----------------------------------------
def test_an_lrlab_schedule_given_straight_to_a_keras_optimizer_names_kerasschedule():
    x, y = data()
    with pytest.raises(TypeError, match=r"called without a step.*learning_rate=lrlab\.adapters\.keras\.KerasSchedule"):
        tiny_model(constant(0.1)).fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize("schedule", [constant(0.1), constant(0.1) * plateau()], ids=["plain", "plateau"])
def test_an_lrlab_schedule_in_keras_learning_rate_scheduler_is_refused(schedule):
    # Keras calls schedule(epoch, lr) and, on a TypeError, schedule(epoch): per epoch, silently.
    x, y = data()
    with pytest.raises(ValueError, match=r"keras\.callbacks\.LearningRateScheduler calls schedule\(epoch, lr\).*"
                       r"KerasSchedule.*lrlab\.adapters\.keras\.LearningRateScheduler\(schedule, unit="):
        tiny_model(0.1).fit(x, y, epochs=1, verbose=0, callbacks=[keras.callbacks.LearningRateScheduler(schedule)])
    # lrlab's own callback makes the index explicit: per update or per epoch
    with pytest.raises(ValueError, match=r"unit='step' .*unit='epoch'"):
        LearningRateScheduler(constant(0.1))
    assert LearningRateScheduler(lambda epoch, lr: lr).unit == "epoch"  # Keras' functions stay per epoch


def test_load_model_without_the_adapter_names_the_module_to_import(tmp_path):
    model = tiny_model(KerasSchedule(warmup(constant(0.1), steps=4)))
    model.save(tmp_path / "m.keras")
    code = "import keras, sys; keras.saving.load_model(sys.argv[1])"
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.keras")], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "KERAS_BACKEND": keras.backend.backend()})
    assert proc.returncode != 0
    assert "Could not locate class 'KerasSchedule'" in proc.stderr
    assert "lrlab.adapters.keras>KerasSchedule" in proc.stderr  # what to import
    loaded = keras.saving.load_model(tmp_path / "m.keras")  # imported: it loads
    assert loaded.optimizer._learning_rate.schedule == warmup(constant(0.1), steps=4)


def test_gradient_accumulation_is_read_from_the_optimizer_or_a_contradiction_refused():
    s = warmup(take(constant(0.1), steps=6) >> constant(0.01), steps=3)
    var = keras.Variable(0.0)
    ks = KerasSchedule(s)  # not told about the accumulation
    opt = keras.optimizers.SGD(learning_rate=ks, gradient_accumulation_steps=2)
    opt.build([var])
    applied = []
    for _ in range(8):
        before = float(keras.ops.convert_to_numpy(var))
        for _ in range(2):
            opt.apply([keras.ops.ones(())], [var])
        applied.append(before - float(keras.ops.convert_to_numpy(var)))
    assert applied == pytest.approx([s(k) for k in range(8)], rel=1e-5, abs=1e-7)  # updates, not micro-batches
    assert ks.get_config()["gradient_accumulation_steps"] == 2
    other = keras.optimizers.SGD(learning_rate=KerasSchedule(s, gradient_accumulation_steps=4), gradient_accumulation_steps=2)
    other.build([var])
    with pytest.raises(ValueError, match=r"gradient_accumulation_steps=2, this schedule was built for gradient_accumulation_steps=4"):
        for _ in range(2):  # the lr is computed at the update, on the second micro-batch
            other.apply([keras.ops.ones(())], [var])


def test_float64_floatx_gives_float64_values_for_every_example():
    # keras.ops.minimum/floor/less drop float64 to float32 on the torch backend; lrlab's Keras ops don't.
    steps = np.array(sorted({0, 1, 2, 3, 5, 8, 13, 50, 99, 100, 101, 150, 299, 300, 1000, 10**6 + 1}))
    keras.config.set_floatx("float64")
    try:
        for name, s in EXAMPLES.items():
            got = KerasSchedule(s)(keras.ops.convert_to_tensor(steps, dtype="int64"))
            assert keras.backend.standardize_dtype(got.dtype) == "float64", name
            np.testing.assert_allclose(keras.ops.convert_to_numpy(got), s.values(steps), rtol=1e-12, atol=1e-300,
                                       err_msg=name)
    finally:
        keras.config.set_floatx("float32")
