"""Your own model, any framework: a *training function* that a study calls once per trial.

The way Optuna objectives and Ray Tune trainables work: you write ::

    def train(trial):
        model = ...                                   # any torch / Keras / JAX model
        opt, sched = trial.torch_optimizer(model.parameters())
        for epoch in range(trial.epochs):
            ...                                       # trial.steps_per_epoch updates, sched.step() each
            trial.report(epoch, val_loss=..., val_acc=...)   # test_acc=... after the last epoch

and point the study at it (``task: mymodule:train`` in a config, ``--task mymodule:train``, or
``run_study({"task": train, ...})``). A callable is a training function when its first parameter
is named ``trial`` or it is decorated with :func:`training_function`; any other callable is a
task builder returning a :class:`~lrlab.study.tasks.Task`.

What a :class:`Trial` gives: the resolved schedule (``trial.schedule``, in optimizer steps, peak
lr included), the optimizer's name and settings (``trial.optimizer``, ``trial.optimizer_kwargs``
with the study's defaults filled in), ``trial.seed`` (Python's ``random``, NumPy and torch are
seeded with it before the call), ``trial.epochs``, ``trial.steps_per_epoch``, ``trial.peak_lr``,
``trial.kwargs`` (the study's ``task_kwargs``) and helpers that build the framework objects with
the schedule attached: :meth:`Trial.torch_optimizer` / :meth:`Trial.torch_scheduler` (an
:class:`~lrlab.adapters.torch.LRLabScheduler`), :meth:`Trial.keras_optimizer` (a Keras optimizer
whose ``learning_rate`` is a :class:`~lrlab.adapters.keras.KerasSchedule`) and
:meth:`Trial.optax` (an optax ``GradientTransformation`` over :func:`~lrlab.adapters.optax.to_optax`).
Plateau nodes are fed automatically: every :meth:`Trial.report` passes the study's
``plateau_metric`` (default ``val_loss``) to the schedulers the helpers built.

The study's ``metric`` (default ``val_acc``) selects the peak lr of each cell, in its
``direction`` (``maximize``/``minimize``; by default ``minimize`` for names ending in ``loss``,
``mse``, ``mae``, ``rmse``, ``error`` or ``perplexity``, else ``maximize``). The statistics and
the table compare the final runs on its test counterpart (``val_mse`` -> ``test_mse``), so report
that one after the last epoch.

Trials run one at a time per worker process (``workers``; ``0``: in this process). A worker
process imports the function by its ``module:function`` reference, so a function object is sent
to workers only when it is importable that way (not from ``__main__``); otherwise it runs in this
process. Each trial is stored the moment it finishes.

A trial **fails** (stored with its one-line reason, the study goes on) when the function raises,
returns without reporting every epoch, or never reports the selection metric; it **diverges**
(stored as diverged, like a built-in trial whose loss became NaN) when it reports a non-finite
value: :meth:`Trial.report` then raises :class:`TrialDiverged` to end the function early.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import random
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lrlab.schedules import Schedule

__all__ = [
    "MINIMIZE_SUFFIXES",
    "TrainingFunction",
    "Trial",
    "TrialDiverged",
    "default_direction",
    "is_training_function",
    "run_function_trials",
    "test_metric",
    "training_function",
]

MINIMIZE_SUFFIXES = ("loss", "mse", "mae", "rmse", "error", "perplexity")
"""Metric names ending in one of these are minimized unless the study says ``direction``."""


def default_direction(metric: str) -> str:
    """``"minimize"`` for loss-like names (:data:`MINIMIZE_SUFFIXES`), else ``"maximize"``.

    >>> default_direction("val_mse"), default_direction("val_acc"), default_direction("val_bleu")
    ('minimize', 'maximize', 'maximize')
    """
    return "minimize" if metric.lower().endswith(MINIMIZE_SUFFIXES) else "maximize"


def test_metric(metric: str) -> str:
    """The test counterpart of a validation metric: ``val_mse`` -> ``test_mse``.

    >>> test_metric("val_acc")
    'test_acc'
    """
    return "test_" + metric.removeprefix("val_")


test_metric.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


def training_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``fn`` as a training function (needed only when its first parameter is not ``trial``)."""
    fn.__lrlab_train__ = True  # type: ignore[attr-defined]
    return fn


def is_training_function(obj: Any) -> bool:
    """Whether ``obj`` is a training function: marked by :func:`training_function`, or a callable
    whose first parameter is named ``trial``."""
    if not callable(obj):
        return False
    if getattr(obj, "__lrlab_train__", False):
        return True
    try:
        params = list(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] == "trial"


