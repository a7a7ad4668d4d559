"""Keras adapter scenarios shared by both backends; run as a script under KERAS_BACKEND=jax.

``test_keras.py`` imports the helpers below on the torch backend and runs this file once in a
subprocess with ``KERAS_BACKEND=jax`` (the Keras backend is fixed at import). The script writes a
JSON file that the test compares with the float64 schedules:

* ``parity``: for every example schedule, the lr that ``SGD(KerasSchedule(s))`` applies at each
  of N updates, run as ``optimizer.stateless_apply`` inside one ``jax.jit`` + ``lax.scan`` (what
  Keras' JAX trainer compiles);
* ``fit_plateau``: per-step lrs of ``model.fit`` with a KerasSchedule times a plateau node and
  :class:`PlateauCallback` (reductions must reach the compiled step);
* ``step_scheduler``: per-step lrs of :class:`LearningRateScheduler` with ``unit='step'``;
* ``saved_config`` / ``saved_scales``: a model saved and loaded after the plateau run.

Usage: ``KERAS_BACKEND=jax python tests/adapters/_keras_jax_check.py OUT.json [N_STEPS]``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

from lrlab.adapters.keras import KerasSchedule, LearningRateScheduler, PlateauCallback
from lrlab.schedules._combinators import constant, take, warmup
from lrlab.schedules._plateau import plateau, simulate

FIT_SPE = 3  # batches per epoch in the fit scenarios (12 samples, batch 4)
PLATEAU_NODE = plateau(preset="keras", factor=0.5, patience=1, threshold=1e-4)
PLATEAU_SCHEDULE = warmup(take(constant(0.1), steps=12) >> constant(0.05), steps=4, start=0.01) * PLATEAU_NODE
PLATEAU_TRACE = [1.0, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7]
FIT_EPOCHS = len(PLATEAU_TRACE)
STEP_SCHEDULE = warmup(take(constant(0.1), steps=10) >> constant(0.01), steps=4)
STEP_EPOCHS = 5


def data(n_batches: int = FIT_SPE):
    """Inputs of ones and targets far below: MAE's gradient on the single weight is exactly 1."""
    x = np.ones((4 * n_batches, 1), np.float32)
    return x, np.full((4 * n_batches, 1), -1000.0, np.float32)


def tiny_model(lr):
    """One weight w (no bias, starts at 0) with prediction w·x: each SGD update lowers w by lr."""
    inp = keras.Input((1,))
    out = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")(inp)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mean_absolute_error")
    return model


def _sync(model) -> None:
    if keras.backend.backend() == "jax":
        model.jax_state_sync()  # the JAX trainer keeps state off the Variables during an epoch


class TraceMetric(keras.callbacks.Callback):
    """Puts ``trace[epoch]`` into the logs as ``'trace'``: a metric trace independent of training."""

    def __init__(self, trace):
        super().__init__()
        self.trace = list(trace)

    def on_epoch_end(self, epoch, logs=None):
        logs["trace"] = self.trace[epoch]


class LrRecorder(keras.callbacks.Callback):
    """Records, per batch, the optimizer's lr before the step and the weight's decrease in it."""

    def __init__(self):
        super().__init__()
        self.lrs, self.deltas, self.epoch_lrs = [], [], []

    def _w(self):
        return float(self.model.get_weights()[0].reshape(()))

    def on_train_batch_begin(self, batch, logs=None):
        _sync(self.model)
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.lrs.append(lr)
        if batch == 0:
            self.epoch_lrs.append(lr)
        self._before = self._w()

    def on_train_batch_end(self, batch, logs=None):
        _sync(self.model)
        self.deltas.append(self._before - self._w())


def expected_fit_plateau(trace=PLATEAU_TRACE):
    """The per-step lrs of the plateau scenario, from lrlab's own simulate() in float64."""
    return simulate(PLATEAU_SCHEDULE, trace, steps_per_epoch=FIT_SPE).tolist()


def expected_step_scheduler(initial_epoch: int = 0):
    return [STEP_SCHEDULE(k) for k in range(initial_epoch * FIT_SPE, STEP_EPOCHS * FIT_SPE)]


def step_scheduler_run(initial_epoch: int = 0):
    x, y = data()
    rec = LrRecorder()
    tiny_model(0.5).fit(x, y, batch_size=4, epochs=STEP_EPOCHS, initial_epoch=initial_epoch, shuffle=False,
                        verbose=0, callbacks=[LearningRateScheduler(STEP_SCHEDULE, unit="step"), rec])
    return rec.lrs


def compiled_parity(n_steps: int) -> dict[str, list[float]]:
    """lrs applied by SGD(KerasSchedule(s)) for every example, all in one jax.jit + lax.scan."""
    import jax
    import jax.numpy as jnp

    from lrlab.schedules import examples

    ids, opts = [], []
    for name, group in examples().items():
        for i, s in enumerate(group):
            opt = keras.optimizers.SGD(learning_rate=KerasSchedule(s))
            opt.build([keras.Variable(0.0)])
            ids.append(f"{name}[{i}]")
            opts.append(opt)

    def run(states):
        def body(sts, _):
            new, lrs = [], []
            for opt, st in zip(opts, sts):
                (w,), st = opt.stateless_apply(st, [jnp.ones(())], [jnp.zeros(())])
                new.append(st)
                lrs.append(-w)
            return new, lrs
        return jax.lax.scan(body, states, None, length=n_steps)[1]

    lrs = jax.jit(run)([[v.value for v in opt.variables] for opt in opts])
    return {i: np.asarray(v, np.float64).tolist() for i, v in zip(ids, lrs)}


def fit_plateau():
    x, y = data()
    model = tiny_model(KerasSchedule(PLATEAU_SCHEDULE))
    rec = LrRecorder()
    model.fit(x, y, batch_size=4, epochs=FIT_EPOCHS, shuffle=False, verbose=0,
              callbacks=[TraceMetric(PLATEAU_TRACE), PlateauCallback(monitor="trace"), rec])
    return model, rec


def main(out: str, n_steps: int) -> None:
    model, rec = fit_plateau()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)
    ks = loaded.optimizer._learning_rate
    result = {
        "backend": keras.backend.backend(),
        "parity": compiled_parity(n_steps),
        "fit_plateau": {"trace": PLATEAU_TRACE, "lrs": rec.lrs, "deltas": rec.deltas},
        "step_scheduler": {"lrs": step_scheduler_run()},
        "saved_config": ks.get_config(),
        "saved_scales": ks.scales,
    }
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 300)
