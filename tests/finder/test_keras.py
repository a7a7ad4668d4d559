"""The Keras range test: the sweep's lrs reach the optimizer (losses match a hand recursion), the
user's model, compile state and optimizer are untouched, on the torch backend and (subprocess) jax."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.keras

keras = pytest.importorskip("keras")

from lrlab.finder import find  # noqa: E402


def test_losses_follow_the_sweep_lrs_exactly_and_the_model_is_untouched():
    from finder_keras_check import hand_check  # tests/finder is on sys.path (conftest.py)

    assert hand_check() == f"ok {keras.backend.backend()} keras/{keras.backend.backend()}"


def test_compiled_model_and_its_optimizer_state_are_not_modified():
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)]
    )
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, :3].argmax(1)).astype("int64")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    weights = [w.copy() for w in model.get_weights()]
    opt = model.optimizer
    opt_vars = [np.array(v.numpy()) for v in opt.variables]
    iterations = int(opt.iterations.numpy())
    py_state, np_state = __import__("random").getstate(), np.random.get_state()

    r = find(model, loss, (x, y), opt, batch_size=16, num_steps=30, seeds=(0, 1))

    assert len(r.curves) == 2 and r.settings["optimizer"] == "Adam"
    assert not np.array_equal(r.curves[0].losses, r.curves[1].losses)  # seeds change the data order
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))
    assert model.optimizer is opt and int(opt.iterations.numpy()) == iterations
    assert all(np.array_equal(np.array(v.numpy()), u) for v, u in zip(opt.variables, opt_vars))
    assert float(opt.learning_rate.numpy()) == pytest.approx(1e-3)
    assert __import__("random").getstate() == py_state
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # still trains with its own optimizer


def test_subclassed_model_runs_on_a_clone():
    class Tiny(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Tiny()
    x = np.random.default_rng(1).normal(size=(32, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model(x[:1])
    before = [w.copy() for w in model.get_weights()]
    r = find(
        model,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        (x, y),
        "sgd",
        optimizer_kwargs={"momentum": 0.9},
        batch_size=8,
        num_steps=20,
        seeds=(0, 1),
    )
    assert len(r.curves[0].lrs) > 10
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))


def test_bad_keras_input():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    x, y = np.ones((4, 1), "float32"), np.zeros((4, 1), "float32")
    with pytest.raises(ValueError, match="optimizer"):
        find(model, "mse", (x, y), object(), batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        find(model, "mse", (x, y), "sgd")


@pytest.mark.jax
@pytest.mark.slow
def test_jax_backend_in_a_subprocess():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from finder_keras_check import hand_check; print(hand_check())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["ok", "jax", "keras/jax"]
