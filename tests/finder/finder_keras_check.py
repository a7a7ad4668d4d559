"""A Keras range test with a hand-computable answer, run in-process and under other backends.

One weight ``w = 1``, inputs 1, targets 0, MSE: the loss of update ``i`` is ``w_i**2`` and plain
SGD gives ``w_{i+1} = w_i - lr_i * 2 w_i = w_i (1 - 2 lr_i)``, so the recorded losses prove that
every update used the sweep's lr. Used by ``test_keras.py`` (``python -c`` for the jax backend).
"""

from __future__ import annotations


def hand_check() -> str:
    """Run the check; return ``"ok <backend> <framework label>"`` or raise AssertionError."""
    import keras
    import numpy as np

    from lrlab.finder import find, sweep_lrs

    init = keras.initializers.Constant(1.0)
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer=init)]
    )
    x, y = np.ones((8, 1), "float32"), np.zeros((8, 1), "float32")
    r = find(
        model,
        "mse",
        (x, y),
        "sgd",
        batch_size=8,
        start_lr=1e-3,
        end_lr=0.4,
        num_steps=20,
        beta=0.0,
        seeds=(0, 1),
        diverge_factor=None,
    )
    w, expected = 1.0, []
    for lr in sweep_lrs(1e-3, 0.4, 20):
        expected.append(w * w)
        w *= 1 - 2 * lr
    for c in r.curves:
        np.testing.assert_allclose(c.losses, expected, rtol=2e-6)
        assert c.stop == "completed" and len(c.lrs) == 20
    assert model.get_weights()[0].tolist() == [[1.0]] and not model.compiled
    return f"ok {keras.backend.backend()} {r.settings['framework']}"
