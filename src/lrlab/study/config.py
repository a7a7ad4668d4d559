"""What a study trains: the default trial grid and :class:`StudyConfig` (from Python, YAML or TOML).

A study crosses *schedules* x *optimizers* x *seeds* on one task. Schedules are written in lrlab's
text form as **multipliers of the optimizer's peak learning rate** (peak 1.0), with durations as
fractions of training (``"10%"``) so they adapt to any budget; the runner multiplies each by the
optimizer's peak lr and resolves it with the task's ``total_steps`` and ``steps_per_epoch``. One
spec therefore serves every optimizer.

The default grid (:data:`DEFAULT_SCHEDULES`) follows the seeds' catalogue of schedules:

============== ==================================================================================
constant       the baseline every other row is compared with
time_based     inverse-time decay ``1 / (1 + 9 t/T)``: ends at 1/10 (Keras' "standard" decay)
step           drop x0.25 every 15% of training (PyImageSearch's StepDecay, scaled to the budget)
exponential    ``0.01 ** (t/T)``: smooth decay to 1/100
linear         ``1 - t/T`` to 0 (the polynomial of power 1; best row of the seeds' Table 1.1)
poly5          ``(1 - t/T) ** 5``
cosine_cycles  cosine annealing with 4 cycles to 0 (snapshot ensembles, Huang et al. 2017)
triangle       10% linear warmup from 0, then linear decay to 0 (BERT)
warmup_cosine  5% linear warmup from 0, then cosine to 0
onecycle       torch OneCycleLR defaults: 30% cosine rise from 1/25, cosine fall to 1/(25*1e4)
wsd            warmup-stable-decay: 5% warmup, constant, last 20% a 1-sqrt cooldown to 0
plateau        constant, halved when the validation loss has not improved for more than 3 epochs (torch
               ``ReduceLROnPlateau`` rules, ``patience=3``; fed once per epoch)
============== ==================================================================================

(``t`` counts optimizer steps from 0, ``T`` is the number of steps of the whole run.)

Default peak learning rates per optimizer come from the task (``Task.peak_lr``; for MNIST-1D see
:data:`lrlab.study.tasks.MNIST1D_PEAK_LR`) unless the config gives them, or are found by the LR
range test (``peak_lr="find"``). That lr is the *base* of the tuning grid.

**Tuned peak lr** (:class:`TuneConfig`, the default; ``tune: none`` switches it off): every
(schedule, optimizer) cell first runs a log grid of peak lrs (:data:`DEFAULT_LR_GRID`, multiples
of the base lr) on the *tuning seeds* (default ``(0,)``); the grid point with the highest final
validation accuracy (mean over tuning seeds) is chosen, then the cell runs at that lr on the
*final seeds*, which are disjoint from the tuning seeds (default: ``1000, 1001, 1002``, i.e.
:data:`FINAL_SEED_BASE` + 0, 1, 2). Only the final runs' test accuracy is reported. With ``tune:
none`` every cell runs at the base lr on the seeds ``0, 1, 2`` (the fixed-lr mode).

>>> cfg = StudyConfig.from_mapping({"schedules": ["constant", "linear"], "optimizers": {"adam": 0.01}, "seeds": 2})
>>> list(cfg.schedules), cfg.optimizers["adam"].peak_lr, cfg.tune.seeds, cfg.seeds
(['constant', 'linear'], 0.01, (0,), (1000, 1001))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrlab.schedules import Schedule
from lrlab.spec import safe_yaml

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_LR_GRID",
    "DEFAULT_N_SEEDS",
    "DEFAULT_OPTIMIZERS",
    "DEFAULT_SCHEDULES",
    "FINAL_SEED_BASE",
    "KNOWN_OPTIMIZERS",
    "OptimizerChoice",
    "StudyConfig",
    "TuneConfig",
    "load_config",
    "load_mapping",
    "parse_lr_grid",
    "parse_schedule",
    "parse_task_kwargs",
    "split_specs",
]

DEFAULT_EPOCHS = 40
"""Training length of the default MNIST-1D study (1,600 steps of batch 100 per trial).

