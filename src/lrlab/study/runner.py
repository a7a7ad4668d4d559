"""Run a study: build the trials, skip those already stored, train the rest, store, report.

:func:`run_study` is the Python API behind ``lrlab study``:

1. load the task (:func:`lrlab.study.tasks.load_task`) and fix the training length
   (``epochs``; ``total_steps = epochs * steps_per_epoch``);
2. per optimizer, the peak lr: from the config, the task's documented default, or the LR range
   test (``peak_lr="find"``: :func:`lrlab.finder.find_for_task`, cached in the storage so a rerun
   does not search again);
3. one trial per schedule x optimizer x seed: ``peak_lr * schedule`` resolved with the task's
   ``total_steps``/``steps_per_epoch``; its key is ``trial_id@hash`` where the hash covers
   everything that determines its result (task and its kwargs, epochs, the resolved schedule,
   optimizer and overrides, seed, plateau metric);
4. trials whose key is already in the storage are not rerun (unless ``fresh``); the others go to
   :func:`lrlab.study.fleet.run_trials` (batched fleets spread over processes), and each is
   stored the moment it finishes, so an interrupted run loses no finished trial;
5. statistics over seeds (:mod:`lrlab.study.stats`), the terminal table and the report files
   (:mod:`lrlab.study.report`).

:func:`rebuild_report` redoes step 5 from the storage alone (``lrlab study report``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lrlab.schedules import Schedule
from lrlab.study.config import StudyConfig, load_config
from lrlab.study.stats import CellSummary, OptimizerEffect, optimizer_effects, summarize
from lrlab.study.storage import CURVE_FIELDS, StudyStorage, TrialRecord, storage_url

__all__ = ["PlannedTrial", "StudyResult", "plan_trials", "rebuild_report", "run_study"]

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


@dataclass
class StudyResult:
    """What :func:`run_study` returns.

    ``records``: every trial of the study (run now or found in storage); ``ran``/``reused``: how
    many were trained in this call / taken from storage; ``paths``: the report files by name.
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


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _peak_lrs(cfg: StudyConfig, task: Any, storage: StudyStorage, say: Callable[[str], None]) -> dict[str, float]:
    out: dict[str, float] = {}
    cache = dict(storage.get_attr(_FINDER_ATTR, {}) or {}) if cfg.peak_lr == "find" else {}
    for name, choice in cfg.optimizers.items():
        if cfg.peak_lr == "find" and choice.peak_lr is None:
            ck = _hash({"task": cfg.task, "task_kwargs": cfg.task_build_kwargs(), "optimizer": name,
                        "kwargs": dict(choice.kwargs)})
            if ck in cache and not cfg.fresh:
                out[name] = float(cache[ck])
                say(f"peak lr for {name}: {out[name]:.3g} (LR range test, stored)")
                continue
            from lrlab.finder import find_for_task

            say(f"LR range test for {name} ...")
            res = find_for_task(task, name, dict(choice.kwargs), device=cfg.device)
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
        elif name in task.peak_lr:
            out[name] = float(task.peak_lr[name])
        else:
            raise ValueError(
                f"task {task.name!r} has no default peak lr for optimizer {name!r}: give one "
                f"(optimizers: {{{name}: {{peak_lr: ...}}}} in the config) or use --peak-lr find"
            )
    return out


def plan_trials(cfg: StudyConfig, *, epochs: int, steps_per_epoch: int, peak_lrs: Mapping[str, float]) -> list[PlannedTrial]:
    """Every trial of ``cfg``, optimizer-major, then schedule, then seed."""
    from lrlab.study.fleet import TrialSpec

    total = epochs * steps_per_epoch
    relative = cfg.schedule_objects()
    plans = []
    for opt_name, choice in cfg.optimizers.items():
        peak = float(peak_lrs[opt_name])
        for s_name, rel in relative.items():
            try:
                sched: Schedule = (peak * rel).resolve(total_steps=total, steps_per_epoch=steps_per_epoch)
                lrs = sched.values(total)
            except ValueError as e:
                raise ValueError(f"schedules.{s_name}: {str(e).splitlines()[0]}") from e
            if not np.all(np.isfinite(lrs)) or np.any(lrs < 0):
                raise ValueError(f"schedules.{s_name}: gives a negative or non-finite lr within the {total} steps")
            for seed in cfg.seeds:
                trial_id = f"{s_name}/{opt_name}/s{seed}"
                key = trial_id + "@" + _hash({
                    "task": cfg.task, "task_kwargs": cfg.task_build_kwargs(), "epochs": epochs,
                    "schedule": sched.to_config(), "optimizer": opt_name, "kwargs": dict(choice.kwargs),
                    "seed": seed, "plateau_metric": cfg.plateau_metric,
                })
                spec = TrialSpec(
                    trial_id=trial_id, schedule=sched, optimizer=opt_name,
                    optimizer_kwargs=dict(choice.kwargs), seed=seed, plateau_metric=cfg.plateau_metric,
                )
                plans.append(PlannedTrial(key, spec, s_name, str(rel), peak))
    return plans


