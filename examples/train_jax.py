"""Your own JAX model in a study: ``trial.optax()`` is the study's optimizer as an optax
``GradientTransformation`` whose learning rate is ``to_optax(trial.schedule)``; the jitted step is
yours. Run it: ``lrlab study --task train_jax:train --epochs 2 --steps-per-epoch 4`` from this
directory. The data is synthetic (two Gaussian blobs, as in ``train_keras.py``); the model a
small MLP written with ``jax.numpy``.
"""

from __future__ import annotations

import numpy as np
from train_keras import blobs

from lrlab.study.trainfn import Trial


def train(trial: Trial) -> None:
    import jax
    import jax.numpy as jnp
    import optax

    x, y = blobs(256, seed=0)
    x_val, y_val = blobs(128, seed=1)
    x_test, y_test = blobs(128, seed=2)
    k1, k2 = jax.random.split(jax.random.PRNGKey(trial.seed))
    params = {"w1": jax.random.normal(k1, (8, 16)) * 0.3, "b1": jnp.zeros(16),
              "w2": jax.random.normal(k2, (16, 2)) * 0.3, "b2": jnp.zeros(2)}

    def logits(p, xb):
        return jax.nn.relu(xb @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def loss_fn(p, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(logits(p, xb), yb).mean()

    tx = trial.optax()
    state = tx.init(params)

    @jax.jit
    def step(p, s, xb, yb):
        grads = jax.grad(loss_fn)(p, xb, yb)
        updates, s = tx.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    def evaluate(p, xe, ye):
        out = logits(p, xe)
        return float(loss_fn(p, xe, ye)), float((out.argmax(1) == ye).mean())

    batch = len(x) // trial.steps_per_epoch
    rng = np.random.default_rng(trial.seed)
    for epoch in range(trial.epochs):
        order = rng.permutation(len(x))
        for i in range(trial.steps_per_epoch):
            idx = order[i * batch:(i + 1) * batch]
            params, state = step(params, state, x[idx], y[idx])
        val_loss, val_acc = evaluate(params, x_val, y_val)
        test = {}
        if epoch == trial.epochs - 1:
            test_loss, test_acc = evaluate(params, x_test, y_test)
            test = {"test_loss": test_loss, "test_acc": test_acc}
        trial.report(epoch, val_loss=val_loss, val_acc=val_acc, **test)
