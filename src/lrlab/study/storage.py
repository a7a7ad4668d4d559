"""Study storage on Optuna's storage layer: one Optuna trial per lrlab trial, saved as it finishes.

Where: a SQLite file in the output directory by default, or any Optuna storage by URL
(``postgresql://...``, ``mysql://...``, ``sqlite:///...``), or a journal file
(``optuna.storages.JournalStorage`` over ``JournalFileBackend``) when given a path ending in
``.log``, ``.jsonl`` or ``.journal``. ``.db``/``.sqlite`` paths become SQLite URLs.

What: each lrlab trial is stored in the Optuna study the moment it finishes (one committed
transaction), so an interrupted run (Ctrl-C, ``kill -9``) loses no finished trial: on an RDB
storage, :class:`LiveTrials` has shown it as a ``RUNNING`` trial with its per-epoch values while it
trained and completes that trial in place; otherwise (a journal file, ``LRLAB_LIVE=0``) it is added
with :func:`optuna.trial.create_trial`. Either way the finished trial is the same. Stored per trial:

* ``value``: final validation accuracy (state ``COMPLETE``; what the lr selection ranks); a
  diverged trial is stored with state ``FAIL`` and ``user_attrs["lrlab_status"] == "diverged"``
  (Optuna values must be finite);
* ``params`` (so optuna-dashboard can slice, rank and draw parallel coordinates by them, and
  :func:`optuna.importance.get_param_importances` runs): ``schedule`` and ``optimizer``
  (:class:`~optuna.distributions.CategoricalDistribution`), ``peak_lr``
  (:class:`~optuna.distributions.FloatDistribution`, ``log=True``) and ``seed``
  (:class:`~optuna.distributions.IntDistribution`). Optuna requires one distribution per
  parameter within a study (categorical choices cannot grow), so the choices and the lr range
  are fixed by the study's first run (:meth:`StudyStorage.param_space`, kept in the study's user
  attributes; the lr range is the planned lrs' span widened 10x each way). A trial whose schedule,
  optimizer or lr falls outside them (a later run that added a schedule) keeps that value in its
  user attributes only, with a warning: use a new ``--study-name`` to slice by it;
* ``datetime_start``/``datetime_complete``: when the trial began training (its fleet's start) and
  when it finished, so durations are real;
* ``intermediate_values``: validation accuracy per epoch (the selection metric); on an RDB
  storage written while the trial trains, by :class:`LiveTrials`'s writer thread in batched
  transactions (one commit per value, ~19 ms on SQLite, would add minutes to a default study);
* ``user_attrs``: the resume key, the trial's role (``"tune"``: a grid point on a tuning seed,
  ``"final"``: the chosen lr on a final seed), trial id, schedule name and text (multiplier form), the resolved
  absolute schedule config, optimizer and its overrides, the per-epoch curves (columnar lists),
  final metrics, divergence and seconds.

Resume: a trial is done when a stored trial carries its key (``trial_id@hash``, the hash covering
everything that determines its result). The study's current config is kept in the Optuna study's
user attributes so ``lrlab study report`` can rebuild the report from storage alone.

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> st = StudyStorage(os.path.join(d, "s.log"), "demo")
>>> st.done_keys()
set()
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import re
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CURVE_FIELDS", "LRLabStorageWarning", "LiveTrials", "StudyStorage", "TrialRecord", "live_reason",
           "shown_url", "storage_url"]

CURVE_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
"""Per-epoch curves of a stored trial: ``train_*`` running means over the epoch's minibatches,
``val_*`` every epoch, ``test_*`` after the last epoch (NaN before it unless the run evaluated
the test set every epoch)."""
_JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")
_LR_LOW, _LR_HIGH = sys.float_info.min, sys.float_info.max  # = lrlab.study.config.LR_LIMITS
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_SPACE_ATTR = "lrlab_param_space"


@dataclass
class TrialRecord:
    """One finished lrlab trial as the study keeps it (from a fresh result or from storage).

    ``role`` is ``"tune"`` (a grid point on a tuning seed) or ``"final"`` (the cell's chosen peak
    lr on a final seed, or the fixed lr without tuning); ``peak_lr`` is the absolute peak lr it
    ran at; ``started``/``finished`` are Unix times (NaN when unknown). ``curves`` maps each of :data:`CURVE_FIELDS` to a float64 array over the epochs that were
    trained (a diverged trial's arrays stop at, and include, the epoch it diverged in, with NaN
    where the metric was not finite or not evaluated). A record stored before a field existed
    reads back with NaN for it.
    """

    key: str
    trial_id: str
    schedule_name: str
    schedule_text: str
    schedule_config: dict[str, Any]
    optimizer: str
    optimizer_kwargs: dict[str, Any]
    seed: int
    peak_lr: float
    epochs: int
    curves: dict[str, np.ndarray]
    final: dict[str, float]
    diverged: bool = False
    diverged_epoch: int | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    role: str = "final"
    started: float = math.nan
    finished: float = math.nan

    @property
    def status(self) -> str:
        """``"done"``, ``"diverged"``, or ``"failed"`` (a training function that raised or broke
        the protocol; ``extra["failed"]`` says why in one line)."""
        return "failed" if self.extra.get("failed") else "diverged" if self.diverged else "done"


def _plain(v: Any) -> Any:
    """JSON-safe: non-finite floats -> None, numpy scalars -> Python."""
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    return v


def _floats(v: Iterable[Any]) -> np.ndarray:
    return np.array([math.nan if x is None else float(x) for x in v], dtype=np.float64)


def storage_url(storage: str | None, out: str | Path) -> str:
    """The storage address used for ``storage`` (``None``: ``sqlite:///<out>/study.db``)."""
    if storage is None:
        return f"sqlite:///{(Path(out) / 'study.db').resolve()}"
    if not isinstance(storage, str) or not storage.strip():
        raise ValueError(f"storage must be a URL or a file path, got storage={storage!r}")
    if "://" in storage:
        return storage
    p = Path(storage)
    if p.suffix.lower() in _SQLITE_SUFFIXES:
        return f"sqlite:///{p.resolve()}"
    if p.suffix.lower() in _JOURNAL_SUFFIXES:
        return str(p.resolve())
    raise ValueError(
        f"storage={storage!r}: give a URL (sqlite:///x.db, postgresql://...) or a file ending in "
        f"{', '.join(_SQLITE_SUFFIXES + _JOURNAL_SUFFIXES)}"
    )


def shown_url(url: str, text: str | None = None) -> str:
    """``url`` as lrlab shows and records it (messages, reports, ``results.json``, the study's
    stored settings): a database password replaced by ``***``, as SQLAlchemy renders it. With
    ``text`` (an error message about ``url``): that text with the url and its password hidden.

    >>> shown_url("postgresql://me:s3cret@db:5432/lrlab")
    'postgresql://me:***@db:5432/lrlab'
    >>> shown_url("postgresql://me:s3cret@db/x", "no route to postgresql://me:s3cret@db/x (s3cret)")
    'no route to postgresql://me:***@db/x (***)'
    """
    shown, password = url, None
    if "://" in url:
        try:
            from sqlalchemy.engine import make_url

            parsed = make_url(url)
            shown, password = parsed.render_as_string(hide_password=True), parsed.password
        except Exception:  # not a URL SQLAlchemy reads: hide whatever stands between "user:" and "@"
            m = re.match(r"[^:/]*://[^/@:]*:([^/]*)@", url)
            password = m.group(1) if m else None
            shown = url if m is None else url[:m.start(1)] + "***" + url[m.end(1):]
    if text is None:
        return shown
    text = text.replace(url, shown)
    return text.replace(str(password), "***") if password else text


_SCHEMA_RACE = ("already exists", "database is locked", "alembic_version", "duplicate key")


def _create_study(optuna: Any, study_name: str, backend: Any, tries: int = 8) -> Any:
    """``optuna.create_study(load_if_exists=True)``, retried while another process is creating the
    same database's schema: two processes opening a new SQLite file at once make SQLAlchemy's
    ``create_all`` of the loser fail with "table ... already exists", a duplicate alembic version row
    or "database is locked" (all in :data:`_SCHEMA_RACE`). ``backend`` may be a callable building
    the storage (an ``RDBStorage`` creates its tables when built, so the build is retried too)."""

    for attempt in range(tries):
        try:
            built = backend() if callable(backend) else backend
            return optuna.create_study(study_name=study_name, storage=built, direction="maximize",
                                       load_if_exists=True)
        except Exception as e:
            racing = any(m in str(e) for m in _SCHEMA_RACE)
            if not racing or attempt == tries - 1:
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


HEARTBEAT_S = 10
"""Seconds between a queue worker's heartbeats (``LRLAB_HEARTBEAT`` overrides); a claim whose
worker has not beaten for ``3 x`` this (``LRLAB_GRACE``) is failed and re-queued."""


def _env_seconds(name: str, default: int) -> int:
    import os

    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        v = 0
    if v < 1:
        raise ValueError(f"{name}={raw!r}: give a whole number of seconds >= 1")
    return v


def _rdb(url: str) -> Any:
    """The Optuna ``RDBStorage`` for ``url`` with heartbeats on (the work queue's dead-worker
    detection) and stale claims re-queued by ``RetryHeartbeatStaleTrialCallback`` (at most 3 times)."""
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    interval = _env_seconds("LRLAB_HEARTBEAT", HEARTBEAT_S)
    grace = _env_seconds("LRLAB_GRACE", 3 * interval)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}  # several processes: wait for the file's lock
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.8
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=interval, grace_period=grace,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))