Chosen with :data:`DEFAULT_LR_GRID` to fit the 5-minute budget of the default study on a 2-core
CPU: 120 tuning trials (24 cells x 5 lrs x 1 tuning seed) + 72 final trials (24 cells x 3 seeds)
= 192 trials, 7,680 trial-epochs, took 336 CPU-seconds in all (user + system, 2026-11-27, fleet
engine with validation every epoch and test once), i.e. about 3 minutes of wall time on two idle
cores (the measuring machine was shared, load ~9: 11 min there). Constant-lr SGD reaches 92.4 %
test accuracy at its tuned lr (the benchmark's 6000 steps give ~92-94 %)."""

DEFAULT_SCHEDULES: dict[str, str] = {
    "constant": "constant(1.0)",
    "time_based": "inverse_time(1.0, rate=9.0, every=100%)",
    "step": "step_decay(1.0, factor=0.25, every=15%)",
    "exponential": "exponential(1.0, factor=0.01, every=100%)",
    "linear": "linear(1.0, 0.0, steps=100%)",
    "poly5": "polynomial(1.0, 0.0, steps=100%, power=5.0)",
    "cosine_cycles": "snapshot(1.0, cycles=4, steps=100%)",
    "triangle": "triangle(1.0, warmup=10%, steps=100%)",
    "warmup_cosine": "warmup(cosine(1.0, 0.0, steps=95%), steps=5%)",
    "onecycle": "onecycle(1.0, steps=100%)",
    "wsd": "wsd(1.0, warmup=5%, stable=75%, decay=20%, decay_shape='1-sqrt')",
    "plateau": "constant(1.0) * plateau(factor=0.5, patience=3)",
}
"""The default schedules: name -> text spec (a multiplier of the peak lr, durations in % of training)."""

KNOWN_OPTIMIZERS = ("sgd", "adam", "rmsprop", "adagrad", "adadelta", "sgd_schedulefree", "adamw_schedulefree", "prodigy")
DEFAULT_OPTIMIZERS = ("sgd", "adam")
_PLATEAU_METRICS = ("val_loss", "val_acc", "train_loss", "train_acc")
_TOP_KEYS = (
    "task", "task_kwargs", "model", "data", "schedules", "optimizers", "seeds", "epochs",
    "batch_size", "peak_lr", "tune", "plateau_metric", "workers", "device", "out", "storage",
    "study_name", "fresh", "metric", "direction", "steps_per_epoch", "checkpoint_dir",
)

DEFAULT_LR_GRID = (0.25, 0.5, 1.0, 2.0, 4.0)
"""Default tuning grid: multiples of each optimizer's base peak lr, a log grid with x2 spacing
from 1/4x to 4x (DeepOBS and Schmidt et al. 2021 tune every method's lr on a log grid)."""

DEFAULT_N_SEEDS = 3
"""Final seeds per cell when the config does not say."""

FINAL_SEED_BASE = 1000
"""With tuning, a seed *count* ``n`` means the final seeds ``1000, ..., 1000 + n - 1``: never
one of the tuning seeds (which must stay below 1000 unless the final seeds are listed)."""

LR_LIMITS = (sys.float_info.min, sys.float_info.max)
"""Every peak lr the storage accepts (a normal, positive, finite float)."""


def _positive_float(v: Any, where: str) -> float:
    """A positive, finite, normal float from a number or a numeric string (``"1e-3"``)."""
    given = v
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            raise ValueError(f"{where}: expected a positive number, got {given!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where}: expected a positive number, got {given!r}")
    f = float(v)
    if not (math.isfinite(f) and LR_LIMITS[0] <= f <= LR_LIMITS[1]):
        raise ValueError(f"{where}: expected a positive, finite number, got {given!r}")
    return f


@dataclass(frozen=True)
class TuneConfig:
    """How each cell's peak lr is tuned before the final runs.

    Args:
        grid: the peak lrs tried per (schedule, optimizer): multiples of the optimizer's base peak
            lr when ``relative`` (default :data:`DEFAULT_LR_GRID`), else absolute lrs shared by
            every optimizer. Sorted, distinct, positive and finite.
        relative: whether ``grid`` holds multiples of the base lr.
        seeds: the tuning seeds (default ``(0,)``); each grid point runs every one of them.

    Selection (:func:`lrlab.study.stats.select_lr`): the grid point with the highest final-epoch
    validation accuracy, mean over the tuning seeds (a diverged seed counts as accuracy 0); ties
    (equal means) go to the smaller lr.

    >>> TuneConfig.from_value({"grid": [4, 1, "0.25"]}).grid
    (0.25, 1.0, 4.0)
    >>> TuneConfig.from_value("none") is None
    True
    """

    grid: tuple[float, ...] = DEFAULT_LR_GRID
    relative: bool = True
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if isinstance(self.grid, (str, bytes)) or not isinstance(self.grid, (list, tuple)) or not self.grid:
            raise ValueError(f"tune.grid: expected a non-empty list of positive numbers, got {self.grid!r}")
        grid = tuple(sorted(_positive_float(g, "tune.grid") for g in self.grid))
        if len(set(grid)) != len(grid):
            raise ValueError(f"tune.grid: values must be distinct, got {list(self.grid)!r}")
        object.__setattr__(self, "grid", grid)
        if not isinstance(self.relative, bool):
            raise ValueError(f"tune.relative must be true or false, got {self.relative!r}")
        object.__setattr__(self, "seeds", _seed_tuple(self.seeds, "tune.seeds"))

    def to_dict(self) -> dict[str, Any]:
        return {"grid": list(self.grid), "relative": self.relative, "seeds": list(self.seeds)}

    @classmethod
    def from_value(cls, value: Any, where: str = "tune") -> TuneConfig | None:
        """``"none"``/``None``/``False`` -> no tuning; ``"grid"``/``True`` -> the defaults; a
        mapping with ``grid``, ``relative``, ``seeds`` (a count or a list)."""
        if value is None or value is False or (isinstance(value, str) and value.strip().lower() == "none"):
            return None
        if value is True or (isinstance(value, str) and value.strip().lower() == "grid"):
            return cls()
        if isinstance(value, TuneConfig):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected 'none', 'grid' or a mapping (grid, relative, seeds), got {value!r}")
        unknown = [k for k in value if k not in ("grid", "relative", "seeds")]
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r}; known keys: grid, relative, seeds")
        kw: dict[str, Any] = {}
        if value.get("grid") is not None:
            g = value["grid"]
            kw["grid"] = tuple(parse_lr_grid(g)) if isinstance(g, str) else g
        if value.get("relative") is not None:
            kw["relative"] = value["relative"]
        if value.get("seeds") is not None:
            sv = value["seeds"]
            kw["seeds"] = tuple(range(sv)) if isinstance(sv, int) and not isinstance(sv, bool) and sv >= 1 else sv
        try:
            return cls(**kw)
        except ValueError as e:
            raise ValueError(f"{where}: {e}" if not str(e).startswith("tune") else str(e)) from e


