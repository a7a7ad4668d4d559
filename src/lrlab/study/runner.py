"""Run a study: build the trials, skip those already stored, train the rest, store, report.

:func:`run_study` is the Python API behind ``lrlab study``:

1. load the task (:func:`lrlab.study.tasks.load_task`) and fix the training length
   (``epochs``; ``total_steps = epochs * steps_per_epoch``);
2. per optimizer, the base peak lr: from the config, the task's documented default, or the LR
   range test (``peak_lr="find"``: :func:`lrlab.finder.find_for_task`, cached in the storage so
   a rerun does not search again);
3. with tuning (the default, :class:`~lrlab.study.config.TuneConfig`): one *tune* trial per
   schedule x optimizer x grid lr x tuning seed, all of them in one call to
   :func:`lrlab.study.fleet.run_trials` (batched fleets; a training function's trials go one at a
   time per worker through :mod:`lrlab.study.trainfn`); then per cell the lr with the best final
   value of the study's ``metric`` (validation accuracy by default) in its ``direction``
   (:func:`lrlab.study.stats.select_lr`);
4. one *final* trial per schedule x optimizer x final seed at the cell's chosen lr (or at the
   base lr with ``tune=None``), again in one call. A trial is ``peak_lr * schedule`` resolved
   with the task's ``total_steps``/``steps_per_epoch``; its key is ``trial_id@hash`` where the
   hash covers everything that determines its result (role, task and its kwargs, epochs, the
   resolved schedule with its peak lr, optimizer and overrides, seed, plateau metric; for a
   training function also what else its :class:`~lrlab.study.trainfn.Trial` is given: steps per
   epoch, metric, direction, batch size, peak lr);
5. trials whose key is already in the storage are not rerun (unless ``fresh``), so a rerun
   re-selects the same lrs from the stored tune trials and finds the finals stored too; each
   trial is stored the moment it finishes, so an interrupted run loses no finished trial;
6. statistics over the final seeds (:mod:`lrlab.study.stats`), the terminal table and the report
   files (:mod:`lrlab.study.report`). Only final runs' test numbers are reported; the test set
   never feeds a choice.

:func:`rebuild_report` redoes step 6 from the storage alone (``lrlab study report``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lrlab.schedules import Schedule
from lrlab.study.config import LR_LIMITS, StudyConfig, load_config
from lrlab.study.stats import (
    CellSummary,
    LrSelection,
    OptimizerEffect,
    optimizer_effects,
    select_lr,
    summarize,
)
from lrlab.study.storage import (
    CURVE_FIELDS,
    LiveTrials,
    StudyStorage,
    TrialRecord,
    shown_url,
    storage_url,
)

__all__ = ["PlannedTrial", "StudyResult", "plan_trials", "rebuild_report", "run_study", "tuning_grid", "versions"]

_STUDY_ATTR = "lrlab_study"
_FINDER_ATTR = "lrlab_finder"


@dataclass(frozen=True)
class PlannedTrial:
    """A trial of the study before it runs: what :func:`lrlab.study.fleet.run_trials` receives
    (``spec``) plus what the report needs to describe it."""

    key: str
    spec: Any  # lrlab.study.fleet.TrialSpec
    schedule_name: str
    schedule_text: str
    peak_lr: float
    role: str = "final"


@dataclass
class StudyResult:
    """What :func:`run_study` returns.

    ``records``: every final trial of the study (run now or found in storage); ``tune_records``:
    the tuning trials; ``selections``: the tuning of each ``(schedule, optimizer)`` cell;
    ``ran``/``reused``: how many trials (both roles) were trained in this call / taken from
    storage; ``paths``: the report files by name; ``info``: what the report was built from
    (config, versions, command, ...).
    """

    config: StudyConfig
    records: list[TrialRecord]
    summaries: list[CellSummary]
    effects: list[OptimizerEffect]
    paths: dict[str, Path]
    ran: int
    reused: int
    seconds: float
    peak_lrs: dict[str, float] = field(default_factory=dict)
    tune_records: list[TrialRecord] = field(default_factory=list)
    selections: dict[tuple[str, str], LrSelection] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_pandas(self) -> Any:
        """The study's tuning and final trials as tidy pandas frames
        (:class:`lrlab.study.export.Frames`: ``trials`` one row per trial, ``curves`` one row per
        trial x epoch); needs ``pip install 'lrlab[dataframe]'``."""
        from lrlab.study.export import to_frames

        return to_frames([*self.tune_records, *self.records])


def versions() -> dict[str, str]:
    """The versions that produced a study's numbers (recorded in the report)."""
    import numpy
    import torch

    import lrlab

    return {"lrlab": lrlab.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _peak_lrs(cfg: StudyConfig, task: Any, storage: StudyStorage, say: Callable[[str], None]) -> dict[str, float]:
    out: dict[str, float] = {}
    cache = dict(storage.get_attr(_FINDER_ATTR, {}) or {}) if cfg.peak_lr == "find" else {}
    for name, choice in cfg.optimizers.items():
        if cfg.peak_lr == "find" and choice.peak_lr is None:
            ck = _hash({"task": cfg.task_ref, "task_kwargs": cfg.task_build_kwargs(), "optimizer": name,
                        "kwargs": dict(choice.kwargs)})
            if ck in cache and not cfg.fresh:
                out[name] = float(cache[ck])
                say(f"peak lr for {name}: {out[name]:.3g} (LR range test, stored)")
                continue
            from lrlab.finder import find_for_task

            say(f"LR range test for {name} ...")
            res = find_for_task(task, name, dict(choice.kwargs), device=cfg.device,
                                on_seed=lambda k, n, name=name: say(f"  LR range test for {name}: {k}/{n} seeds"))
            lr = float(res.lr)
            if not (math.isfinite(lr) and lr > 0):
                raise ValueError(f"the LR range test found no usable peak lr for {name} (got {lr!r}); give one")
            conf = "" if res.confident else " (low confidence: " + "; ".join(res.notes) + ")"
            say(f"peak lr for {name}: {lr:.3g} (LR range test{conf})")
            out[name] = lr
            cache[ck] = lr
            storage.set_attr(_FINDER_ATTR, cache)
        elif choice.peak_lr is not None:
            out[name] = float(choice.peak_lr)
        elif name in getattr(task, "peak_lr", {}):
            out[name] = float(task.peak_lr[name])
        else:
            raise ValueError(
                f"task {task.name!r} has no default peak lr for optimizer {name!r}: give one "
                f"(optimizers: {{{name}: {{peak_lr: ...}}}} in the config)"
                + (" or use --peak-lr find" if hasattr(task, "x_train") else "")
            )
    return out


def tuning_grid(cfg: StudyConfig, base_lrs: Mapping[str, float]) -> dict[str, tuple[float, ...]]:
    """The absolute peak lrs each optimizer's cells are tuned on (``cfg.tune`` must be set)."""
    if cfg.tune is None:
        raise ValueError("tuning_grid: the config has tune=None")
    out = {}
    for opt in cfg.optimizers:
        lrs = tuple(float(base_lrs[opt]) * g if cfg.tune.relative else g for g in cfg.tune.grid)
        bad = [lr for lr in lrs if not (math.isfinite(lr) and LR_LIMITS[0] <= lr <= LR_LIMITS[1])]
        if bad:
            raise ValueError(f"tune.grid: gives the peak lr {bad[0]!r} for {opt}, not a positive finite number")
        out[opt] = lrs
    return out


def plan_trials(cfg: StudyConfig, *, epochs: int, steps_per_epoch: int,
                peak_lrs: Mapping[str, float] | Mapping[tuple[str, str], float],
                role: str = "final", seeds: Sequence[int] | None = None,
                grid: Mapping[str, Sequence[float]] | None = None) -> list[PlannedTrial]:
    """The trials of one role of ``cfg``, optimizer-major, then schedule, then lr, then seed.

    ``peak_lrs``: the lr per optimizer, or per ``(schedule, optimizer)`` cell (cells missing from
    it are not planned: their tuning diverged everywhere); ``grid`` (tune role): the lrs per
    optimizer instead; ``seeds``: default ``cfg.seeds`` (final) or ``cfg.tune.seeds`` (tune).
    """
    from lrlab.study.fleet import TrialSpec

    if role not in ("tune", "final"):
        raise ValueError(f"role must be 'tune' or 'final', got {role!r}")
    if seeds is None:
        seeds = cfg.tune.seeds if role == "tune" and cfg.tune is not None else cfg.final_seeds
    total = epochs * steps_per_epoch
    relative = cfg.schedule_objects()
    # A training function (the only kind of study with its own steps_per_epoch) is given more of
    # the study's settings than a Task's fleets: every one of them can change what it trains and
    # reports (and metric/direction its stored best_<metric>), so they are in its key. A Task's
    # keys stay as they were (its steps per epoch and batch size are in task_kwargs; metric and
    # direction only select among stored trials), so stored studies keep resuming.
    function = cfg.steps_per_epoch is not None
    function_key: dict[str, Any] = {k: getattr(cfg, k) for k in FUNCTION_FIELDS} if function else {}
    if function:
        function_key["steps_per_epoch"] = steps_per_epoch  # the budget the trials are given
    plans = []
    for opt_name, choice in cfg.optimizers.items():
        for s_name, rel in relative.items():
            if grid is not None:
                lrs = [float(x) for x in grid[opt_name]]
            elif (s_name, opt_name) in peak_lrs:
                lrs = [float(peak_lrs[(s_name, opt_name)])]  # type: ignore[index]
            elif opt_name in peak_lrs:
                lrs = [float(peak_lrs[opt_name])]  # type: ignore[index]
            else:
                continue
            for peak in lrs:
                try:
                    sched: Schedule = (peak * rel).resolve(total_steps=total, steps_per_epoch=steps_per_epoch)
                    values = sched.values(total)
                except ValueError as e:
                    raise ValueError(f"schedules.{s_name}: {str(e).splitlines()[0]}") from e
                if not np.all(np.isfinite(values)) or np.any(values < 0):
                    raise ValueError(f"schedules.{s_name}: gives a negative or non-finite lr within the {total} steps")
                for seed in seeds:
                    trial_id = (f"{s_name}/{opt_name}/s{seed}" if role == "final"
                                else f"{s_name}/{opt_name}/lr{peak:.6g}/s{seed}")
                    key = trial_id + "@" + _hash({
                        "role": role, "task": cfg.task_ref, "task_kwargs": cfg.task_build_kwargs(), "epochs": epochs,
                        "schedule": sched.to_config(), "optimizer": opt_name, "kwargs": dict(choice.kwargs),
                        "seed": seed, "plateau_metric": cfg.plateau_metric,
                        **({**function_key, "peak_lr": peak} if function else {}),  # trial.peak_lr
                    })
                    spec = TrialSpec(
                        trial_id=trial_id, schedule=sched, optimizer=opt_name,
                        optimizer_kwargs=dict(choice.kwargs), seed=seed, plateau_metric=cfg.plateau_metric,
                    )
                    plans.append(PlannedTrial(key, spec, s_name, str(rel), peak, role))
    return plans


def _skeleton(plan: PlannedTrial, epochs: int) -> TrialRecord:
    """The record of a planned trial before it trains: what it is, no results yet."""
    return TrialRecord(
        key=plan.key, trial_id=plan.spec.trial_id, schedule_name=plan.schedule_name,
        schedule_text=plan.schedule_text, schedule_config=plan.spec.schedule.to_config(),
        optimizer=plan.spec.optimizer, optimizer_kwargs=dict(plan.spec.optimizer_kwargs),
        seed=plan.spec.seed, peak_lr=plan.peak_lr, epochs=epochs, curves={}, final={}, role=plan.role,
    )


def _record(plan: PlannedTrial, result: Any, epochs: int) -> TrialRecord:
    curves = {k: np.array([float(getattr(e, k)) for e in result.curves], dtype=np.float64) for k in CURVE_FIELDS}
    final = {k: float(v) for k, v in dict(result.final).items() if isinstance(v, (int, float))}
    last = result.curves[-1] if result.curves else None
    for k in ("val_acc", "val_loss", "test_acc", "test_loss", "train_acc", "train_loss"):
        if k not in final:
            final[k] = float(getattr(last, k)) if last is not None else math.nan
    if "best_val_acc" not in final:
        acc = curves["val_acc"]
        final["best_val_acc"] = float(np.nanmax(acc)) if np.isfinite(acc).any() else math.nan
    return dataclasses.replace(
        _skeleton(plan, epochs), curves=curves, final=final, diverged=bool(result.diverged),
        diverged_epoch=result.diverged_epoch, seconds=float(result.seconds),
        started=float(getattr(result, "started", math.nan)), finished=float(getattr(result, "finished", math.nan)),
    )


def _console(console: Any, quiet: bool) -> Any:
    from rich.console import Console

    if console is not None:
        return console
    return Console(quiet=quiet, highlight=False)


def _load_task(cfg: StudyConfig) -> Any:
    """The task, with unknown builder arguments as a one-line error naming them."""
    from lrlab.study.tasks import resolve_task

    try:
        return resolve_task(cfg.task, **cfg.task_build_kwargs())
    except TypeError as e:
        raise ValueError(f"task_kwargs: task {cfg.task!r} does not accept these arguments ({e})") from e


def _check_device(device: str) -> None:
    """Refuse a device torch does not know, or one this machine lacks, before any training."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"device {device!r} is not a torch device (use cpu or cuda): {str(e).splitlines()[0]}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: the study trains on cpu or cuda")


def _writable_dir(out: str | Path, what: str = "output directory") -> Path:
    """Create ``out`` and prove it is writable (one-line error otherwise, before training)."""
    p = Path(out)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".lrlab-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"cannot write to the {what} {str(out)!r}: {e.strerror or e}") from e
    return p


def run_study(
    config: StudyConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    progress: bool = True,
    console: Any = None,
    quiet: bool = False,
    report: bool = True,
    command: str | None = None,
    executor: Callable[..., Any] | None = None,
) -> StudyResult:
    """Run (or resume) a study and write its report; see the module docstring for the steps.

    Args:
        config: a :class:`StudyConfig`, a mapping in the config-file format, a path to a
            YAML/TOML/JSON config file, or ``None`` for the default study.
        progress: show a progress bar with ETA (rich) while training.
        console: a ``rich.console.Console`` to print to (default: stdout).
        quiet: print nothing (the report files are still written).
        report: write the report files into ``config.out`` (the table is printed either way);
            ``lrlab study report`` can write them later from the storage.
        command: the command line that started the study (recorded in the report; default
            ``sys.argv``).
        executor: what trains the fleets, a drop-in for :func:`lrlab.study.fleet.run_trials`
            (default: it, local processes); :func:`lrlab.study.executors.ray_executor` runs
            them as Ray tasks.

    >>> # run_study({"schedules": ["constant", "linear"], "optimizers": ["adam"], "epochs": 2})
    """
    from rich.markup import escape

    t0 = time.perf_counter()
    if config is None:
        cfg = StudyConfig()
    elif isinstance(config, StudyConfig):
        cfg = config
    elif isinstance(config, (str, Path)):
        cfg = load_config(config)
    else:
        cfg = StudyConfig.from_mapping(config)
    con = _console(console, quiet)
    say = con.print

    _check_device(cfg.device)
    task = _load_task(cfg)
    from lrlab.study.trainfn import TrainingFunction, function_budget

    if isinstance(task, TrainingFunction):  # your own training loop: the config gives the budget
        epochs, spe = function_budget(cfg)
        sizes: dict[str, Any] = {"n_train": "?", "n_val": "?", "n_test": "?", "batch_size": cfg.batch_size or "?"}
    else:
        if cfg.steps_per_epoch is not None:
            raise ValueError("steps_per_epoch applies to a training function; a Task's steps per epoch follow "
                             "from its training set and batch_size")
        no_val = not task.has_validation
        task = task.with_validation()  # the engine makes the same seeded split in every worker
        n_val = 0 if task.y_val is None else len(task.y_val)
        if no_val:
            say(f"task {escape(task.name)} has no validation set: using a seeded 20 % of its training set "
                f"({n_val} examples; give x_val/y_val in the Task for your own)")
        epochs = cfg.resolved_epochs(task.epochs)
        spe = task.steps_per_epoch
        sizes = {"n_train": int(task.x_train.shape[0]), "n_val": n_val, "n_test": int(task.x_test.shape[0]),
                 "batch_size": task.batch_size}
        if not isinstance(cfg.task, str):  # a Task object: workers cannot rebuild it, train here
            from lrlab.study.tasks import object_ref

            cfg = cfg.replace(task=object_ref(task), task_kwargs={}, batch_size=None, workers=0)
    _writable_dir(cfg.out)
    if cfg.checkpoint_dir is not None:
        _writable_dir(cfg.checkpoint_dir, "checkpoint directory")
    storage = StudyStorage(storage_url(cfg.storage, cfg.out), cfg.study_name)
    base_lrs = _peak_lrs(cfg, task, storage, say)
    grid = tuning_grid(cfg, base_lrs) if cfg.tune is not None else {}
    tune_plans = plan_trials(cfg, epochs=epochs, steps_per_epoch=spe, peak_lrs=base_lrs, role="tune",
                             grid=grid) if cfg.tune is not None else []
    # with tuning, planned at the base lr only to check the schedules and count; replanned after selection
    final_plans = plan_trials(cfg, epochs=epochs, steps_per_epoch=spe, peak_lrs=base_lrs)
    how = training_paths(task, [*tune_plans, *final_plans], cfg.device)
    info: dict[str, Any] = {
        "config": {**cfg.to_dict(), "storage": cfg.storage and shown_url(cfg.storage)},
        "task": task.name, "epochs": epochs, "steps_per_epoch": spe,
        "training_paths": how,
        **sizes, "metric": cfg.metric, "direction": cfg.direction, "peak_lrs": base_lrs, "lr_grid": {k: list(v) for k, v in grid.items()},
        "tune_keys": [p.key for p in tune_plans], "keys": [],
        "schedules": list(cfg.schedules), "optimizers": list(cfg.optimizers),
        "versions": versions(), "command": _shown(cfg, command if command is not None else _argv()),
    }
    n_cells = len(cfg.schedules) * len(cfg.optimizers)
    tuning = (f"tuning {len(tune_plans)} trials ({len(cfg.tune.grid)} lrs x {len(cfg.tune.seeds)} tuning "
              f"seed{'s' if len(cfg.tune.seeds) > 1 else ''} per cell), then {len(final_plans)} final trials"
              if cfg.tune is not None else f"{len(final_plans)} trials")
    say(
        f"[bold]lrlab study[/bold]: {escape(task.name)}, {len(cfg.schedules)} schedules x {len(cfg.optimizers)} "
        f"optimizers = {n_cells} cells; {tuning} ({len(cfg.final_seeds)} seeds), "
        f"{epochs} epochs of {spe} steps{_batch(sizes['batch_size'], ' (batch {})')}; "
        + ("base " if cfg.tune is not None else "") + "peak lr "
        + ", ".join(f"{escape(k)} {v:.3g}" for k, v in base_lrs.items())
    )
    storage.set_attr(_STUDY_ATTR, info)  # `lrlab study report` on an interrupted run names what is missing
    from lrlab.study.optimizers import OPTIMIZERS

    # Optuna params need one distribution per study: every registered optimizer, this run's schedules
    storage.param_space(list(cfg.schedules), list(OPTIMIZERS), [p.peak_lr for p in [*tune_plans, *final_plans]])
    done = set() if cfg.fresh else storage.done_keys()
    if cfg.fresh:  # retrain everything: no trial continues from an earlier run's checkpoint
        import shutil

        from lrlab.study.checkpoint import checkpoint_dir

        shutil.rmtree(checkpoint_dir(storage.url, cfg.out, storage.study_name, cfg.checkpoint_dir), ignore_errors=True)
    ran = reused = 0
    selections: dict[tuple[str, str], LrSelection] = {}
    tune_records: list[TrialRecord] = []
    show = progress and not quiet
    for entry in how:
        say(escape(entry["line"]), highlight=False)
    from lrlab.study.fleet import keep_workers

    # one pool of worker processes serves the tuning and final phases and every queue claim
    with keep_workers():
        if tune_plans:
            pending = _not_stored(tune_plans, done, "tuning trials", storage.url, say)
            reused += len(tune_plans) - len(pending)
            ran += len(pending)
            if pending:
                _dispatch(cfg, pending, epochs, storage, con, show, "tuning", task, executor)
            tune_records = _stored(storage, [p.key for p in tune_plans])
            selections = select_all(tune_records, cfg.metric, cfg.direction or "maximize")
            chosen = {cell: sel.chosen for cell, sel in selections.items() if sel.chosen is not None}
            final_plans = plan_trials(cfg, epochs=epochs, steps_per_epoch=spe, peak_lrs=chosen)  # type: ignore[arg-type]
            for sel in selections.values():
                if sel.all_diverged:
                    say(f"[red]{escape(sel.schedule)}/{escape(sel.optimizer)}: every tuning run diverged[/red]; "
                        "no final runs (lower the grid)")
        pending = _not_stored(final_plans, done, "final trials" if tune_plans else "trials", storage.url, say)
        reused += len(final_plans) - len(pending)
        ran += len(pending)
        info["keys"] = [p.key for p in final_plans]
        storage.set_attr(_STUDY_ATTR, info)
        if pending:
            _dispatch(cfg, pending, epochs, storage, con, show, "final runs" if tune_plans else "training",
                      task, executor)
    records = _stored(storage, info["keys"])
    summaries, effects, paths = _report(cfg.out, records, tune_records, selections, info, con, storage.url,
                                        time.perf_counter() - t0, write=report)
    return StudyResult(cfg, records, summaries, effects, paths, ran, reused, time.perf_counter() - t0, base_lrs,
                       tune_records, selections, info)


def _not_stored(plans: Sequence[PlannedTrial], done: set[str], what: str, url: str,
                say: Callable[[str], None]) -> list[PlannedTrial]:
    """The planned trials whose key is not in ``done``; says how many were found stored."""
    from rich.markup import escape

    pending = [p for p in plans if p.key not in done]
    if len(pending) < len(plans):
        say(f"{len(plans) - len(pending)} {what} already in {escape(shown_url(url))} (not rerun); {len(pending)} to train")
    return pending


def _shown(cfg: StudyConfig, text: str) -> str:
    """``text`` with the study's storage password hidden (:func:`~lrlab.study.storage.shown_url`)."""
    return shown_url(cfg.storage, text) if cfg.storage else text


def _argv() -> str:
    import shlex

    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return " ".join([prog if prog != "__main__.py" else "lrlab"] + [shlex.quote(a) for a in sys.argv[1:]])


def select_all(tune_records: Sequence[TrialRecord], metric: str = "val_acc",
               direction: str = "maximize") -> dict[tuple[str, str], LrSelection]:
    """The lr selection of every cell from its tuning records (ordered as first seen), on the
    final value of ``metric`` in ``direction``."""
    runs: dict[tuple[str, str], dict[float, list[tuple[float, bool]]]] = {}
    for r in tune_records:
        val = r.final.get(metric, math.nan)
        runs.setdefault((r.schedule_name, r.optimizer), {}).setdefault(r.peak_lr, []).append(
            (math.nan if val is None else float(val), r.diverged))
    return {cell: select_lr(cell[0], cell[1], by_lr, maximize=direction == "maximize")
            for cell, by_lr in runs.items()}


def _stored(storage: StudyStorage, keys: Sequence[str]) -> list[TrialRecord]:
    by_key = storage.records(keys)
    missing = [k for k in keys if k not in by_key]
    if missing:
        raise RuntimeError(f"{len(missing)} trials finished without a stored result (first: {missing[0]})")
    return [by_key[k] for k in keys]


def training_paths(task: Any, plans: Sequence[PlannedTrial], device: str) -> list[dict[str, str]]:
    """How each optimizer's trials train, one entry per optimizer in plan order:
    ``{"optimizer", "path", "line"}`` with ``path`` ``"mnist1d_cnn"``/``"mnist1d_mlp"``
    (hand-batched fleets), ``"vmap"`` (generic fleets), ``"one at a time"`` (with the reason in
    ``line``) or ``"training function"`` (the user's loop trains each trial itself); see
    :func:`lrlab.study.fleet.path_description`. The study prints the lines before training and
    keeps them in its info for the reports."""
    from lrlab.study.fleet import path_description
    from lrlab.study.trainfn import TrainingFunction

    first: dict[str, Any] = {}
    for p in plans:
        first.setdefault(p.spec.optimizer, p.spec)
    out = []
    for name, spec in first.items():
        if isinstance(task, TrainingFunction):
            path, text = "training function", "one at a time: a training function trains each trial in its own loop"
        else:
            path, text = path_description(task, spec, device=device)
        out.append({"optimizer": name, "path": path, "line": f"{name}: {text}"})
    return out


def _dispatch(cfg: StudyConfig, pending: list[PlannedTrial], epochs: int, storage: StudyStorage,
              con: Any, show: bool, what: str, task: Any = None,
              executor: Callable[..., Any] | None = None) -> None:
    """Train ``pending`` through the storage's work queue (:mod:`lrlab.study.queue`: other
    ``lrlab study`` and ``lrlab study worker`` processes on the same storage share the work; returns
    when every one is stored, by whichever process), or here when the storage cannot queue, with
    ``fresh`` (which retrains what is stored, so it is not shared), and for a training function
    that workers cannot import by a ``module:function`` reference (said in one line)."""
    from rich.markup import escape

    from lrlab.study.queue import WorkQueue, drain, queue_enabled, ticket_entry, ticket_plan
    from lrlab.study.trainfn import TrainingFunction

    fn = task if isinstance(task, TrainingFunction) else None
    if cfg.fresh or not queue_enabled(storage):
        _train(cfg, pending, epochs, storage, con, show, what, task, executor=executor)
        return
    if fn is not None and fn.ref is None:
        con.print(escape(f"training function {fn.name} is not importable as module:function (defined in __main__ "
                         "or inside a function): its trials train in this process, not shared with "
                         "`lrlab study worker`"), soft_wrap=True)
        _train(cfg, pending, epochs, storage, con, show, what, task, executor=executor)
        return
    q = WorkQueue(storage)
    if fn is not None:
        q.enqueue(ticket_entry(p, str(fn.ref), fn.kwargs, epochs, function_plan(cfg)) for p in pending)
    else:
        q.enqueue(ticket_entry(p, cfg.task, cfg.task_build_kwargs(), epochs) for p in pending)
    keys = {p.key for p in pending}

    def finished() -> bool:
        return not q.outstanding(keys)

    def train(tickets: list[Any], stored: Callable[[str], None]) -> None:
        _train(cfg, [ticket_plan(t) for t in tickets], epochs, storage, con, show, what, fn, on_stored=stored,
               executor=executor)

    drain(q, train, claim=lambda plan: _claim_size(cfg, function=plan.get("kind") == "function"), keys=keys,
          say=con.print, stop=finished)


FUNCTION_FIELDS = ("steps_per_epoch", "metric", "direction", "plateau_metric", "batch_size")
"""The study settings a training-function trial's ticket carries: what :func:`run_planned
<lrlab.study.trainfn.run_planned>` gives each :class:`~lrlab.study.trainfn.Trial`, so a worker
runs it exactly as the driver would."""


def function_plan(cfg: StudyConfig) -> dict[str, Any]:
    """What a training-function ticket adds to :func:`lrlab.study.queue.ticket_entry`'s plan."""
    return {"kind": "function", **{k: getattr(cfg, k) for k in FUNCTION_FIELDS}}


def _claim_size(cfg: StudyConfig, *, function: bool = False) -> int:
    """Trials one claim takes: a fleet (24 on CPU, 512 on CUDA) per local worker process, for a
    training function one trial per local process (it trains one trial at a time per process;
    small claims spread long trials over every machine), or ``LRLAB_CLAIM`` (smaller claims spread
    a small study over more workers)."""
    import os

    from lrlab.study.fleet import CUDA_WORKERS, _usable_cores

    raw = os.environ.get("LRLAB_CLAIM")
    if raw is not None:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"LRLAB_CLAIM={raw!r}: give a whole number of trials >= 1")
        return int(raw)

    cuda = cfg.device.startswith("cuda")
    workers = cfg.workers if cfg.workers is not None else (min(CUDA_WORKERS, _usable_cores()) if cuda else _usable_cores())
    if function:
        return max(1, workers)
    return (512 if cuda else 24) * max(1, workers)