@dataclass
class TrainingFunction:
    """A study's training function: the callable, its ``module:function`` reference (``None``
    when it cannot be imported by name, then it runs in the study's process) and the study's
    ``task_kwargs`` (given to each trial as ``trial.kwargs``)."""

    fn: Callable[..., Any]
    ref: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.ref or getattr(self.fn, "__qualname__", type(self.fn).__name__))

    @classmethod
    def of(cls, fn: Callable[..., Any], kwargs: Mapping[str, Any] | None = None) -> TrainingFunction:
        """Wrap a function object; its reference is ``module:qualname`` when that imports back to it."""
        mod, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
        ref = None
        if mod and mod != "__main__" and qual.isidentifier():
            try:
                if getattr(importlib.import_module(mod), qual, None) is fn:
                    ref = f"{mod}:{qual}"
            except ImportError:
                ref = None
        return cls(fn, ref, dict(kwargs or {}))


class TrialDiverged(Exception):
    """Raised by :meth:`Trial.report` on a non-finite metric: ends the training function; the trial
    is stored as diverged (do not catch it)."""


class TrialFailed(Exception):
    """A training function broke the protocol (e.g. reported epoch 3 before epoch 2)."""


def _number(name: str, v: Any) -> float:
    """A reported value as a float (Python/NumPy numbers, 0-d torch/JAX/NumPy arrays)."""
    if isinstance(v, (bool, str)):
        raise TrialFailed(f"trial.report: {name} must be a number, got {v!r}")
    try:
        if hasattr(v, "item"):
            v = v.item()
        return float(v)
    except (TypeError, ValueError):
        raise TrialFailed(f"trial.report: {name} must be a number, got {type(v).__name__}") from None


