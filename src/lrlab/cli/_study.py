"""``lrlab study`` (train and compare schedules) and ``lrlab study report`` (rebuild the report).

``lrlab study`` with no options runs the default study: MNIST-1D, the benchmark CNN, 12 schedules
x SGD (momentum 0.9) and Adam, each cell's peak lr tuned on a 5-point grid (1/4x to 4x of the
base lr, tuning seed 0, selected on validation accuracy), then 3 fresh final seeds at the chosen
lr (192 trials, about 3 minutes on two idle CPU cores), and writes ``runs/study/report.html``. Options override a config file (``--config``), which
overrides the defaults. Running the same command again resumes: stored trials are not rerun.
``--format json`` prints one JSON document on stdout (everything else goes to stderr).
"""

from __future__ import annotations

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
    optimizers: str = typer.Option(None, "--optimizers", help="Comma-separated: sgd, adam, rmsprop, adagrad, adadelta, sgd_schedulefree, adamw_schedulefree, prodigy; name=lr gives its peak lr (sgd=0.1). (default: sgd,adam)"),
    schedules: str = typer.Option(
        None, "--schedules",
        help="Comma-separated default names (constant, linear, ...) and/or text specs in multiples of the "
             "peak lr, e.g. 'constant,mine=warmup(cosine(1.0, 0.0, steps=90%), steps=10%)'. (default: all 12)",
    ),
    seeds: str = typer.Option(None, "--seeds", help="Final seeds per schedule x optimizer: a count (1000, 1001, ... with tuning; 0, 1, ... without) or a list, e.g. 5,6,7 (disjoint from the tuning seeds). (default: 3)"),
    tune: str = typer.Option(None, "--tune", help="grid: tune each cell's peak lr on a grid, select on validation (default); none: every cell at the base lr."),
    lr_grid: str = typer.Option(None, "--lr-grid", help="Tuning grid, multiples of the base peak lr, e.g. 0.25,0.5,1,2,4 (the default)."),
    tune_seeds: str = typer.Option(None, "--tune-seeds", help="Tuning seeds: a count (0, 1, ...) or a list, e.g. 0,1. (default: 1)"),
    fmt: str = typer.Option("table", "--format", help="table (default) or json: one JSON document on stdout, progress on stderr."),
    epochs: int = typer.Option(None, "--epochs", help="Training length in epochs. (default: 40 on MNIST-1D)"),
    workers: int = typer.Option(None, "--workers", help="Worker processes for the fleets (0: train in this process). (default: one per core)"),
    storage: str = typer.Option(None, "--storage", help="Optuna storage URL (sqlite:///, postgresql://, ...) or a journal file (*.log). (default: OUT/study.db)"),
    config: str = typer.Option(None, "--config", help="Study config file (.yaml, .toml or .json)."),
    task: str = typer.Option(None, "--task", help="mnist1d, mnist1d_mlp, cifar10, or package.module:function (a Task builder or a training function; the current directory is on the path)."),
    task_kwargs: list[str] = typer.Option(None, "--task-kwargs", help="key=value arguments of the task builder / training function (repeatable or comma-separated; values read as YAML scalars)."),  # noqa: B008
    metric: str = typer.Option(None, "--metric", help="Validation metric that selects each cell's lr, e.g. val_acc (default), val_loss, val_mse."),
    direction: str = typer.Option(None, "--direction", help="maximize or minimize the metric. (default: minimize for loss-like names, else maximize)"),
    steps_per_epoch: int = typer.Option(None, "--steps-per-epoch", help="Optimizer steps per epoch of a training function (required for one)."),
    data: str = typer.Option(None, "--data", help="Dataset directory (CIFAR-10 python batches; implies --task cifar10 unless --task is given)."),
    device: str = typer.Option(None, "--device", help="torch device: cpu or cuda. (default: cpu)"),
    peak_lr: str = typer.Option(None, "--peak-lr", help="fixed (documented defaults / config) or find (LR range test per optimizer)."),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore stored results and rerun every trial."),
    study_name: str = typer.Option(None, "--study-name", help="Name of the Optuna study in the storage. (default: lrlab)"),
    checkpoint_dir: str = typer.Option(None, "--checkpoint-dir", help="Where running trials save epoch-end checkpoints (a directory every worker machine mounts lets a re-queued trial continue anywhere). (default: next to the storage file, or in OUT)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    log_to: str = typer.Option(None, "--log-to", help="Also log each trial as a run to tensorboard (OUT/tensorboard) and/or mlflow (sqlite:///OUT/mlflow.db), comma-separated."),
    executor: str = typer.Option("local", "--executor", help="local (worker processes here) or ray (each fleet a Ray task)."),
    ray_address: str = typer.Option(None, "--ray-address", help="With --executor ray: the Ray cluster (ray://HOST:10001 or HOST:6379). (default: RAY_ADDRESS or a local Ray)"),
) -> None:
    """Run (or resume) a study; without options, the default MNIST-1D study."""
    if ctx.invoked_subcommand is not None:
        return
    from lrlab.study.config import StudyConfig
    from lrlab.study.runner import run_study

    if fmt not in ("table", "json"):
        raise ValueError(f"--format must be table or json, got {fmt!r}")
    settings: dict[str, Any] = {}
    if config is not None:
        from lrlab.study.config import load_mapping

        settings = load_mapping(config)  # only what the file says: the defaults depend on other settings
    cli: dict[str, Any] = {
        "out": out, "model": model, "optimizers": optimizers, "schedules": schedules,
        "seeds": None if seeds is None else _seeds_option("--seeds", seeds),
        "epochs": epochs, "workers": workers, "storage": storage, "device": device, "peak_lr": peak_lr,
        "study_name": study_name, "metric": metric, "direction": direction, "steps_per_epoch": steps_per_epoch,
        "checkpoint_dir": checkpoint_dir,
    }
    for k, v in cli.items():
        if v is not None:
            settings[k] = v
    if task_kwargs:
        from lrlab.study.config import parse_task_kwargs

        settings["task_kwargs"] = {**dict(settings.get("task_kwargs") or {}), **parse_task_kwargs(task_kwargs)}
    if task is not None:
        settings["task"] = task
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
    _tune_settings(settings, tune, lr_grid, tune_seeds)
    if log_to is not None:
        from lrlab.study.export import parse_log_to

        parse_log_to(log_to)  # a typo fails before training
    cfg = StudyConfig.from_mapping(settings, where="" if config is None else str(config))
    _quiet_optuna()
    from lrlab.study.fleet import TrialsFailed

    console = None
    if fmt == "json":
        from rich.console import Console

        console = Console(stderr=True, highlight=False)
    try:
        res = run_study(cfg, progress=not no_progress, console=console, command=_command(),
                        executor=_executor(executor, ray_address))
    except TrialsFailed as e:  # a worker crashed: the finished trials are stored, say so in one line
        first = str(e).splitlines()[0]
        print(f"lrlab: error: {first}; {len(e.results)} finished trials are stored, rerun to retry the rest",
              file=sys.stderr)
        raise typer.Exit(1) from e
    if log_to is not None:
        from lrlab.study.export import log_runs

        where = log_runs([*res.tune_records, *res.records], log_to.split(","), cfg.out, cfg.study_name)
        print("logged " + ", ".join(f"{k} runs to {v}" for k, v in where.items()), file=sys.stderr)
    if fmt == "json":
        from lrlab.study.report import results_document
        from lrlab.study.storage import dumps_json

        sys.stdout.write(dumps_json(results_document(res.summaries, res.effects, res.info)) + "\n")


def _executor(name: str, address: str | None) -> Any:
    """The fleet executor for --executor/--ray-address (``None``: local processes)."""
    from lrlab.study.executors import EXECUTORS, ray_executor

    if name not in EXECUTORS:
        raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if name == "local":
        if address is not None:
            raise ValueError("--ray-address needs --executor ray")
        return None
    return ray_executor(address)


ARGV: list[str] | None = None
"""The arguments :func:`lrlab.cli.main` was called with (``None``: use ``sys.argv``)."""


def _command() -> str:
    """The command line as typed (``lrlab study ...``), for the report."""
    import shlex

    args = list(ARGV) if ARGV is not None else sys.argv[1:]
    if "study" in args:
        args = args[args.index("study"):]
    return " ".join(["lrlab", *(shlex.quote(a) for a in args)])


def _seeds_option(flag: str, text: str) -> int | list[int]:
    """``"3"`` -> 3 (a count), ``"0,1,2"`` -> [0, 1, 2] (the seeds themselves).

    >>> _seeds_option("--seeds", "3"), _seeds_option("--seeds", "5, 7,")
    (3, [5, 7])
    """
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) == 1:
            return int(parts[0])
        seeds = [int(p) for p in parts if p]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"{flag}: expected a count or distinct seeds >= 0 like 0,1,2, got {text!r}")
    return seeds


