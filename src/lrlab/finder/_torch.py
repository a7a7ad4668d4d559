"""The range test for PyTorch: a model, a loss, data and an optimizer; everything restored after.

:func:`find_torch` runs one sweep per seed on the *same* starting point: before each repeat, and
once more at the end, it puts back exactly what it found:

* every parameter and buffer (persistent or not) by value, copied in place (same tensor objects,
  so an optimizer built on them stays valid), the ``.grad`` of each parameter and the
  ``training`` flag of each submodule;
* the optimizer's ``state_dict`` when you pass an optimizer instance (momentum buffers, Adam's
  moments and step counts, each group's lr);
* the global RNG states of torch (CPU and the model's CUDA devices), NumPy and Python ``random``.

Nothing is written to disk: snapshots are in-memory clones. Compare torch-lr-finder's ``reset()``,
fastai's ``_tmp.pth`` and Lightning's checkpoint file (pain point 23: Lightning#6675, fastai#2892).

Each update: every param group's ``lr`` is set to the sweep's lr, the batch loss is computed,
and only if it is finite is ``backward()`` + ``optimizer.step()`` run.

:func:`find_for_task` is the study's entry point: a fresh model from ``task.model_fn()`` per seed
(``torch.manual_seed(seed)`` first, as the study's trials do), cross-entropy, the task's batch
size and a data order drawn from ``torch.Generator().manual_seed(seed)``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from lrlab.finder._result import DEFAULT_MAX_SPREAD, DEFAULT_RECOMMEND, FinderResult, aggregate
from lrlab.finder._suggest import METHODS
from lrlab.finder._sweep import Curve, check_seeds, run_sweep, sweep_lrs, sweep_settings

__all__ = ["find_for_task", "find_torch"]


def _make_optimizer(
    name: str, params: Any, lr: float, overrides: dict[str, Any] | None
) -> torch.optim.Optimizer:
    from lrlab.study.optimizers import make_optimizer, optimizer_kwargs

    # ValueError for an unknown name or argument, and for an lr override
    optimizer_kwargs(name, overrides)
    return make_optimizer(name, params, lr, **(overrides or {}))


class _Snapshot:
    """In-memory copy of a model's values (and an optimizer's state) that can be put back exactly."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        with torch.no_grad():
            self.params = [(p, p.detach().clone()) for p in model.parameters()]
            self.buffers = [(b, b.detach().clone()) for b in model.buffers()]
            self.grads = [
                None if p.grad is None else p.grad.detach().clone() for p in model.parameters()
            ]
        self.training = [(m, m.training) for m in model.modules()]
        self.optimizer = optimizer
        self.opt_state = None if optimizer is None else copy.deepcopy(optimizer.state_dict())

    def restore(self) -> None:
        with torch.no_grad():
            for t, v in (*self.params, *self.buffers):
                t.copy_(v)
            for (p, _), g in zip(self.params, self.grads):
                p.grad = None if g is None else g.clone()
        for m, flag in self.training:
            m.training = flag
        if self.optimizer is not None and self.opt_state is not None:
            self.optimizer.load_state_dict(copy.deepcopy(self.opt_state))


@contextlib.contextmanager
def _rng_preserved(devices: Sequence[int]) -> Iterator[None]:
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=list(devices)):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def _device_of(model: torch.nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    raise ValueError("the model has no parameters: there is nothing for a learning rate to act on")


def _is_pair(data: Any) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(d, (torch.Tensor, np.ndarray)) for d in data)
    )


def _batches(data: Any, batch_size: int | None, seed: int) -> Iterator[tuple[Any, Any]]:
    """Endless (x, y) batches: shuffled slices of a tensor pair, or a re-iterated data loader."""
    if _is_pair(data):
        x, y = (torch.as_tensor(d) for d in data)
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
        gen = torch.Generator().manual_seed(int(seed))
        while True:  # one permutation per pass; the last partial batch is kept
            perm = torch.randperm(x.shape[0], generator=gen)
            for i in range(0, x.shape[0], batch_size):
                idx = perm[i : i + batch_size]
                yield x[idx], y[idx]
    if not hasattr(data, "__iter__") or isinstance(data, (str, bytes, dict)):
        raise ValueError(
            f"data must be (x, y) tensors or an iterable of (x, y) batches, got {type(data).__name__}"
        )
    while True:  # a DataLoader with shuffle=True draws its order from the seeded torch RNG
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


def _to(v: Any, device: torch.device) -> Any:
    return v.to(device) if isinstance(v, torch.Tensor) else v


def _sweep(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    batches: Iterator[tuple[Any, Any]],
    lrs: np.ndarray,
    *,
    beta: float,
    diverge_factor: float | None,
    seed: int,
) -> Curve:
    device = _device_of(model)
    model.train()

    def step(lr: float) -> float:
        x, y = next(batches)
        x, y = _to(x, device), _to(y, device)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        value = float(loss.detach())
        if math.isfinite(value):
            loss.backward()
            optimizer.step()
        return value

    return run_sweep(step, lrs, beta=beta, diverge_factor=diverge_factor, seed=seed)


def _cuda_devices(model: torch.nn.Module) -> list[int]:
    return sorted({t.device.index or 0 for t in model.parameters() if t.device.type == "cuda"})


