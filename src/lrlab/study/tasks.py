"""Study tasks: a dataset, a model factory and the training defaults a study needs.

A :class:`Task` is everything the study runner and the fleet engine need to train one trial:
the train/test tensors (on the CPU), a factory for a fresh model, the batch size, the default
training length and a documented default peak learning rate per optimizer.

Built-in tasks (:func:`load_task`):

* ``"mnist1d"`` (the default): MNIST-1D (Greydanus & Kobak 2024), 4000 train / 1000 test
  sequences of length 40, 10 classes, regenerated offline with
  ``mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())`` (never downloaded), with the
  benchmark's ``ConvBase`` CNN (5,210 parameters).
* ``"mnist1d_mlp"``: the same data with the benchmark's ``MLPBase`` (15,210 parameters).
* ``"cifar10"``: CIFAR-10 from its python-pickle batches on disk (``data_dir=...``), with a
  ResNet-20-style network (see :mod:`lrlab.study.cifar`).
* ``"package.module:function"``: any function returning a :class:`Task` (your own model and data);
  keyword arguments are passed through to it.

MNIST-1D is generated once per process and cached on disk as ``.npz`` (no pickle) under
``$LRLAB_CACHE`` or ``~/.cache/lrlab``.

>>> task = load_task("mnist1d", subset=200)
>>> task.x_train.shape, task.steps_per_epoch, task.fleet_model
(torch.Size([200, 40]), 2, 'mnist1d_cnn')
>>> sum(p.numel() for p in task.model_fn().parameters())
5210
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "MNIST1D_PEAK_LR",
    "ConvBase",
    "MLPBase",
    "Task",
    "load_task",
    "mnist1d_arrays",
    "mnist1d_task",
]

# Default peak learning rates on MNIST-1D (used by the default study; the schedules multiply them).
# Anchored on published settings, not tuned on the study's outcome: adam 1e-2 is the MNIST-1D
# benchmark's own lr (greydanus/mnist1d notebooks/train.py); sgd 0.1 with momentum 0.9 is the
# seeds' (PyImageSearch CIFAR-10) setting and the classic SGD default. Both sit within a factor of 2
# of lrlab's LR range test on this task (sgd ~0.06, adam ~0.02: `lrlab find`). RMSprop 1e-3
# (torch's default 1e-2 is too large for this CNN), Adagrad 5e-2, Adadelta 1.0 (torch's and the
# paper's default). The lr-free arms (``pip install 'lrlab[lrfree]'``) follow their authors:
# schedule-free SGD 1.0 (its class default; the README asks for 10-50x the classical SGD lr, and
# 1.0 is 10x sgd's 0.1), schedule-free AdamW 1e-2 (the README's 1-10x of AdamW's lr, at 1x adam's
# 1e-2), Prodigy 1.0 (by design: the lr multiplies Prodigy's own step-size estimate).
MNIST1D_PEAK_LR: dict[str, float] = {
    "sgd": 0.1,
    "adam": 1e-2,
    "rmsprop": 1e-3,
    "adagrad": 5e-2,
    "adadelta": 1.0,
    "sgd_schedulefree": 1.0,
    "adamw_schedulefree": 1e-2,
    "prodigy": 1.0,
}


@dataclass
class Task:
    """A dataset, a model factory and the study's defaults for them.

    Args:
        name: a short label shown in reports (``"mnist1d"``).
        x_train, y_train: training inputs (float32, ``(N, ...)``) and labels (int64, ``(N,)``) on
            the CPU.
        x_test, y_test: the held-out set, same layout.
        model_fn: returns a fresh, randomly initialised ``torch.nn.Module``; the caller seeds
            torch before calling it.
        batch_size: examples per optimizer step; the last partial batch of an epoch is kept.
        epochs: default training length of a study, in epochs.
        peak_lr: documented default peak learning rate per optimizer name (the schedules of
            a study are multiplied by it).
        fleet_model: key of an efficient batched formulation in :mod:`lrlab.study.fleet`
            (``"mnist1d_cnn"``, ``"mnist1d_mlp"``), or ``None`` for the generic path.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    model_fn: Callable[[], nn.Module]
    batch_size: int = 100
    epochs: int = 40
    peak_lr: dict[str, float] = field(default_factory=lambda: dict(MNIST1D_PEAK_LR))
    fleet_model: str | None = None

    def __post_init__(self) -> None:
        for which in ("train", "test"):
            x, y = getattr(self, f"x_{which}"), getattr(self, f"y_{which}")
            if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
                raise ValueError(f"task {self.name!r}: x_{which} and y_{which} must be torch tensors")
            if x.shape[0] != y.shape[0] or y.ndim != 1:
                raise ValueError(
                    f"task {self.name!r}: x_{which} has {x.shape[0]} rows but y_{which} has shape "
                    f"{tuple(y.shape)}; expected y_{which} of shape ({x.shape[0]},)"
                )
            if x.shape[0] == 0:
                raise ValueError(f"task {self.name!r}: x_{which} is empty")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"task {self.name!r}: batch_size must be a positive int, got {self.batch_size!r}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"task {self.name!r}: epochs must be a positive int, got {self.epochs!r}")
        for opt, lr in self.peak_lr.items():
            if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
                raise ValueError(f"task {self.name!r}: peak_lr[{opt!r}] must be a positive number, got {lr!r}")

    @property
    def steps_per_epoch(self) -> int:
        """``ceil(N_train / batch_size)``: the last partial batch of each epoch is kept."""
        return math.ceil(self.x_train.shape[0] / self.batch_size)

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max().item(), self.y_test.max().item())) + 1

    def total_steps(self, epochs: int | None = None) -> int:
        """Optimizer steps in ``epochs`` epochs (default: the task's ``epochs``)."""
        return self.steps_per_epoch * (self.epochs if epochs is None else epochs)

    def replace(self, **changes: Any) -> Task:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