class Trial:
    """One trial of a study, handed to the training function (see the module docstring).

    Attributes:
        trial_id, role: the study's name of the trial and ``"tune"``/``"final"``.
        schedule: the resolved schedule (optimizer steps, absolute lr: ``schedule(step)`` is the lr
            of update ``step``, counting from 0).
        optimizer, optimizer_kwargs: the study optimizer's name (``sgd``, ``adam``, ...) and its
            keyword arguments without ``lr`` (defaults of :data:`lrlab.study.optimizers.OPTIMIZERS`
            with the study's overrides).
        seed, epochs, steps_per_epoch, total_steps, peak_lr, batch_size (``None`` unless the study
        sets one), kwargs (the study's ``task_kwargs``), metric, direction, plateau_metric.
    """

    def __init__(self, *, trial_id: str, role: str, schedule: Schedule, optimizer: str,
                 optimizer_kwargs: Mapping[str, Any], seed: int, epochs: int, steps_per_epoch: int, peak_lr: float,
                 metric: str = "val_acc", direction: str = "maximize", plateau_metric: str = "val_loss",
                 batch_size: int | None = None, kwargs: Mapping[str, Any] | None = None,
                 checkpoint_path: str | None = None, checkpoint_identity: Mapping[str, Any] | None = None) -> None:
        from lrlab.schedules._plateau import ScheduleState
        from lrlab.study.optimizers import optimizer_kwargs as resolve_kwargs

        self.trial_id, self.role, self.schedule = trial_id, role, schedule
        self.optimizer = optimizer
        self.optimizer_kwargs = resolve_kwargs(optimizer, optimizer_kwargs)
        self.seed, self.epochs, self.steps_per_epoch = seed, epochs, steps_per_epoch
        self.total_steps = epochs * steps_per_epoch
        self.peak_lr, self.batch_size = float(peak_lr), batch_size
        self.metric, self.direction, self.plateau_metric = metric, direction, plateau_metric
        self.kwargs = dict(kwargs or {})
        self.history: list[dict[str, float]] = []
        self.lrs: list[float] = []
        self._reference = ScheduleState(schedule)  # the lr curve of the record, fed like the helpers' schedulers
        self._feeds: list[Callable[[float], Any]] = []
        self._has_plateau = any(type(n).__name__ == "plateau" for n in schedule.walk())
        self._ck_path, self._ck_identity = checkpoint_path, dict(checkpoint_identity or {})
        self.start_epoch = 0
        """The first epoch to train: 0, or the epoch after the checkpoint :meth:`restore` returned."""
        self.prior_seconds = 0.0  # training time before a resume
        self._started: float | None = None  # perf_counter() when the training function was called
        # called with (trial_id, epoch, values) at each report: the study shows the trial live
        self._on_report: Callable[[str, int, dict[str, float]], None] | None = None

    # ---- checkpoints ----------------------------------------------------------------------------
    def checkpoint(self, epoch: int, state: Mapping[str, Any]) -> None:
        """Save ``state`` as this trial's state after epoch ``epoch`` (the one just reported with
        :meth:`report`), so that an interrupted study continues from it (:meth:`restore`).

        ``state`` is a dict of whatever your loop needs to continue exactly: torch tensors and
        ``state_dict()`` results (model, optimizer, scheduler), NumPy and JAX arrays (pytrees of
        dicts, lists and tuples), numbers, strings, random-generator states
        (``torch.get_rng_state()``, a ``Generator``'s ``get_state()``). It is written safely (a
        safetensors file plus JSON, no pickle) and atomically; the reported epochs are saved with
        it. Outside a study, and after the last epoch, nothing is written.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or int(epoch) != len(self.history) - 1:
            raise TrialFailed(f"trial.checkpoint: give the epoch just reported ({len(self.history) - 1}), "
                              f"got epoch={epoch!r}")
        if not isinstance(state, Mapping):
            raise TrialFailed(f"trial.checkpoint: state must be a dict, got {type(state).__name__}")
        if self._ck_path is None or int(epoch) >= self.epochs - 1:
            return
        from lrlab.study.checkpoint import save

        try:
            save(self._ck_path, self._ck_identity, {
                "epoch": int(epoch) + 1, "history": self.history, "lrs": self.lrs,
                "schedule": self._reference.state_dict(), "seconds": self.prior_seconds + self._clock(),
                "state": dict(state),
            })
        except TypeError as e:
            raise TrialFailed(str(e)) from None

    def restore(self) -> Any:
        """The ``state`` of this trial's last :meth:`checkpoint` in an interrupted run of the study,
        or ``None`` (a first run, or a checkpoint that does not fit: then with a warning).

        Call it once, before training. When it returns a state, the epochs reported before the
        checkpoint are restored and :attr:`start_epoch` is the next epoch to train::

            state = trial.restore()
            if state is not None:
                model.load_state_dict(state["model"]); ...
            for epoch in range(trial.start_epoch, trial.epochs):
                ...
        """
        if self.history:
            raise TrialFailed("trial.restore: call it before the first trial.report")
        if self._ck_path is None:
            return None
        from lrlab.study.checkpoint import load

        saved = load(self._ck_path, self._ck_identity)
        if saved is None:
            return None
        try:
            epoch = int(saved["epoch"])
            history = [{str(k): float(v) for k, v in h.items()} for h in saved["history"]]
            if len(history) != epoch or not 1 <= epoch < self.epochs:
                raise ValueError(f"it holds {len(history)} reported epochs for epoch {epoch}")
            self._reference.load_state_dict(saved["schedule"])
            lrs = [float(v) for v in saved["lrs"]]
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            import warnings

            from lrlab.study.checkpoint import LRLabCheckpointWarning

            warnings.warn(f"ignoring the checkpoint of trial {self.trial_id} ({e}); it restarts from epoch 0",
                          LRLabCheckpointWarning, stacklevel=2)
            self._reference = type(self._reference)(self.schedule)
            return None
        self.history, self.lrs, self.start_epoch = history, lrs, epoch
        self.prior_seconds = float(saved.get("seconds", 0.0))
        return saved["state"]

    def _clock(self) -> float:
        return 0.0 if self._started is None else time.perf_counter() - self._started

    # ---- reporting ----------------------------------------------------------------------------
    def report(self, epoch: int, **metrics: Any) -> None:
        """Report the metrics of epoch ``epoch`` (0, 1, ... in order), e.g. ``val_loss=...,
        val_acc=...``; after the last epoch also the test metrics (``test_acc=...``).

        Feeds ``plateau_metric`` to the plateau nodes of the schedulers the helpers built. Raises
        :class:`TrialDiverged` on a non-finite value (the study stores the trial as diverged).
        """
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or int(epoch) != len(self.history):
            raise TrialFailed(f"trial.report: expected epoch {len(self.history)} next, got epoch={epoch!r}")
        if not metrics:
            raise TrialFailed("trial.report: give at least one metric, e.g. trial.report(epoch, val_acc=0.9)")
        values = {k: _number(k, v) for k, v in metrics.items()}
        self.history.append(values)
        step = (len(self.history)) * self.steps_per_epoch - 1
        self.lrs.append(self._reference.lr_at(min(step, self.total_steps - 1)))
        if self._on_report is not None:
            try:
                self._on_report(self.trial_id, int(epoch), dict(values))
            except Exception:  # showing the trial live must never stop its training
                self._on_report = None
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise TrialDiverged(f"reported {bad[0]}={values[bad[0]]} at epoch {epoch}")
        if self._has_plateau:
            if self.plateau_metric not in values:
                raise TrialFailed(f"the schedule has a plateau node fed from {self.plateau_metric}, "
                                  f"but epoch {epoch} reported only {', '.join(values)}")
            v = values[self.plateau_metric]
            self._reference.step = min(step + 1, self.total_steps)
            self._reference.observe(v)
            for feed in self._feeds:
                feed(v)

    # ---- framework helpers --------------------------------------------------------------------
    def torch_optimizer(self, params: Any) -> tuple[Any, Any]:
        """``(optimizer, scheduler)``: the study's torch optimizer over ``params`` and an
        :class:`~lrlab.adapters.torch.LRLabScheduler` driving it (call ``scheduler.step()`` after each
        ``optimizer.step()``; plateau nodes are fed by :meth:`report`)."""
        from lrlab.study.optimizers import make_optimizer

        opt = make_optimizer(self.optimizer, params, lr=self.schedule(0), **self.optimizer_kwargs)
        return opt, self.torch_scheduler(opt)

    def torch_scheduler(self, optimizer: Any) -> Any:
        """An :class:`~lrlab.adapters.torch.LRLabScheduler` with this trial's schedule on your own
        torch ``optimizer`` (fed by :meth:`report` when the schedule has plateau nodes)."""
        from lrlab.adapters.torch import LRLabScheduler

        sched = LRLabScheduler(optimizer, self.schedule)
        if self._has_plateau:
            self._feeds.append(sched.observe)
        return sched

    def keras_optimizer(self) -> Any:
        """The study's optimizer as a Keras 3 optimizer whose ``learning_rate`` is a
        :class:`~lrlab.adapters.keras.KerasSchedule` of this trial (sgd, adam, rmsprop, adagrad,
        adadelta; the torch defaults carried over: momentum, betas, eps, weight decay)."""
        import keras

        from lrlab.adapters.keras import KerasSchedule

        ks = KerasSchedule(self.schedule)
        kw = self.optimizer_kwargs
        wd = kw.get("weight_decay") or None
        name = self.optimizer
        if name == "sgd":
            if kw.get("dampening", 0):
                raise ValueError("keras_optimizer: sgd with dampening has no Keras equivalent")
            opt = keras.optimizers.SGD(learning_rate=ks, momentum=kw.get("momentum", 0.0),
                                       nesterov=bool(kw.get("nesterov", False)), weight_decay=wd)
        elif name == "adam":
            b1, b2 = kw.get("betas", (0.9, 0.999))
            opt = keras.optimizers.Adam(learning_rate=ks, beta_1=b1, beta_2=b2, epsilon=kw.get("eps", 1e-8),
                                        weight_decay=wd)
        elif name == "rmsprop":
            opt = keras.optimizers.RMSprop(learning_rate=ks, rho=kw.get("alpha", 0.99), epsilon=kw.get("eps", 1e-8),
                                           momentum=kw.get("momentum", 0.0), weight_decay=wd)
        elif name == "adagrad":
            opt = keras.optimizers.Adagrad(learning_rate=ks, epsilon=kw.get("eps", 1e-10), weight_decay=wd)
        elif name == "adadelta":
            opt = keras.optimizers.Adadelta(learning_rate=ks, rho=kw.get("rho", 0.9), epsilon=kw.get("eps", 1e-6),
                                            weight_decay=wd)
        else:
            raise ValueError(f"keras_optimizer: no Keras optimizer for {name!r} (use sgd, adam, rmsprop, adagrad "
                             "or adadelta, or build your own with trial.schedule)")
        if self._has_plateau:
            self._feeds.append(lambda v: ks.observe(v, int(opt.iterations)))
        return opt

    def optax(self) -> Any:
        """The study's optimizer as an optax ``GradientTransformation`` with
        ``learning_rate=to_optax(trial.schedule)`` (sgd, adam, rmsprop, adagrad, adadelta).

        Plateau schedules are refused here: optax keeps the plateau state inside the optimizer
        state, fed by ``value=`` in ``update``; chain :func:`lrlab.adapters.optax.reduce_on_plateau`
        yourself for them."""
        import optax

        from lrlab.adapters.optax import to_optax

        if self._has_plateau:
            raise ValueError("trial.optax(): plateau schedules need lrlab.adapters.optax.reduce_on_plateau "
                             "chained in your update (value=...); build it from trial.schedule")
        lr = to_optax(self.schedule)
        kw = self.optimizer_kwargs
        wd = kw.get("weight_decay") or 0.0
        name = self.optimizer
        if name == "sgd":
            tx = optax.sgd(lr, momentum=kw.get("momentum") or None, nesterov=bool(kw.get("nesterov", False)))
        elif name == "adam":
            b1, b2 = kw.get("betas", (0.9, 0.999))
            tx = optax.adam(lr, b1=b1, b2=b2, eps=kw.get("eps", 1e-8))
        elif name == "rmsprop":
            tx = optax.rmsprop(lr, decay=kw.get("alpha", 0.99), eps=kw.get("eps", 1e-8),
                               momentum=kw.get("momentum") or None)
        elif name == "adagrad":
            tx = optax.adagrad(lr, eps=kw.get("eps", 1e-10))
        elif name == "adadelta":
            tx = optax.adadelta(lr, rho=kw.get("rho", 0.9), eps=kw.get("eps", 1e-6))
        else:
            raise ValueError(f"trial.optax(): no optax optimizer for {name!r} (use sgd, adam, rmsprop, adagrad "
                             "or adadelta, or build your own with to_optax(trial.schedule))")
        if wd:  # torch's coupled L2: the gradient gets wd * p before the optimizer sees it
            tx = optax.chain(optax.add_decayed_weights(wd), tx)
        return tx

    def __repr__(self) -> str:
        return (f"Trial({self.trial_id!r}, role={self.role!r}, optimizer={self.optimizer!r}, seed={self.seed}, "
                f"peak_lr={self.peak_lr:.3g}, epochs={self.epochs}, steps_per_epoch={self.steps_per_epoch})")


# ---- running one trial --------------------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    import sys

    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def _outcome(trial: Trial, seconds: float, *, failed: str | None = None, diverged: str | None = None) -> dict[str, Any]:
    """The plain-data result of a finished trial (what crosses the process boundary)."""
    names = list(dict.fromkeys(k for h in trial.history for k in h))
    curves = {k: [h.get(k, math.nan) for h in trial.history] for k in names}
    if failed is None and diverged is None:
        if len(trial.history) < trial.epochs:
            failed = (f"the training function returned after reporting {len(trial.history)} of {trial.epochs} "
                      "epochs (call trial.report(epoch, ...) once per epoch)")
        elif len(trial.history) > trial.epochs:
            failed = f"the training function reported {len(trial.history)} epochs, the study has {trial.epochs}"
        elif trial.metric not in trial.history[-1]:
            failed = (f"the training function never reported the selection metric {trial.metric} in its last "
                      f"epoch (reported: {', '.join(trial.history[-1]) or 'nothing'})")
    return {"trial_id": trial.trial_id, "curves": curves, "lr": list(trial.lrs), "seconds": seconds,
            "failed": failed, "diverged": diverged, "diverged_epoch": len(trial.history) - 1 if diverged else None}


def _one_line(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def run_one(fn: Callable[..., Any], trial: Trial) -> dict[str, Any]:
    """Call ``fn(trial)`` and turn what it reported (or how it broke) into a result dict."""
    _seed_everything(trial.seed)
    t0 = trial._started = time.perf_counter()
    try:
        fn(trial)
    except TrialDiverged as e:
        return _outcome(trial, trial.prior_seconds + time.perf_counter() - t0, diverged=str(e))
    except Exception as e:
        tb = traceback.extract_tb(e.__traceback__)
        where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
        return _outcome(trial, trial.prior_seconds + time.perf_counter() - t0, failed=_one_line(e) + where)
    return _outcome(trial, trial.prior_seconds + time.perf_counter() - t0)


_EVENTS: Any = None  # in a worker process: the pool's queue of (trial_id, epoch, values) reports


def _init_events(events: Any) -> None:
    """Worker-process initializer: keep the pool's report queue."""
    global _EVENTS
    _EVENTS = events