def _train(cfg: StudyConfig, pending: list[PlannedTrial], epochs: int, storage: StudyStorage,
           con: Any, show: bool, what: str, task: Any = None, on_stored: Callable[[str], None] | None = None,
           executor: Callable[..., Any] | None = None) -> None:
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from lrlab.study.checkpoint import checkpoint_dir
    from lrlab.study.fleet import run_trials
    from lrlab.study.trainfn import TrainingFunction, run_planned

    ck_dir = checkpoint_dir(storage.url, cfg.out, storage.study_name, cfg.checkpoint_dir)
    by_id = {p.spec.trial_id: p for p in pending}
    seen: dict[str, int] = {}
    state = {"done": 0, "diverged": 0}
    prog = Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("epochs"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=con, disable=not show or not con.is_terminal, transient=False,
    )
    bar = prog.add_task(f"{what} 0/{len(pending)} trials", total=len(pending) * epochs)
    # not a terminal (a log file, CI): rich draws nothing until the end, so print a plain line at
    # each 10% of the trials instead
    plain = show and not con.is_terminal
    t0, next_line = time.perf_counter(), 1

    # trials in Optuna as they train (RUNNING, per-epoch values), written off this thread
    live = LiveTrials(storage, {p.spec.trial_id: _skeleton(p, epochs) for p in pending})

    def on_epoch(rec: Any) -> None:
        seen[rec.trial_id] = seen.get(rec.trial_id, 0) + 1
        prog.advance(bar, 1)
        live.epoch(rec)

    def on_report(trial_id: str, epoch: int, values: dict[str, float]) -> None:
        """A training function's :meth:`~lrlab.study.trainfn.Trial.report`: its study metric is
        the live trial's intermediate value (as in the record it is stored with)."""
        if trial_id not in by_id:  # not this call's trial
            return
        seen[trial_id] = seen.get(trial_id, 0) + 1
        prog.advance(bar, 1)
        live.value(trial_id, epoch, values.get(cfg.metric, math.nan))

    def save(rec: TrialRecord) -> None:
        """Store a finished trial at once (a kill loses no finished trial); from a queue claim, first
        result wins (a claim judged stale and re-queued while it still trained finds its key stored)
        and the claim's ticket is closed."""
        if on_stored is None:
            live.save(rec)  # its live trial completed in place (or a new trial)
            return
        from lrlab.study.queue import worker_name

        rec.extra["worker"] = worker_name()  # stored as x_worker: who trained it
        if not live.save(rec, once=True):
            con.print(escape(f"{what}: {rec.trial_id} was stored meanwhile by another process (this claim was "
                             "judged stale and re-queued); this result is dropped, the stored one kept"),
                      soft_wrap=True)
        on_stored(rec.key)

    def on_trial_done(res: Any) -> None:
        plan = by_id[res.trial_id]
        if not isinstance(res, TrialRecord):  # a training function's trials are stored by run_planned
            save(_record(plan, res, epochs))
        state["done"] += 1
        state["diverged"] += bool(res.diverged)
        left = epochs - seen.get(res.trial_id, 0)
        extra = f", {state['diverged']} diverged" if state["diverged"] else ""
        prog.update(bar, advance=max(left, 0), description=f"{what} {state['done']}/{len(pending)} trials{extra}")
        nonlocal next_line
        if plain and state["done"] * 10 >= next_line * len(pending):
            pct = 100 * state["done"] // len(pending)
            con.print(f"{what}: {state['done']}/{len(pending)} trials ({pct}%){extra}, "
                      f"{time.perf_counter() - t0:.0f} s", highlight=False, soft_wrap=True)
            while state["done"] * 10 >= next_line * len(pending):
                next_line += 1

    finished: set[str] = set()

    def stored(res: Any) -> None:
        finished.add(res.trial_id)
        on_trial_done(res)

    with prog, live:  # live: the trials that did not finish end as FAIL, not RUNNING
        try:
            if isinstance(task, TrainingFunction):  # one trial at a time per worker, stored as each finishes
                run_planned(task, cfg, pending, epochs, save, stored, checkpoint_dir=ck_dir, executor=executor,
                            on_epoch=on_report)
            else:
                run = executor or run_trials
                extra: dict[str, Any] = {"checkpoint_dir": ck_dir} if _accepts(run, "checkpoint_dir") else {}
                run(cfg.task, cfg.task_build_kwargs(), [p.spec for p in pending], epochs=epochs,
                    workers=cfg.workers, device=cfg.device, on_epoch=on_epoch, on_trial_done=stored, **extra)
        except KeyboardInterrupt:
            prog.stop()
            running = [p for p in pending if p.spec.trial_id not in finished]
            try:  # everything the storage holds for the study: earlier claims and runs count too
                n_stored = len(storage.done_keys())
            except Exception:  # the database went away with the interrupt: what this call stored
                n_stored = len(finished)
            con.print("[yellow]interrupted[/yellow]: " + escape(interrupt_summary(
                n_stored, running, epochs, ck_dir, storage.url, isinstance(task, TrainingFunction))))
            raise


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes the keyword argument ``name`` (a custom executor may predate it)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def interrupt_summary(stored: int, running: Sequence[PlannedTrial], epochs: int, ck_dir: Path, url: str,
                      function: bool = False) -> str:
    """What an interrupted run kept: ``"12 finished trials stored in URL, 36 epochs of 24 running
    trials saved; rerun the same command to continue"`` (the epochs as found in their checkpoint
    files, so a checkpoint that was still being written when the run stopped is not counted)."""
    from lrlab.study.checkpoint import saved_epochs
    from lrlab.study.fleet import checkpoint_file

    if function:
        from lrlab.study.trainfn import function_checkpoint_file

        files = [function_checkpoint_file(ck_dir, p, epochs) for p in running]
    else:
        files = [checkpoint_file(ck_dir, p.spec, epochs) for p in running]
    counts = [saved_epochs(f) for f in files]
    saved, n = sum(counts), sum(c > 0 for c in counts)
    rest = len(running) - n
    return (f"{stored} finished trial{'' if stored == 1 else 's'} stored in {shown_url(url)}, {saved} epoch"
            f"{'' if saved == 1 else 's'} of {n} running trial{'' if n == 1 else 's'} saved"
            + (f" ({rest} other{'' if rest == 1 else 's'} had no finished epoch)" if rest else "")
            + "; rerun the same command to continue")