def parse_lr_grid(text: str) -> list[float]:
    """``"0.25,0.5,1,2,4"`` -> a list of floats (one-line error naming the bad entry).

    >>> parse_lr_grid("0.5, 1,2")
    [0.5, 1.0, 2.0]
    """
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ValueError(f"lr grid: expected comma-separated positive numbers, got {text!r}")
    return [_positive_float(t, "lr grid") for t in items]


def parse_task_kwargs(items: str | list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``--task-kwargs`` values (repeatable, each ``key=value`` or several comma-separated) -> a
    dict; each value is read as one YAML scalar with the safe loader (``1e-3`` and ``0.5`` are
    numbers, ``true`` a bool, ``null`` None, anything else a string; quote it to keep a comma).

    >>> parse_task_kwargs(["n=100,lr=1e-3", "name=tiny", "flag=true"])
    {'n': 100, 'lr': 0.001, 'name': 'tiny', 'flag': True}
    >>> parse_task_kwargs("n")
    Traceback (most recent call last):
    ...
    ValueError: --task-kwargs: expected key=value, got 'n'
    """
    out: dict[str, Any] = {}
    for item in [items] if isinstance(items, str) else items:
        for entry in _split_quoted(item):
            key, eq, text = entry.partition("=")
            key = key.strip()
            if not eq or not key.isidentifier():
                raise ValueError(f"--task-kwargs: expected key=value, got {entry!r}")
            try:
                value = safe_yaml(text.strip(), f"--task-kwargs: {key}") if text.strip() else ""
            except ValueError as e:  # bad YAML or an alias: a one-line reason
                raise ValueError(str(e).splitlines()[0]) from None
            if isinstance(value, (dict, list)) or not (value is None or isinstance(value, (bool, int, float, str))):
                raise ValueError(f"--task-kwargs: {key}: expected a number, string, true/false or null, got {text!r}")
            out[key] = value
    return out


def _split_quoted(text: str) -> list[str]:
    """Split at commas outside quotes and brackets: ``"a=1,b='x,y'"`` -> ``["a=1", "b='x,y'"]``."""
    out: list[str] = []
    cur: list[str] = []
    quote, depth = "", 0
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return [s for s in out if s]


def _seed_tuple(seeds: Any, where: str) -> tuple[int, ...]:
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple)):
        raise ValueError(f"{where} must be non-negative ints, got {seeds!r}")
    out = tuple(seeds)
    if not out or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in out):
        raise ValueError(f"{where} must be non-negative ints, got {where.rsplit('.', 1)[-1]}={seeds!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{where} must be distinct, got {where.rsplit('.', 1)[-1]}={seeds!r}")
    return out


def parse_schedule(spec: str | Schedule, *, where: str = "schedule") -> Schedule:
    """A schedule from its text form (``lrlab.parse``) or a :class:`Schedule` as is."""
    if isinstance(spec, Schedule):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{where}: expected a schedule in text form, got {spec!r}")
    from lrlab.spec import parse

    try:
        return parse(spec)
    except ValueError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{where}: {first}") from e


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list at top level only (commas inside ``(...)``/``[...]`` or
    quotes stay); the splitter ``--task-kwargs`` uses too.

    >>> split_specs("constant, linear(1.0, 0.0, steps=100%),cosine_cycles")
    ['constant', 'linear(1.0, 0.0, steps=100%)', 'cosine_cycles']
    """
    return _split_quoted(text)


@dataclass(frozen=True)
class OptimizerChoice:
    """One optimizer of a study: its name, peak lr (``None``: the task's default) and overrides.

    ``kwargs`` override the defaults of :data:`lrlab.study.optimizers.OPTIMIZERS` (e.g.
    ``{"momentum": 0.0}``, ``{"weight_decay": 5e-4}``); ``lr`` itself comes from the schedule.
    """

    name: str
    peak_lr: float | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in KNOWN_OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r}: use one of {', '.join(KNOWN_OPTIMIZERS)}")
        if self.peak_lr is not None and (
            isinstance(self.peak_lr, (str, bool)) or not isinstance(self.peak_lr, (int, float))
            or not (math.isfinite(self.peak_lr) and LR_LIMITS[0] <= self.peak_lr <= LR_LIMITS[1])
        ):
            raise ValueError(f"optimizer {self.name!r}: peak_lr must be a positive number, got {self.peak_lr!r}")
        if "lr" in self.kwargs:
            raise ValueError(f"optimizer {self.name!r}: give the learning rate as peak_lr, not in kwargs")
        for k, v in self.kwargs.items():
            if not isinstance(k, str):
                raise ValueError(f"optimizer {self.name!r}: kwargs keys must be strings, got {k!r}")
            _check_plain(v, f"optimizers.{self.name}.{k}")


