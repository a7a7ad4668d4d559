"""Study tasks: a dataset, a model factory and the training defaults a study needs.

A :class:`Task` is everything the study runner and the fleet engine need to train one trial:
the train/validation/test tensors (on the CPU), a factory for a fresh model, the batch size, the
default training length and a documented default peak learning rate per optimizer.

Three splits: *train* is what the optimizer sees, *validation* is what every choice is made on
(plateau control, best epoch, the peak lr, which schedule wins), *test* is read once, after the
last epoch, for the numbers a study reports. A task without a validation set gets a seeded split
of its training set (:meth:`Task.with_validation`, 20 %); the engine applies it by itself.

Built-in tasks (:func:`load_task`):

* ``"mnist1d"`` (the default): MNIST-1D (Greydanus & Kobak 2024), the benchmark's 4000 train /
  1000 test sequences of length 40, 10 classes, regenerated offline with
  ``mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())`` (never downloaded), plus 1000
  validation sequences from the same generator with another seed (:data:`MNIST1D_VAL_SEED`, see
  :func:`mnist1d_arrays`), with the benchmark's ``ConvBase`` CNN (5,210 parameters).
* ``"mnist1d_mlp"``: the same data with the benchmark's ``MLPBase`` (15,210 parameters).
* ``"cifar10"``: CIFAR-10 from its python-pickle batches on disk (``data_dir=...``), with a
  ResNet-20-style network (see :mod:`lrlab.study.cifar`).
* ``"package.module:function"``: any function returning a :class:`Task` (your own model and data);
  keyword arguments are passed through to it.

MNIST-1D is generated once per process and cached on disk as ``.npz`` (no pickle) under
``$LRLAB_CACHE`` or ``~/.cache/lrlab``.

>>> task = load_task("mnist1d", subset=200)
>>> task.x_train.shape, task.x_val.shape, task.steps_per_epoch, task.fleet_model
(torch.Size([200, 40]), torch.Size([200, 40]), 2, 'mnist1d_cnn')
>>> sum(p.numel() for p in task.model_fn().parameters())
5210
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "MNIST1D_PEAK_LR",
    "MNIST1D_VAL_SEED",
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
        x_test, y_test: the held-out test set, same layout; read only for the final numbers.
        model_fn: returns a fresh, randomly initialised ``torch.nn.Module``; the caller seeds
            torch before calling it.
        batch_size: examples per optimizer step; the last partial batch of an epoch is kept.
        epochs: default training length of a study, in epochs.
        peak_lr: documented default peak learning rate per optimizer name (the schedules of
            a study are multiplied by it).
        fleet_model: key of an efficient batched formulation in :mod:`lrlab.study.fleet`
            (``"mnist1d_cnn"``, ``"mnist1d_mlp"``), or ``None`` for the generic path.
        x_val, y_val: the validation set (same layout), or ``None``: :meth:`with_validation`
            then splits one off the training set.
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
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if (self.x_val is None) != (self.y_val is None):
            raise ValueError(f"task {self.name!r}: give both x_val and y_val, or neither")
        for which in ("train", "val", "test") if self.x_val is not None else ("train", "test"):
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
        ys = [self.y_train, self.y_test] + ([self.y_val] if self.y_val is not None else [])
        return int(max(y.max().item() for y in ys)) + 1

    @property
    def has_validation(self) -> bool:
        """Whether this task has its own validation set (``x_val``/``y_val``)."""
        return self.x_val is not None

    def with_validation(self, fraction: float = 0.2, seed: int = 0) -> Task:
        """This task with a validation set: itself if it has one, else a copy whose validation
        set is a seeded random ``fraction`` of the training set (taken out of it).

        The split is ``torch.randperm(N, generator=torch.Generator().manual_seed(seed))``: the
        first ``round(fraction * N)`` indices become the validation set, the rest stay training data
        (both in their original order), so every process computes the same split.

        >>> x, y = torch.arange(10.0).view(10, 1), torch.arange(10) % 2
        >>> t = Task("toy", x, y, x, y, lambda: nn.Linear(1, 2)).with_validation(0.3)
        >>> t.x_train.shape[0], t.x_val.shape[0], t.has_validation
        (7, 3, True)
        """
        if self.x_val is not None:
            return self
        n = self.x_train.shape[0]
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            raise ValueError(f"task {self.name!r}: validation fraction must be in (0, 1), got {fraction!r}")
        n_val = round(fraction * n)
        if n_val < 1 or n - n_val < 1:
            raise ValueError(
                f"task {self.name!r}: a validation fraction of {fraction} leaves {n_val} validation and "
                f"{n - n_val} training examples out of {n}; both must be at least 1"
            )
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
        val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
        return self.replace(x_train=self.x_train[train_idx], y_train=self.y_train[train_idx],
                            x_val=self.x_train[val_idx], y_val=self.y_train[val_idx])

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


_MNIST1D_KEYS = ("x", "y", "x_val", "y_val", "x_test", "y_test")
_MNIST1D_MEMO: dict[str, dict[str, np.ndarray]] = {}

MNIST1D_VAL_SEED = 43
"""Seed of the MNIST-1D validation set: ``make_dataset`` with the benchmark's arguments except
``seed`` (42 for the benchmark's train/test), the first 1000 sequences of its training part."""
_MNIST1D_VAL_SIZE = 1000


def _cache_dir() -> Path:
    env = os.environ.get("LRLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lrlab"


def _generate_mnist1d() -> dict[str, np.ndarray]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:  # pragma: no cover - mnist1d is part of the [study] extra
        raise ValueError("the mnist1d task needs the mnist1d package: pip install 'lrlab[study]'") from e
    raw = make_dataset(get_dataset_args())
    args = get_dataset_args()
    args.seed = MNIST1D_VAL_SEED
    val = make_dataset(args)
    return {"x": np.asarray(raw["x"]), "y": np.asarray(raw["y"]),
            "x_val": np.asarray(val["x"][:_MNIST1D_VAL_SIZE]), "y_val": np.asarray(val["y"][:_MNIST1D_VAL_SIZE]),
            "x_test": np.asarray(raw["x_test"]), "y_test": np.asarray(raw["y_test"])}


def mnist1d_arrays(*, cache: bool = True) -> dict[str, np.ndarray]:
    """The MNIST-1D arrays ``x`` (4000, 40), ``y``, ``x_val`` (1000, 40), ``y_val``, ``x_test``
    (1000, 40), ``y_test``.

    Train and test are the benchmark's: ``mnist1d.data.make_dataset(get_dataset_args())`` (seed
    42 inside the args, so deterministic). Validation is a second, independent draw from the same
    generator: ``make_dataset`` with the same arguments but ``seed=MNIST1D_VAL_SEED`` (43), of
    which the first 1000 sequences of the training part are kept. ``make_dataset`` standardises
    each dataset it makes with its own mean and std; over 5000 sequences these agree with the
    benchmark's to ~0.05 %, so the validation set follows the train and test distribution.

    Kept in memory for the process and, with ``cache=True``, in ``$LRLAB_CACHE/mnist1d.npz`` (or
    ``~/.cache/lrlab``), read back with ``allow_pickle=False``; a cache file from an older lrlab
    (without the validation arrays) or a broken one is regenerated. ``x*`` stay float64 here;
    :func:`mnist1d_task` casts them to float32.
    """
    if "d" in _MNIST1D_MEMO:
        return _MNIST1D_MEMO["d"]
    path = _cache_dir() / "mnist1d.npz"
    data: dict[str, np.ndarray] | None = None
    if cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: np.asarray(z[k]) for k in _MNIST1D_KEYS}
        except (OSError, KeyError, ValueError):  # a truncated, foreign or older file: regenerate it
            data = None
    if data is None:
        data = _generate_mnist1d()
        if cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"mnist1d.{os.getpid()}.tmp.npz")
                np.savez(tmp, **data)  # type: ignore[arg-type]
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
    val_subset: int | None = None,
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
        val_subset: keep only the first ``val_subset`` validation examples (default: as for
            ``test_subset``).
        batch_size: examples per step (the benchmark's 100).
        epochs: default study length in epochs.
        peak_lr: overrides of :data:`MNIST1D_PEAK_LR`, per optimizer name.
    """
    if model not in ("cnn", "mlp"):
        raise ValueError(f"mnist1d model must be 'cnn' or 'mlp', got model={model!r}")
    for nm, v in (("subset", subset), ("test_subset", test_subset), ("val_subset", val_subset)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{nm} must be a positive int, got {nm}={v!r}")
    d = mnist1d_arrays()
    n = len(d["y"]) if subset is None else min(len(d["y"]), subset)
    n_val, n_test = (min(len(d[k]), held if held is not None else subset if subset is not None else len(d[k]))
                     for k, held in (("y_val", val_subset), ("y_test", test_subset)))
    lrs = dict(MNIST1D_PEAK_LR)
    lrs.update(peak_lr or {})
    factory: Callable[[], nn.Module] = ConvBase if model == "cnn" else MLPBase
    return Task(
        name="mnist1d" if model == "cnn" else "mnist1d_mlp",
        x_train=torch.from_numpy(d["x"][:n].astype(np.float32)),
        y_train=torch.from_numpy(d["y"][:n].astype(np.int64)),
        x_test=torch.from_numpy(d["x_test"][:n_test].astype(np.float32)),
        y_test=torch.from_numpy(d["y_test"][:n_test].astype(np.int64)),
        x_val=torch.from_numpy(d["x_val"][:n_val].astype(np.float32)),
        y_val=torch.from_numpy(d["y_val"][:n_val].astype(np.int64)),
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
    if ref in _OBJECTS:
        return _OBJECTS[ref]
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
    fn = import_ref(ref)
    from lrlab.study.trainfn import is_training_function

    if is_training_function(fn):
        raise ValueError(f"task {ref!r} is a training function, not a Task builder: run it with lrlab study")
    return build_task(fn, ref, kwargs)


_OBJECTS: dict[str, Task] = {}


def object_ref(task: Task) -> str:
    """A reference :func:`load_task` resolves to ``task`` in this process only (a Task object given
    to the Python API; worker processes cannot rebuild it, so such a study trains in-process)."""
    ref = f"@object:{id(task)}"
    _OBJECTS[ref] = task
    return ref


def import_ref(ref: str, *, what: str = "task") -> Any:
    """The object ``package.module:name`` refers to, importing the module like ``python -m`` does:
    with the current directory on ``sys.path`` (added once, at the end, so it never shadows an
    installed package). The one loader behind ``task:`` in config files, ``--task`` on ``lrlab
    study`` and ``lrlab find``, the Python API and the study's worker processes.

    >>> import_ref("lrlab.study.tasks:mnist1d_task").__name__
    'mnist1d_task'
    >>> import_ref("no_such_module_xyz:f")
    Traceback (most recent call last):
    ...
    ValueError: task 'no_such_module_xyz:f': cannot import module 'no_such_module_xyz' (No module named 'no_such_module_xyz')
    """
    import sys

    mod_name, _, fn_name = ref.partition(":")
    if not mod_name or not all(p.isidentifier() for p in fn_name.split(".")):
        raise ValueError(f"{what} reference must look like 'package.module:function', got {ref!r}")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        module = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        if e.name is None or not (mod_name + ".").startswith(e.name + "."):
            raise ValueError(f"{what} {ref!r}: {_import_failure(mod_name, e)}") from e
        raise ValueError(f"{what} {ref!r}: cannot import module {mod_name!r} ({e})") from e
    except Exception as e:  # a SyntaxError or anything the module raises while it runs
        raise ValueError(f"{what} {ref!r}: {_import_failure(mod_name, e)}") from e
    obj: Any = module
    for part in fn_name.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise ValueError(f"{what} {ref!r}: module {mod_name!r} has no function {fn_name!r}")
    return obj


def _import_failure(mod_name: str, e: BaseException) -> str:
    """One line for a module that exists but fails to import: the exception's type, its message
    and where it happened (a SyntaxError names its file and line itself; otherwise the innermost
    frame of the user's code, not importlib's), so ``lrlab`` can say it without a traceback."""
    where = ""
    if not isinstance(e, SyntaxError):
        frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith("<frozen")]
        if frames:
            where = f" ({os.path.basename(frames[-1].filename)}, line {frames[-1].lineno})"
    return f"cannot import module {mod_name!r}: {type(e).__name__}: {e}{where}"


def build_task(fn: Callable[..., Any], ref: str, kwargs: dict[str, Any]) -> Task:
    """Call a task builder with ``kwargs``; a one-line error when it does not take them or returns
    something other than a :class:`Task`."""
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


def resolve_task(task: Any, **kwargs: Any) -> Any:
    """What a study trains, from any of the forms a config accepts: a built-in name or a
    ``package.module:function`` reference (:func:`import_ref`), a :class:`Task` object, a task
    builder (called with ``kwargs``) or a training function
    (:func:`lrlab.study.trainfn.is_training_function`). Returns a :class:`Task` or a
    :class:`lrlab.study.trainfn.TrainingFunction` (which carries ``kwargs`` to every trial).

    >>> resolve_task("mnist1d", subset=100).name
    'mnist1d'
    """
    from lrlab.study.trainfn import TrainingFunction, is_training_function

    if isinstance(task, Task):
        if kwargs:
            raise ValueError(f"task_kwargs ({', '.join(kwargs)}) cannot apply to a Task object; "
                             "give a task builder instead")
        return task
    if isinstance(task, str):
        if ":" in task:
            fn = import_ref(task)
            if is_training_function(fn):
                return TrainingFunction(fn, task, dict(kwargs))
            return build_task(fn, task, kwargs)
        return load_task(task, **kwargs)
    if is_training_function(task):
        return TrainingFunction.of(task, kwargs)
    if callable(task):
        name = getattr(task, "__qualname__", type(task).__name__)
        return build_task(task, name, kwargs)
    raise ValueError(f"task must be a name, 'package.module:function', a Task or a function, got {task!r}")


def task_label(task: Any) -> str:
    """The text a study records for its task (in resume keys and the report): the string as given,
    a Task's ``name``, or a function's ``module:qualname``."""
    if isinstance(task, str):
        return task
    if isinstance(task, Task):
        return task.name
    mod, qual = getattr(task, "__module__", None), getattr(task, "__qualname__", None)
    return f"{mod}:{qual}" if mod and qual else type(task).__name__