def _report(out: str | Path, records: list[TrialRecord], tune_records: list[TrialRecord],
            selections: Mapping[tuple[str, str], LrSelection], info: Mapping[str, Any], con: Any, url: str,
            seconds: float | None, *, write: bool = True) -> tuple[list[CellSummary], list[OptimizerEffect], dict[str, Path]]:
    from rich.markup import escape

    from lrlab.study.report import (
        COMPACT_NOTE,
        COMPACT_WIDTH,
        edge_lines,
        effect_lines,
        results_table,
        significance_note,
        write_report,
    )

    metric = str(info.get("metric", "val_acc"))
    summaries = summarize(records, info["schedules"], info["optimizers"], selections=selections, metric=metric)
    effects = optimizer_effects(records, summaries, metric=metric,
                                maximize=info.get("direction", "maximize") == "maximize")
    n_seeds = len(info["config"]["seeds"])
    tune = info["config"].get("tune")
    tuned = isinstance(tune, Mapping)
    title = study_title(info)
    vers = info.get("versions") or {}
    meta = {
        "task": str(info["task"]) + ("" if info["n_train"] == "?" else
                                     f" ({info['n_train']} train / {info.get('n_val', 0)} validation / "
                                     f"{info['n_test']} test)"),
        "training": f"{info['epochs']} epochs x {info['steps_per_epoch']} steps{_batch(info['batch_size'])}",
        ("base peak lr" if tuned else "peak lr"): ", ".join(f"{k} {v:.3g}" for k, v in info["peak_lrs"].items()),
        "lr tuning": (f"grid x{', x'.join(f'{g:g}' for g in tune['grid'])} of the base lr"
                      if tuned and tune.get("relative", True) else
                      f"grid {', '.join(f'{g:g}' for g in tune['grid'])}" if tuned else "none (fixed lr)")
        + (f" on tuning seeds {tune['seeds']}; selected by final "
           + ("validation accuracy" if info.get("metric", "val_acc") == "val_acc"
              else f"{info['metric']} ({info.get('direction')})") if tuned else ""),
        "final seeds": ", ".join(str(x) for x in info["config"]["seeds"]),
        "trials": f"{len(tune_records)} tuning + {len(records)} final "
                  f"({sum(r.diverged for r in [*tune_records, *records])} diverged)",
        "storage": shown_url(url),
        "training time (sum over trials)": f"{sum(r.seconds for r in [*tune_records, *records]):.0f} s",
        "versions": ", ".join(f"{k} {v}" for k, v in vers.items() if k != "platform"),
        "platform": vers.get("platform", "?"),
        "command": info.get("command") or "?",
    }
    if info.get("training_paths"):
        meta["how the trials trained"] = "; ".join(p["line"] for p in info["training_paths"])
    if seconds is not None:
        meta["wall time of this run"] = f"{seconds:.0f} s"
    paths: dict[str, Path] = {}
    if write:
        paths = write_report(out, records, summaries, effects, config=info["config"], schedules=info["schedules"],
                             steps_per_epoch=int(info["steps_per_epoch"]), title=title, meta=meta,
                             tune_records=tune_records, info=info)
    compact = con.width < COMPACT_WIDTH
    con.print(results_table(summaries, title=title, compact=compact,
                            maximize=info.get("direction", "maximize") != "minimize", metric=metric))
    if compact:
        con.print(COMPACT_NOTE, style="dim")
    tuned = isinstance(info["config"].get("tune"), Mapping)
    if metric != "val_acc" and tuned:  # the columns are named after the metric; say how it selected the lr
        con.print(escape(f"lr selected to {info.get('direction', 'maximize')} {metric}"), style="dim")
    con.print(escape(significance_note(n_seeds)), style="dim")
    for line in [*edge_lines(summaries), *effect_lines(effects, metric)]:
        con.print(escape(line))
    if write:
        con.print(f"report: {escape(str(paths['report.html']))}")
    return summaries, effects, paths