def _check_plain(v: Any, where: str) -> None:
    if isinstance(v, bool) or v is None or isinstance(v, (int, float, str)):
        return
    if isinstance(v, (list, tuple)):
        for x in v:
            _check_plain(x, where)
        return
    raise ValueError(f"{where}: expected a number, string or list, got {type(v).__name__} {v!r}")


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study run.

    Args:
        task: ``"mnist1d"`` (CNN), ``"mnist1d_mlp"``, ``"cifar10"``, ``"package.module:function"``
            (a task builder or a training function, imported with the current directory on the
            path), or the object itself: a :class:`~lrlab.study.tasks.Task`, a task builder or a
            training function (:mod:`lrlab.study.trainfn`). Resume keys and the report name an
            object by its ``name`` (Task) or ``module:qualname`` (function); a Task object trains
            in this process (workers cannot rebuild it).
        task_kwargs: keyword arguments of the task builder, or ``trial.kwargs`` of a training
            function (plain JSON values; sent to workers).
        schedules: name -> schedule, each a text spec or :class:`Schedule` giving a multiplier of
            the peak lr, durations in steps, epochs (``"5ep"``) or fractions (``"10%"``).
        optimizers: name -> :class:`OptimizerChoice`.
        seeds: the final seeds (model init and data order); every (schedule, optimizer) runs each
            of them at its chosen peak lr. A count ``n`` (or ``None``: :data:`DEFAULT_N_SEEDS`)
            means ``0..n-1`` without tuning and ``1000..1000+n-1`` with it; a list is used as
            given and must not share a seed with ``tune.seeds``.
        epochs: training length; ``None`` uses :data:`DEFAULT_EPOCHS` for MNIST-1D and the task's
            own ``epochs`` otherwise.
        batch_size: examples per step (``None``: the task's).
        peak_lr: ``"fixed"`` (config or task defaults) or ``"find"`` (LR range test per optimizer):
            the base peak lr of each optimizer.
        tune: :class:`TuneConfig` (the default) to tune each cell's peak lr on a grid around the
            base, or ``None`` to run every cell at the base lr.
        plateau_metric: per-epoch metric fed to plateau nodes (a validation or training metric;
            never the test set).
        workers: processes for the fleets (``None``: chosen by the fleet engine; ``0``: train in
            this process).
        device: torch device (``"cpu"``, ``"cuda"``).
        out: output directory (report, plots, CSV, JSON, default storage).
        storage: an Optuna storage URL (``sqlite:///...``, ``postgresql://...``) or a path to a
            journal file (``*.log`` / ``*.jsonl``); ``None``: ``sqlite:///<out>/study.db``.
        study_name: the Optuna study that holds the trials.
        fresh: ignore stored results (rerun everything; old trials stay in storage).
        metric: the validation metric that selects each cell's peak lr (``val_acc``, ``val_loss``,
            or any ``val_*`` a training function reports); the statistics compare the final runs on
            its test counterpart (``test_*``).
        direction: ``"maximize"`` or ``"minimize"`` (``None``: minimize for loss-like names, see
            :func:`lrlab.study.trainfn.default_direction`, else maximize).
        steps_per_epoch: optimizer steps per epoch of a training function (required for one;
            a Task knows its own).
        checkpoint_dir: where running trials save their epoch-end checkpoints (under
            ``<checkpoint_dir>/<study name>/``); ``None``: next to a SQLite or journal storage
            file, in ``out`` for a server storage (:func:`lrlab.study.checkpoint.checkpoint_dir`).
            A directory every machine mounts lets a claim re-queued after its worker died
            continue on another machine (workers use the driver's, or their own
            ``--checkpoint-dir`` where the mount point differs).
    """

    task: Any = "mnist1d"
    task_kwargs: Mapping[str, Any] = field(default_factory=dict)
    schedules: Mapping[str, str | Schedule] = field(default_factory=lambda: dict(DEFAULT_SCHEDULES))
    optimizers: Mapping[str, OptimizerChoice] = field(
        default_factory=lambda: {n: OptimizerChoice(n) for n in DEFAULT_OPTIMIZERS}
    )
    seeds: tuple[int, ...] | int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    peak_lr: str = "fixed"
    tune: TuneConfig | None = field(default_factory=TuneConfig)
    plateau_metric: str = "val_loss"
    workers: int | None = None
    device: str = "cpu"
    out: str = "runs/study"
    storage: str | None = None
    study_name: str = "lrlab"
    fresh: bool = False
    metric: str = "val_acc"
    direction: str | None = None
    steps_per_epoch: int | None = None
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        tasks = sys.modules.get("lrlab.study.tasks")  # a Task object means it is loaded: no torch import here
        is_task = tasks is not None and isinstance(self.task, tasks.Task)
        if self.task == "" or not (isinstance(self.task, str) or is_task or callable(self.task)):
            raise ValueError(f"task must be a name, 'package.module:function', a Task or a function, got {self.task!r}")
        if not isinstance(self.metric, str) or not self.metric.startswith("val_") or not self.metric.isidentifier():
            raise ValueError(f"metric must name a validation metric such as val_acc or val_loss, got {self.metric!r}")
        if self.direction is None:
            from lrlab.study.trainfn import default_direction

            object.__setattr__(self, "direction", default_direction(self.metric))
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be maximize or minimize, got {self.direction!r}")
        if not isinstance(self.task_kwargs, Mapping):
            raise ValueError(f"task_kwargs must be a mapping, got {self.task_kwargs!r}")
        for k, v in self.task_kwargs.items():
            if isinstance(v, Mapping):
                for kk, vv in v.items():
                    _check_plain(vv, f"task_kwargs.{k}.{kk}")
            else:
                _check_plain(v, f"task_kwargs.{k}")
        if not self.schedules:
            raise ValueError("schedules: a study needs at least one schedule")
        for name, spec in self.schedules.items():
            _check_name(name, "schedules")
            if not isinstance(spec, (str, Schedule)):
                raise ValueError(f"schedules.{name}: expected a text spec, got {spec!r}")
        if not self.optimizers:
            raise ValueError("optimizers: a study needs at least one optimizer")
        for name, opt in self.optimizers.items():
            if not isinstance(opt, OptimizerChoice) or opt.name != name:
                raise ValueError(f"optimizers.{name}: expected OptimizerChoice({name!r}, ...), got {opt!r}")
        if self.tune is not None and not isinstance(self.tune, TuneConfig):
            raise ValueError(f"tune must be a TuneConfig or None, got {self.tune!r}")
        seeds = self.seeds if self.seeds is not None else DEFAULT_N_SEEDS
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            if seeds < 1:
                raise ValueError(f"seeds: the number of seeds must be >= 1, got {seeds!r}")
            base = FINAL_SEED_BASE if self.tune is not None else 0
            seeds = tuple(range(base, base + seeds))
        seeds = _seed_tuple(seeds, "seeds")
        if self.tune is not None and set(seeds) & set(self.tune.seeds):
            both = sorted(set(seeds) & set(self.tune.seeds))
            raise ValueError(
                f"seeds {both} are both tuning and final seeds: the final runs need fresh seeds "
                "(give other seeds or tune.seeds)"
            )
        object.__setattr__(self, "seeds", seeds)
        for nm in ("epochs", "batch_size", "workers", "steps_per_epoch"):
            v = getattr(self, nm)
            low = 0 if nm == "workers" else 1
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
                raise ValueError(f"{nm} must be an int >= {low}, got {nm}={v!r}")
        if self.peak_lr not in ("fixed", "find"):
            raise ValueError(f"peak_lr must be 'fixed' or 'find', got peak_lr={self.peak_lr!r}")
        if self.plateau_metric not in _PLATEAU_METRICS:
            raise ValueError(
                f"plateau_metric must be one of {', '.join(_PLATEAU_METRICS)}, got {self.plateau_metric!r}"
            )
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a torch device string, got {self.device!r}")
        if not isinstance(self.study_name, str) or not self.study_name:
            raise ValueError(f"study_name must be a non-empty string, got {self.study_name!r}")
        if self.checkpoint_dir is not None and (not isinstance(self.checkpoint_dir, str)
                                                or not self.checkpoint_dir.strip()):
            raise ValueError(f"checkpoint_dir must be a directory path, got {self.checkpoint_dir!r}")

    # ---- derived --------------------------------------------------------------------------------
    @property
    def final_seeds(self) -> tuple[int, ...]:
        """``seeds`` as resolved (always a tuple after construction)."""
        assert isinstance(self.seeds, tuple)
        return self.seeds

    @property
    def task_ref(self) -> str:
        """The task as text (:func:`lrlab.study.tasks.task_label`): what resume keys and the report record."""
        if isinstance(self.task, str):
            return self.task
        from lrlab.study.tasks import task_label

        return task_label(self.task)

    @property
    def is_mnist1d(self) -> bool:
        return self.task in ("mnist1d", "mnist1d_mlp")

    def resolved_epochs(self, task_epochs: int) -> int:
        if self.epochs is not None:
            return self.epochs
        return DEFAULT_EPOCHS if self.is_mnist1d else task_epochs

    def task_build_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`lrlab.study.tasks.load_task` (batch size folded in)."""
        kw = dict(self.task_kwargs)
        if self.batch_size is not None:
            kw["batch_size"] = self.batch_size
        return kw

    def schedule_objects(self) -> dict[str, Schedule]:
        """Every schedule parsed (unresolved, multiplier units); errors name the schedule."""
        return {n: parse_schedule(s, where=f"schedules.{n}") for n, s in self.schedules.items()}

    def replace(self, **changes: Any) -> StudyConfig:
        return dataclasses.replace(self, **changes)

    # ---- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict that :meth:`from_mapping` reads back."""
        return {
            "task": self.task_ref,
            "task_kwargs": dict(self.task_kwargs),
            "schedules": {n: str(s) for n, s in self.schedules.items()},
            "optimizers": {
                n: {"peak_lr": o.peak_lr, **dict(o.kwargs)} for n, o in self.optimizers.items()
            },
            "seeds": list(self.final_seeds),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "peak_lr": self.peak_lr,
            "tune": "none" if self.tune is None else self.tune.to_dict(),
            "plateau_metric": self.plateau_metric,
            "workers": self.workers,
            "device": self.device,
            "out": self.out,
            "storage": self.storage,
            "study_name": self.study_name,
            "fresh": self.fresh,
            "metric": self.metric,
            "direction": self.direction,
            "steps_per_epoch": self.steps_per_epoch,
            "checkpoint_dir": self.checkpoint_dir,
        }

    def fingerprint(self) -> str:
        """A short hash of what determines the results (not where they go or how fast)."""
        d = self.to_dict()
        for k in ("workers", "out", "storage", "study_name", "fresh", "device", "checkpoint_dir"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str = "config") -> StudyConfig:
        """Build a config from a parsed YAML/TOML/JSON mapping; errors name the offending key.

        Keys: ``task``, ``task_kwargs``, ``model`` (``cnn``/``mlp`` for MNIST-1D), ``data``
        (dataset directory, e.g. CIFAR-10), ``schedules`` (a list of default names and/or text
        specs, or a mapping name -> spec), ``optimizers`` (a list of names, or a mapping
        name -> peak lr, or name -> {peak_lr: ..., other torch kwargs}), ``seeds`` (a count or a
        list), ``epochs``, ``batch_size``, ``peak_lr`` (fixed/find), ``tune`` (``none``, ``grid``
        or ``{grid: [...], relative: true, seeds: [...]}``), ``plateau_metric``,
        ``workers``, ``device``, ``out``, ``storage``, ``study_name``, ``fresh``, ``metric``,
        ``direction``, ``steps_per_epoch``, ``checkpoint_dir``.
        """
        pre = f"{where}: " if where else ""
        if not isinstance(data, Mapping):
            raise ValueError(f"{pre}expected a mapping of settings, got {type(data).__name__}")
        unknown = [k for k in data if k not in _TOP_KEYS]
        if unknown:
            raise ValueError(f"{pre}unknown key {unknown[0]!r}; known keys: {', '.join(_TOP_KEYS)}")
        kw: dict[str, Any] = {}
        task = data.get("task", "mnist1d")
        model = data.get("model")
        if model is not None:
            if model not in ("cnn", "mlp"):
                raise ValueError(f"{pre}model must be 'cnn' or 'mlp', got {model!r}")
            if task not in ("mnist1d", "mnist1d_mlp"):
                raise ValueError(f"{pre}model={model!r} applies to the mnist1d task only, not {task!r}")
            task = "mnist1d" if model == "cnn" else "mnist1d_mlp"
        kw["task"] = task
        task_kwargs = data.get("task_kwargs") or {}
        if not isinstance(task_kwargs, Mapping):
            raise ValueError(f"{pre}task_kwargs must be a mapping, got {task_kwargs!r}")
        task_kwargs = dict(task_kwargs)
        if data.get("data") is not None:
            task_kwargs["data_dir"] = str(data["data"])
        kw["task_kwargs"] = task_kwargs
        if "schedules" in data:
            kw["schedules"] = _schedules_from(data["schedules"], f"{pre}schedules")
        if "optimizers" in data:
            kw["optimizers"] = _optimizers_from(data["optimizers"], f"{pre}optimizers")
        if "seeds" in data and data["seeds"] is not None:
            kw["seeds"] = _seeds_from(data["seeds"], f"{pre}seeds")
        if "tune" in data:
            kw["tune"] = TuneConfig.from_value(data["tune"], f"{pre}tune")
        for k in ("epochs", "batch_size", "peak_lr", "plateau_metric", "workers", "device", "out",
                  "storage", "study_name", "fresh", "metric", "direction", "steps_per_epoch", "checkpoint_dir"):
            if k in data and data[k] is not None:
                kw[k] = data[k]
        if "fresh" in kw and not isinstance(kw["fresh"], bool):
            raise ValueError(f"{pre}fresh must be true or false, got {kw['fresh']!r}")
        for k in ("out", "storage", "checkpoint_dir"):
            if k in kw:
                kw[k] = str(kw[k])
        try:
            return cls(**kw)
        except ValueError as e:
            raise ValueError(f"{pre}{e}") from e


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not name or any(c in name for c in "/|,= \t\n"):
        raise ValueError(f"{what}: names must be non-empty strings without '/', '|', ',', '=' or spaces, got {name!r}")


def _schedules_from(value: Any, where: str) -> dict[str, str]:
    """A list of default names / text specs (``name=spec`` to name one), or a mapping."""
    if isinstance(value, str):
        value = split_specs(value)
    out: dict[str, str] = {}
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = []
        for entry in value:
            if not isinstance(entry, str):
                raise ValueError(f"{where}: expected a schedule name or text spec, got {entry!r}")
            items.append(_name_spec(entry.strip()))
    else:
        raise ValueError(f"{where}: expected a list or a mapping, got {type(value).__name__}")
    for name, spec in items:
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"{where}.{name}: expected a text spec string, got {spec!r}")
        _check_name(name, where)
        if name in out:
            raise ValueError(f"{where}: schedule {name!r} is given twice")
        out[name] = spec.strip()
    if not out:
        raise ValueError(f"{where}: empty")
    return out


