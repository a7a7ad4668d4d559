"""The fleet engine: many trials of one task trained together as one batched computation.

A *trial* (:class:`TrialSpec`) is one training run: a schedule (in absolute lr units, resolved in
optimizer steps), an optimizer from :data:`~lrlab.study.optimizers.OPTIMIZERS` and a seed. Three
ways to train trials, all with the same results:

* :func:`train_one`: the reference. One model, the real ``torch.optim`` optimizer and
  :class:`lrlab.adapters.torch.LRLabScheduler`, the loop every PyTorch user writes.
* :func:`train_fleet`: the K trials of one optimizer as one computation. Their weights are stacked
  (one ``(K, *shape)`` tensor per parameter), the forward and backward passes run for all K at
  once through a batched formulation (:mod:`lrlab.study._batched`: hand-batched MNIST-1D CNN and
  MLP, or ``torch.vmap`` for any model), and the *real* ``torch.optim`` optimizer updates the
  stacked tensors with ``lr = 1``; each trial's update is then scaled by its own lr:
  ``p <- p_old + lr_k * (p_unit - p_old)``. This is exact because the five study optimizers
  update element by element with a step linear in ``lr`` whose state does not depend on ``lr``
  (see :mod:`lrlab.study.optimizers`; the schedule-free and Prodigy arms do not, and train one
  at a time). Per-group optimizers (one param group per trial) give
  the same result but cost ~0.2 ms per trial-step on a 2-core CPU, a quarter of the training
  step; the scaled update costs ~0.02 ms.
* :func:`run_trials`: splits trials into fleets (one per optimizer and its settings, cut to at
  most ``max_fleet`` trials) and spreads them over worker processes, with callbacks in the
  caller's process.

Both training paths share one recipe, so they agree to rounding (tested in float64 to 1e-10):

* the model is ``task.model_fn()`` after ``torch.manual_seed(seed)``;
* its ``nn.Dropout``/``Dropout1d/2d/3d`` modules draw their masks, in call order, from the
  trial's own generator :func:`lrlab.study._batched.dropout_generator` (``seed``), not from
  torch's global stream, so a trial's dropout does not depend on the trials trained with it;
  BatchNorm layers keep and update each trial's own running statistics;
* epoch ``e`` visits the training set in the order ``torch.randperm(N, generator=
  torch.Generator().manual_seed(seed * 100003 + e))`` in batches of ``task.batch_size`` (the
  last partial batch is kept); the loss is the mean cross-entropy of the batch;
* the lr of update ``t`` (0-based) is ``schedule(t, state)``, where ``state`` holds the plateau
  multipliers, fed once per epoch with the trial's ``plateau_metric``;
* the epoch's training loss and accuracy are the running means over its minibatches (each
  batch's mean cross-entropy and accuracy in training mode, before that batch's update, weighted
  by the batch's size): no extra pass over the training set;
* at the end of each epoch the model is evaluated (no grad, ``eval()`` mode) on the full
  validation set; the test set is evaluated only after the last epoch (``test_every_epoch=True``
  evaluates it every epoch, for curves to look at; nothing reads them to choose anything, and
  training is the same either way). Mean cross-entropy and accuracy;
* a task without a validation set gets :meth:`~lrlab.study.tasks.Task.with_validation`'s seeded
  split (20 % of train) in every entry point, so all of them train on the same data;
* a trial *diverges* when a training batch loss or the validation loss is NaN or infinite: that
  update is not applied, the trial stops (its other epochs are not trained), and the others go on.

>>> from lrlab.schedules import constant
>>> from lrlab.study.tasks import load_task
>>> task = load_task("mnist1d", subset=200, batch_size=50)
>>> trials = [TrialSpec(f"t{s}", constant(0.01), "adam", {}, seed=s) for s in (0, 1)]
>>> [r.trial_id for r in train_fleet(task, trials, epochs=1)]
['t0', 't1']
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lrlab.schedules import Schedule, from_config
from lrlab.study import _batched
from lrlab.study import checkpoint as _ckpt
from lrlab.study.optimizers import (
    OPTIMIZERS,
    eval_begin,
    eval_end,
    make_optimizer,
    optimizer_kwargs,
    update_is_linear_in_lr,
)

__all__ = [
    "PLATEAU_METRICS",
    "EpochRecord",
    "TrialResult",
    "TrialSpec",
    "TrialsFailed",
    "checkpoint_file",
    "keep_workers",
    "run_trials",
    "train_fleet",
    "train_one",
]

PLATEAU_METRICS = ("val_loss", "val_acc", "train_loss", "train_acc")
"""Per-epoch metrics a trial's plateau nodes can be fed with (never the test set's)."""

CUDA_WORKERS = 4
"""Default worker processes sharing one GPU (fewer where the machine has fewer cores)."""

_ORDER_MULT = 100003
_EVAL_SAMPLES = 2048  # samples x trials per evaluation chunk: small enough to stay in cache (1.9x faster than 16384)
_EVAL_CHUNK = 256  # samples per evaluation chunk, whatever the fleet size: a trial's sums do not depend on it


class PhaseTimer:
    """Wall and CPU seconds per phase of the fleet loop, for ``benchmarks/profile_fleet.py``.

    Set :data:`PROFILE` to one and every :func:`train_fleet` adds the time since its previous
    mark to the named phase at each :meth:`mark` (a ``None`` check when profiling is off).
    """

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.restart()

    def restart(self) -> None:
        self._w, self._c = time.perf_counter(), time.thread_time()

    def mark(self, phase: str) -> None:
        w, c = time.perf_counter(), time.thread_time()
        self.wall[phase] = self.wall.get(phase, 0.0) + w - self._w
        self.cpu[phase] = self.cpu.get(phase, 0.0) + c - self._c
        self._w, self._c = w, c


def _no_mark(phase: str) -> None:
    pass


PROFILE: PhaseTimer | None = None
"""The :class:`PhaseTimer` the fleet loop reports to (``None``: not profiling)."""


# ---- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialSpec:
    """One training run.

    Args:
        trial_id: unique, stable key (storage uses it to resume).
        schedule: resolved schedule in optimizer steps and absolute lr units (peak included).
        optimizer: a key of :data:`~lrlab.study.optimizers.OPTIMIZERS`.
        optimizer_kwargs: overrides of that optimizer's defaults (never ``lr``).
        seed: the model-initialisation seed and the data-order seed.
        plateau_metric: the per-epoch metric fed to the schedule's plateau nodes, one of
            :data:`PLATEAU_METRICS` (default ``"val_loss"``).
    """

    trial_id: str
    schedule: Schedule
    optimizer: str
    optimizer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    plateau_metric: str = "val_loss"

    def __post_init__(self) -> None:
        if not isinstance(self.trial_id, str) or not self.trial_id:
            raise ValueError(f"trial_id must be a non-empty string, got {self.trial_id!r}")
        if not isinstance(self.schedule, Schedule):
            raise ValueError(f"trial {self.trial_id}: schedule must be an lrlab Schedule, got {self.schedule!r}")
        if not self.schedule.is_resolved():
            raise ValueError(
                f"trial {self.trial_id}: schedule {self.schedule} has durations in epochs or percent; "
                "resolve it with .resolve(total_steps=..., steps_per_epoch=...) first"
            )
        optimizer_kwargs(self.optimizer, self.optimizer_kwargs)  # validates name and arguments
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"trial {self.trial_id}: seed must be an int >= 0, got seed={self.seed!r}")
        if self.plateau_metric not in PLATEAU_METRICS:
            raise ValueError(
                f"trial {self.trial_id}: plateau_metric must be one of {', '.join(PLATEAU_METRICS)}, "
                f"got {self.plateau_metric!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (the schedule as its config)."""
        return {"trial_id": self.trial_id, "schedule": self.schedule.to_config(), "optimizer": self.optimizer,
                "optimizer_kwargs": dict(self.optimizer_kwargs), "seed": self.seed,
                "plateau_metric": self.plateau_metric}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialSpec:
        return cls(d["trial_id"], from_config(d["schedule"]), d["optimizer"], dict(d["optimizer_kwargs"]),
                   int(d["seed"]), d["plateau_metric"])


@dataclass
class EpochRecord:
    """A trial's state at the end of one epoch (``epoch`` counts from 0).

    ``lr`` is the lr of the epoch's last update; losses are mean cross-entropies and accuracies
    fractions in [0, 1]: ``train_*`` the running means over the epoch's minibatches, ``val_*``
    over the full validation set, ``test_*`` over the full test set after the last epoch (NaN in
    the other epochs unless the run asked for ``test_every_epoch``).
    """

    trial_id: str
    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float


