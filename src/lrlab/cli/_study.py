"""``lrlab study`` (train and compare schedules) and ``lrlab study report`` (rebuild the report).

``lrlab study`` with no options runs the default study: MNIST-1D, the benchmark CNN, 12 schedules
x SGD (momentum 0.9) and Adam x 3 seeds, in about 3 minutes on a 2-core CPU, and writes
``runs/study/report.html``. Options override a config file (``--config``), which overrides the
defaults. Running the same command again resumes: stored trials are not rerun.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

study_app = typer.Typer(
    help="Train schedules x optimizers x seeds on a task and report which schedule is best.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


@study_app.callback(invoke_without_command=True)
def study(
    ctx: typer.Context,
    out: str = typer.Option(None, "--out", help="Output directory (report, plots, CSV/JSON, default storage). (default: runs/study)"),
    model: str = typer.Option(None, "--model", help="MNIST-1D model: cnn (benchmark CNN, default) or mlp."),
    optimizers: str = typer.Option(None, "--optimizers", help="Comma-separated: sgd, adam, rmsprop, adagrad, adadelta, sgd_schedulefree, adamw_schedulefree, prodigy. (default: sgd,adam)"),
    schedules: str = typer.Option(
        None, "--schedules",
        help="Comma-separated default names (constant, linear, ...) and/or text specs in multiples of the "
             "peak lr, e.g. 'constant,mine=warmup(cosine(1.0, 0.0, steps=90%), steps=10%)'. (default: all 12)",
    ),
    seeds: int = typer.Option(None, "--seeds", help="Number of seeds per schedule x optimizer. (default: 3)"),
    epochs: int = typer.Option(None, "--epochs", help="Training length in epochs. (default: 40 on MNIST-1D)"),
    workers: int = typer.Option(None, "--workers", help="Worker processes for the fleets (0: train in this process). (default: one per core)"),
    storage: str = typer.Option(None, "--storage", help="Optuna storage URL (sqlite:///, postgresql://, ...) or a journal file (*.log). (default: OUT/study.db)"),
    config: str = typer.Option(None, "--config", help="Study config file (.yaml, .toml or .json)."),
    task: str = typer.Option(None, "--task", help="mnist1d, mnist1d_mlp, cifar10 or package.module:function returning a Task."),
    data: str = typer.Option(None, "--data", help="Dataset directory (CIFAR-10 python batches; implies --task cifar10 unless --task is given)."),
    device: str = typer.Option(None, "--device", help="torch device: cpu or cuda. (default: cpu)"),
    peak_lr: str = typer.Option(None, "--peak-lr", help="fixed (documented defaults / config) or find (LR range test per optimizer)."),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore stored results and rerun every trial."),
    study_name: str = typer.Option(None, "--study-name", help="Name of the Optuna study in the storage. (default: lrlab)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Run (or resume) a study; without options, the default MNIST-1D study."""
    if ctx.invoked_subcommand is not None:
        return
    from lrlab.study.config import StudyConfig
    from lrlab.study.runner import run_study

    settings: dict[str, Any] = {}
    if config is not None:
        from lrlab.study.config import load_config

        settings = load_config(config).to_dict()
        # keep only what the file said (to_dict fills defaults; they are harmless to keep)
    cli: dict[str, Any] = {
        "out": out, "model": model, "optimizers": optimizers, "schedules": schedules, "seeds": seeds,
        "epochs": epochs, "workers": workers, "storage": storage, "device": device, "peak_lr": peak_lr,
        "study_name": study_name,
    }
    for k, v in cli.items():
        if v is not None:
            settings[k] = v
    if task is not None:
        settings["task"] = task
        if ":" in task and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # like `python -m`: your module in the current directory
        if model is None:
            settings.pop("model", None)
    elif data is not None and settings.get("task", "mnist1d") in ("mnist1d", "mnist1d_mlp"):
        settings["task"] = "cifar10"
    if data is not None:
        settings["data"] = data
    if model is not None and settings.get("task") == "mnist1d_mlp":
        settings["task"] = "mnist1d"
    if fresh:
        settings["fresh"] = True
    cfg = StudyConfig.from_mapping(settings, where="" if config is None else str(config))
    _quiet_optuna()
    from lrlab.study.fleet import TrialsFailed

    try:
        run_study(cfg, progress=not no_progress)
    except TrialsFailed as e:  # a worker crashed: the finished trials are stored, say so in one line
        first = str(e).splitlines()[0]
        print(f"lrlab: error: {first}; {len(e.results)} finished trials are stored, rerun to retry the rest",
              file=sys.stderr)
        raise typer.Exit(1) from e


@study_app.command("report")
def report(
    out: str = typer.Option("runs/study", "--out", help="Directory of the study (and where the report goes)."),
    storage: str = typer.Option(None, "--storage", help="Storage URL or journal file. (default: OUT/study.db)"),
    study_name: str = typer.Option("lrlab", "--study-name", help="Name of the Optuna study in the storage."),
) -> None:
    """Rebuild the report (table, HTML, PNG, CSV, JSON) from the stored trials."""
    from lrlab.study.runner import rebuild_report

    _quiet_optuna()
    rebuild_report(out, storage, study_name)


def register(app: typer.Typer) -> None:
    """Add ``study`` (with its ``report`` sub-verb) to the ``lrlab`` app."""
    app.add_typer(study_app, name="study")
