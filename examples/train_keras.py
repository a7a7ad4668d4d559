"""Your own Keras 3 model in a study (any backend): ``trial.keras_optimizer()`` is the study's
optimizer with a :class:`lrlab.adapters.keras.KerasSchedule` as its learning rate, so the schedule
runs inside Keras' own train step; ``model.fit`` trains one epoch per loop, ``trial.report`` records
it (and feeds plateau nodes at ``optimizer.iterations``).

Run it: ``lrlab study --task train_keras:train --epochs 2 --steps-per-epoch 4 --optimizers adam``
from this directory. The data is synthetic: two Gaussian blobs in 8 dimensions.
"""

from __future__ import annotations

import numpy as np

from lrlab.study.trainfn import Trial


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of two Gaussian blobs (classes 0 and 1) in 8 dimensions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 8)).astype("float32") + (2.0 * y[:, None] - 1.0) * 0.7
    return x.astype("float32"), y.astype("int64")


def train(trial: Trial) -> None:
    import keras

    keras.utils.set_random_seed(trial.seed)
    x, y = blobs(256, seed=0)
    x_val, y_val = blobs(128, seed=1)
    x_test, y_test = blobs(128, seed=2)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dropout(0.1), keras.layers.Dense(2)])
    model.compile(optimizer=trial.keras_optimizer(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    batch = len(x) // trial.steps_per_epoch
    for epoch in range(trial.epochs):
        model.fit(x, y, batch_size=batch, epochs=1, shuffle=True, verbose=0)
        val_loss, val_acc = model.evaluate(x_val, y_val, verbose=0)
        test = {}
        if epoch == trial.epochs - 1:
            test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
            test = {"test_loss": test_loss, "test_acc": test_acc}
        trial.report(epoch, val_loss=val_loss, val_acc=val_acc, **test)
