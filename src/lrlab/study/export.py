"""A study's trials where ML people already look: pandas frames, TensorBoard and MLflow runs.

* :func:`to_frames` (also :meth:`lrlab.study.StudyResult.to_pandas`) turns trial records into two
  tidy :class:`pandas.DataFrame` objects: ``trials`` (one row per trial: its key, role, schedule,
  optimizer, seed, peak lr, status, seconds, start/end times and every final metric) and
  ``curves`` (one row per trial x epoch with every :data:`~lrlab.study.storage.CURVE_FIELDS`
  column).
* :func:`load_results` builds the same frames from a study's storage alone (an output directory
  or any storage URL/path), for studies run elsewhere or earlier.

* :func:`log_runs` (``lrlab study --log-to tensorboard,mlflow``) puts each trial into TensorBoard
  (:func:`log_tensorboard`) and MLflow (:func:`log_mlflow`) as a run, through their own libraries.

pandas, tensorboard and mlflow are optional (extras ``dataframe``, ``tensorboard``, ``mlflow``);
the functions say which to install when one is missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from lrlab.study.storage import CURVE_FIELDS, StudyStorage, TrialRecord, shown_url, storage_url

__all__ = ["LOGGERS", "Frames", "load_results", "log_mlflow", "log_runs", "log_tensorboard", "parse_log_to",
           "to_frames"]

TRIAL_COLUMNS = ("key", "trial_id", "role", "schedule", "schedule_text", "optimizer", "seed", "peak_lr",
                 "status", "diverged_epoch", "epochs", "seconds", "started", "finished")
"""The ``trials`` frame's leading columns; the final metrics follow as ``final_<name>``."""


class Frames(NamedTuple):
    """The two tidy frames of a study: ``trials`` (one row per trial) and ``curves`` (one row per
    trial x epoch, joined to ``trials`` on ``key``)."""

    trials: Any  # pandas.DataFrame
    curves: Any  # pandas.DataFrame


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError("data frames need pandas: pip install 'lrlab[dataframe]'") from e
    return pd


def to_frames(records: Iterable[TrialRecord]) -> Frames:
    """Tidy frames of ``records`` (tuning and final trials alike; ``role`` tells them apart).

    Times are :class:`pandas.Timestamp` (UTC; ``NaT`` when unknown); a diverged trial has
    ``status == "diverged"`` and its curve rows stop at the epoch it diverged in.
    """
    pd = _pandas()
    rows, curve_rows = [], []
    for r in records:
        row: dict[str, Any] = {
            "key": r.key, "trial_id": r.trial_id, "role": r.role, "schedule": r.schedule_name,
            "schedule_text": r.schedule_text, "optimizer": r.optimizer, "seed": int(r.seed),
            "peak_lr": float(r.peak_lr), "status": r.status,
            "diverged_epoch": r.diverged_epoch, "epochs": int(r.epochs), "seconds": float(r.seconds),
            "started": r.started, "finished": r.finished,
        }
        row.update({f"final_{k}": float(v) for k, v in sorted(r.final.items())})
        rows.append(row)
        n = len(r.curves["epoch"])
        for i in range(n):
            c = {"key": r.key, "role": r.role, "schedule": r.schedule_name, "optimizer": r.optimizer,
                 "seed": int(r.seed), "peak_lr": float(r.peak_lr)}
            c.update({k: float(r.curves[k][i]) for k in CURVE_FIELDS})
            c["epoch"] = int(r.curves["epoch"][i])
            curve_rows.append(c)
    trials = pd.DataFrame(rows, columns=None if rows else list(TRIAL_COLUMNS))
    for t in ("started", "finished"):
        trials[t] = pd.to_datetime([math.nan if not math.isfinite(x) else x for x in trials[t]],
                                   unit="s", utc=True)
    trials["diverged_epoch"] = trials["diverged_epoch"].astype("Int64")
    curve_cols = ["key", "role", "schedule", "optimizer", "seed", "peak_lr", *CURVE_FIELDS]
    curves = pd.DataFrame(curve_rows, columns=curve_cols)
    curves["epoch"] = curves["epoch"].astype("int64")
    return Frames(trials, curves)


def load_results(out_or_storage: str | Path, study_name: str = "lrlab") -> Frames:
    """The frames of a stored study: ``out_or_storage`` is a study's output directory (its
    ``study.db``) or a storage URL/path as ``--storage`` takes it.

    >>> load_results("/nonexistent/dir")
    Traceback (most recent call last):
    ValueError: no study storage in '/nonexistent/dir' (expected /nonexistent/dir/study.db)
    """
    p = Path(out_or_storage)
    if "://" not in str(out_or_storage) and (p.is_dir() or not p.suffix):
        if not (p / "study.db").is_file():
            raise ValueError(f"no study storage in {str(out_or_storage)!r} (expected {p / 'study.db'})")
        url = storage_url(None, p)
    else:
        url = storage_url(str(out_or_storage), ".")
    st = StudyStorage(url, study_name)
    records = list(st.records().values())
    if not records:
        raise ValueError(f"storage {shown_url(url)!r} holds no lrlab trials in study {study_name!r}")
    return to_frames(records)


# ---- TensorBoard and MLflow runs ---------------------------------------------------------------
LOGGERS = ("tensorboard", "mlflow")
"""What ``--log-to`` accepts: TensorBoard event files under ``<out>/tensorboard/<trial>`` and an
MLflow tracking store ``sqlite:///<out>/mlflow.db`` (MLflow 3 refuses new file stores), one run
per trial."""