def _name_spec(entry: str) -> tuple[str, str]:
    """``"cosine_cycles"`` -> the default spec; ``"mine=linear(...)"`` -> named spec; a bare spec
    is named after its text (with spaces removed)."""
    if entry in DEFAULT_SCHEDULES:
        return entry, DEFAULT_SCHEDULES[entry]
    head, eq, rest = entry.partition("=")
    if eq and head.strip().isidentifier() and "(" not in head:
        return head.strip(), rest.strip()
    if "(" not in entry:
        raise ValueError(
            f"unknown schedule name {entry!r}: use one of {', '.join(DEFAULT_SCHEDULES)} or a text spec"
        )
    return entry.replace(" ", ""), entry


def _optimizers_from(value: Any, where: str) -> dict[str, OptimizerChoice]:
    """A list of names, a mapping name -> peak lr or settings, or a comma-separated string of names
    with optional peak lrs (``"sgd=0.1,adam"``, what ``--optimizers`` passes)."""
    if isinstance(value, str):
        entries = [v.strip() for v in value.split(",") if v.strip()]
        if any("=" in v for v in entries):
            value = {}
            for v in entries:
                head, _, given = v.partition("=")
                value[head.strip()] = given.strip() or None
        else:
            value = entries
    out: dict[str, OptimizerChoice] = {}
    if isinstance(value, (list, tuple)):
        for name in value:
            if not isinstance(name, str):
                raise ValueError(f"{where}: expected optimizer names, got {name!r}")
            out[name] = _opt(name, None, {}, where)
    elif isinstance(value, Mapping):
        for name, v in value.items():
            if v is None:
                out[name] = _opt(name, None, {}, where)
            elif isinstance(v, (int, float, str)) and not isinstance(v, bool):
                out[name] = _opt(name, _positive_float(v, f"{where}.{name}"), {}, where)
            elif isinstance(v, Mapping):
                d = dict(v)
                lr = d.pop("peak_lr", None)
                if lr is not None:
                    lr = _positive_float(lr, f"{where}.{name}.peak_lr")
                out[name] = _opt(name, lr, d, where)
            else:
                raise ValueError(f"{where}.{name}: expected a peak lr or a mapping, got {v!r}")
    else:
        raise ValueError(f"{where}: expected a list or a mapping, got {type(value).__name__}")
    if not out:
        raise ValueError(f"{where}: empty")
    return out


