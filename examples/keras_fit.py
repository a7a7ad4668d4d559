"""``model.fit`` with an lrlab schedule compiled into the train step and a plateau callback on top.

Run it: ``KERAS_BACKEND=torch python examples/keras_fit.py`` (or ``KERAS_BACKEND=jax``; torch is
used when no backend is chosen). The optimizer's learning rate is a :class:`KerasSchedule`:
warmup then cosine, times a ``plateau`` node with Keras' counting rules. Keras' own
``ReduceLROnPlateau`` refuses an optimizer whose lr is a schedule; :class:`PlateauCallback` feeds
``val_loss`` to the node at each epoch end instead, and the reduction multiplies the rest of the
curve.

It prints the lr of each epoch's first update, and a last line ``RESULT {...}`` (JSON: per-step
lrs and the val_loss trace) that the test suite checks against ``lrlab.schedules.simulate``.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np

from lrlab.adapters.keras import KerasSchedule, PlateauCallback
from lrlab.schedules import cosine, plateau, warmup

EPOCHS, BATCH, N_TRAIN = 10, 32, 256  # 8 steps per epoch
STEPS_PER_EPOCH = N_TRAIN // BATCH
SCHEDULE = warmup(cosine(peak=0.05, end=0.001, steps=(EPOCHS - 1) * STEPS_PER_EPOCH), steps=STEPS_PER_EPOCH, start=0.005) \
    * plateau(preset="keras", patience=1, factor=0.5, threshold=1e-3)


class PerStepLr(keras.callbacks.Callback):
    """Reads the lr the optimizer will apply before each batch (synced first on JAX)."""

    def __init__(self) -> None:
        super().__init__()
        self.lrs: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        if keras.backend.backend() == "jax":
            self.model.jax_state_sync()
        self.lrs.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    def on_epoch_end(self, epoch, logs=None):
        scales = self.model.optimizer._learning_rate.scales
        print(f"epoch {epoch}: lr {self.lrs[epoch * STEPS_PER_EPOCH]:.6f}  val_loss {logs['val_loss']:.5f}  "
              f"multiplier after it {scales['plateau']:g}")


def main() -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 1)).astype("float32")
    x = rng.normal(size=(N_TRAIN + 64, 8)).astype("float32")
    y = x @ w + 0.3 * rng.normal(size=(N_TRAIN + 64, 1)).astype("float32")

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=KerasSchedule(SCHEDULE)), loss="mse")
    rec = PerStepLr()
    history = model.fit(x[:N_TRAIN], y[:N_TRAIN], validation_data=(x[N_TRAIN:], y[N_TRAIN:]), batch_size=BATCH,
                        epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[PlateauCallback(monitor="val_loss"), rec])
    print(f"backend {keras.backend.backend()}, schedule {SCHEDULE}")
    print("RESULT " + json.dumps({"val_loss": history.history["val_loss"], "lrs": rec.lrs,
                                  "steps_per_epoch": STEPS_PER_EPOCH, "schedule": SCHEDULE.to_config()}))


if __name__ == "__main__":
    main()