# ---- MNIST-1D -----------------------------------------------------------------------------------


class ConvBase(nn.Module):
    """The MNIST-1D benchmark CNN (greydanus/mnist1d ``notebooks/models.py``): 5,210 parameters.

    Three ``Conv1d`` layers (25 channels, kernels 5/3/3, stride 2, padding 1, ReLU) take the
    length-40 signal to 25 x 5 features, then ``Linear(125, 10)``.
    """

    def __init__(self, output_size: int = 10, channels: int = 25, linear_in: int = 125) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.linear = nn.Linear(linear_in, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, x.shape[-1])
        h = self.conv1(x).relu()
        h = self.conv2(h).relu()
        h = self.conv3(h).relu()
        return self.linear(h.flatten(1))


class MLPBase(nn.Module):
    """The MNIST-1D benchmark MLP: 40 -> 100 -> 100 -> 10 with a residual, 15,210 parameters.

    ``h = relu(l1(x)); h = h + relu(l2(h)); out = l3(h)``.
    """

    def __init__(self, input_size: int = 40, output_size: int = 10, hidden_size: int = 100) -> None:
        super().__init__()
        self.linear1 = nn.Linear(input_size, hidden_size)
        self.linear2 = nn.Linear(hidden_size, hidden_size)
        self.linear3 = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear1(x).relu()
        h = h + self.linear2(h).relu()
        return self.linear3(h)


_MNIST1D_KEYS = ("x", "y", "x_test", "y_test")
_MNIST1D_MEMO: dict[str, dict[str, np.ndarray]] = {}


def _cache_dir() -> Path:
    env = os.environ.get("LRLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lrlab"


def mnist1d_arrays(*, cache: bool = True) -> dict[str, np.ndarray]:
    """The canonical MNIST-1D arrays ``x`` (4000, 40), ``y``, ``x_test`` (1000, 40), ``y_test``.

    Generated offline by ``mnist1d.data.make_dataset(get_dataset_args())`` (seed 42 inside the
    args, so deterministic), then kept in memory for the process and, with ``cache=True``, in
    ``$LRLAB_CACHE/mnist1d.npz`` (or ``~/.cache/lrlab``), read back with ``allow_pickle=False``.
    ``x`` stays float64 here; :func:`mnist1d_task` casts it to float32.
    """
    if "d" in _MNIST1D_MEMO:
        return _MNIST1D_MEMO["d"]
    path = _cache_dir() / "mnist1d.npz"
    data: dict[str, np.ndarray] | None = None
    if cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: np.asarray(z[k]) for k in _MNIST1D_KEYS}
        except (OSError, KeyError, ValueError):  # a truncated or foreign file: regenerate it
            data = None
    if data is None:
        try:
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError as e:  # pragma: no cover - mnist1d is part of the [study] extra
            raise ValueError("the mnist1d task needs the mnist1d package: pip install 'lrlab[study]'") from e
        raw = make_dataset(get_dataset_args())
        data = {k: np.asarray(raw[k]) for k in _MNIST1D_KEYS}
        if cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"mnist1d.{os.getpid()}.tmp.npz")
                np.savez(tmp, x=data["x"], y=data["y"], x_test=data["x_test"], y_test=data["y_test"])
                os.replace(tmp, path)  # atomic: concurrent processes never read half a file
            except OSError:
                pass  # a read-only home is fine: the data is regenerated next time
    _MNIST1D_MEMO["d"] = data
    return data