def find_torch(
    model: torch.nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    data: Any,
    optimizer: str | torch.optim.Optimizer | Callable[..., torch.optim.Optimizer] = "sgd",
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
    """LR range test of a PyTorch model; the model, optimizer and RNGs are restored afterwards.

    See :func:`lrlab.finder.find` for the arguments. ``optimizer`` is a name of
    :data:`lrlab.study.optimizers.OPTIMIZERS` (built fresh per repeat with ``optimizer_kwargs``),
    a callable ``params -> Optimizer`` (called per repeat), or an optimizer instance on the
    model's parameters (its state is restored before each repeat and at the end).
    """
    seeds = check_seeds(seeds)
    lrs = sweep_lrs(start_lr, end_lr, num_steps, mode)
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable (outputs, targets) -> loss, got {loss_fn!r}")
    instance = isinstance(optimizer, torch.optim.Optimizer)
    if instance and optimizer_kwargs:
        raise ValueError(
            "optimizer_kwargs applies to an optimizer name; configure an optimizer instance directly"
        )
    if not (instance or isinstance(optimizer, str) or callable(optimizer)):
        raise ValueError(
            f"optimizer must be a name, a callable params -> Optimizer or an Optimizer, got {optimizer!r}"
        )
    _device_of(model)
    snap = _Snapshot(model, optimizer if isinstance(optimizer, torch.optim.Optimizer) else None)
    curves = []
    with _rng_preserved(_cuda_devices(model)):
        try:
            for k, seed in enumerate(seeds):
                if k:
                    snap.restore()
                torch.manual_seed(seed)
                opt: torch.optim.Optimizer
                if isinstance(optimizer, torch.optim.Optimizer):
                    opt = optimizer
                elif isinstance(optimizer, str):
                    opt = _make_optimizer(
                        optimizer, model.parameters(), float(lrs[0]), optimizer_kwargs
                    )
                else:
                    built = optimizer(model.parameters(), **(optimizer_kwargs or {}))
                    if not isinstance(built, torch.optim.Optimizer):
                        raise ValueError(
                            f"the optimizer factory returned {type(built).__name__}, not a torch Optimizer"
                        )
                    opt = built
                batches = _batches(data, batch_size, seed)
                curves.append(
                    _sweep(
                        model,
                        opt,
                        loss_fn,
                        batches,
                        lrs,
                        beta=beta,
                        diverge_factor=diverge_factor,
                        seed=seed,
                    )
                )
        finally:
            snap.restore()
    name = (optimizer if isinstance(optimizer, str) else type(optimizer).__name__ if instance
            else getattr(optimizer, "__name__", repr(optimizer)))
    settings = sweep_settings(
        "torch", name, optimizer_kwargs,
        start_lr=start_lr, end_lr=end_lr, num_steps=num_steps, mode=mode, seeds=seeds, beta=beta,
        diverge_factor=diverge_factor,
        batch_size=batch_size if batch_size is not None else getattr(data, "batch_size", None),
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


def find_for_task(
    task: Any,
    optimizer: str,
    optimizer_kwargs: dict[str, Any] | None = None,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    num_steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    mode: str = "exp",
    beta: float = 0.98,
    diverge_factor: float | None = 4.0,
    methods: Sequence[str] = METHODS,
    recommend: str = DEFAULT_RECOMMEND,
    skip_start: int | None = None,
    skip_end: int = 5,
    max_spread: float = DEFAULT_MAX_SPREAD,
    device: str | torch.device = "cpu",
    on_seed: Callable[[int, int], None] | None = None,
) -> FinderResult:
    """Range test on a study :class:`~lrlab.study.tasks.Task`: the peak lr for ``--peak-lr find``.

    Per seed: ``torch.manual_seed(seed)``, a fresh ``task.model_fn()``, the optimizer ``optimizer``
    (a name of :data:`lrlab.study.optimizers.OPTIMIZERS`, with ``optimizer_kwargs``), cross-entropy
    on ``task.x_train``/``task.y_train`` in batches of ``task.batch_size``, shuffled by
    ``torch.Generator().manual_seed(seed)``. The global RNG states are restored afterwards.
    ``result.lr`` is the median over seeds of the ``recommend`` method (minimum/10 by default).
    ``on_seed(done, total)`` is called after each seed's sweep (progress). Other arguments as
    :func:`lrlab.finder.find`.

    >>> from lrlab.study.tasks import load_task
    >>> r = find_for_task(load_task("mnist1d", subset=200), "sgd", seeds=(0, 1), num_steps=20)
    >>> r.settings["task"], r.settings["batch_size"], len(r.curves), r.recommended
    ('mnist1d', 100, 2, 'minimum')
    """
    seeds = check_seeds(seeds)
    lrs = sweep_lrs(start_lr, end_lr, num_steps, mode)
    if not isinstance(optimizer, str):
        raise ValueError(f"optimizer must be an optimizer name, got {optimizer!r}")
    dev = torch.device(device)
    curves = []
    with _rng_preserved([dev.index or 0] if dev.type == "cuda" else []):
        for seed in seeds:
            torch.manual_seed(seed)
            model = task.model_fn().to(dev)
            opt = _make_optimizer(optimizer, model.parameters(), float(lrs[0]), optimizer_kwargs)
            batches = _batches((task.x_train, task.y_train), task.batch_size, seed)
            curves.append(
                _sweep(
                    model,
                    opt,
                    torch.nn.functional.cross_entropy,
                    batches,
                    lrs,
                    beta=beta,
                    diverge_factor=diverge_factor,
                    seed=seed,
                )
            )
            if on_seed is not None:
                on_seed(len(curves), len(seeds))
    settings = sweep_settings(
        "torch", optimizer, optimizer_kwargs,
        start_lr=start_lr, end_lr=end_lr, num_steps=num_steps, mode=mode, seeds=seeds, beta=beta,
        diverge_factor=diverge_factor,
        batch_size=task.batch_size, task=getattr(task, "name", None),
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