def _opt(name: str, lr: float | None, kwargs: dict[str, Any], where: str) -> OptimizerChoice:
    try:
        return OptimizerChoice(name, lr, kwargs)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e


def _seeds_from(value: Any, where: str) -> tuple[int, ...] | int:
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a count or a list of ints, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"{where}: the number of seeds must be >= 1, got {value!r}")
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        return tuple(value)
    raise ValueError(f"{where}: expected a count or a list of ints, got {value!r}")


def load_config(path: str | Path) -> StudyConfig:
    """Read a study config from ``.yaml``/``.yml`` (:func:`lrlab.spec.safe_yaml`: a safe loader
    without aliases that reads ``1e-3`` as a number), ``.toml`` or ``.json``."""
    return StudyConfig.from_mapping(load_mapping(path), where=str(path))


def load_mapping(path: str | Path) -> dict[str, Any]:
    """The settings of a config file as written (no defaults filled in); errors in one line."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist")
    text = p.read_text(encoding="utf-8")
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml", ".json"):
        raise ValueError(f"config file {str(p)!r}: use .yaml, .yml, .toml or .json")
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            try:
                import tomllib
            except ImportError as e:  # Python 3.10
                raise ValueError("TOML configs need Python >= 3.11 (tomllib); use YAML") from e
            data = tomllib.loads(text)
        else:
            data = safe_yaml(text, str(p))
    except Exception as e:  # JSONDecodeError / TOMLDecodeError / YAMLError carry the line
        if isinstance(e, ValueError) and str(e).startswith("TOML configs"):
            raise
        raise ValueError(f"config file {str(p)!r} is not valid {suffix[1:].upper()}: {str(e).splitlines()[0]}") from e
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{p}: expected a mapping of settings, got {type(data).__name__}")
    return dict(data)