def _record(plan: PlannedTrial, result: Any, epochs: int) -> TrialRecord:
    curves = {k: np.array([float(getattr(e, k)) for e in result.curves], dtype=np.float64) for k in CURVE_FIELDS}
    final = {k: float(v) for k, v in dict(result.final).items() if isinstance(v, (int, float))}
    last = result.curves[-1] if result.curves else None
    for k in ("test_acc", "test_loss", "train_acc", "train_loss"):
        if k not in final:
            final[k] = float(getattr(last, k)) if last is not None else math.nan
    if "best_test_acc" not in final:
        acc = curves["test_acc"]
        final["best_test_acc"] = float(np.nanmax(acc)) if np.isfinite(acc).any() else math.nan
    return TrialRecord(
        key=plan.key, trial_id=plan.spec.trial_id, schedule_name=plan.schedule_name,
        schedule_text=plan.schedule_text, schedule_config=plan.spec.schedule.to_config(),
        optimizer=plan.spec.optimizer, optimizer_kwargs=dict(plan.spec.optimizer_kwargs),
        seed=plan.spec.seed, peak_lr=plan.peak_lr, epochs=epochs, curves=curves, final=final,
        diverged=bool(result.diverged), diverged_epoch=result.diverged_epoch, seconds=float(result.seconds),
    )


def _console(console: Any, quiet: bool) -> Any:
    from rich.console import Console

    if console is not None:
        return console
    return Console(quiet=quiet, highlight=False)


