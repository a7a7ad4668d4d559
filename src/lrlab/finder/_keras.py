"""The range test for Keras 3 models (any backend): the sweep runs on a clone, never on your model.

Each repeat clones the model (``keras.models.clone_model``; a subclassed model through
``from_config(get_config())``), copies your weights into the clone, compiles it with a *fresh*
optimizer built from the config of the one you give (so your optimizer's state and iteration
count are never touched; the schedule-built lr quirk 16 does not apply because the clone's lr is
a plain variable) and calls ``train_on_batch`` once per update after setting
``optimizer.learning_rate``. The loss recorded is the one ``train_on_batch`` reports for that
batch (computed before the update, regularization losses included). Your model, its weights,
compile state and optimizer are read only; the Python, NumPy and (torch backend) torch RNG
states are restored afterwards.

Differences from the torch path: a NaN loss is detected after ``train_on_batch`` has applied that
update (to the throwaway clone); the seed sets the data order (``numpy.random.default_rng(seed)``
permutations), while layer randomness such as dropout follows Keras's own seed generators.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from lrlab.finder._result import DEFAULT_MAX_SPREAD, DEFAULT_RECOMMEND, FinderResult, aggregate
from lrlab.finder._suggest import METHODS
from lrlab.finder._sweep import check_seeds, run_sweep, sweep_lrs, sweep_settings

__all__ = ["find_keras"]


@contextlib.contextmanager
def _rng_preserved() -> Iterator[None]:
    import keras

    py_state, np_state = random.getstate(), np.random.get_state()
    torch_state = None
    if keras.backend.backend() == "torch":
        import torch

        torch_state = torch.random.get_rng_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        if torch_state is not None:
            import torch

            torch.random.set_rng_state(torch_state)


def _batches(data: Any, batch_size: int | None, seed: int) -> Iterator[tuple[Any, Any]]:
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(hasattr(d, "shape") for d in data)
    ):
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(
                f"data=(x, y) needs the same, non-zero number of rows, got {x.shape[0]} and {y.shape[0]}"
            )
        if (
            batch_size is None
            or isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or batch_size < 1
        ):
            raise ValueError(f"data=(x, y) needs a batch_size >= 1, got {batch_size=!r}")
        rng = np.random.default_rng(seed)
        while True:
            perm = rng.permutation(x.shape[0])
            for i in range(0, x.shape[0], batch_size):
                idx = perm[i : i + batch_size]
                yield x[idx], y[idx]
    if not hasattr(data, "__iter__") or isinstance(data, (str, bytes, dict)):
        raise ValueError(
            f"data must be (x, y) arrays or an iterable of (x, y) batches, got {type(data).__name__}"
        )
    while True:
        empty = True
        for batch in data:
            empty = False
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError(
                    f"each batch must be an (inputs, targets) pair, got {type(batch).__name__}"
                )
            yield batch[0], batch[1]
        if empty:
            raise ValueError("data yielded no batches")


def _clone(model: Any, first_x: Any) -> Any:
    import keras

    try:
        clone = keras.models.clone_model(model)
    except Exception:  # subclassed models: keras documents from_config(get_config()) instead
        try:
            clone = model.__class__.from_config(model.get_config())
        except Exception as e:
            raise ValueError(
                f"cannot clone the Keras model {type(model).__name__} ({e}); a subclassed model needs "
                "get_config()/from_config() so the range test can run on a copy"
            ) from e
    if not clone.built:
        clone(first_x)
    clone.set_weights(model.get_weights())
    return clone


def _optimizer_config(
    optimizer: Any, optimizer_kwargs: dict[str, Any] | None, lr0: float
) -> tuple[Any, dict[str, Any]]:
    import keras

    if isinstance(optimizer, str):
        opt = keras.optimizers.get(optimizer)
    elif isinstance(optimizer, keras.optimizers.Optimizer):
        opt = optimizer
    else:
        raise ValueError(f"optimizer must be a Keras optimizer name or instance, got {optimizer!r}")
    config = opt.get_config()
    config.update(optimizer_kwargs or {})
    config["learning_rate"] = lr0
    return type(opt), config


def find_keras(
    model: Any,
    loss: Any,
    data: Any,
    optimizer: Any = "sgd",
    *,
    optimizer_kwargs: dict[str, Any] | None = None,
    batch_size: int | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    mode: str = "exp",
    seeds: Sequence[int] = (0, 1, 2),
    beta: float = 0.98,
    diverge_factor: float | None = 4.0,
    methods: Sequence[str] = METHODS,
    recommend: str = DEFAULT_RECOMMEND,
    skip_start: int | None = None,
    skip_end: int = 5,
    max_spread: float = DEFAULT_MAX_SPREAD,
) -> FinderResult:
    """LR range test of a Keras 3 model, run on clones (your model is not modified).

    See :func:`lrlab.finder.find` for the arguments. ``loss`` is anything ``model.compile(loss=...)``
    accepts. ``optimizer`` is a Keras optimizer name (``keras.optimizers.get``: ``"sgd"`` is plain
    SGD, pass ``optimizer_kwargs={"momentum": 0.9}``) or an instance, whose *config* is used.
    """
    import keras

    seeds = check_seeds(seeds)
    lrs = sweep_lrs(start_lr, end_lr, num_steps, mode)
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model, got {type(model).__name__}")
    opt_cls, opt_config = _optimizer_config(optimizer, optimizer_kwargs, float(lrs[0]))
    curves = []
    with _rng_preserved():
        for seed in seeds:
            batches = _batches(data, batch_size, seed)
            first = next(batches)
            clone = _clone(model, first[0])
            opt = opt_cls.from_config(dict(opt_config))
            clone.compile(optimizer=opt, loss=loss)
            pending: list[tuple[Any, Any]] = [first]

            def step(
                lr: float,
                clone: Any = clone,
                opt: Any = opt,
                batches: Iterator = batches,
                pending: list = pending,
            ) -> float:
                x, y = pending.pop() if pending else next(batches)
                opt.learning_rate = lr
                logs = clone.train_on_batch(x, y, return_dict=True)
                return float(logs["loss"])

            curves.append(run_sweep(step, lrs, beta=beta, diverge_factor=diverge_factor, seed=seed))
    settings = sweep_settings(
        f"keras/{keras.backend.backend()}", optimizer if isinstance(optimizer, str) else opt_cls.__name__,
        optimizer_kwargs,
        start_lr=start_lr, end_lr=end_lr, num_steps=num_steps, mode=mode, seeds=seeds, beta=beta,
        diverge_factor=diverge_factor, batch_size=batch_size,
    )
    return aggregate(
        curves,
        methods=methods,
        recommend=recommend,
        skip_start=skip_start,
        skip_end=skip_end,
        max_spread=max_spread,
        settings=settings,
    )