def _worker(ref: str, kwargs: dict[str, Any], trial_args: dict[str, Any], threads: int) -> dict[str, Any]:
    """Worker-process entry: import the function by reference, build the trial, run it (its
    reports also go to the pool's report queue, for the study to show the trial live)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    from lrlab.study.tasks import import_ref

    fn = import_ref(ref, what="training function")
    trial = _trial_from(trial_args, kwargs)
    if _EVENTS is not None:
        trial._on_report = lambda tid, epoch, values: _EVENTS.put((tid, epoch, values))
    return run_one(fn, trial)


def _trial_from(args: Mapping[str, Any], kwargs: Mapping[str, Any]) -> Trial:
    from lrlab.schedules import from_config

    a = dict(args)
    a["schedule"] = from_config(a["schedule"])
    return Trial(**a, kwargs=kwargs)


def run_function_trials(task: TrainingFunction, trials: Sequence[dict[str, Any]], *, workers: int | None,
                        on_trial_done: Callable[[dict[str, Any]], None], threads_per_worker: int = 1,
                        on_epoch: Callable[[str, int, dict[str, float]], None] | None = None) -> None:
    """Run each trial (the keyword arguments of :class:`Trial`, with ``schedule`` as its config)
    once, one at a time per worker process (``workers=0``, or a function without an importable
    reference: in this process); ``on_trial_done`` gets each result in this process as soon as it
    is known, ``on_epoch`` each :meth:`Trial.report` as ``(trial_id, epoch, values)`` (also in
    this process: relayed between waits on the workers' results, every report of a trial before
    its result). Trials run with ``threads_per_worker`` torch threads wherever they
    run, so the numbers do not depend on ``workers``. A worker that dies fails one trial, not the
    others."""
    from lrlab.study.fleet import _usable_cores

    if workers is None:
        workers = _usable_cores()
    workers = min(workers, len(trials))
    if workers == 0 or task.ref is None:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads_per_worker)  # as in a worker (and the fleets): the same numbers
        try:
            for args in trials:
                trial = _trial_from(args, task.kwargs)
                trial._on_report = on_epoch
                on_trial_done(run_one(task.fn, trial))
        finally:
            torch.set_num_threads(before)
        return
    pending = list(trials)
    isolate = False  # after a worker died: one trial per fresh one-process pool, so a death names its trial
    size = workers if _SHARED is None else max(workers, _SHARED.get("size", 0))
    while pending:
        batch, pending = (pending[:1], pending[1:]) if isolate else (pending, [])
        broken = _pool_round(task, batch, 1 if isolate else size, threads_per_worker, on_trial_done,
                             shared=not isolate, on_epoch=on_epoch)
        if broken and isolate:
            on_trial_done(_failure(broken[0], "its worker process died (killed, out of memory or os._exit)"))
        elif broken:
            isolate, pending = True, broken + pending


def _failure(args: Mapping[str, Any], reason: str) -> dict[str, Any]:
    return {"trial_id": args["trial_id"], "curves": {}, "lr": [], "seconds": 0.0, "failed": reason,
            "diverged": None, "diverged_epoch": None}


_SHARED: dict[str, Any] | None = None  # the pool of the open shared_pool() block


@contextlib.contextmanager
def shared_pool() -> Iterator[None]:
    """Within this block, :func:`run_function_trials` keeps its worker processes between calls
    (a work queue's successive claims of one study run pay one pool start-up, not one each);
    they end with the block, so edited code is imported afresh by the next study run."""
    global _SHARED
    outer, _SHARED = _SHARED, {}
    try:
        yield
    finally:
        mine, _SHARED = _SHARED, outer
        if mine and mine.get("pool") is not None:
            _shutdown(mine["pool"], wait=True)


class _Pool:
    """A spawn process pool and the queue its workers send trial reports on. The queue lives in
    a manager process: each worker talks to it over its own connection, so a worker killed in
    the middle of a report cannot block the others (a queue shared through a lock could)."""

    def __init__(self, workers: int) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        from lrlab.study.fleet import check_main_guard

        check_main_guard()
        ctx = mp.get_context("spawn")
        self.manager = ctx.Manager()
        self.events = self.manager.Queue()
        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_events,
                                            initargs=(self.events,))

    def reports(self) -> Iterator[tuple[str, int, dict[str, float]]]:
        """The reports that have arrived (none waits)."""
        import queue

        while True:
            try:
                yield self.events.get_nowait()
            except queue.Empty:
                return
            except (EOFError, OSError):  # the manager is gone: nothing more to show
                return


def _shutdown(pool: _Pool, *, wait: bool) -> None:
    pool.executor.shutdown(wait=wait, cancel_futures=True)
    pool.manager.shutdown()


def _new_pool(workers: int, shared: bool) -> _Pool:
    """A spawn process pool of ``workers``: inside :func:`shared_pool` (and ``shared``) the block's
    one, started on first use and replaced when its size differs."""
    if not shared or _SHARED is None:
        return _Pool(workers)
    if _SHARED.get("pool") is None or _SHARED.get("size") != workers:
        if _SHARED.get("pool") is not None:
            _shutdown(_SHARED["pool"], wait=True)
        _SHARED["pool"] = _Pool(workers)
        _SHARED["size"] = workers
    return _SHARED["pool"]


def _pool_round(task: TrainingFunction, batch: list[dict[str, Any]], workers: int, threads: int,
                on_trial_done: Callable[[dict[str, Any]], None], *, shared: bool = False,
                on_epoch: Callable[[str, int, dict[str, float]], None] | None = None) -> list[dict[str, Any]]:
    """Run ``batch`` in one process pool (with ``shared``, the :func:`shared_pool` block's, kept
    open), passing the workers' reports to ``on_epoch`` as they arrive; returns the trials whose
    result was lost to a broken pool."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    lost: list[dict[str, Any]] = []
    pool = _new_pool(workers, shared)
    keep = shared and _SHARED is not None
    ok = False

    def relay() -> None:
        for tid, epoch, values in pool.reports():
            if on_epoch is not None:
                on_epoch(tid, epoch, values)

    try:
        futs = {pool.executor.submit(_worker, str(task.ref), task.kwargs, a, threads): a for a in batch}
        left = set(futs)
        while left:
            done, left = wait(left, timeout=0.1, return_when=FIRST_COMPLETED)
            relay()
            for f in done:
                try:
                    res = f.result()
                except BrokenProcessPool:
                    lost.append(futs[f])
                    continue
                except Exception as e:  # e.g. the function could not be imported in the worker
                    res = _failure(futs[f], _one_line(e))
                on_trial_done(res)
        relay()  # a report is queued before its trial returns: every one of this round is here
        ok = True
    except BrokenProcessPool:  # broken before a trial was submitted: all of them are lost
        lost = list(batch)
    finally:
        if not ok:
            for p in list((getattr(pool.executor, "_processes", None) or {}).values()):
                p.terminate()
        if not keep or not ok or lost:  # a broken or interrupted pool is never reused
            if keep and _SHARED is not None:
                _SHARED["pool"] = None
            _shutdown(pool, wait=True)
    return lost


def function_budget(cfg: Any) -> tuple[int, int]:
    """``(epochs, steps_per_epoch)`` of a training-function study: both come from the config (the
    schedule is resolved in steps before the function runs); a one-line error names what is missing."""
    missing = [k for k in ("epochs", "steps_per_epoch") if getattr(cfg, k) is None]
    if missing:
        raise ValueError(f"a training function needs {' and '.join(missing)} in the study config "
                         "(the schedules are resolved in optimizer steps before it runs)")
    if cfg.peak_lr == "find":
        raise ValueError("peak_lr: find runs the LR range test on a Task; give each optimizer's peak_lr "
                         "for a training function")
    return int(cfg.epochs), int(cfg.steps_per_epoch)


def function_checkpoint_file(directory: str | Path, plan: Any, epochs: int) -> Path:
    """The checkpoint file of a training-function trial (a :class:`~lrlab.study.runner.PlannedTrial`)."""
    from lrlab.study.checkpoint import trial_path

    return trial_path(directory, {"trial": plan.spec.to_dict(), "epochs": epochs, "function": True})


def run_planned(task: TrainingFunction, cfg: Any, plans: Sequence[Any], epochs: int,
                save: Callable[[Any], None], on_done: Callable[[Any], None],
                checkpoint_dir: str | Path | None = None, executor: Any = None,
                on_epoch: Callable[[str, int, dict[str, float]], None] | None = None) -> None:
    """Run the study's planned trials (:class:`lrlab.study.runner.PlannedTrial`) through ``task``:
    each finished trial becomes a record (:func:`function_record`), is saved with ``save`` at once
    (so an interruption loses no finished trial) and then passed to ``on_done``. With
    ``checkpoint_dir``, :meth:`Trial.checkpoint` saves there and :meth:`Trial.restore` reads there;
    a trial's checkpoint is removed once its record is saved. An ``executor`` with a ``functions``
    method (:func:`lrlab.study.executors.ray_executor`'s) runs the trials (one Ray task each) when
    the function can be imported by name; else they run in local worker processes, and each
    :meth:`Trial.report` reaches ``on_epoch`` as it happens (with Ray too)."""
    import lrlab
    from lrlab.study.checkpoint import RECIPE, discard

    spe = int(cfg.steps_per_epoch)
    by_id = {p.spec.trial_id: p for p in plans}
    args = [{"trial_id": p.spec.trial_id, "role": p.role, "schedule": p.spec.schedule.to_config(),
             "optimizer": p.spec.optimizer, "optimizer_kwargs": dict(p.spec.optimizer_kwargs), "seed": p.spec.seed,
             "epochs": epochs, "steps_per_epoch": spe, "peak_lr": p.peak_lr, "metric": cfg.metric,
             "direction": cfg.direction, "plateau_metric": cfg.plateau_metric, "batch_size": cfg.batch_size}
            for p in plans]
    files = {p.spec.trial_id: function_checkpoint_file(checkpoint_dir, p, epochs)
             for p in plans} if checkpoint_dir is not None else {}
    if checkpoint_dir is not None:
        for a in args:
            identity = {"recipe": RECIPE, "lrlab": lrlab.__version__, "function": task.name,
                        "task_kwargs": task.kwargs, "trial": dict(a)}
            a["checkpoint_path"], a["checkpoint_identity"] = str(files[a["trial_id"]]), identity

    def done(res: dict[str, Any]) -> None:
        rec = function_record(by_id[res["trial_id"]], res, epochs, spe, cfg.metric, cfg.direction)
        save(rec)
        if res["trial_id"] in files:
            discard(files[res["trial_id"]])
        on_done(rec)

    functions = getattr(executor, "functions", None)
    if functions is not None and task.ref is not None:
        functions(task, args, device=cfg.device, on_trial_done=done, on_epoch=on_epoch)
        return
    workers = 1 if str(cfg.device).startswith("cuda") and cfg.workers is None else cfg.workers
    run_function_trials(task, args, workers=workers, on_trial_done=done, on_epoch=on_epoch)


def function_record(plan: Any, res: Mapping[str, Any], epochs: int, steps_per_epoch: int, metric: str,
                    direction: str) -> Any:
    """The :class:`~lrlab.study.storage.TrialRecord` of a training-function trial: the same fields
    as a built-in trial's, with the curves keyed by the reported metric names (the built-in
    names that were not reported are NaN), ``final`` the last epoch's values (NaN for a failed or
    diverged trial) and ``best_<metric>`` (in ``direction``); ``extra`` holds ``metric`` and, for
    a trial that did not complete, ``failed`` or ``reason`` (one line)."""
    from lrlab.study.storage import CURVE_FIELDS, TrialRecord

    reported = {k: np.asarray(v, dtype=np.float64) for k, v in dict(res["curves"]).items()}
    n = max((len(v) for v in reported.values()), default=0)
    curves = {k: np.full(n, math.nan) for k in CURVE_FIELDS}
    curves.update(reported)
    curves["epoch"] = np.arange(n, dtype=np.float64)
    lrs = np.asarray(res.get("lr") or [], dtype=np.float64)
    curves["lr"] = lrs if len(lrs) == n else np.full(n, math.nan)
    ok = not res.get("failed") and not res.get("diverged")
    final = {k: float(v[-1]) if ok and n else math.nan for k, v in curves.items() if k not in ("epoch", "lr")}
    vals = curves.get(metric, np.full(n, math.nan))
    best = math.nan
    if ok and np.isfinite(vals).any():
        best = float(np.nanmin(vals) if direction == "minimize" else np.nanmax(vals))
    final[f"best_{metric}"] = best
    acc = curves["val_acc"]
    final.setdefault("best_val_acc", float(np.nanmax(acc)) if ok and np.isfinite(acc).any() else math.nan)
    final["epochs"], final["steps"] = float(n), float(n * steps_per_epoch)
    extra: dict[str, Any] = {"metric": metric}
    if res.get("failed"):
        extra["failed"] = str(res["failed"])
    if res.get("diverged"):
        extra["reason"] = str(res["diverged"])
    return TrialRecord(
        key=plan.key, trial_id=plan.spec.trial_id, schedule_name=plan.schedule_name,
        schedule_text=plan.schedule_text, schedule_config=plan.spec.schedule.to_config(),
        optimizer=plan.spec.optimizer, optimizer_kwargs=dict(plan.spec.optimizer_kwargs),
        seed=plan.spec.seed, peak_lr=plan.peak_lr, epochs=epochs, curves=curves, final=final,
        diverged=not ok, diverged_epoch=res.get("diverged_epoch"), seconds=float(res.get("seconds") or 0.0),
        extra=extra, role=plan.role,
    )