def run_study(
    config: StudyConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    progress: bool = True,
    console: Any = None,
    quiet: bool = False,
    report: bool = True,
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

    >>> # run_study({"schedules": ["constant", "linear"], "optimizers": ["adam"], "epochs": 2})
    """
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

    from lrlab.study.tasks import load_task

    task = load_task(cfg.task, **cfg.task_build_kwargs())
    epochs = cfg.resolved_epochs(task.epochs)
    spe = task.steps_per_epoch
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = StudyStorage(storage_url(cfg.storage, out), cfg.study_name)
    peak_lrs = _peak_lrs(cfg, task, storage, say)
    plans = plan_trials(cfg, epochs=epochs, steps_per_epoch=spe, peak_lrs=peak_lrs)
    keys = [p.key for p in plans]
    if len(set(keys)) != len(keys):
        raise ValueError("two trials of this study are identical (same schedule text, optimizer and seed)")
    study_info = {
        "config": cfg.to_dict(), "task": task.name, "epochs": epochs, "steps_per_epoch": spe,
        "n_train": int(task.x_train.shape[0]), "n_test": int(task.x_test.shape[0]),
        "batch_size": task.batch_size, "peak_lrs": peak_lrs, "keys": keys,
        "schedules": list(cfg.schedules), "optimizers": list(cfg.optimizers),
    }
    storage.set_attr(_STUDY_ATTR, study_info)
    done = set() if cfg.fresh else storage.done_keys()
    pending = [p for p in plans if p.key not in done]
    reused = len(plans) - len(pending)
    say(
        f"[bold]lrlab study[/bold]: {task.name}, {len(cfg.schedules)} schedules x {len(cfg.optimizers)} optimizers "
        f"x {len(cfg.seeds)} seeds = {len(plans)} trials, {epochs} epochs of {spe} steps "
        f"(batch {task.batch_size}); peak lr " + ", ".join(f"{k} {v:.3g}" for k, v in peak_lrs.items())
    )
    if reused:
        say(f"{reused} trials already in {storage.url} (not rerun); {len(pending)} to train")
    for line in _one_at_a_time_notes(task, pending, cfg.device):
        say(line)
    if pending:
        _train(cfg, task, pending, epochs, storage, con, progress and not quiet)
    records_by_key = storage.records(keys)
    missing = [k for k in keys if k not in records_by_key]
    if missing:
        raise RuntimeError(f"{len(missing)} trials finished without a stored result (first: {missing[0]})")
    records = [records_by_key[k] for k in keys]
    result = _report(cfg.out, records, study_info, con, storage.url, time.perf_counter() - t0, write=report)
    return StudyResult(cfg, records, result[0], result[1], result[2], len(pending), reused,
                       time.perf_counter() - t0, peak_lrs)


def _one_at_a_time_notes(task: Any, pending: list[PlannedTrial], device: str) -> list[str]:
    """One line per optimizer whose trials cannot share a fleet, with the reason
    (:func:`lrlab.study.fleet.fleet_path`)."""
    from lrlab.study.fleet import fleet_path

    first: dict[str, Any] = {}
    for p in pending:
        first.setdefault(p.spec.optimizer, p.spec)
    paths = {name: fleet_path(task, spec, device=device) for name, spec in first.items()}
    return [f"{name}: one trial at a time, not in a fleet: {path.removeprefix('one-at-a-time: ')}"
            for name, path in paths.items() if path.startswith("one-at-a-time")]


def _train(cfg: StudyConfig, task: Any, pending: list[PlannedTrial], epochs: int, storage: StudyStorage,
           con: Any, show: bool) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from lrlab.study.fleet import run_trials

    by_id = {p.spec.trial_id: p for p in pending}
    seen: dict[str, int] = {}
    state = {"done": 0, "diverged": 0}
    prog = Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("epochs"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=con, disable=not show, transient=False,
    )
    bar = prog.add_task(f"training 0/{len(pending)} trials", total=len(pending) * epochs)

    def on_epoch(rec: Any) -> None:
        seen[rec.trial_id] = seen.get(rec.trial_id, 0) + 1
        prog.advance(bar, 1)

    def on_trial_done(res: Any) -> None:
        plan = by_id[res.trial_id]
        storage.save(_record(plan, res, epochs))  # stored at once: a kill loses no finished trial
        state["done"] += 1
        state["diverged"] += bool(res.diverged)
        left = epochs - seen.get(res.trial_id, 0)
        extra = f", {state['diverged']} diverged" if state["diverged"] else ""
        prog.update(bar, advance=max(left, 0), description=f"training {state['done']}/{len(pending)} trials{extra}")

    with prog:
        try:
            run_trials(
                cfg.task, cfg.task_build_kwargs(), [p.spec for p in pending], epochs=epochs,
                workers=cfg.workers, device=cfg.device, on_epoch=on_epoch, on_trial_done=on_trial_done,
            )
        except KeyboardInterrupt:
            prog.stop()
            con.print(
                f"[yellow]interrupted[/yellow]: {state['done']} finished trials are stored in {storage.url}; "
                "run the same command again to resume"
            )
            raise


def _report(out: str | Path, records: list[TrialRecord], info: Mapping[str, Any], con: Any, url: str,
            seconds: float | None, *, write: bool = True) -> tuple[list[CellSummary], list[OptimizerEffect], dict[str, Path]]:
    from lrlab.study.report import SIGNIFICANCE_NOTE, effect_lines, results_table, write_report

    summaries = summarize(records, info["schedules"], info["optimizers"])
    effects = optimizer_effects(records, summaries)
    n_seeds = len(info["config"]["seeds"])
    title = (f"{info['task']}: {info['epochs']} epochs x {info['steps_per_epoch']} steps, batch "
             f"{info['batch_size']}, {n_seeds} seeds")
    meta = {
        "task": f"{info['task']} ({info['n_train']} train / {info['n_test']} test)",
        "training": f"{info['epochs']} epochs x {info['steps_per_epoch']} steps, batch {info['batch_size']}",
        "peak lr": ", ".join(f"{k} {v:.3g}" for k, v in info["peak_lrs"].items()),
        "trials": f"{len(records)} ({sum(r.diverged for r in records)} diverged)",
        "storage": url,
        "training time (sum over trials)": f"{sum(r.seconds for r in records):.0f} s",
    }
    if seconds is not None:
        meta["wall time of this run"] = f"{seconds:.0f} s"
    paths: dict[str, Path] = {}
    if write:
        paths = write_report(out, records, summaries, effects, config=info["config"], schedules=info["schedules"],
                             steps_per_epoch=int(info["steps_per_epoch"]), title=title, meta=meta)
    con.print(results_table(summaries, title=title))
    con.print(SIGNIFICANCE_NOTE, style="dim")
    for line in effect_lines(effects):
        con.print(line)
    if write:
        con.print(f"report: {paths['report.html']}")
    return summaries, effects, paths


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
        raise ValueError(f"storage {url!r} holds no lrlab study named {study_name!r}")
    recs = st.records(info["keys"])
    missing = [k for k in info["keys"] if k not in recs]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(info['keys'])} trials are not in storage yet (first: {missing[0].split('@')[0]}): "
            "rerun `lrlab study` with the same settings to finish them"
        )
    records = [recs[k] for k in info["keys"]]
    con = _console(console, quiet)
    summaries, effects, paths = _report(out, records, info, con, url, None)
    cfg = StudyConfig.from_mapping({k: v for k, v in info["config"].items() if v is not None})
    return StudyResult(cfg, records, summaries, effects, paths, 0, len(records), time.perf_counter() - t0,
                       dict(info["peak_lrs"]))