def _tune_settings(settings: dict[str, Any], tune: str | None, lr_grid: str | None, tune_seeds: str | None) -> None:
    """Fold --tune, --lr-grid and --tune-seeds into the config file's ``tune`` setting."""
    from lrlab.study.config import parse_lr_grid

    if tune is not None:
        if tune not in ("none", "grid"):
            raise ValueError(f"--tune must be none or grid, got {tune!r}")
        if tune == "none":
            if lr_grid is not None or tune_seeds is not None:
                raise ValueError("--lr-grid and --tune-seeds need tuning: drop --tune none")
            settings["tune"] = "none"
            return
        if not isinstance(settings.get("tune"), dict):
            settings["tune"] = "grid"
    if lr_grid is None and tune_seeds is None:
        return
    current = settings.get("tune", "grid")
    if isinstance(current, str) and current.strip().lower() == "none":
        raise ValueError("--lr-grid and --tune-seeds need tuning, but the config says tune: none (add --tune grid)")
    t = dict(current) if isinstance(current, dict) else {}
    if lr_grid is not None:
        t["grid"] = parse_lr_grid(lr_grid)
    if tune_seeds is not None:
        n = _seeds_option("--tune-seeds", tune_seeds)
        if isinstance(n, int) and n < 1:
            raise ValueError(f"--tune-seeds must be >= 1, got {tune_seeds}")
        t["seeds"] = n
    settings["tune"] = t