def _batch(size: Any, form: str = ", batch {}") -> str:
    """``form`` with the batch size, or nothing when it is unknown ("?" or None: a training
    function chooses its own batches and need not say)."""
    return "" if size in (None, "?") else form.format(size)


def study_title(info: Mapping[str, Any]) -> str:
    """The report's title line from the stored study info."""
    tune = info["config"].get("tune")
    tuned = isinstance(tune, Mapping)
    metric = info.get("metric", "val_acc")
    return (f"{info['task']}: {info['epochs']} epochs x {info['steps_per_epoch']} steps"
            f"{_batch(info['batch_size'])}, {len(info['config']['seeds'])} final seeds"
            + (f", lr tuned on {len(tune['grid'])} points" if tuned else ", fixed lr")
            + ("" if metric == "val_acc" else
               (f"; selected on {metric} ({info.get('direction')})" if tuned else "")
               + f", compared on test_{metric.removeprefix('val_')}"))


def rebuild_report(
    out: str | Path, storage: str | None = None, study_name: str = "lrlab", *, console: Any = None,
    quiet: bool = False,
) -> StudyResult:
    """Rebuild the report in ``out`` from the storage alone (default ``<out>/study.db``).

    Uses the config of the last run stored with the study; errors clearly when the storage holds
    no lrlab study of that name or lacks some of its trials (the run was interrupted: resume it).
    """
    t0 = time.perf_counter()
    url = storage_url(storage, out)
    if storage is None and not (Path(out) / "study.db").is_file():
        raise ValueError(f"no study storage in {str(out)!r} (expected {Path(out) / 'study.db'}); give --storage")
    st = StudyStorage(url, study_name)
    info = st.get_attr(_STUDY_ATTR)
    if not info:
        raise ValueError(f"storage {shown_url(url)!r} holds no lrlab study named {study_name!r}")
    keys = list(info.get("tune_keys", [])) + list(info["keys"])
    recs = st.records(keys)
    missing = [k for k in keys if k not in recs]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(keys)} trials are not in storage yet (first: {missing[0].split('@')[0]}): "
            "rerun `lrlab study` with the same settings to finish them"
        )
    tune_records = [recs[k] for k in info.get("tune_keys", [])]
    records = [recs[k] for k in info["keys"]]
    selections = select_all(tune_records, str(info.get("metric", "val_acc")), str(info.get("direction", "maximize")))
    con = _console(console, quiet)
    _writable_dir(out)
    summaries, effects, paths = _report(out, records, tune_records, selections, info, con, url, None)
    cfg = StudyConfig.from_mapping({k: v for k, v in info["config"].items() if v is not None})
    return StudyResult(cfg, records, summaries, effects, paths, 0, len(keys), time.perf_counter() - t0,
                       dict(info["peak_lrs"]), tune_records, selections, dict(info))
