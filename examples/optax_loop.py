"""A jitted optax training loop with an lrlab warmup+cosine schedule and the plateau transform.

Run it: ``python examples/optax_loop.py``. The schedule is used as optax's learning rate
(``to_optax``); :func:`lrlab.adapters.optax.reduce_on_plateau` follows ``optax.sgd`` in the chain
and multiplies the updates by the plateau multiplier. It is fed the minibatch loss as ``value=``
at every step and observes the mean over each epoch (``accumulation_size=steps_per_epoch``), with
optax's counting rules (``preset='optax'``). Its state is part of the optimizer state, so the
whole step stays inside ``jax.jit``. ``current_lr(state, schedule)`` reads the lr back.

It prints the lr at each epoch's start and a last line ``RESULT {...}`` (JSON) that the test
suite checks against :class:`lrlab.PlateauController` and the schedule.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrlab.adapters.optax import current_lr, reduce_on_plateau, to_optax
from lrlab.schedules import cosine, plateau, warmup

EPOCHS, BATCH, N_TRAIN = 12, 32, 256  # 8 steps per epoch
STEPS_PER_EPOCH = N_TRAIN // BATCH
SCHEDULE = warmup(cosine(peak=0.1, end=0.001, steps=(EPOCHS - 1) * STEPS_PER_EPOCH), steps=STEPS_PER_EPOCH, start=0.01)
NODE = plateau(preset="optax", patience=2, factor=0.5, threshold=0.01)


def main() -> None:
    rng = np.random.default_rng(0)
    w_true = rng.normal(size=(8,)).astype("float32")
    x = rng.normal(size=(N_TRAIN, 8)).astype("float32")
    y = x @ w_true + 0.5 * rng.normal(size=(N_TRAIN,)).astype("float32")
    batches = [(jnp.asarray(x[i:i + BATCH]), jnp.asarray(y[i:i + BATCH])) for i in range(0, N_TRAIN, BATCH)]

    opt = optax.chain(optax.sgd(to_optax(SCHEDULE)), reduce_on_plateau(NODE, accumulation_size=STEPS_PER_EPOCH))
    params = jnp.zeros(8)
    state = opt.init(params)

    def loss_fn(p, xb, yb):
        return jnp.mean((xb @ p - yb) ** 2)

    @jax.jit
    def step(p, st, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(p, xb, yb)
        updates, st = opt.update(grads, st, p, value=loss)
        return optax.apply_updates(p, updates), st, loss

    lrs, losses, scales = [], [], []
    for epoch in range(EPOCHS):
        print(f"epoch {epoch}: lr {current_lr(state, SCHEDULE):.6f}", end="")
        for xb, yb in batches:
            lrs.append(current_lr(state, SCHEDULE))  # the lr of this update before it sees its loss
            params, state, loss = step(params, state, xb, yb)
            losses.append(float(loss))
            scales.append(float(state[1].scale))  # the multiplier this update applied
        print(f"  mean loss {np.mean(losses[-STEPS_PER_EPOCH:]):.5f}  multiplier {scales[-1]:g}")
    print("RESULT " + json.dumps({"losses": losses, "lrs": lrs, "scales": scales, "steps_per_epoch": STEPS_PER_EPOCH,
                                  "schedule": SCHEDULE.to_config(), "node": NODE.to_config()}))


if __name__ == "__main__":
    main()