@study_app.command("report")
def report(
    out: str = typer.Option("runs/study", "--out", help="Directory of the study (and where the report goes)."),
    storage: str = typer.Option(None, "--storage", help="Storage URL or journal file. (default: OUT/study.db)"),
    study_name: str = typer.Option("lrlab", "--study-name", help="Name of the Optuna study in the storage."),
    docs: str = typer.Option(None, "--docs", help="Also write table.txt and lr_sensitivity.png into this directory (README results)."),
    readme: str = typer.Option(None, "--readme", help="With --docs: replace the study-table block of this README with table.txt."),
    fmt: str = typer.Option("table", "--format", help="table (default) or json: the results as one JSON document on stdout, the rest on stderr."),
) -> None:
    """Rebuild the report (table, HTML, PNG, CSV, JSON) from the stored trials."""
    from rich.markup import escape

    from lrlab.study.runner import rebuild_report

    if readme is not None and docs is None:
        raise ValueError("--readme needs --docs")
    if fmt not in ("table", "json"):
        raise ValueError(f"--format must be table or json, got {fmt!r}")
    _quiet_optuna()
    console = None
    if fmt == "json":
        from rich.console import Console

        console = Console(stderr=True, highlight=False)
    res = rebuild_report(out, storage, study_name, console=console)
    if fmt == "json":
        from lrlab.study.report import results_document
        from lrlab.study.storage import dumps_json

        sys.stdout.write(dumps_json(results_document(res.summaries, res.effects, res.info)) + "\n")
    if docs is not None:
        from rich.console import Console

        from lrlab.study.report import plot_lr_sensitivity, table_text, write_readme_results

        if not res.selections:
            raise ValueError("--docs needs a study with lr tuning (its sensitivity figure)")
        from lrlab.study.runner import study_title

        text = table_text(res.summaries, res.effects, title=study_title(res.info), n_seeds=len(res.config.final_seeds),
                          metric=res.config.metric, maximize=res.config.direction != "minimize")
        png = plot_lr_sensitivity(res.selections, list(res.config.schedules), list(res.config.optimizers))
        paths = write_readme_results(text, png, docs, readme)
        Console(highlight=False).print("wrote " + ", ".join(escape(str(p)) for p in paths.values()))