@dataclass
class TrialResult:
    """The outcome of one trial.

    Attributes:
        curves: one :class:`EpochRecord` per completed epoch.
        diverged: a loss became NaN/inf; ``diverged_epoch`` is the epoch where it happened.
        final: ``val_acc``, ``val_loss``, ``test_acc``, ``test_loss``, ``train_loss``,
            ``train_acc`` of the last epoch (NaN for a diverged trial), ``best_val_acc`` and
            ``best_epoch`` (the first epoch with the highest validation accuracy; NaN and -1 if
            no epoch completed), ``epochs`` (completed) and ``steps`` (updates applied).
        seconds: wall time; trials trained together share their fleet's time equally.
        weights: the final parameters and buffers (CPU tensors by name, e.g. BatchNorm running
            statistics) when asked for with ``keep_weights=True``, else ``None``.
        started, finished: Unix times at which the trial began training (its fleet's start) and
            ended (NaN when unknown); the study stores them as the Optuna trial's start and
            completion times.
    """

    trial_id: str
    curves: list[EpochRecord]
    diverged: bool
    diverged_epoch: int | None
    final: dict[str, float]
    seconds: float
    weights: dict[str, Tensor] | None = None
    started: float = math.nan
    finished: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-able data (without the weights)."""
        return {"trial_id": self.trial_id, "curves": [asdict(c) for c in self.curves], "diverged": self.diverged,
                "diverged_epoch": self.diverged_epoch, "final": dict(self.final), "seconds": self.seconds,
                "started": self.started, "finished": self.finished}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialResult:
        return cls(d["trial_id"], [EpochRecord(**c) for c in d["curves"]], bool(d["diverged"]),
                   d["diverged_epoch"], dict(d["final"]), float(d["seconds"]), None,
                   float(d.get("started", math.nan)), float(d.get("finished", math.nan)))


def _final(curves: list[EpochRecord], diverged: bool, steps: int) -> dict[str, float]:
    nan = float("nan")
    last = curves[-1] if curves and not diverged else None
    best = max(curves, key=lambda c: c.val_acc) if curves else None  # the first epoch with the max
    return {
        "val_acc": last.val_acc if last else nan,
        "val_loss": last.val_loss if last else nan,
        "best_val_acc": best.val_acc if best else nan,
        "best_epoch": float(best.epoch) if best else -1.0,
        "test_acc": last.test_acc if last else nan,
        "test_loss": last.test_loss if last else nan,
        "train_loss": last.train_loss if last else nan,
        "train_acc": last.train_acc if last else nan,
        "epochs": float(len(curves)),
        "steps": float(steps),
    }


# ---- the shared recipe ------------------------------------------------------------------------


def epoch_order(seed: int, epoch: int, n: int) -> Tensor:
    """The order in which trial ``seed`` visits the ``n`` training examples in ``epoch``.

    >>> epoch_order(0, 0, 5).tolist() == epoch_order(0, 0, 5).tolist() != epoch_order(0, 1, 5).tolist()
    True
    """
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * _ORDER_MULT + epoch))


def _check_run_args(task: Any, epochs: Any, dtype: Any) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got epochs={epochs!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got dtype={dtype!r}")
    if not hasattr(task, "model_fn") or not hasattr(task, "x_train"):
        raise ValueError(f"task must be an lrlab.study.Task, got {type(task).__name__}")


def _with_validation(task: Any) -> Any:
    """``task`` itself if it has a validation set, else its seeded split (the same in every process)."""
    return task if getattr(task, "x_val", None) is not None else task.with_validation()


def _data(task: Any, device: str | torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
    """``x, y, x_val, y_val, x_test, y_test`` on ``device`` (inputs in ``dtype``)."""
    out: list[Tensor] = []
    for which in ("train", "val", "test"):
        out += [getattr(task, f"x_{which}").to(device=device, dtype=dtype), getattr(task, f"y_{which}").to(device)]
    return tuple(out)


def _make_model(task: Any, seed: int, device: str | torch.device, dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(seed)
    return task.model_fn().to(device=device, dtype=dtype)


def _has_plateau(schedule: Schedule) -> bool:
    from lrlab.schedules._plateau import plateau

    return any(isinstance(n, plateau) for n in schedule.walk())


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


# ---- epoch-end checkpoints ----------------------------------------------------------------------


def checkpoint_file(directory: str | Path, trial: TrialSpec, epochs: int) -> Path:
    """``trial``'s epoch-end checkpoint in ``directory`` when it trains for ``epochs`` epochs: a
    path stem whose file is ``<stem>.<epochs saved>.safetensors`` (see :mod:`lrlab.study.checkpoint`)."""
    return _ckpt.trial_path(directory, {"trial": trial.to_dict(), "epochs": epochs})


def _task_fingerprint(task: Any) -> dict[str, Any]:
    """What identifies a task's data and recipe in a checkpoint: its name, batch size, batched
    formulation and a hash of the labels and the first inputs of each split."""
    h = hashlib.sha256()
    for which in ("train", "val", "test"):
        for t in (getattr(task, f"x_{which}", None), getattr(task, f"y_{which}", None)):
            if t is None:
                h.update(b"none")
                continue
            h.update(repr(tuple(t.shape)).encode())
            part = t[:256] if t.dim() > 1 else t
            h.update(part.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return {"name": str(getattr(task, "name", "?")), "batch_size": int(task.batch_size),
            "fleet_model": task.fleet_model, "data": h.hexdigest()[:16]}


_CURVE_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def _curves_tensor(curves: list[EpochRecord]) -> Tensor:
    """A trial's epoch records as one float64 ``(epochs, 8)`` tensor (exact: the values are Python
    floats; a list of dicts made late checkpoints 4x slower to write)."""
    return torch.tensor([[float(getattr(c, k)) for k in _CURVE_COLUMNS] for c in curves],
                        dtype=torch.float64).reshape(len(curves), len(_CURVE_COLUMNS))


def _curves_from(trial_id: str, t: Tensor) -> list[EpochRecord]:
    return [EpochRecord(trial_id, int(row[0]), *row[1:]) for row in t.tolist()]


class _Checkpoints:
    """Where and under which identity a training call saves its trials' epoch-end states."""

    def __init__(self, directory: str | Path, task: Any, epochs: int, dtype: torch.dtype, device: Any,
                 test_every_epoch: bool) -> None:
        import lrlab

        self.directory, self.epochs = Path(directory), epochs
        self.base = {"recipe": _ckpt.RECIPE, "lrlab": lrlab.__version__, "task": _task_fingerprint(task),
                     "epochs": epochs, "dtype": str(dtype), "device": torch.device(device).type,
                     "test_every_epoch": bool(test_every_epoch), "torch": torch.__version__.split("+")[0]}

    def path(self, trial: TrialSpec) -> Path:
        return checkpoint_file(self.directory, trial, self.epochs)

    def identity(self, trial: TrialSpec, engine: str) -> dict[str, Any]:
        return {**self.base, "trial": trial.to_dict(), "engine": engine}

    def save(self, trial: TrialSpec, engine: str, state: dict[str, Any]) -> None:
        _ckpt.save(self.path(trial), self.identity(trial, engine), state)

    def load(self, trial: TrialSpec, engine: str) -> dict[str, Any] | None:
        """The trial's saved state (epochs 1 .. epochs-1 trained), or ``None`` (warned when unusable)."""
        state = _ckpt.load(self.path(trial), self.identity(trial, engine))
        if state is None:
            return None
        epoch = state.get("epoch") if isinstance(state, dict) else None
        curves = state.get("curves") if isinstance(state, dict) else None
        if not (isinstance(epoch, int) and 1 <= epoch < self.epochs and isinstance(curves, Tensor)
                and tuple(curves.shape) == (epoch, len(_CURVE_COLUMNS))):
            self.ignore(trial, f"it holds epoch {epoch!r} of {self.epochs}")
            return None
        return state

    def ignore(self, trial: TrialSpec, why: str) -> None:
        import warnings

        warnings.warn(f"ignoring the checkpoint of trial {trial.trial_id} ({why}); it restarts from epoch 0",
                      _ckpt.LRLabCheckpointWarning, stacklevel=3)

    def discard(self, trial: TrialSpec) -> None:
        _ckpt.discard(self.path(trial))


# ---- the reference: one trial at a time --------------------------------------------------------