class StudyStorage:
    """An Optuna study holding lrlab trials (created if missing).

    Args:
        storage: a storage URL or path (see :func:`storage_url`; a bare path must have a SQLite
            or journal suffix).
        study_name: the Optuna study name.
    """

    def __init__(self, storage: str, study_name: str = "lrlab") -> None:
        import optuna

        url = storage_url(storage, ".")
        self.url = url
        self.study_name = study_name
        self._warned: set[tuple[str, ...]] = set()
        if "://" in url:
            if url.startswith("sqlite:///"):
                Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            backend: Any = lambda: _rdb(url)  # noqa: E731  (built inside the schema-race retry)
        else:
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            Path(url).parent.mkdir(parents=True, exist_ok=True)
            backend = JournalStorage(JournalFileBackend(url))
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
        try:
            self.study = _create_study(optuna, study_name, backend)
        except ImportError as e:  # e.g. psycopg (SQLAlchemy 2.1's default) missing for postgresql://
            hint = " (pip install 'lrlab[postgres]')" if url.startswith("postgresql") else ""
            raise ValueError(f"storage {shown_url(url)!r} needs a database driver{hint}: "
                             f"{shown_url(url, str(e))}") from e
        except Exception as e:  # sqlalchemy errors: bad URL, unreachable server
            if isinstance(e, ValueError):
                raise
            raise ValueError(f"cannot open storage {shown_url(url)!r}: "
                             f"{shown_url(url, str(e).splitlines()[0])}") from e
        finally:
            optuna.logging.set_verbosity(verbosity)

    # ---- study-level attributes ------------------------------------------------------------------
    def set_attr(self, key: str, value: Any) -> None:
        self.study.set_user_attr(key, _plain(value))

    def get_attr(self, key: str, default: Any = None) -> Any:
        return self.study.user_attrs.get(key, default)

    # ---- trials ------------------------------------------------------------------------------------
    def _lrlab_trials(self) -> list[Any]:
        import optuna

        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
        return [t for t in self.study.get_trials(deepcopy=False, states=states) if "lrlab_key" in t.user_attrs]

    def done_keys(self) -> set[str]:
        """Keys of every stored lrlab trial (finished or diverged)."""
        return {t.user_attrs["lrlab_key"] for t in self._lrlab_trials()}

    def is_stored(self, key: str) -> bool:
        """Whether a finished (or diverged) lrlab trial with resume key ``key`` is stored.

        On an RDB storage one query for that key (its ``lrlab_key`` user attribute among the
        study's ``COMPLETE``/``FAIL`` trials: the study's trial index, then the unique
        ``(trial_id, key)`` index), done inside the database: ~2 ms with 2,000 trials stored on
        SQLite, where loading every trial (:meth:`done_keys`, what :meth:`save_once` did) took
        seconds in a freshly opened storage. Other storages (a journal file) answer from
        :meth:`done_keys`."""
        backend = _rdb_backend(self)
        if backend is None:
            return key in self.done_keys()
        from optuna.storages._rdb import models
        from optuna.trial import TrialState
        from sqlalchemy import select

        T, A = models.TrialModel, models.TrialUserAttributeModel
        stmt = (select(A.trial_id).join(T, T.trial_id == A.trial_id)
                .where(T.study_id == self.study._study_id, T.state.in_([TrialState.COMPLETE, TrialState.FAIL]),
                       A.key == "lrlab_key", A.value_json == json.dumps(key))  # as Optuna stores it
                .limit(1))

        def look() -> bool:
            with backend.engine.connect() as conn:
                return conn.execute(stmt).first() is not None

        from lrlab.study.queue import _retry

        return bool(_retry(look))

    def records(self, keys: Iterable[str] | None = None) -> dict[str, TrialRecord]:
        """Stored trials by key (the latest one when a key was stored twice), optionally filtered."""
        wanted = None if keys is None else set(keys)
        out: dict[str, TrialRecord] = {}
        for t in self._lrlab_trials():
            k = t.user_attrs["lrlab_key"]
            if wanted is None or k in wanted:
                out[k] = _record_from_trial(t)
        return out

    def param_space(self, schedules: Iterable[str] = (), optimizers: Iterable[str] = (),
                    lrs: Iterable[float] = ()) -> dict[str, Any]:
        """The study's Optuna parameter space, fixed by the first call that names any value.

        Returns ``{"schedule": [...], "optimizer": [...], "peak_lr": [low, high]}`` as stored in the
        study's user attributes; the first call stores the sorted names given and the lrs' span
        widened 10x each way. Later calls return the stored space unchanged (Optuna refuses a
        parameter whose distribution differs from the one its earlier trials used). Until it is
        declared, :meth:`save` stores only ``seed`` and ``peak_lr`` (over every positive float).
        """
        space = self.get_attr(_SPACE_ATTR)
        if space:
            return dict(space)
        lr = [float(x) for x in lrs if math.isfinite(float(x)) and float(x) > 0]
        space = {"schedule": sorted(set(schedules)), "optimizer": sorted(set(optimizers)),
                 "peak_lr": [min(lr) / 10, max(lr) * 10] if lr else []}
        if space["schedule"] or space["optimizer"] or space["peak_lr"]:
            self.set_attr(_SPACE_ATTR, space)
        return space

    def _params(self, record: TrialRecord, space: Mapping[str, Any] | None = None
                ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The trial's Optuna params and distributions within :meth:`param_space` (``space``: as
        read from the study before; values outside it are left out with a warning; they stay in
        the user attributes)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if space is None:
            space = self.get_attr(_SPACE_ATTR) or {}
        params: dict[str, Any] = {"seed": int(record.seed)}
        dists: dict[str, Any] = {"seed": IntDistribution(0, 2**31 - 1)}
        if not space:  # never declared (a direct caller of save): numbers only, lr over every float
            params["peak_lr"] = float(record.peak_lr)
            dists["peak_lr"] = FloatDistribution(_LR_LOW, _LR_HIGH, log=True)
            return params, dists
        outside = []
        for name, value in (("schedule", record.schedule_name), ("optimizer", record.optimizer)):
            if value in space.get(name, []):
                params[name], dists[name] = value, CategoricalDistribution(space[name])
            else:
                outside.append(f"{name} {value!r}")
        low, high = (space.get("peak_lr") or [math.nan, math.nan])
        if low <= record.peak_lr <= high:
            params["peak_lr"] = float(record.peak_lr)
            dists["peak_lr"] = FloatDistribution(low, high, log=True)
        else:
            outside.append(f"peak_lr {record.peak_lr:g}")
        if outside and (self.study_name, *outside) not in self._warned:
            self._warned.add((self.study_name, *outside))
            warnings.warn(
                f"{', '.join(outside)}: outside study {self.study_name!r}'s parameter space (fixed by its first "
                f"run: {space}); stored as user attributes only. Use a new --study-name to slice by it in "
                "optuna-dashboard", LRLabStorageWarning, stacklevel=3)
        return params, dists

    def save(self, record: TrialRecord) -> None:
        """Add one finished trial to the study (one transaction; call it as soon as it finishes)."""
        self.study.add_trial(self.frozen(record))

    def frozen(self, record: TrialRecord) -> Any:
        """The finished trial as the Optuna ``FrozenTrial`` :meth:`save` adds (and
        :class:`LiveTrials` turns a live trial into): state, value, params, user attributes,
        intermediate values and the real start and completion times."""
        import optuna

        attrs = {
            "lrlab_key": record.key,
            "lrlab_status": record.status,
            **_static_attrs(record),
            "curves": {k: list(v) for k, v in record.curves.items()},  # a training function's own names too
            "final": record.final,
            "diverged": record.diverged,
            "diverged_epoch": record.diverged_epoch,
            "seconds": record.seconds,
            **{f"x_{k}": v for k, v in record.extra.items()},
        }
        acc = record.curves.get(str(record.extra.get("metric", "val_acc")), record.curves["val_acc"])
        inter = {int(e): float(a) for e, a in zip(record.curves["epoch"], acc) if math.isfinite(a)}
        value = record.final.get(str(record.extra.get("metric", "val_acc")), math.nan)
        ok = not record.diverged and math.isfinite(value)
        params, dists = self._params(record)
        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL,
            value=float(value) if ok else None,
            params=params,
            distributions=dists,
            user_attrs=_plain(attrs),
            intermediate_values=inter,
        )
        # the real times (create_trial stamps "now" on both): Optuna's storages keep the template's
        end = record.finished if math.isfinite(record.finished) else time.time()
        trial.datetime_complete = datetime.fromtimestamp(end)
        if math.isfinite(record.started):
            trial.datetime_start = datetime.fromtimestamp(min(record.started, end))
        return trial

    def save_once(self, record: TrialRecord) -> bool:
        """Store ``record`` unless a result with its key is stored already: the first result of a
        key wins, a later one is dropped (returns ``False``) and never overwrites or duplicates it.

        The work queue stores through this: a worker whose heartbeat stalled (a long GIL-holding
        step, a paused process, a database hiccup) can have its claim judged stale and re-queued
        while it still trains, so two processes may finish the same trial. The check and the
        insert run under a lock that every process on the storage shares (:meth:`_store_lock`),
        so two results finishing at the same instant cannot both pass the check."""
        with self._store_lock(record.key):
            if self.is_stored(record.key):
                return False
            self.save(record)
            return True

    @contextlib.contextmanager
    def _store_lock(self, key: str) -> Iterator[None]:
        """Hold the storage-wide lock for storing ``key``: on SQLite an exclusive ``flock`` of a file
        beside the database (one machine: SQLite is not shared over a network), on PostgreSQL a
        session advisory lock on the key's hash (released by the server if the process dies);
        other storages have none (the check-then-store window is a few milliseconds)."""
        db = self.url[len("sqlite:///"):].split("?", 1)[0] if self.url.startswith("sqlite:///") else None
        if db is not None:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows: no flock
                fcntl = None  # type: ignore[assignment]
            if fcntl is None or not db or db == ":memory:":  # pragma: no cover - the check alone
                yield
                return
            with open(db + ".lrlab-store-lock", "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
            return
        engine = getattr(getattr(self.study._storage, "_backend", None), "engine", None)
        if engine is None or engine.dialect.name != "postgresql":
            yield
            return
        import hashlib

        import sqlalchemy

        digest = hashlib.sha256(f"lrlab-store:{self.study_name}:{key}".encode()).digest()
        lock_id = int.from_bytes(digest[:8], "big", signed=True)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": lock_id})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id})
                conn.commit()


def _static_attrs(record: TrialRecord) -> dict[str, Any]:
    """The user attributes known before a trial trains (a live trial carries them from its start)."""
    return {
        "role": record.role,
        "trial_id": record.trial_id,
        "schedule_name": record.schedule_name,
        "schedule": record.schedule_text,
        "schedule_config": record.schedule_config,
        "optimizer": record.optimizer,
        "optimizer_kwargs": record.optimizer_kwargs,
        "seed": int(record.seed),
        "peak_lr": float(record.peak_lr),
        "epochs": record.epochs,
    }


LIVE_LINGER_S = 0.5
"""Seconds the live writer waits after an epoch record arrives before it writes, so a fleet-epoch's
records (and whatever else arrives meanwhile) go to the database in one transaction."""

_LIVE_ATTR = "lrlab_live"
_RDB_NEEDS = ("scoped_session", "_get_prepared_new_trial")


def _rdb_backend(storage: StudyStorage) -> Any:
    """The ``RDBStorage`` under a study's (cached) storage, or ``None`` (a journal file)."""
    from optuna.storages import RDBStorage

    s = storage.study._storage
    s = getattr(s, "_backend", s)
    return s if isinstance(s, RDBStorage) else None


def live_reason(storage: StudyStorage) -> str | None:
    """Why ``storage`` cannot show trials while they train (``None``: it can).

    Live trials need an RDB storage (SQLite, PostgreSQL, MySQL), written in batched transactions
    through Optuna's own SQLAlchemy models; a journal file and ``LRLAB_LIVE=0`` store each trial
    when it finishes only."""
    import os

    raw = os.environ.get("LRLAB_LIVE", "1")
    if raw not in ("0", "1"):
        raise ValueError(f"LRLAB_LIVE={raw!r}: give 1 (write trials as they train) or 0 (when they finish)")
    if raw == "0":
        return "LRLAB_LIVE=0"
    rdb = _rdb_backend(storage)
    if rdb is None:
        return "a journal file has no batched writes: each trial is stored when it finishes"
    missing = [n for n in _RDB_NEEDS if not hasattr(rdb, n)]
    if missing:  # pragma: no cover - an Optuna without the RDB internals used here
        return f"this Optuna's RDBStorage lacks {', '.join(missing)}"
    return None


class LiveTrials:
    """A study's trials in Optuna while they train, written off the training thread.

    :meth:`epoch` (the ``on_epoch`` callback: it only queues the record) makes a trial a
    ``RUNNING`` Optuna trial, with its params and the user attributes known in advance, when its
    first epoch record arrives, and adds each epoch's validation accuracy as an intermediate
    value. A writer thread writes whatever has arrived, :data:`LIVE_LINGER_S` after the first
    record, in ONE transaction (a fleet-epoch of 24 trials is one commit, not 24: a SQLite commit
    costs ~19 ms here). :meth:`save` (the ``on_trial_done`` callback) turns the live trial into
    exactly the trial :meth:`StudyStorage.save` would have added (one transaction: state, value,
    every user attribute, intermediate values, the real start and end times); a trial without a
    live one (no epoch record yet, a journal file, ``LRLAB_LIVE=0``) is saved as before.

    A live trial carries its key as ``lrlab_live``, never ``lrlab_key``, so it counts as stored
    only once finished. :meth:`close` ends the live trials that did not finish as ``FAIL`` with
    ``lrlab_status`` ``"interrupted"`` (Ctrl-C) or ``"failed"``; a trial left ``RUNNING`` by a
    killed process is ended the same way (``"abandoned"``) when a later run trains its key again
    (or finds it stored).
    A write that fails (the database gone) stops the live writes with :attr:`error` set; the
    finished trials are still stored by :meth:`save`.

    Args:
        storage: the study's storage.
        skeletons: the records of the trials about to train, by ``trial_id`` (only the fields
            known in advance are read: key, role, schedule, optimizer, seed, lr, epochs).
    """

    def __init__(self, storage: StudyStorage, skeletons: Mapping[str, TrialRecord]) -> None:
        self.storage = storage
        self.skeletons = dict(skeletons)
        self.reason = live_reason(storage)
        self.error: str | None = None
        self._rdb: Any = _rdb_backend(storage) if self.reason is None else None
        self._pending: dict[str, dict[int, float]] = {}  # trial_id -> {epoch: value}, not written yet
        self._plock = threading.Lock()  # guards _pending only: epoch() never waits for the database
        self._lock = threading.Lock()  # one database writer at a time; guards _ids and _finished
        self._ids: dict[str, int] = {}  # trial_id -> Optuna trial id of its live trial
        self._finished: set[str] = set()
        self._orphans: list[int] = []  # live trials of finished trials stored as new ones
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._space: Mapping[str, Any] = {}
        if self._rdb is not None and self.skeletons:
            self._space = storage.get_attr(_SPACE_ATTR) or {}  # read once, not per trial by the writer
            keys = {r.key for r in self.skeletons.values()}
            from optuna.trial import TrialState

            running = [t for t in self.storage.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                       if _LIVE_ATTR in t.user_attrs]
            if running and any(t.user_attrs[_LIVE_ATTR] not in keys for t in running):
                keys |= self.storage.done_keys()  # a stored key is not trained again
            zombies = [t._trial_id for t in running if t.user_attrs[_LIVE_ATTR] in keys]
            if zombies:
                self._end(zombies, "abandoned", "its process ended before the trial finished; trained again")
            self._thread = threading.Thread(target=self._run, name="lrlab-live", daemon=True)
            self._thread.start()

    @property
    def live(self) -> bool:
        """Whether trials are being written as they train."""
        return self._thread is not None and self.error is None

    # ---- the training side ------------------------------------------------------------------------
    def epoch(self, rec: Any) -> None:
        """Queue one :class:`~lrlab.study.fleet.EpochRecord` (returns at once): its validation
        accuracy is the trial's intermediate value for that epoch."""
        self.value(rec.trial_id, rec.epoch, rec.val_acc)

    def value(self, trial_id: str, epoch: int, value: float) -> None:
        """Queue the intermediate value of ``trial_id`` at ``epoch`` (returns at once; a value that
        is not finite, or of a trial not announced in ``skeletons``, is ignored). A training
        function's trials report the study's metric this way."""
        if not self.live or trial_id not in self.skeletons:
            return
        value = float(value)
        if not math.isfinite(value):
            return
        with self._plock:
            self._pending.setdefault(trial_id, {})[int(epoch)] = value
        self._wake.set()

    def save(self, record: TrialRecord, *, once: bool = False) -> bool:
        """Store a finished trial: its live trial completed in one transaction, else a new trial.

        ``once``: first result wins, as :meth:`StudyStorage.save_once` (a work-queue claim): when a
        result with the key is stored already, this one is dropped (its live trial is ended as
        failed) and ``False`` returned."""
        if not once:
            self._save(record)
            return True
        with self.storage._store_lock(record.key):
            if self.storage.is_stored(record.key):
                tid = self._take(record)
                if tid is not None:
                    with self._lock:
                        self._orphans.append(tid)  # ended as failed by close(); the stored one stays
                return False
            self._save(record)
            return True

    def _take(self, record: TrialRecord) -> int | None:
        """Stop writing ``record``'s trial live: its queued values dropped, no new live trial for it;
        returns its live trial's id, if it has one."""
        if self._thread is None:
            return None
        with self._plock:
            self._pending.pop(record.trial_id, None)
        with self._lock:
            self._finished.add(record.trial_id)
            return self._ids.pop(record.trial_id, None)

    def _save(self, record: TrialRecord) -> None:
        if self._thread is not None:
            tid = self._take(record)
            with self._lock:
                if tid is not None:
                    try:
                        if self.error is None and self._locked_retry(lambda: self._complete(tid, record)):
                            return
                    except Exception as e:  # the live trial cannot be completed: store it as before
                        self._failed(e)
                    self._orphans.append(tid)  # ended by close(): the result is a new trial
        self.storage.save(record)

    def close(self, why: BaseException | None = None) -> None:
        """Stop the writer and end the live trials that did not finish (``why``: the exception
        that stopped training; ``KeyboardInterrupt`` marks them ``"interrupted"``)."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join()
        self._thread = None
        with self._lock:
            left, self._ids = list(self._ids.values()), {}
            orphans, self._orphans = self._orphans, []
        status = "interrupted" if isinstance(why, KeyboardInterrupt) else "failed"
        reason = (str(why).strip().splitlines() or [type(why).__name__])[0] if why is not None else \
            "training ended before the trial finished"
        try:
            self._end(left, status, reason or type(why).__name__)
            self._end(orphans, "failed", "its result was stored as a separate trial")
        except Exception as e:  # the database is gone: a rerun ends them ("abandoned")
            self._failed(e)

    def __enter__(self) -> LiveTrials:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        self.close(exc)

    # ---- the writer thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()
            if self._stopping.wait(LIVE_LINGER_S):
                return  # closing: what is still pending belongs to trials that are ended as such
            self._wake.clear()
            with self._plock:
                batch, self._pending = self._pending, {}
            if batch and self.error is None:
                try:
                    with self._lock:
                        todo = {k: v for k, v in batch.items() if k not in self._finished}
                        self._locked_retry(functools.partial(self._write, todo))
                except Exception as e:
                    self._failed(e)

    def _failed(self, e: BaseException) -> None:
        if self.error is None:
            self.error = (str(e).strip().splitlines() or [type(e).__name__])[0]
            warnings.warn(f"live trials in {shown_url(self.storage.url)} stopped ({self.error}); finished trials are still "
                          "stored as they finish", LRLabStorageWarning, stacklevel=2)

    @staticmethod
    def _locked_retry(fn: Any) -> Any:
        from lrlab.study.queue import _retry

        return _retry(fn)

    def _session(self) -> Any:
        """A session of the storage's engine whose ``with`` block is one transaction (rolled back
        on any error, the error left as it is so a locked SQLite file is retried)."""
        from contextlib import contextmanager

        @contextmanager
        def scope() -> Any:
            session = self._rdb.scoped_session()
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

        return scope()

    def _template(self, skeleton: TrialRecord) -> Any:
        import optuna

        params, dists = self.storage._params(skeleton, self._space)
        attrs = {_LIVE_ATTR: skeleton.key, "lrlab_status": "running", **_static_attrs(skeleton)}
        return optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params=params,
                                         distributions=dists, user_attrs=_plain(attrs))

    def _write(self, batch: Mapping[str, Mapping[int, float]]) -> None:
        """One transaction: create the live trials seen for the first time, add the new values."""
        from optuna.storages._rdb import models
        from optuna.trial import TrialState

        if not batch:
            return
        created: dict[str, int] = {}
        with self._session() as session:
            new = [k for k in batch if k not in self._ids]
            if new:  # as Optuna's create_new_trial: the study row locked while numbers are given
                models.StudyModel.find_or_raise_by_id(self.storage.study._study_id, session, for_update=True)
                for k in new:
                    t = self._rdb._get_prepared_new_trial(self.storage.study._study_id,
                                                          self._template(self.skeletons[k]), session)
                    created[k] = int(t.trial_id)
            ids = {k: self._ids[k] if k in self._ids else created[k] for k in batch}
            M = models.TrialIntermediateValueModel
            states = dict(session.query(models.TrialModel.trial_id, models.TrialModel.state)
                          .filter(models.TrialModel.trial_id.in_(list(ids.values()))).all())
            have = set(session.query(M.trial_id, M.step).filter(M.trial_id.in_(list(ids.values()))).all())
            for k, values in batch.items():
                if states.get(ids[k]) != TrialState.RUNNING:
                    continue  # ended by another process meanwhile: its result is stored as a new trial
                for step, v in values.items():
                    if (ids[k], step) not in have:
                        stored, kind = M.intermediate_value_to_stored_repr(v)
                        session.add(M(trial_id=ids[k], step=step, intermediate_value=stored,
                                      intermediate_value_type=kind))
        self._ids.update(created)

    def _complete(self, tid: int, record: TrialRecord) -> bool:
        """Turn live trial ``tid`` into :meth:`StudyStorage.frozen`'s trial (one transaction);
        ``False`` when it is no longer running (another process ended it)."""
        from optuna.storages._rdb import models
        from optuna.trial import TrialState

        full = self.storage.frozen(record)
        with self._session() as session:
            t = models.TrialModel.find_or_raise_by_id(tid, session, for_update=True)
            if t.state != TrialState.RUNNING:
                return False
            for model in (models.TrialUserAttributeModel, models.TrialIntermediateValueModel):
                session.query(model).filter(model.trial_id == tid).delete()
            for k, v in full.user_attrs.items():
                session.add(models.TrialUserAttributeModel(trial_id=tid, key=k, value_json=json.dumps(v)))
            IV = models.TrialIntermediateValueModel
            for step, v in full.intermediate_values.items():
                stored, kind = IV.intermediate_value_to_stored_repr(v)
                session.add(IV(trial_id=tid, step=step, intermediate_value=stored, intermediate_value_type=kind))
            if full.value is not None:
                final, vkind = models.TrialValueModel.value_to_stored_repr(full.value)
                session.add(models.TrialValueModel(trial_id=tid, objective=0, value=final, value_type=vkind))
            t.state = full.state
            t.datetime_start, t.datetime_complete = full.datetime_start, full.datetime_complete
        return True

    def _end(self, ids: Iterable[int], status: str, reason: str) -> None:
        """End the running trials ``ids`` as ``FAIL`` with ``lrlab_status`` and ``lrlab_error``."""
        from optuna.storages._rdb import models
        from optuna.trial import TrialState

        A = models.TrialUserAttributeModel

        def end() -> None:
            with self._session() as session:
                for tid in ids:
                    t = models.TrialModel.find_or_raise_by_id(tid, session, for_update=True)
                    if t.state != TrialState.RUNNING:
                        continue
                    session.query(A).filter(A.trial_id == tid, A.key.in_(["lrlab_status", "lrlab_error"])).delete()
                    session.add(A(trial_id=tid, key="lrlab_status", value_json=json.dumps(status)))
                    session.add(A(trial_id=tid, key="lrlab_error", value_json=json.dumps(reason)))
                    t.state, t.datetime_complete = TrialState.FAIL, datetime.now()

        ids = list(ids)
        if ids:
            self._locked_retry(end)


class LRLabStorageWarning(UserWarning):
    """A trial's value lies outside the study's fixed Optuna parameter space."""


def _record_from_trial(t: Any) -> TrialRecord:
    """A stored Optuna trial as a :class:`TrialRecord` (times from the trial's own datetimes)."""
    started = t.datetime_start.timestamp() if t.datetime_start is not None else math.nan
    finished = t.datetime_complete.timestamp() if t.datetime_complete is not None else math.nan
    return _record_from_attrs(t.user_attrs, started, finished)


def _record_from_attrs(a: Mapping[str, Any], started: float = math.nan, finished: float = math.nan) -> TrialRecord:
    stored = a["curves"]
    n = len(stored.get("epoch", []))
    curves = {k: _floats(stored[k]) if k in stored else np.full(n, math.nan) for k in CURVE_FIELDS}
    curves.update({k: _floats(v) for k, v in stored.items() if k not in curves})
    final = {k: (math.nan if v is None else float(v)) for k, v in a.get("final", {}).items()}
    return TrialRecord(
        key=a["lrlab_key"],
        trial_id=a["trial_id"],
        schedule_name=a["schedule_name"],
        schedule_text=a["schedule"],
        schedule_config=a["schedule_config"],
        optimizer=a["optimizer"],
        optimizer_kwargs=dict(a.get("optimizer_kwargs") or {}),
        seed=int(a["seed"]),
        peak_lr=float(a["peak_lr"]),
        epochs=int(a["epochs"]),
        curves=curves,
        final=final,
        diverged=bool(a.get("diverged", False)),
        diverged_epoch=a.get("diverged_epoch"),
        seconds=float(a.get("seconds") or 0.0),
        extra={k[2:]: v for k, v in a.items() if k.startswith("x_")},
        role=str(a.get("role", "final")),
        started=started,
        finished=finished,
    )


def dumps_json(obj: Any) -> str:
    """Strict JSON (non-finite floats as null) for the report files."""
    return json.dumps(_plain(obj), indent=2, allow_nan=False)