def mnist1d_task(
    model: str = "cnn",
    *,
    subset: int | None = None,
    test_subset: int | None = None,
    batch_size: int = 100,
    epochs: int = 40,
    peak_lr: dict[str, float] | None = None,
) -> Task:
    """MNIST-1D with the benchmark CNN (``model="cnn"``) or MLP (``model="mlp"``).

    Args:
        model: ``"cnn"`` (ConvBase, 5,210 params) or ``"mlp"`` (MLPBase, 15,210 params).
        subset: keep only the first ``subset`` training examples (tests, quick looks).
        test_subset: keep only the first ``test_subset`` test examples (default: ``subset``
            capped at 1000, or all 1000).
        batch_size: examples per step (the benchmark's 100).
        epochs: default study length in epochs.
        peak_lr: overrides of :data:`MNIST1D_PEAK_LR`, per optimizer name.
    """
    if model not in ("cnn", "mlp"):
        raise ValueError(f"mnist1d model must be 'cnn' or 'mlp', got model={model!r}")
    for nm, v in (("subset", subset), ("test_subset", test_subset)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{nm} must be a positive int, got {nm}={v!r}")
    d = mnist1d_arrays()
    n, n_test = len(d["y"]), len(d["y_test"])
    if subset is not None:
        n = min(n, subset)
        n_test = min(n_test, test_subset if test_subset is not None else subset)
    elif test_subset is not None:
        n_test = min(n_test, test_subset)
    lrs = dict(MNIST1D_PEAK_LR)
    lrs.update(peak_lr or {})
    factory: Callable[[], nn.Module] = ConvBase if model == "cnn" else MLPBase
    return Task(
        name="mnist1d" if model == "cnn" else "mnist1d_mlp",
        x_train=torch.from_numpy(d["x"][:n].astype(np.float32)),
        y_train=torch.from_numpy(d["y"][:n].astype(np.int64)),
        x_test=torch.from_numpy(d["x_test"][:n_test].astype(np.float32)),
        y_test=torch.from_numpy(d["y_test"][:n_test].astype(np.int64)),
        model_fn=factory,
        batch_size=batch_size,
        epochs=epochs,
        peak_lr=lrs,
        fleet_model=f"mnist1d_{model}",
    )


# ---- lookup -------------------------------------------------------------------------------------

BUILTIN_TASKS = ("mnist1d", "mnist1d_mlp", "cifar10")


def load_task(ref: str = "mnist1d", **kwargs: Any) -> Task:
    """The task named ``ref``, built with ``kwargs``.

    ``ref`` is ``"mnist1d"`` (CNN), ``"mnist1d_mlp"``, ``"cifar10"`` (needs ``data_dir=``) or
    ``"package.module:function"``: a function returning a :class:`Task`, called with ``kwargs``.
    Unknown names, unimportable modules and functions that return something else raise
    ``ValueError``.

    >>> load_task("mnist1d_mlp", subset=100).name
    'mnist1d_mlp'
    >>> load_task("imagenet")
    Traceback (most recent call last):
    ...
    ValueError: unknown task 'imagenet': use mnist1d, mnist1d_mlp, cifar10 or 'package.module:function'
    """
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"task must be a non-empty string, got task={ref!r}")
    if ref == "mnist1d":
        kwargs.setdefault("model", "cnn")
        return mnist1d_task(**kwargs)
    if ref == "mnist1d_mlp":
        if kwargs.pop("model", "mlp") != "mlp":
            raise ValueError("task 'mnist1d_mlp' fixes model='mlp'")
        return mnist1d_task("mlp", **kwargs)
    if ref == "cifar10":
        from lrlab.study.cifar import cifar10_task

        return cifar10_task(**kwargs)
    if ":" not in ref:
        raise ValueError(
            f"unknown task {ref!r}: use mnist1d, mnist1d_mlp, cifar10 or 'package.module:function'"
        )
    mod_name, _, fn_name = ref.partition(":")
    if not mod_name or not fn_name.isidentifier():
        raise ValueError(f"task reference must look like 'package.module:function', got {ref!r}")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise ValueError(f"task {ref!r}: cannot import module {mod_name!r} ({e})") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ValueError(f"task {ref!r}: module {mod_name!r} has no function {fn_name!r}")
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError as e:
        raise ValueError(f"task {ref!r} does not take these arguments ({', '.join(kwargs) or 'none'}): {e}") from e
    except ValueError:  # builtins without a signature: let the call decide
        pass
    task = fn(**kwargs)
    if not isinstance(task, Task):
        raise ValueError(f"task {ref!r} returned {type(task).__name__}, expected lrlab.study.Task")
    return task
