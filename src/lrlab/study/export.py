"""A study's trials where ML people already look: pandas frames, TensorBoard and MLflow runs.

* :func:`to_frames` (also :meth:`lrlab.study.StudyResult.to_pandas`) turns trial records into two
  tidy :class:`pandas.DataFrame` objects: ``trials`` (one row per trial: its key, role, schedule,
  optimizer, seed, peak lr, status, seconds, start/end times and every final metric) and
  ``curves`` (one row per trial x epoch with every :data:`~lrlab.study.storage.CURVE_FIELDS`
  column).
* :func:`load_results` builds the same frames from a study's storage alone (an output directory
  or any storage URL/path), for studies run elsewhere or earlier.

pandas is optional (``pip install 'lrlab[dataframe]'``); the functions say so when it is missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from lrlab.study.storage import CURVE_FIELDS, StudyStorage, TrialRecord, storage_url

__all__ = ["Frames", "load_results", "to_frames"]

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
        raise ValueError(f"storage {url!r} holds no lrlab trials in study {study_name!r}")
    return to_frames(records)
