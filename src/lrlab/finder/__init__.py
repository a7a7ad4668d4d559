"""The LR range test (Smith 2017, "Cyclical Learning Rates", section 3.3) with an honest confidence.

:func:`find` trains your model for ``num_steps`` updates while the lr grows from ``start_lr`` to
``end_lr`` (exponentially by default), records a bias-corrected smoothed loss (beta 0.98) and
stops when it diverges (smoothed loss > 4 x its best, or NaN). It does this once per seed (data
order; 3 seeds by default) and returns a :class:`FinderResult` with

* three labelled suggestions per repeat (:func:`suggest`): ``steepest`` (steepest descent of the
  smoothed loss against *log* lr), ``valley`` (fastai's default) and ``minimum`` (min / 10);
* per method, the median over repeats and the **spread** in decades of lr;
* ``lr``: the recommended peak lr (median ``minimum``: on MNIST-1D it was within 1-3x of the best
  peak of a cosine schedule, where valley was 4-16x too low; see :mod:`lrlab.finder._result`),
  and ``confident``: ``False`` with reasons in
  ``notes`` when the repeats disagree by more than ``max_spread`` (0.5 decades) or the range
  was wrong (see :mod:`lrlab.finder._result`);
* ``plot()``: loss against lr, one curve per repeat, suggestions and spreads marked.

Your model, optimizer and RNG states are exactly as before afterwards (PyTorch: restored in place;
Keras: the test runs on clones). :func:`find_for_task` is the study's ``--peak-lr find``.

Modules: ``_sweep`` (lr sequence, smoothing, stop rule), ``_suggest`` (the suggesters),
``_result`` (agreement and confidence), ``_torch`` / ``_keras`` (framework adapters), ``_plot``.
Importing this package imports NumPy only.

>>> import numpy as np
>>> from lrlab.finder import sweep_lrs
>>> lrs = sweep_lrs(1e-4, 1.0, 81)
>>> def loss(lr, s):  # repeat s is lowest at lr = 10 ** -(1 + 0.05 s)
...     return 1.0 + (np.log10(lr) + 1.0 + 0.05 * s) ** 2
>>> r = aggregate([run_sweep(lambda lr, s=s: loss(lr, s), lrs, beta=0.0, seed=s) for s in (0, 1)])
>>> r.suggestions["minimum"].lrs  # minimum/10 of each repeat
(0.01, 0.008912509381337459)
>>> f"{r.lr:.4g}", round(r.spread, 2), r.confident  # geometric median, decades
('0.009441', 0.05, True)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from lrlab.finder._plot import plot
from lrlab.finder._result import (
    DEFAULT_MAX_SPREAD,
    DEFAULT_RECOMMEND,
    FinderResult,
    MethodSummary,
    aggregate,
)
from lrlab.finder._suggest import METHODS, Suggestion, suggest
from lrlab.finder._sweep import Curve, run_sweep, smooth, sweep_lrs

__all__ = [
    "DEFAULT_MAX_SPREAD",
    "METHODS",
    "Curve",
    "FinderResult",
    "MethodSummary",
    "Suggestion",
    "aggregate",
    "find",
    "find_for_task",
    "plot",
    "run_sweep",
    "smooth",
    "suggest",
    "sweep_lrs",
]


def _is_keras_model(model: Any) -> bool:
    if "keras" not in sys.modules:
        return False
    import keras

    return isinstance(model, keras.Model)


def _is_torch_module(model: Any) -> bool:
    if "torch" not in sys.modules:
        return False
    import torch

    return isinstance(model, torch.nn.Module)


def find(
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
    """LR range test of a PyTorch or Keras model, repeated over ``seeds``; state restored after.

    The ``i``-th update (``i = 0 .. num_steps-1``) uses
    ``lr_i = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))`` (``mode="exp"``) or
    ``start_lr + (end_lr - start_lr) * i / (num_steps - 1)`` (``mode="linear"``).

    Args:
        model: a ``torch.nn.Module`` or a ``keras.Model``.
        loss: torch: ``loss_fn(outputs, targets) -> scalar tensor``; Keras: any ``compile(loss=)``.
        data: ``(x, y)`` tensors/arrays (shuffled per seed, with ``batch_size``) or an iterable
            of ``(inputs, targets)`` batches such as a ``DataLoader`` (re-iterated as needed; a
            shuffling loader draws its order from the seeded torch RNG).
        optimizer: torch: a name of :data:`lrlab.study.optimizers.OPTIMIZERS` (``"sgd"`` is SGD
            with momentum 0.9, ``"adam"``, ...), a callable ``params -> Optimizer`` or an optimizer
            instance (its state is restored); Keras: a Keras optimizer name or instance (its config
            is used on a fresh copy). Every param group gets the sweep's lr.
        optimizer_kwargs: overrides of the optimizer's defaults (names and factories only).
        batch_size: batch size for ``(x, y)`` data.
        start_lr, end_lr: first and last lr of the sweep (``0 < start_lr < end_lr``).
        num_steps: planned updates per repeat (>= 2; the sweep may stop earlier).
        mode: ``"exp"`` or ``"linear"`` spacing.
        seeds: one repeat per seed (data order and torch randomness); >= 2 to measure agreement.
        beta: smoothing of the loss, in ``[0, 1)``.
        diverge_factor: stop when the smoothed loss exceeds this multiple of its best (> 1), or
            ``None`` to stop only on NaN/inf.
        methods: suggestion methods to compute, from ``("steepest", "valley", "minimum")``.
        recommend: the method behind ``result.lr``.
        skip_start, skip_end: points ignored by the suggesters (default ``num_steps // 10``, 5).
        max_spread: spread (decades) of the recommended method above which the result is not
            confident.

    Returns:
        A :class:`FinderResult`: ``.lr``, ``.suggestions``, ``.spread``, ``.confident``,
        ``.notes``, ``.curves``, ``.plot()``, ``.to_dict()``.

    Raises:
        ValueError: on bad arguments, or when no repeat produced a suggestion.

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> x = torch.randn(256, 8); y = (x @ torch.randn(8, 3)).argmax(1)
    >>> before = [p.clone() for p in model.parameters()]
    >>> r = find(model, torch.nn.functional.cross_entropy, (x, y), "adam", batch_size=32, num_steps=30)
    >>> sorted(r.suggestions), len(r.curves), 1e-7 < r.lr < 10
    (['minimum', 'steepest', 'valley'], 3, True)
    >>> all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    True
    """
    kwargs: dict[str, Any] = dict(
        optimizer_kwargs=optimizer_kwargs,
        batch_size=batch_size,
        start_lr=start_lr,
        end_lr=end_lr,
        num_steps=num_steps,
        mode=mode,
        seeds=seeds,
        beta=beta,
        diverge_factor=diverge_factor,
        methods=methods,
        recommend=recommend,
        skip_start=skip_start,
        skip_end=skip_end,
        max_spread=max_spread,
    )
    if _is_keras_model(model):  # first: with the torch backend a Keras model is also an nn.Module
        from lrlab.finder._keras import find_keras

        return find_keras(model, loss, data, optimizer, **kwargs)
    if _is_torch_module(model):
        from lrlab.finder._torch import find_torch

        return find_torch(model, loss, data, optimizer, **kwargs)
    raise ValueError(
        f"model must be a torch.nn.Module or a keras.Model, got {type(model).__name__}"
    )


def find_for_task(
    task: Any, optimizer: str, optimizer_kwargs: dict[str, Any] | None = None, **kwargs: Any
) -> FinderResult:
    """Range test on a study task (fresh model per seed); see :func:`lrlab.finder._torch.find_for_task`.

    ``find_for_task(task, "adam").lr`` is the peak lr the study uses with ``--peak-lr find``.
    """
    from lrlab.finder._torch import find_for_task as _find_for_task

    return _find_for_task(task, optimizer, optimizer_kwargs, **kwargs)