_SCALARS = ("lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def parse_log_to(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"tensorboard,mlflow"`` -> ``("tensorboard", "mlflow")``; unknown names, and loggers whose
    package is not installed, are a one-line ValueError (the CLI checks before training, so a study
    never trains for hours and then fails to log).

    >>> parse_log_to("mlflow, tensorboard")
    ('mlflow', 'tensorboard')
    """
    import importlib.util

    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    bad = [n for n in names if n not in LOGGERS]
    if bad or not names:
        raise ValueError(f"--log-to takes {' and/or '.join(LOGGERS)} (comma-separated), got {text!r}")
    for name in dict.fromkeys(names):
        try:
            found = importlib.util.find_spec(name) is not None  # the tensorboard / mlflow package
        except (ImportError, ValueError):  # a parent package missing, or blocked in sys.modules
            found = False
        if not found:
            raise ValueError(f"--log-to {name} needs {name}: pip install 'lrlab[{name}]'")
    return tuple(dict.fromkeys(names))


def _run_name(r: TrialRecord) -> str:
    return f"{r.role}/{r.trial_id}"


def log_tensorboard(records: Iterable[TrialRecord], logdir: str | Path) -> list[Path]:
    """Write each trial's curves as TensorBoard scalars (step = epoch) in ``logdir/<role>/<trial>``,
    with its params as a text summary; a trial whose directory already holds events is skipped
    (rerunning does not duplicate points). Returns the run directories written."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ImportError("--log-to tensorboard needs tensorboard: pip install 'lrlab[tensorboard]'") from e
    written = []
    for r in records:
        d = Path(logdir) / _run_name(r)
        if d.is_dir() and any(d.glob("events.out.tfevents.*")):
            continue
        w = SummaryWriter(log_dir=str(d))
        try:
            epochs = [int(e) for e in r.curves["epoch"]]
            for i, ep in enumerate(epochs):
                for k in _SCALARS:
                    v = float(r.curves[k][i])
                    if math.isfinite(v):
                        w.add_scalar(k, v, global_step=ep, walltime=None)
            w.add_text("params", "  \n".join(f"{k}: {v}" for k, v in _params(r).items()), global_step=0)
        finally:
            w.close()
        written.append(d)
    return written


def _params(r: TrialRecord) -> dict[str, str]:
    return {"schedule": r.schedule_name, "schedule_text": r.schedule_text, "optimizer": r.optimizer,
            "optimizer_kwargs": repr(dict(r.optimizer_kwargs)), "peak_lr": repr(float(r.peak_lr)),
            "seed": str(r.seed), "role": r.role, "epochs": str(r.epochs)}


def log_mlflow(records: Iterable[TrialRecord], tracking_uri: str, experiment: str = "lrlab") -> list[str]:
    """One MLflow run per trial in ``experiment`` (created if missing) of ``tracking_uri``: params,
    per-epoch metrics (step = epoch, timestamps spread over the trial's real span), ``final_*``
    metrics, the trial's real start and end times, status FINISHED (FAILED for a diverged trial)
    and the tag ``lrlab_key``; a trial already logged (same key) is skipped. Returns the new run
    ids."""
    try:
        import mlflow  # noqa: F401
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        raise ImportError("--log-to mlflow needs mlflow: pip install 'lrlab[mlflow]'") from e
    import time
    import warnings

    new = []
    with warnings.catch_warnings():
        # MLflow's SQLAlchemy store uses loader options SQLAlchemy 2.1 deprecates
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(mlflow|sqlalchemy|alembic)\b.*")
        warnings.filterwarnings("ignore", message=r".*(noload|loader strategy).*")
        client = MlflowClient(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
        have = {run.data.tags.get("lrlab_key") for run in client.search_runs([exp_id], max_results=50000)}
        for r in records:
            if r.key in have:
                continue
            now = time.time()
            start = r.started if math.isfinite(r.started) else now
            end = r.finished if math.isfinite(r.finished) else start
            run = client.create_run(exp_id, start_time=int(start * 1000), run_name=_run_name(r),
                                    tags={"lrlab_key": r.key, "lrlab_status": r.status})
            n = len(r.curves["epoch"])
            metrics = []
            for i in range(n):
                ep = int(r.curves["epoch"][i])
                ts = int((start + (end - start) * (i + 1) / max(n, 1)) * 1000)
                metrics += [Metric(k, float(r.curves[k][i]), ts, ep) for k in _SCALARS
                            if math.isfinite(float(r.curves[k][i]))]
            metrics += [Metric(f"final_{k}", float(v), int(end * 1000), 0) for k, v in sorted(r.final.items())
                        if math.isfinite(float(v))]
            for i in range(0, len(metrics), 1000):  # MLflow's log_batch limit
                client.log_batch(run.info.run_id, metrics=metrics[i:i + 1000],
                                 params=[Param(k, v) for k, v in _params(r).items()] if i == 0 else [],
                                 tags=[RunTag("role", r.role)] if i == 0 else [])
            client.set_terminated(run.info.run_id, "FAILED" if r.diverged else "FINISHED",
                                  end_time=int(end * 1000))
            new.append(run.info.run_id)
    return new


def log_runs(records: Iterable[TrialRecord], to: Iterable[str], out: str | Path,
             experiment: str = "lrlab") -> dict[str, str]:
    """Log ``records`` to each logger in ``to`` (see :data:`LOGGERS`) under ``out``; returns where
    each went (a directory or a tracking URI), to print."""
    recs = list(records)
    where = {}
    for name in parse_log_to(list(to)):
        if name == "tensorboard":
            d = Path(out) / "tensorboard"
            log_tensorboard(recs, d)
            where[name] = str(d)
        else:
            uri = f"sqlite:///{(Path(out) / 'mlflow.db').resolve()}"
            log_mlflow(recs, uri, experiment)
            where[name] = uri
    return where