@torch.no_grad()
def _evaluate_one(model: torch.nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    was = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    chunk = _EVAL_CHUNK
    for i in range(0, x.shape[0], chunk):
        out = model(x[i:i + chunk])
        loss_sum += float(F.cross_entropy(out, y[i:i + chunk], reduction="sum"))
        correct += int((out.argmax(-1) == y[i:i + chunk]).sum())
    model.train(was)
    return loss_sum / x.shape[0], correct / x.shape[0]


def train_one(task: Any, trial: TrialSpec, *, epochs: int, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32, on_epoch: Callable[[EpochRecord], None] | None = None,
              keep_weights: bool = False, test_every_epoch: bool = False,
              checkpoint_dir: str | Path | None = None) -> TrialResult:
    """Train one trial the usual way: one model, ``torch.optim`` and ``LRLabScheduler``.

    Args:
        task: the :class:`~lrlab.study.tasks.Task`.
        trial: what to train.
        epochs: passes over the training set.
        device, dtype: where and in which precision (float32 or float64) to train.
        on_epoch: called with each epoch's :class:`EpochRecord`.
        keep_weights: return the final parameters in :attr:`TrialResult.weights`.
        test_every_epoch: evaluate the test set after every epoch, not only the last (for
            display; training is the same).
        checkpoint_dir: save the trial's state there at each epoch end
            (:func:`checkpoint_file`) and continue from a checkpoint found there, to the same
            numbers as an uninterrupted run; the checkpoint is removed when the trial returns.
    """
    _check_run_args(task, epochs, dtype)
    task = _with_validation(task)
    ck = None if checkpoint_dir is None else _Checkpoints(checkpoint_dir, task, epochs, dtype, device,
                                                           test_every_epoch)
    result = _train_one(task, trial, epochs=epochs, device=device, dtype=dtype, on_epoch=on_epoch,
                        keep_weights=keep_weights, test_every_epoch=test_every_epoch, ck=ck)
    if ck is not None:
        ck.discard(trial)
    return result


def _rng_states(device: Any) -> dict[str, Tensor]:
    """torch's global random states (a model's own random calls outside its dropout modules draw
    from them; the dropout modules draw from the trial's generator, saved beside these)."""
    out = {"cpu": torch.get_rng_state()}
    if torch.device(device).type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def _set_rng_states(states: Mapping[str, Tensor], device: Any) -> None:
    torch.set_rng_state(states["cpu"])
    if "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def _train_one(task: Any, trial: TrialSpec, *, epochs: int, device: str | torch.device, dtype: torch.dtype,
               on_epoch: Callable[[EpochRecord], None] | None, keep_weights: bool, test_every_epoch: bool,
               ck: _Checkpoints | None, resume: bool = True) -> TrialResult:
    """:func:`train_one` on a task with a validation set, checkpointing through ``ck`` (and
    continuing from its checkpoint unless ``resume`` is false)."""
    from lrlab.adapters.torch import LRLabScheduler

    t0, wall0 = time.perf_counter(), time.time()
    x, y, xv, yv, xt, yt = _data(task, device, dtype)
    model = _make_model(task, trial.seed, device, dtype)
    # dropout masks from the trial's own generator, as in a fleet (a checkpoint must save its state)
    dropout_rng = _batched.dropout_generator(trial.seed, device)
    _batched.use_trial_dropout(model, dropout_rng)
    opt = make_optimizer(trial.optimizer, model.parameters(), lr=0.0, **trial.optimizer_kwargs)
    sched = LRLabScheduler(opt, trial.schedule)
    plateau = _has_plateau(trial.schedule)
    n, bsz = x.shape[0], task.batch_size
    curves: list[EpochRecord] = []
    diverged_epoch: int | None = None
    steps = start = 0
    prior = 0.0
    nan = float("nan")
    saved = ck.load(trial, "one") if ck is not None and resume else None
    if saved is not None:
        try:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            _set_rng_states(saved["rng"], device)
            dropout_rng.set_state(saved["rng"]["dropout"])
            curves = _curves_from(trial.trial_id, saved["curves"])
            steps, start, prior, wall0 = int(saved["steps"]), int(saved["epoch"]), float(saved["seconds"]), \
                float(saved["started"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            assert ck is not None
            ck.ignore(trial, f"it does not fit: {(str(e).strip().splitlines() or [type(e).__name__])[0]}")
            return _train_one(task, trial, epochs=epochs, device=device, dtype=dtype, on_epoch=on_epoch,
                              keep_weights=keep_weights, test_every_epoch=test_every_epoch, ck=ck, resume=False)
    for epoch in range(start, epochs):
        order = epoch_order(trial.seed, epoch, n).to(device)
        lr = nan
        loss_sum, correct = 0.0, 0.0
        for i in range(0, n, bsz):
            idx = order[i:i + bsz]
            out = model(x[idx])
            loss = F.cross_entropy(out, y[idx])
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                diverged_epoch = epoch
                break
            loss_sum += loss_value * idx.shape[0]
            correct += float((out.detach().argmax(-1) == y[idx]).sum())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            lr = float(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            steps += 1
        if diverged_epoch is not None:
            break
        eval_begin(trial.optimizer, opt, model, x, bsz)  # schedule-free: evaluate its average x
        val_loss, val_acc = _evaluate_one(model, xv, yv)
        test_loss, test_acc = (_evaluate_one(model, xt, yt) if test_every_epoch or epoch == epochs - 1
                               else (nan, nan))
        eval_end(trial.optimizer, opt)
        if not _finite(val_loss):
            diverged_epoch = epoch
            break
        rec = EpochRecord(trial.trial_id, epoch, lr, loss_sum / n, correct / n, val_loss, val_acc,
                          test_loss, test_acc)
        curves.append(rec)
        if plateau:
            sched.observe(getattr(rec, trial.plateau_metric))
        if ck is not None and epoch < epochs - 1:  # before the callback: an epoch reported is an epoch saved
            ck.save(trial, "one", {
                "epoch": epoch + 1, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "rng": {**_rng_states(device), "dropout": dropout_rng.get_state()},
                "curves": _curves_tensor(curves),
                "steps": steps, "seconds": prior + time.perf_counter() - t0, "started": wall0,
            })
        if on_epoch is not None:
            on_epoch(rec)
    sched.close()
    if keep_weights:
        eval_begin(trial.optimizer, opt, model, x, bsz)  # the weights the optimizer evaluates
    weights = ({k: v.detach().cpu().clone() for k, v in (*model.named_parameters(), *model.named_buffers())}
               if keep_weights else None)
    diverged = diverged_epoch is not None
    return TrialResult(trial.trial_id, curves, diverged, diverged_epoch, _final(curves, diverged, steps),
                       prior + time.perf_counter() - t0, weights, wall0, time.time())


# ---- the fleet ----------------------------------------------------------------------------------


def _group_key(trial: TrialSpec) -> tuple[str, str]:
    kw = optimizer_kwargs(trial.optimizer, trial.optimizer_kwargs)
    return trial.optimizer, repr(sorted(kw.items()))


def train_fleet(task: Any, trials: Sequence[TrialSpec], *, epochs: int, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, on_epoch: Callable[[EpochRecord], None] | None = None,
                on_trial_done: Callable[[TrialResult], None] | None = None,
                keep_weights: bool = False, test_every_epoch: bool = False,
                checkpoint_dir: str | Path | None = None, discard_checkpoints: bool = True) -> list[TrialResult]:
    """Train ``trials`` of one task as batched computations; same results as :func:`train_one`.

    Trials are grouped by optimizer and optimizer settings; each group is one fleet. The
    batched formulation is ``task.fleet_model`` (``"mnist1d_cnn"``, ``"mnist1d_mlp"``) or, for
    ``None``, ``torch.vmap`` over any model; a model vmap cannot batch (see
    :func:`lrlab.study._batched.vmap_support`) is trained one trial at a time with
    :func:`train_one`.

    Args:
        task, epochs, device, dtype, keep_weights, test_every_epoch: as for :func:`train_one`.
        trials: the trials (unique ``trial_id``\\ s).
        on_epoch: called with every trial's :class:`EpochRecord` at each epoch end.
        on_trial_done: called with each :class:`TrialResult` as soon as it is known (a diverged
            trial's before the rest of its fleet finishes).
        checkpoint_dir: save every running trial's state there at each epoch end (one file per
            trial, :func:`checkpoint_file`) and continue each trial that has a checkpoint there
            from it; trials saved after the same epoch train together, and on the CPU a resumed
            trial ends bit for bit where an uninterrupted one ends.
        discard_checkpoints: remove a trial's checkpoint once ``on_trial_done`` returned for it
            (``False``: the caller removes it, e.g. after storing the result in another process).

    Returns:
        one :class:`TrialResult` per trial, in the order of ``trials``.
    """
    _check_run_args(task, epochs, dtype)
    task = _with_validation(task)
    trials = list(trials)
    ids = [t.trial_id for t in trials]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"trial ids must be unique, repeated: {', '.join(dup)}")
    groups: dict[tuple[str, str], list[TrialSpec]] = {}
    for t in trials:
        groups.setdefault(_group_key(t), []).append(t)
    results: dict[str, TrialResult] = {}
    by_id = {t.trial_id: t for t in trials}
    ck = None if checkpoint_dir is None else _Checkpoints(checkpoint_dir, task, epochs, dtype, device,
                                                           test_every_epoch)

    def done(r: TrialResult) -> None:
        results[r.trial_id] = r
        if on_trial_done is not None:
            on_trial_done(r)
        if ck is not None and discard_checkpoints:
            ck.discard(by_id[r.trial_id])

    with _deterministic_cudnn(device):
        for group in groups.values():
            reason = _fleet_refusal(task, group[0], device, dtype)
            if reason is None:
                for members, saved in _resume_groups(group, ck, task.fleet_model or "vmap"):
                    fleet = _Fleet(task, members, epochs, device, dtype, on_epoch, done, keep_weights, test_every_epoch, ck)
                    if saved is not None and not fleet.restore(saved):
                        fleet = _Fleet(task, members, epochs, device, dtype, on_epoch, done, keep_weights,
                                       test_every_epoch, ck)
                    fleet.run()
            else:
                for t in group:
                    done(_train_one(task, t, epochs=epochs, device=device, dtype=dtype, on_epoch=on_epoch,
                                    keep_weights=keep_weights, test_every_epoch=test_every_epoch, ck=ck))
    return [results[i] for i in ids]


def _resume_groups(group: list[TrialSpec], ck: _Checkpoints | None, engine: str
                   ) -> list[tuple[list[TrialSpec], list[dict[str, Any]] | None]]:
    """``group`` split into the fleets to train: one per set of trials whose checkpoints continue
    from the same epoch with the same shared optimizer state (e.g. Adam's step count), resumed
    fleets first, then the trials without a checkpoint (``None``)."""
    if ck is None:
        return [(group, None)]
    buckets: dict[str, tuple[list[TrialSpec], list[dict[str, Any]]]] = {}
    fresh = []
    for t in group:
        state = ck.load(t, engine)
        if state is None:
            fresh.append(t)
            continue
        shared = [{k: v.tolist() if isinstance(v, Tensor) else v for k, v in o.items()}
                  for o in state.get("shared", [])]
        key = json.dumps([state["epoch"], shared], sort_keys=True, default=str)
        members, states = buckets.setdefault(key, ([], []))
        members.append(t)
        states.append(state)
    out: list[tuple[list[TrialSpec], list[dict[str, Any]] | None]] = list(buckets.values())
    if fresh:
        out.append((fresh, None))
    return out


@contextlib.contextmanager
def _deterministic_cudnn(device: str | torch.device) -> Iterator[None]:
    """On a GPU, cuDNN's deterministic algorithms (no autotuning, no atomics in the backward), so
    the same command gives the same numbers; restored afterwards. Nothing to do on a CPU."""
    if torch.device(device).type != "cuda":
        yield
        return
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def fleet_path(task: Any, trial: TrialSpec, *, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> str:
    """How :func:`train_fleet` trains ``trial``'s group: the formulation's name, or
    ``"one-at-a-time: <reason>"``."""
    reason = _fleet_refusal(task, trial, device, dtype)
    if reason is not None:
        return f"one-at-a-time: {reason}"
    return task.fleet_model or "vmap"


def default_max_fleet(device: str | torch.device) -> int:
    """Most trials in one fleet unless told otherwise: 24 on CPU (per-trial cost is flat from ~8
    trials on, and smaller fleets let idle workers take the remaining ones), 512 on CUDA (bigger
    fleets fill the GPU)."""
    return 512 if str(device).startswith("cuda") else 24


def path_description(task: Any, trial: TrialSpec, *, device: str | torch.device = "cpu",
                     max_fleet: int | None = None) -> tuple[str, str]:
    """How :func:`train_fleet` trains ``trial``'s optimizer group, in words: ``(path, text)`` with
    ``path`` one of ``"mnist1d_cnn"``, ``"mnist1d_mlp"``, ``"vmap"``, ``"one at a time"`` and
    ``text`` the line the study prints, e.g. ``"fleet: vmap (per-trial BatchNorm statistics),
    up to 24 trials per fleet"`` or ``"one at a time: <reason>"``.

    >>> from lrlab.schedules import constant
    >>> from lrlab.study.tasks import load_task
    >>> path_description(load_task("mnist1d", subset=50), TrialSpec("t", constant(0.1), "sgd"))[1]
    'fleet: mnist1d_cnn (hand-batched), up to 24 trials per fleet'
    """
    path = fleet_path(task, trial, device=device)
    if path.startswith("one-at-a-time: "):
        return "one at a time", f"one at a time: {path.removeprefix('one-at-a-time: ')}"
    size = f"up to {max_fleet or default_max_fleet(device)} trials per fleet"
    if path != "vmap":
        return path, f"fleet: {path} (hand-batched), {size}"
    rng = torch.get_rng_state()
    features = _batched.vmap_features(_make_model(task, 0, device, torch.float32))
    torch.set_rng_state(rng)
    what = f" ({', '.join(features)})" if features else ""
    return path, f"fleet: vmap{what}, {size}"


def _fleet_refusal(task: Any, trial: TrialSpec, device: Any, dtype: torch.dtype) -> str | None:
    reason = update_is_linear_in_lr(trial.optimizer, optimizer_kwargs(trial.optimizer, trial.optimizer_kwargs))
    if reason is not None:
        return reason
    if task.fleet_model is not None:
        return None  # a named formulation is checked (and errors) when the fleet is built
    rng = torch.get_rng_state()
    model = _make_model(task, 0, device, dtype)  # a probe copy; every trial builds its own model
    torch.set_rng_state(rng)
    probe = task.x_train[: min(4, task.x_train.shape[0])].to(device=device, dtype=dtype)
    return _batched.vmap_support(model, probe)


class _Fleet:
    """K trials of one optimizer group, stacked; rows of the stacked tensors are the active trials.

    All of a fleet's mutable per-trial state (what a checkpoint must save):

    * ``params``: the stacked parameters, one ``(rows, *shape)`` tensor per parameter;
    * ``opt``: the ``torch.optim`` optimizer over them (its state stacked the same way);
    * ``buffers``: the stacked buffers (generic formulation), updated in place by training
      (BatchNorm ``running_mean``/``running_var``/``num_batches_tracked``);
    * ``rng``: one ``torch.Generator`` per trial *index* (not row) from which that trial's
      dropout masks are drawn, or ``[]`` when the model has no dropout modules; restoring each
      generator's state makes a resumed fleet draw what an uninterrupted one would;
    * ``states`` (schedule states), ``curves``, ``steps``, ``active`` (trial index of each row).
    """

    def __init__(self, task: Any, trials: list[TrialSpec], epochs: int, device: Any, dtype: torch.dtype,
                 on_epoch: Callable[[EpochRecord], None] | None, done: Callable[[TrialResult], None],
                 keep_weights: bool, test_every_epoch: bool = False, ck: _Checkpoints | None = None) -> None:
        from lrlab.schedules._plateau import ScheduleState

        self.task, self.trials, self.epochs, self.test_every_epoch = task, trials, epochs, test_every_epoch
        self.device, self.dtype = device, dtype
        self.on_epoch, self.done, self.keep_weights = on_epoch, done, keep_weights
        self.t0, self.wall0 = time.perf_counter(), time.time()
        models = [_make_model(task, t.seed, device, dtype) for t in trials]
        self.form = _batched.formulation(task.fleet_model, models[0])
        probe = task.x_train[: min(8, task.x_train.shape[0])].to(device=device, dtype=dtype)
        _batched.check_formulation(self.form, models[: min(2, len(models))], probe)
        self.params = [p.requires_grad_() for p in _batched.stack_params(models)]
        self.buffers = _batched.stack_buffers(models) if self.form.buffer_names else []
        # one dropout generator per trial index (not row), for a model with dropout modules
        self.rng = ([_batched.dropout_generator(t.seed, device) for t in trials]
                    if self.form.mask_sites is not None else [])
        self._sites: dict[int, list[tuple[tuple[int, ...], float]]] = {}  # batch size -> masks drawn
        self.opt_name = trials[0].optimizer
        self.opt_kwargs = optimizer_kwargs(self.opt_name, trials[0].optimizer_kwargs)
        self.opt = self._optimizer(self.params)
        self.states = [ScheduleState(t.schedule) for t in trials]
        self.plateau = [_has_plateau(t.schedule) for t in trials]
        self.active = list(range(len(trials)))  # trial index of each row
        self.curves: list[list[EpochRecord]] = [[] for _ in trials]
        self.steps = [0] * len(trials)
        self.ck, self.start_epoch = ck, 0
        self.prior = [0.0] * len(trials)  # seconds trained before a resume
        self.started = [self.wall0] * len(trials)
        # running sums of the epoch's training loss (per sample) and correct predictions, per row
        self.run_loss = torch.zeros(len(trials), dtype=torch.float64, device=device)
        self.run_correct = torch.zeros(len(trials), dtype=torch.float64, device=device)

    def _optimizer(self, params: list[Tensor]) -> torch.optim.Optimizer:
        cls = OPTIMIZERS[self.opt_name].cls
        return cls(params, lr=1.0, foreach=True, **self.opt_kwargs)

    # -- bookkeeping --------------------------------------------------------------------------
    def _finish(self, i: int, diverged_epoch: int | None, row: int | None) -> None:
        weights = None
        if self.keep_weights and row is not None:
            weights = {n: p[row].detach().cpu().clone() for n, p in zip(self.form.names, self.params)}
            weights.update((n, b[row].cpu().clone()) for n, b in zip(self.form.buffer_names, self.buffers))
        diverged = diverged_epoch is not None
        self.done(TrialResult(self.trials[i].trial_id, self.curves[i], diverged, diverged_epoch,
                              _final(self.curves[i], diverged, self.steps[i]), self._seconds(i), weights,
                              self.started[i], time.time()))

    def _seconds(self, i: int) -> float:
        """Trial ``i``'s share of the fleet's time (plus its time before a resume)."""
        return self.prior[i] + (time.perf_counter() - self.t0) / len(self.trials)

    # -- checkpoints --------------------------------------------------------------------------
    def _engine(self) -> str:
        return self.task.fleet_model or "vmap"

    def _save(self, next_epoch: int) -> None:
        """Each active trial's state after epoch ``next_epoch - 1``, one checkpoint file each.

        Everything a trial carries from one epoch to the next: its rows of the stacked
        parameters, buffers and optimizer state (plus the optimizer state shared by all rows,
        like Adam's step count), its schedule state, curves, step count and random generator.
        """
        assert self.ck is not None
        rng = getattr(self, "rng", [])
        params = [p.detach() for p in self.params]
        opt_states = [self.opt.state.get(p, {}) for p in self.params]
        stacked = [("param", j, "", p) for j, p in enumerate(params)]
        stacked += [("buffer", j, "", b) for j, b in enumerate(self.buffers)]
        stacked += [("optimizer", j, k, v) for j, (p, st) in enumerate(zip(params, opt_states))
                    for k, v in st.items() if isinstance(v, Tensor) and v.shape == p.shape]
        shared = [{k: v for k, v in st.items() if not (isinstance(v, Tensor) and v.shape == p.shape)}
                  for p, st in zip(params, opt_states)]
        # one flat row per trial and dtype: a file holds a few tensors, not one per parameter and
        # optimizer buffer (safetensors' per-tensor overhead was most of the cost)
        groups: dict[str, list[Tensor]] = {}
        layout = []
        for kind, j, name, t in stacked:
            dt = str(t.dtype).removeprefix("torch.")
            cols = groups.setdefault(dt, [])
            layout.append([kind, j, name, dt, sum(c.shape[1] for c in cols), list(t.shape[1:])])
            cols.append(t.reshape(t.shape[0], -1))
        flat = {dt: torch.cat(cols, dim=1) for dt, cols in groups.items()}
        for r, i in enumerate(self.active):
            self.ck.save(self.trials[i], self._engine(), {
                "epoch": next_epoch, "layout": layout, "rows": {dt: f[r] for dt, f in flat.items()},
                "shared": shared, "schedule": self.states[i].state_dict(),
                "curves": _curves_tensor(self.curves[i]), "steps": self.steps[i],
                "rng": rng[i].get_state() if rng else None, "seconds": self._seconds(i), "started": self.started[i],
            })

    def restore(self, saved: list[dict[str, Any]]) -> bool:
        """Continue every trial from its checkpoint (``saved[i]`` for trial ``i``, all after the
        same epoch). ``False``, with a warning and nothing changed, when one does not fit this
        fleet (other shapes, a random generator where the fleet has none, ...)."""
        assert self.ck is not None
        rng = getattr(self, "rng", [])
        try:
            epoch = int(saved[0]["epoch"])
            if any(int(s["epoch"]) != epoch for s in saved):
                raise ValueError("the trials were saved after different epochs")

            layout = saved[0]["layout"]
            if any(s["layout"] != layout for s in saved):
                raise ValueError("the trials were saved with different layouts")
            where = {(kind, j, name): (dt, off, shape) for kind, j, name, dt, off, shape in layout}

            def stacked(key: tuple[str, int, str], like: Tensor) -> Tensor:
                if key not in where:
                    raise ValueError(f"it has no {key[0]} {key[1]} {key[2]}".rstrip())
                dt, off, shape = where[key]
                n = math.prod(shape)
                t = torch.stack([s["rows"][dt][off:off + n].view(shape) for s in saved])
                if tuple(t.shape) != tuple(like.shape) or t.dtype != like.dtype:
                    raise ValueError(f"its {key[0]} {key[1]} {key[2]} is {tuple(t.shape)} {t.dtype}, the fleet's "
                                     f"{tuple(like.shape)} {like.dtype}")
                return t.to(like.device)

            if sum(k == "param" for k, *_ in layout) != len(self.params) or \
                    sum(k == "buffer" for k, *_ in layout) != len(self.buffers):
                raise ValueError("it has another number of parameters or buffers")
            params = [stacked(("param", j, ""), p) for j, p in enumerate(self.params)]
            buffers = [stacked(("buffer", j, ""), b) for j, b in enumerate(self.buffers)]
            opt_state = []
            for j, p in enumerate(self.params):
                state = {name: stacked(("optimizer", j, name), p.detach())
                         for kind, jj, name, *_ in layout if kind == "optimizer" and jj == j}
                state.update(saved[0]["shared"][j])
                opt_state.append(state)
            gens = [s["rng"] for s in saved]
            if any((g is not None) != bool(rng) for g in gens):
                raise ValueError("its random generators do not match the fleet's")
            states = []
            for t, s in zip(self.trials, saved):
                st = type(self.states[0])(t.schedule)
                st.load_state_dict(s["schedule"])
                states.append(st)
            curves = [_curves_from(t.trial_id, s["curves"]) for t, s in zip(self.trials, saved)]
            steps = [int(s["steps"]) for s in saved]
            prior, started = [float(s["seconds"]) for s in saved], [float(s["started"]) for s in saved]
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            for t in self.trials:
                self.ck.ignore(t, f"it does not fit: {first}")
            return False
        with torch.no_grad():
            for p, v in zip(self.params, params):
                p.copy_(v)
        self.buffers = buffers
        for p, opt_st in zip(self.params, opt_state):
            self.opt.state[p] = opt_st
        for g, g_state in zip(rng, gens):
            g.set_state(g_state)
        self.states, self.curves, self.steps, self.prior, self.started = states, curves, steps, prior, started
        self.start_epoch = epoch
        return True

    def _drop(self, rows: list[int], epoch: int, steps_this_epoch: int = 0) -> None:
        """Finish the trials in ``rows`` as diverged and remove them from the stacked tensors."""
        for r in rows:
            self.steps[self.active[r]] += steps_this_epoch
            self._finish(self.active[r], epoch, None)
        keep = [r for r in range(len(self.active)) if r not in rows]
        self.active = [self.active[r] for r in keep]
        if not keep:
            return
        idx = torch.tensor(keep, device=self.params[0].device)
        k_old = self.params[0].shape[0]
        new = [p.detach()[idx].clone().requires_grad_() for p in self.params]
        opt = self._optimizer(new)
        for old_p, new_p in zip(self.params, new):
            st = self.opt.state.get(old_p)
            if st:
                opt.state[new_p] = {
                    name: (v[idx].clone() if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == k_old
                           else v.clone() if isinstance(v, Tensor) else v)
                    for name, v in st.items()
                }
        self.params, self.opt = new, opt
        self.buffers = [b[idx].clone() for b in self.buffers]
        self.run_loss, self.run_correct = self.run_loss[idx], self.run_correct[idx]

    # -- the loop -----------------------------------------------------------------------------
    def _masks(self, x: Tensor) -> list[Tensor]:
        """The dropout masks of one training step on batches shaped like ``x`` (rows, b, *in):
        per mask site ``(rows, *shape)``, each row drawn from its trial's generator in the order
        :func:`train_one` draws them."""
        if not self.rng or self.form.mask_sites is None:
            return []
        b = x.shape[1]
        if b not in self._sites:
            self._sites[b] = self.form.mask_sites(self.params, self.buffers, x[0])
        sites = self._sites[b]
        per_row = [[_batched.draw_mask(self.rng[i], shape, p, self.dtype, self.device) for shape, p in sites]
                   for i in self.active]
        return [torch.stack([row[j] for row in per_row]) for j in range(len(sites))]

    def _epoch_lrs(self, spe: int) -> np.ndarray:
        rows = []
        for i in self.active:
            st = self.states[i]
            lrs = st.schedule.values(np.arange(st.step, st.step + spe, dtype=np.float64), st.state)
            if not np.all(np.isfinite(lrs)):
                raise ValueError(f"trial {self.trials[i].trial_id}: the schedule gave a non-finite lr near step {st.step}")
            rows.append(lrs)
        return np.stack(rows)

    @torch.no_grad()
    def _evaluate(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Mean loss and accuracy of every active trial on ``(x, y)``.

        Chunks of :data:`_EVAL_CHUNK` samples (summed in that order, in float64) for blocks of
        trials, so a trial's numbers are the same whatever the fleet's size or its row in it.
        """
        k = len(self.active)
        loss = torch.zeros(k, dtype=torch.float64, device=x.device)
        correct = torch.zeros(k, dtype=torch.float64, device=x.device)
        block = max(1, _EVAL_SAMPLES // _EVAL_CHUNK)
        for r0 in range(0, k, block):
            r1 = min(k, r0 + block)
            params = [p[r0:r1] for p in self.params]
            buffers = [b[r0:r1] for b in self.buffers]
            for i in range(0, x.shape[0], _EVAL_CHUNK):
                out = self.form.forward_shared(params, x[i:i + _EVAL_CHUNK], buffers)
                yy = y[i:i + _EVAL_CHUNK]
                ce = _batched.cross_entropy_per_sample(out, yy)
                loss[r0:r1] += ce.sum(1, dtype=torch.float64)
                correct[r0:r1] += (_batched.predictions(out) == yy).sum(1, dtype=torch.float64)
        return loss / x.shape[0], correct / x.shape[0]

    def run(self) -> None:
        x, y, xv, yv, xt, yt = _data(self.task, self.device, self.dtype)
        n, bsz = x.shape[0], self.task.batch_size
        spe = math.ceil(n / bsz)
        nan = float("nan")
        mark = _no_mark if PROFILE is None else PROFILE.mark
        for epoch in range(self.start_epoch, self.epochs):
            if not self.active:
                break
            mark("other")
            lrs_np = self._epoch_lrs(spe)
            lrs = torch.as_tensor(lrs_np, dtype=self.dtype, device=self.device)
            seeds = {self.trials[i].seed for i in self.active}
            orders_by_seed = {s: epoch_order(s, epoch, n) for s in seeds}
            orders = torch.stack([orders_by_seed[self.trials[i].seed] for i in self.active]).to(self.device)
            lrs_row = {i: lrs_np[r] for r, i in enumerate(self.active)}
            self.run_loss.zero_()
            self.run_correct.zero_()
            mark("epoch setup (schedules, data order)")
            for step in range(spe):
                rows_before = list(self.active)
                idx = orders[:, step * bsz:(step + 1) * bsz]
                yb, xb = y[idx], x[idx]
                masks = self._masks(xb)
                snapshot = [b.clone() for b in self.buffers]  # before the forward updates them
                mark("data gathering")
                logits = self.form.forward(self.params, xb, self.buffers, masks)
                mark("forward")
                losses = _batched.cross_entropy_per_trial(logits, yb)
                bad = (~torch.isfinite(losses)).nonzero().flatten().tolist()
                if bad:
                    self._drop(bad, epoch, steps_this_epoch=step)
                    if not self.active:
                        break
                    keep = [r for r in range(len(rows_before)) if r not in bad]
                    orders, lrs = orders[keep], lrs[keep]
                    idx = orders[:, step * bsz:(step + 1) * bsz]
                    yb = y[idx]
                    # the survivors redo this step's forward from their buffers and masks before it
                    self.buffers = [b[keep] for b in snapshot]
                    masks = [m[keep] for m in masks]
                    logits = self.form.forward(self.params, x[idx], self.buffers, masks)
                    losses = _batched.cross_entropy_per_trial(logits, yb)
                with torch.no_grad():
                    self.run_loss.add_(losses.detach().to(torch.float64), alpha=idx.shape[1])
                    self.run_correct.add_((_batched.predictions(logits.detach()) == yb).sum(1, dtype=torch.float64))
                mark("loss, divergence check, running metrics")
                losses.sum().backward()
                mark("backward")
                old = [p.detach().clone() for p in self.params]
                mark("lr application")
                self.opt.step()
                mark("optimizer (torch.optim foreach, lr=1)")
                lr = lrs[:, step]
                with torch.no_grad():
                    for p, o in zip(self.params, old):
                        p.sub_(o).mul_(lr.view(-1, *([1] * (p.dim() - 1)))).add_(o)
                self.opt.zero_grad(set_to_none=True)
                mark("lr application")
            if not self.active:
                break
            for i in self.active:
                self.states[i].advance(spe)
                self.steps[i] += spe
            mark("other")
            va_loss, va_acc = self._evaluate(xv, yv)
            with_test = self.test_every_epoch or epoch == self.epochs - 1
            te_loss, te_acc = self._evaluate(xt, yt) if with_test else (va_loss.new_full(va_loss.shape, nan),) * 2
            mark("evaluation (val every epoch, test after the last)")
            tr_loss_l, tr_acc_l = (self.run_loss / n).tolist(), (self.run_correct / n).tolist()
            va_loss_l, va_acc_l, te_loss_l, te_acc_l = (v.tolist() for v in (va_loss, va_acc, te_loss, te_acc))
            bad, recs = [], []
            for r, i in enumerate(self.active):
                if not _finite(va_loss_l[r]):
                    bad.append(r)
                    continue
                rec = EpochRecord(self.trials[i].trial_id, epoch, float(lrs_row[i][-1]), tr_loss_l[r], tr_acc_l[r],
                                  va_loss_l[r], va_acc_l[r], te_loss_l[r], te_acc_l[r])
                self.curves[i].append(rec)
                recs.append(rec)
                if self.plateau[i]:
                    self.states[i].observe(getattr(rec, self.trials[i].plateau_metric))
            if bad:
                self._drop(bad, epoch)
            mark("epoch records, callbacks, plateau")
            if self.ck is not None and epoch < self.epochs - 1 and self.active:
                self._save(epoch + 1)  # before the callbacks: an epoch reported is an epoch saved
                mark("checkpoint")
            if self.on_epoch is not None:
                for rec in recs:
                    self.on_epoch(rec)
                mark("epoch records, callbacks, plateau")
        for r, i in enumerate(self.active):
            self._finish(i, None, r)
        mark("other")


# ---- many fleets over worker processes ---------------------------------------------------------


_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed blocks of up to 32 MiB for reuse (a worker process's setting).

    A fleet step allocates and frees the same few MB-sized buffers every step (im2col columns,
    gradients, activations: ~5 MB each for 18 CNN trials). By default glibc serves such blocks
    with fresh ``mmap`` pages and unmaps them on ``free``, so every step the kernel faults in and
    zeroes them again (~300-3000 page faults per step, measured), and the products that write
    them run on cold memory: the conv2 input-gradient product took 127 us per trial-step in the
    loop against 57 us with this setting (43 us in isolation), the whole step ~10 % less CPU.
    Setting ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` keeps the blocks in the heap. It changes
    where buffers live, never a number (the products align their operands themselves). Called in
    :func:`run_trials`' worker processes, which are lrlab's own; a no-op returning ``False`` where
    there is no glibc ``mallopt`` (macOS, Windows, musl).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        if not libc.gnu_get_libc_version:
            return False
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, _MMAP_THRESHOLD_MAX)
    return bool(ok) and bool(mallopt(m_trim_threshold, 2 * _MMAP_THRESHOLD_MAX))


class TrialsFailed(RuntimeError):
    """Some trials could not be trained (a worker raised or died).

    Attributes:
        results: the trials that did complete (already passed to ``on_trial_done``).
        failed: ``{trial_id: reason}`` of the others.
    """

    def __init__(self, message: str, results: list[TrialResult], failed: dict[str, str]) -> None:
        super().__init__(message)
        self.results = results
        self.failed = failed


def plan_fleets(trials: Sequence[TrialSpec], workers: int, max_fleet: int) -> list[list[TrialSpec]]:
    """Split ``trials`` into fleets: one optimizer group each, at most ``max_fleet`` trials, and at
    least ``workers`` fleets when there are enough trials, of near-equal sizes.

    >>> from lrlab.schedules import constant
    >>> ts = [TrialSpec(f"{o}{s}", constant(0.1), o, {}, s) for o in ("sgd", "adam") for s in range(6)]
    >>> [len(f) for f in plan_fleets(ts, workers=2, max_fleet=4)]
    [3, 3, 3, 3]
    """
    groups: dict[tuple[str, str], list[TrialSpec]] = {}
    for t in trials:
        groups.setdefault(_group_key(t), []).append(t)
    chunks = {k: max(1, math.ceil(len(g) / max_fleet)) for k, g in groups.items()}
    while sum(chunks.values()) < workers:
        k = max(chunks, key=lambda k: len(groups[k]) / chunks[k])
        if len(groups[k]) <= chunks[k]:
            break
        chunks[k] += 1
    fleets = []
    for k, g in groups.items():
        c = chunks[k]
        size, extra = divmod(len(g), c)
        start = 0
        for j in range(c):
            end = start + size + (1 if j < extra else 0)
            fleets.append(g[start:end])
            start = end
    return fleets


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _worker(wid: int, jobs: Any, out: Any, device: str, threads: int) -> None:
    """Train fleets from ``jobs`` until a ``None`` arrives; report on ``out``, a pipe whose ``send``
    is synchronous, so a message sent (a finished trial) is delivered even if the process dies
    right after. A job carries its task reference and run settings, so one process serves every
    call of a :func:`keep_workers` block; the last task loaded is kept for the next job."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates us
    torch.set_num_threads(threads)
    keep_freed_memory()
    from lrlab.study.tasks import load_task

    loaded: tuple[str, Any] | None = None  # (which task, the task)
    while True:
        job = jobs.get()
        if job is None:
            out.close()
            return
        fid, run = job
        out.send(("start", wid, fid))
        try:
            which = json.dumps([run["task_ref"], run["task_kwargs"]], sort_keys=True, default=repr)
            if loaded is None or loaded[0] != which:
                loaded = None  # free the old task's data before loading the new one
                loaded = (which, load_task(run["task_ref"], **run["task_kwargs"]))
            specs = [TrialSpec.from_dict(d) for d in run["trials"]]

            def send_epoch(r: EpochRecord, f: int = fid) -> None:
                out.send(("epoch", wid, f, asdict(r)))

            def send_trial(r: TrialResult, f: int = fid) -> None:
                out.send(("trial", wid, f, r.to_dict()))

            # the parent removes a trial's checkpoint once it has its result (it may store it first)
            train_fleet(loaded[1], specs, epochs=run["epochs"], device=device, on_epoch=send_epoch,
                        on_trial_done=send_trial, test_every_epoch=run["test_every_epoch"],
                        checkpoint_dir=run["checkpoint_dir"], discard_checkpoints=False)
            out.send(("fleet_done", wid, fid))
        except Exception as e:
            out.send(("fleet_error", wid, fid, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


def _is_main_test(test: Any) -> bool:
    """Whether an ``if`` test is ``__name__ == "__main__"`` (either way round)."""
    import ast

    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return (any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides))


def check_main_guard() -> None:
    """Refuse, with one line, to spawn worker processes for a call made by a script's top-level
    code outside ``if __name__ == "__main__":``.

    Spawned workers (the only start method that is safe with torch's threads) import the main
    script again, so such a call would run once more in every worker: those start studies of
    their own on the same storage and the run never ends. Python's own check fires only for a
    pool started during that import; this one finds the line of the script that led here (the
    outermost frame running the script's module code) and reads the script with :mod:`ast`.
    Mains that :mod:`multiprocessing` does not run again are not checked, by its own rules: no
    file (``python -c``, a notebook, stdin), a package's ``__main__`` (``python -m pkg``, the
    ``lrlab`` CLI), IPython's launcher. In a worker that imports such a script all the same, the
    call is refused there."""
    import ast
    import multiprocessing as mp

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if (spec_name is not None and (spec_name == "__main__" or spec_name.endswith(".__main__"))) or (
            path and Path(path).stem == "ipython"):
        path = None  # (multiprocessing.spawn's _fixup_main_from_name / _from_path)
    hint = ("the worker processes lrlab spawns import the script again and would run the call again; put "
            "it under `if __name__ == \"__main__\":` (or train in this process: workers=0)")
    if getattr(mp.current_process(), "_inheriting", False):
        raise RuntimeError(f"lrlab was called while a worker process imported {path or 'the main script'}: {hint}")
    if not path or not Path(path).is_file():
        return
    line: int | None = None
    frame: Any = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
            line = frame.f_lineno
        frame = frame.f_back
    if line is None:
        return
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return
    guarded = any(isinstance(n, ast.If) and _is_main_test(n.test) and n.lineno <= line <= (n.end_lineno or n.lineno)
                  for n in ast.walk(tree))
    if not guarded:
        raise ValueError(f"{path}, line {line} calls lrlab at the script's top level: {hint}")


class _WorkerPool:
    """``workers`` spawned processes training fleets from one job queue, each reporting on its own
    pipe. :meth:`train` runs one call's fleets; the pool can serve further calls (inside
    :func:`keep_workers`) unless a worker died or the call was interrupted (:attr:`broken`)."""

    def __init__(self, workers: int, device: str, threads: int) -> None:
        import multiprocessing as mp

        check_main_guard()
        ctx = mp.get_context("spawn")
        self.key = (workers, device, threads)
        self.jobs = ctx.Queue()
        pipes = [ctx.Pipe(duplex=False) for _ in range(workers)]
        self.procs = [ctx.Process(target=_worker, args=(w, self.jobs, pipes[w][1], device, threads),
                                  daemon=True, name=f"lrlab-fleet-{w}") for w in range(workers)]
        self.readers = {w: pipes[w][0] for w in range(workers)}
        self.next_fid = 0  # fleet numbers are unique over the pool's life, so no message is misread
        self.broken = False  # not to be reused (a worker died, a call was interrupted)
        self.closed = False
        try:
            for w, p in enumerate(self.procs):
                p.start()
                pipes[w][1].close()  # the worker holds the write end now
        except BaseException:
            self.kill()
            raise

    def usable(self, key: tuple[int, str, int]) -> bool:
        return key == self.key and not self.broken and all(p.is_alive() for p in self.procs)

    def train(self, fleets: list[list[TrialSpec]], run: dict[str, Any], deliver: Callable[[TrialResult], None],
              on_epoch: Callable[[EpochRecord], None] | None) -> dict[str, str]:
        """Train ``fleets`` with the settings ``run``; returns ``{trial_id: reason}`` of the trials
        that failed. Any exception (Ctrl-C) kills the pool."""
        from multiprocessing import connection as mp_connection

        fids = list(range(self.next_fid, self.next_fid + len(fleets)))
        self.next_fid += len(fleets)
        by_fid = dict(zip(fids, fleets))
        failed: dict[str, str] = {}
        delivered: set[str] = set()
        running: dict[int, int] = {}  # worker -> fleet it is training
        finished: set[int] = set()

        def fail(fid: int, reason: str) -> None:
            for t in by_fid[fid]:
                if t.trial_id not in delivered:
                    failed[t.trial_id] = reason
            finished.add(fid)

        def handle(msg: tuple[Any, ...]) -> None:
            kind, wid, fid = msg[0], msg[1], msg[2]
            if kind == "start":
                running[wid] = fid
            elif kind == "epoch":
                if on_epoch is not None:
                    on_epoch(EpochRecord(**msg[3]))
            elif kind == "trial":
                r = TrialResult.from_dict(msg[3])
                delivered.add(r.trial_id)
                deliver(r)
            else:  # fleet_done, fleet_error
                if kind == "fleet_error":
                    fail(fid, msg[3])
                finished.add(fid)
                running.pop(wid, None)

        def drain(w: int) -> None:
            """Read everything worker ``w`` sent; close its pipe once the worker is gone."""
            reader = self.readers[w]
            try:
                while reader.poll():
                    handle(reader.recv())
            except (EOFError, OSError):
                pass
            if not self.procs[w].is_alive():
                self.broken = True
                reader.close()
                del self.readers[w]
                fid = running.pop(w, None)
                if fid is not None and fid not in finished:
                    fail(fid, f"worker process {w} died before finishing it (exit code {self.procs[w].exitcode})")

        try:
            for fid, f in by_fid.items():
                self.jobs.put((fid, {**run, "trials": [t.to_dict() for t in f]}))
            while len(finished) < len(fleets) and self.readers:
                ready = mp_connection.wait([*self.readers.values(), *(self.procs[w].sentinel for w in self.readers)],
                                           timeout=1.0)
                for w in list(self.readers):
                    if self.readers[w] in ready or self.procs[w].sentinel in ready:
                        drain(w)
            codes = ", ".join(str(p.exitcode) for p in self.procs)
            for fid in set(fids) - finished:  # every worker is gone and these never ran
                fail(fid, f"the worker processes died before finishing it (exit codes {codes})")
        except BaseException:
            self.kill()
            raise
        return failed

    def close(self) -> None:
        """Let the workers finish and exit (the pool is idle between calls)."""
        if self.closed:
            return
        for _ in self.procs:
            self.jobs.put(None)
        for p in self.procs:
            p.join(timeout=10)
        self.kill()

    def kill(self) -> None:
        """Terminate the workers and release the pipes and the queue."""
        if self.closed:
            return
        self.broken = self.closed = True
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            if p.pid is not None:  # joining a process that never started raises, hiding the cause
                p.join(timeout=5)
        for r in self.readers.values():
            r.close()
        self.readers = {}
        self.jobs.cancel_join_thread()  # jobs nobody will take must not block this process's exit
        self.jobs.close()


_KEPT: dict[str, Any] | None = None  # the open keep_workers() block's pool


@contextlib.contextmanager
def keep_workers() -> Iterator[None]:
    """Within this block, :func:`run_trials` keeps its worker processes between calls.

    A study trains in several calls (its tuning and final phases, each claim of a work queue);
    without this each call spawns fresh workers (and so does a training function's
    :func:`~lrlab.study.trainfn.run_planned`, whose pool the block keeps too), which import torch and load the task again
    (~1 s of CPU each on a CPU, ~15-20 s per pool with CUDA on a GPU machine). A pool is reused
    while the calls ask for the same workers, device and threads; one whose worker died or whose
    call was interrupted is replaced. The workers end with the block, so the next study run
    imports edited code afresh. An inner block joins the outer one: wrap several
    :func:`~lrlab.study.runner.run_study` calls (each opens a block) in one to share their workers.

    >>> with keep_workers():
    ...     pass  # run_trials(...) and run_study(...) calls here share their worker processes
    """
    from lrlab.study.trainfn import shared_pool

    global _KEPT
    if _KEPT is not None:  # inside another block: its pool serves this one's calls too
        yield
        return
    outer, _KEPT = _KEPT, {}
    try:
        with shared_pool():  # a training function's worker processes too
            yield
    finally:
        mine, _KEPT = _KEPT, outer
        pool = (mine or {}).get("pool")
        if pool is not None:
            pool.close()


def run_trials(task_ref: str, task_kwargs: Mapping[str, Any] | None, trials: Sequence[TrialSpec], *, epochs: int,
               workers: int | None = None, device: str = "cpu",
               on_epoch: Callable[[EpochRecord], None] | None = None,
               on_trial_done: Callable[[TrialResult], None] | None = None,
               max_fleet: int | None = None, threads_per_worker: int | None = None,
               test_every_epoch: bool = False, checkpoint_dir: str | Path | None = None) -> list[TrialResult]:
    """Train ``trials`` as fleets spread over worker processes; callbacks run in this process.

    Each worker rebuilds the task with ``load_task(task_ref, **task_kwargs)`` (nothing but plain
    data crosses the process boundary), takes fleets from a shared queue and trains them with
    :func:`train_fleet`, using ``threads_per_worker`` torch threads (default 1: on this project's
    2-core machine 2 workers x 1 thread train ~1.7x more trials per second than 1 worker x 2
    threads, and one thread keeps the numbers reproducible, see below). Inside a
    :func:`keep_workers` block the worker processes (and their loaded task) serve later calls too.

    Reproducible numbers: on the CPU a trial's float32 results (curves, finals, weights) are the
    same bit for bit whatever ``workers``, ``max_fleet`` and the other trials in the call, so an
    interrupted study resumed with a different set of pending trials gets the numbers an
    uninterrupted one would have (the hand-batched formulations are row-independent, see
    :mod:`lrlab.study._batched`, and evaluation chunks do not depend on the fleet size). The
    number of torch threads does change the last bits (MKL splits some products differently
    across threads), so training always runs with ``threads_per_worker`` threads, also with
    ``workers=0``; pass more only if you accept that.

    Args:
        task_ref, task_kwargs: what :func:`lrlab.study.tasks.load_task` is called with.
        trials: the trials (unique ids).
        epochs: training length.
        workers: processes (default: usable cores, at most one per fleet; ``cuda``:
            :data:`CUDA_WORKERS`, where a fleet step is bound by one CPU thread launching kernels,
            so a few processes keep the GPU busier than one). ``0`` trains in this process.
        device: ``"cpu"`` or ``"cuda"``.
        on_epoch: called with each :class:`EpochRecord` as it arrives.
        on_trial_done: called with each :class:`TrialResult` as soon as it is known.
        max_fleet: most trials in one fleet (default: 24 on CPU, where per-trial cost is flat from
            ~8 trials on and smaller fleets let idle workers take the remaining ones; 512 on CUDA,
            where bigger fleets fill the GPU).
        threads_per_worker: torch threads in each worker, and in this process while it trains
            with ``workers=0`` (default 1).
        test_every_epoch: evaluate the test set after every epoch (display only), not just the last.
        checkpoint_dir: save every running trial's state there at each epoch end and continue
            the trials found there (:func:`train_fleet`); a trial's checkpoint is removed once
            ``on_trial_done`` returned for it in this process (the study stores it there).

    Returns:
        results in the order of ``trials``.

    Raises:
        TrialsFailed: a worker raised or died; the completed trials were still delivered
            and are in the exception's ``results``.
        KeyboardInterrupt: after terminating the workers.
    """
    trials = list(trials)
    ids = [t.trial_id for t in trials]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"trial ids must be unique, repeated: {', '.join(dup)}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got epochs={epochs!r}")
    if max_fleet is None:
        max_fleet = default_max_fleet(device)
    if isinstance(max_fleet, bool) or not isinstance(max_fleet, int) or max_fleet < 1:
        raise ValueError(f"max_fleet must be an int >= 1, got max_fleet={max_fleet!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no CUDA device")
    task_kwargs = dict(task_kwargs or {})
    cores = _usable_cores()
    if workers is None:
        workers = min(CUDA_WORKERS, cores) if str(device).startswith("cuda") else cores
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0 (0: train in this process), got workers={workers!r}")
    if not trials:
        return []
    fleets = plan_fleets(trials, max(1, workers), max_fleet)
    results: dict[str, TrialResult] = {}
    by_id = {t.trial_id: t for t in trials}

    def deliver(r: TrialResult) -> None:
        results[r.trial_id] = r
        if on_trial_done is not None:
            on_trial_done(r)
        if checkpoint_dir is not None:  # stored by on_trial_done: its checkpoint is not needed any more
            _ckpt.discard(checkpoint_file(checkpoint_dir, by_id[r.trial_id], epochs))

    threads = 1 if threads_per_worker is None else threads_per_worker
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads_per_worker must be an int >= 1, got threads_per_worker={threads_per_worker!r}")
    if workers == 0:
        from lrlab.study.tasks import load_task

        task = load_task(task_ref, **task_kwargs)
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for f in fleets:
                train_fleet(task, f, epochs=epochs, device=device, on_epoch=on_epoch, on_trial_done=deliver,
                            test_every_epoch=test_every_epoch, checkpoint_dir=checkpoint_dir,
                            discard_checkpoints=False)
        finally:
            torch.set_num_threads(before)
        return [results[i] for i in ids]

    run = {"task_ref": task_ref, "task_kwargs": task_kwargs, "epochs": epochs, "test_every_epoch": test_every_epoch,
           "checkpoint_dir": None if checkpoint_dir is None else str(checkpoint_dir)}
    key = (workers if _KEPT is not None else min(workers, len(fleets)), str(device), threads)
    pool = None if _KEPT is None else _KEPT.get("pool")
    if pool is not None and not pool.usable(key):
        pool.close()
        pool = _KEPT["pool"] = None  # type: ignore[index]
    if pool is None:
        pool = _WorkerPool(*key)
        if _KEPT is not None:
            _KEPT["pool"] = pool
    try:
        failed = pool.train(fleets, run, deliver, on_epoch)
    finally:
        if _KEPT is None or pool.broken:
            pool.close()
            if _KEPT is not None and _KEPT.get("pool") is pool:
                _KEPT["pool"] = None
    if failed:
        first = next(iter(failed.values())).strip().splitlines()
        raise TrialsFailed(
            f"{len(failed)} of {len(trials)} trials failed ({', '.join(sorted(failed)[:5])}"
            f"{', ...' if len(failed) > 5 else ''}): {first[0] if first else ''}"
            + (f"\n{next(iter(failed.values()))}" if len(first) > 1 else ""),
            [results[i] for i in ids if i in results], failed)
    return [results[i] for i in ids]


def results_by_id(results: Iterable[TrialResult]) -> dict[str, TrialResult]:
    """``{trial_id: result}``."""
    return {r.trial_id: r for r in results}