@study_app.command("compare")
def compare(
    dir_a: str = typer.Argument(..., help="Output directory of study A (with its results.json)."),
    dir_b: str = typer.Argument(..., help="Output directory of study B."),
    out: str = typer.Option("compare.html", "--out", help="The comparison page to write."),
) -> None:
    """Write an interactive page comparing two studies side by side (offline HTML)."""
    from lrlab.study.interactive import write_compare

    print(f"wrote {write_compare(dir_a, dir_b, out)}")


@study_app.command("worker")
def worker(
    storage: str = typer.Option(..., "--storage", help="The study's storage URL (sqlite:///..., postgresql://...)."),
    study_name: str = typer.Option("lrlab", "--study-name", help="Name of the Optuna study in the storage."),
    workers: int = typer.Option(None, "--workers", help="Local processes for the fleets (0: in this process). (default: the study's setting)"),
    device: str = typer.Option(None, "--device", help="torch device for this worker: cpu or cuda. (default: the study's)"),
    idle: float = typer.Option(300.0, "--idle", help="Exit after this many seconds with nothing to claim (the study's plan not complete yet)."),
    executor: str = typer.Option("local", "--executor", help="local (worker processes here) or ray (each fleet a Ray task)."),
    ray_address: str = typer.Option(None, "--ray-address", help="With --executor ray: the Ray cluster address."),
    checkpoint_dir: str = typer.Option(None, "--checkpoint-dir", help="Where this worker's running trials save checkpoints. (default: the study's; give it where the shared directory is mounted at another path)"),
) -> None:
    """Train waiting trials of a study started by `lrlab study` on a shared storage (any number of
    workers, on any machines); exits when the study's plan is complete or after --idle seconds idle."""
    from lrlab.study.fleet import TrialsFailed
    from lrlab.study.queue import run_worker

    if idle <= 0:
        raise ValueError(f"--idle must be > 0 seconds, got {idle}")
    _quiet_optuna()
    try:
        n = run_worker(storage, study_name, workers=workers, device=device, idle=idle,
                       say=lambda m: print(m, file=sys.stderr), executor=_executor(executor, ray_address),
                       checkpoint_dir=checkpoint_dir)
    except TrialsFailed as e:
        print(f"lrlab: error: {str(e).splitlines()[0]}; the trials are recorded as failed", file=sys.stderr)
        raise typer.Exit(1) from e
    except Exception as e:  # lost the database: its claims go stale and other workers re-queue them
        if not type(e).__module__.startswith("sqlalchemy"):
            raise
        from lrlab.study.storage import shown_url

        print(f"lrlab: error: lost the storage {shown_url(storage)!r}: {shown_url(storage, str(e).splitlines()[0])}; "
              "this worker's unfinished trials are re-queued when its heartbeat times out", file=sys.stderr)
        raise typer.Exit(1) from e
    print(f"worker done: trained {n} trials", file=sys.stderr)


def register(app: typer.Typer) -> None:
    """Add ``study`` (with its ``report`` sub-verb) to the ``lrlab`` app."""
    app.add_typer(study_app, name="study")
