"""The study's work queue on Optuna's own storage: any number of processes, on any machines, share one study.

How (Optuna's machinery, no scheduler of our own):

* **Enqueue.** The driver (``lrlab study``) adds one *ticket* per planned trial that is neither
  stored nor already queued, to a companion Optuna study ``<study name>.queue`` in the same storage
  (the study itself keeps only results): an Optuna trial in state ``WAITING`` (``study.add_trial`` of a
  ``create_trial(state=WAITING)``, one transaction) whose user attributes carry the lrlab key
  (``lrlab_ticket``), the optimizer group (``lrlab_group``: trials of one group share a fleet) and
  everything needed to train it (``lrlab_plan``: the trial spec, task, epochs). Its params are the
  trial's ``seed`` and ``peak_lr`` like the stored results'.
* **Claim.** A process takes the oldest waiting tickets, up to ``claim`` of them (any optimizer
  group: the claim is split into fleets by group), each with one conditional
  ``UPDATE ... WHERE state = 'WAITING'`` (so a ticket another process took first is refused, on
  SQLite too), and records an Optuna heartbeat for each just before taking it (Optuna never judges a running trial without one
  stale) and every :data:`~lrlab.study.storage.HEARTBEAT_S` seconds while it trains them (a
  thread).
* **Store.** Each finished trial is stored as before (one result trial, ``lrlab_key``), then its
  ticket is closed (state ``PRUNED``). A result stored first and the ticket closed after means a
  kill between the two re-queues a ticket whose key is already stored: the next claimer closes it
  without training. Storing is first-wins (:meth:`~lrlab.study.storage.StudyStorage.save_once`:
  check and insert under a lock all processes share): a worker that is alive but whose heartbeat
  stalled past the grace period (a paused process, a long step holding the GIL, a database hiccup)
  has its claim re-queued while it still trains, so two processes can finish one trial; the second
  result is dropped with a log line, never stored twice nor over the first.
* **Training functions** (:mod:`lrlab.study.trainfn`) are queued the same way: the ticket carries
  the ``module:function`` reference, the task kwargs and the :class:`~lrlab.study.trainfn.Trial`
  settings (``kind: function``); a worker imports the function with its current directory on
  ``sys.path``, or, when it cannot, exits with a one-line error before taking a ticket (they stay
  queued for processes that can). A claim is one trial per local process.
* **Dead workers.** Every process calls ``optuna.storages.fail_stale_trials`` while it polls:
  a claim whose heartbeat is older than the grace period is failed and
  ``RetryHeartbeatStaleTrialCallback`` adds a fresh ``WAITING`` copy (at most 3 times per trial).
* **Duplicates.** Two drivers enqueueing at once may both add a ticket for a key. A claimer keeps
  a ticket only if no stored result and no live (waiting or running) ticket of the same key with a
  lower number exists; otherwise it closes it untrained. So of any set of tickets for a key, only
  the lowest live one trains, and if its worker dies its retry copy takes over.

The queue needs an RDB storage (SQLite, PostgreSQL, MySQL: Optuna's journal storage has no
heartbeats); with a journal file the study trains in its own process as before.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from lrlab.study.storage import StudyStorage, shown_url

__all__ = ["Ticket", "WorkQueue", "drain", "queue_enabled", "ticket_entry", "ticket_plan", "worker_name"]

TICKET_ATTR = "lrlab_ticket"
_LOCKED = ("database is locked", "could not serialize", "deadlock detected")


def queue_study_name(study_name: str) -> str:
    """The Optuna study holding ``study_name``'s tickets (kept apart so the study itself holds only
    results, as without the queue)."""
    return f"{study_name}.queue"


def worker_name() -> str:
    """``host:pid``: who claimed a ticket (stored as its ``lrlab_worker`` attribute)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def queue_enabled(storage: StudyStorage) -> bool:
    """Whether ``storage`` can be a work queue (an RDB storage with heartbeats)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage.study._storage)


def _retry(fn: Callable[[], Any], tries: int = 20) -> Any:
    """``fn()``, retried while SQLite reports its file locked (two processes upgrading read locks at
    once: SQLite refuses one at once instead of waiting) or PostgreSQL a serialization conflict."""
    for attempt in range(tries):
        try:
            return fn()
        except Exception as e:
            if attempt == tries - 1 or not any(m in str(e) for m in _LOCKED):
                raise
            time.sleep(min(0.02 * 2**attempt, 1.0))
    raise AssertionError("unreachable")


class Ticket:
    """A claimed queue entry: the Optuna trial id and number, the lrlab key and the plan."""

    def __init__(self, frozen: Any) -> None:
        self.trial_id: int = frozen._trial_id
        self.number: int = frozen.number
        self.key: str = frozen.user_attrs[TICKET_ATTR]
        self.group: str = frozen.user_attrs.get("lrlab_group", "")
        self.plan: dict[str, Any] = dict(frozen.user_attrs.get("lrlab_plan") or {})


class WorkQueue:
    """The tickets of one :class:`~lrlab.study.storage.StudyStorage` (see the module docstring)."""

    def __init__(self, storage: StudyStorage, worker: str | None = None) -> None:
        import optuna

        from lrlab.study.storage import _create_study

        self.storage = storage
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
        try:
            self.study = _create_study(optuna, queue_study_name(storage.study_name), storage.study._storage)
        finally:
            optuna.logging.set_verbosity(verbosity)
        self._s = self.study._storage
        self._sid = self.study._study_id
        self.worker = worker or worker_name()
        self._beating: set[int] = set()
        self._lock = threading.Lock()

    # ---- reading ---------------------------------------------------------------------------------
    def tickets(self, *states: Any) -> list[Any]:
        """Frozen ticket trials in ``states`` (all states when none given), oldest first."""
        got = _retry(lambda: self._s.get_all_trials(self._sid, deepcopy=False, states=states or None))
        return sorted((t for t in got if TICKET_ATTR in t.user_attrs), key=lambda t: t.number)

    def live_keys(self) -> set[str]:
        """Keys with a waiting or running ticket."""
        from optuna.trial import TrialState

        return {t.user_attrs[TICKET_ATTR] for t in self.tickets(TrialState.WAITING, TrialState.RUNNING)}

    def done_keys(self) -> set[str]:
        return set(_retry(self.storage.done_keys))

    def outstanding(self, keys: set[str], *, settle: float = 0.5) -> set[str]:
        """The ``keys`` not stored yet; raises a one-line ``RuntimeError`` when there are some and
        none of them is queued any more (their tickets failed, or died too often: a rerun retries
        them), so a study waits for every trial that can still finish before it stops.

        Live tickets are read before stored keys: a ticket is closed only after its result is
        stored, so a trial that finishes between the two reads is seen in one of them (read the
        other way round it was in neither, and a healthy study stopped with this error: seen in
        CI). A dead worker's ticket is failed and then re-queued (two writes), so it is in neither
        for a moment: a finding is confirmed by a second reading ``settle`` seconds later."""
        for attempt in range(2):
            live = self.live_keys()
            missing = keys - self.done_keys()
            if not missing or missing & live:
                return missing
            if attempt == 0:
                time.sleep(settle)
        raise RuntimeError(f"{len(missing)} trials were claimed by workers that died too often or failed "
                           f"(first: {sorted(missing)[0].split('@')[0]}); rerun to retry them")

    # ---- enqueue ---------------------------------------------------------------------------------
    def enqueue(self, entries: Iterable[tuple[str, str, dict[str, Any], dict[str, Any]]]) -> int:
        """Add a ticket for each ``(key, group, plan, params)`` not stored and not queued; returns
        how many were added."""
        import optuna
        from optuna.distributions import FloatDistribution, IntDistribution

        from lrlab.study.storage import _LR_HIGH, _LR_LOW, _plain

        skip = self.live_keys() | self.done_keys()  # live first: see outstanding()
        n = 0
        for key, group, plan, params in entries:
            if key in skip:
                continue
            skip.add(key)
            trial = optuna.trial.create_trial(
                state=optuna.trial.TrialState.WAITING,
                params={"seed": int(params["seed"]), "peak_lr": float(params["peak_lr"])},
                distributions={"seed": IntDistribution(0, 2**31 - 1),
                               "peak_lr": FloatDistribution(_LR_LOW, _LR_HIGH, log=True)},
                user_attrs=_plain({TICKET_ATTR: key, "lrlab_group": group, "lrlab_plan": plan}),
            )
            _retry(functools.partial(self.study.add_trial, trial))
            n += 1
        return n

    # ---- claiming --------------------------------------------------------------------------------
    def fail_stale(self) -> None:
        """Fail (and so re-queue) claims whose worker stopped beating."""
        import warnings

        from optuna.exceptions import ExperimentalWarning
        from optuna.storages import fail_stale_trials

        with warnings.catch_warnings():  # "experimental since 2.9"
            warnings.simplefilter("ignore", ExperimentalWarning)
            _retry(lambda: fail_stale_trials(self.study))

    def _take(self, trial_id: int) -> bool:
        from optuna.exceptions import UpdateFinishedTrialError

        # The heartbeat first: Optuna never judges a RUNNING trial without a heartbeat stale, so a
        # worker killed between the two calls the other way round would hold its claim forever. A
        # heartbeat on a ticket another process takes first is overwritten by that one's.
        _retry(lambda: self._s.record_heartbeat(trial_id))
        try:
            ok = bool(_retry(lambda: self._to_running(trial_id)))
        except UpdateFinishedTrialError:
            return False
        if ok:
            with self._lock:
                self._beating.add(trial_id)
            _retry(lambda: self._s.set_trial_user_attr(trial_id, "lrlab_worker", self.worker))
        return ok

    def _to_running(self, trial_id: int) -> bool:
        """``WAITING -> RUNNING`` for one ticket; ``False`` when another process took it first.

        One conditional ``UPDATE ... WHERE state = 'WAITING'`` on an RDB storage: Optuna's
        ``set_trial_state_values`` reads the state and then writes it, and on SQLite (which ignores
        ``SELECT ... FOR UPDATE``) two processes could both read ``WAITING`` and both take the ticket
        (seen: two drivers on one SQLite file trained the same trial). The single statement is
        atomic on SQLite and PostgreSQL alike."""
        from datetime import datetime

        from optuna.storages import RDBStorage
        from optuna.storages._rdb import models
        from optuna.trial import TrialState
        from sqlalchemy import update

        backend = getattr(self._s, "_backend", self._s)  # Optuna wraps an RDBStorage in a cache
        if not isinstance(backend, RDBStorage):
            return bool(self._s.set_trial_state_values(trial_id, TrialState.RUNNING))
        stmt = (update(models.TrialModel)
                .where(models.TrialModel.trial_id == trial_id, models.TrialModel.state == TrialState.WAITING)
                .values(state=TrialState.RUNNING, datetime_start=datetime.now()))
        with backend.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def claim(self, limit: int | Callable[[dict[str, Any]], int], keys: set[str] | None = None,
              check: Callable[[dict[str, Any]], None] | None = None) -> list[Ticket]:
        """Atomically take up to ``limit`` waiting tickets, oldest first, with distinct trial ids
        (only those whose key is in ``keys``, when given); duplicates of a stored or lower live
        ticket are closed untrained and not returned. ``[]`` when nothing is waiting.

        A claim may mix optimizer groups: :func:`~lrlab.study.fleet.run_trials` splits it into
        fleets by group, and a trial's numbers do not depend on its fleet. One claim per phase
        instead of one per group means one worker-pool start instead of several (on a GPU each
        took ~15-20 s, more than the training), and no small leftover claims of one group.

        ``limit`` may be a function of the first ticket's plan (a training function's claims are
        smaller than a fleet's); ``check(plan)`` runs before each ticket is taken and may raise
        (a worker that cannot import a training function leaves its tickets waiting)."""
        from optuna.trial import TrialState

        waiting = [t for t in self.tickets(TrialState.WAITING)
                   if keys is None or t.user_attrs[TICKET_ATTR] in keys]
        taken: list[Ticket] = []
        most = limit if isinstance(limit, int) else None
        ids: set[str] = set()
        for t in waiting:
            plan = dict(t.user_attrs.get("lrlab_plan") or {})
            tid = str(plan.get("spec", {}).get("trial_id"))
            if tid in ids:  # a fleet needs unique trial ids
                continue
            if check is not None:
                check(plan)
            if self._take(t._trial_id):
                taken.append(Ticket(t))
                ids.add(tid)
                if most is None:
                    most = limit(plan) if callable(limit) else limit
                if len(taken) >= most:
                    break
        if not taken:
            return []
        # Live tickets first, stored keys second: a ticket is closed only after its result is
        # stored, so a lower ticket that ends between the two reads is seen in one of them (read
        # the other way round, a duplicate taken meanwhile was trained a second time).
        lowest: dict[str, int] = {}
        for t in self.tickets(TrialState.WAITING, TrialState.RUNNING):
            k = t.user_attrs[TICKET_ATTR]
            lowest[k] = min(lowest.get(k, t.number), t.number)
        done = self.done_keys()
        keep = []
        for tk in taken:
            if tk.key in done or lowest.get(tk.key, tk.number) < tk.number:
                self.close(tk, "duplicate")
            else:
                keep.append(tk)
        return keep

    def close(self, ticket: Ticket, why: str = "stored") -> None:
        """The ticket's trial is stored (or was a duplicate): end it as ``PRUNED``."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        with self._lock:
            self._beating.discard(ticket.trial_id)
        try:
            _retry(lambda: self._s.set_trial_user_attr(ticket.trial_id, "lrlab_closed", why))
            _retry(lambda: self._s.set_trial_state_values(ticket.trial_id, TrialState.PRUNED))
        except UpdateFinishedTrialError:  # judged stale meanwhile: its re-queued copy finds the key stored
            pass

    def release(self, tickets: Sequence[Ticket], reason: str, *, requeue: bool) -> None:
        """Give unfinished claims up: ``FAIL`` with ``reason``; ``requeue``: add a waiting copy
        (Ctrl-C), otherwise not (the trial raised: a rerun retries it)."""
        from optuna.trial import TrialState

        for tk in tickets:
            with self._lock:
                self._beating.discard(tk.trial_id)
            try:
                _retry(functools.partial(self._s.set_trial_user_attr, tk.trial_id, "lrlab_error", reason))
                _retry(functools.partial(self._s.set_trial_state_values, tk.trial_id, TrialState.FAIL))
                if requeue:
                    cb = self._s.get_heartbeat_stale_trial_callback() if hasattr(
                        self._s, "get_heartbeat_stale_trial_callback") else None
                    if cb is not None:
                        cb(self.study, self._s.get_trial(tk.trial_id))
            except Exception:  # the database is gone: the heartbeat timeout re-queues them
                pass

    # ---- heartbeats ------------------------------------------------------------------------------
    def beating(self) -> _Heartbeat:
        """A context manager running the heartbeat thread for this queue's claims."""
        return _Heartbeat(self)


class _Heartbeat:
    def __init__(self, q: WorkQueue) -> None:
        self.q = q
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lrlab-heartbeat", daemon=True)
        self.error: str | None = None

    def _run(self) -> None:
        interval = max(1, int(self.q._s.get_heartbeat_interval() or 10))
        while not self.stop.wait(interval):
            with self.q._lock:
                ids = list(self.q._beating)
            for tid in ids:
                try:
                    self.q._s.record_heartbeat(tid)
                except Exception as e:  # lost the database: the claims go stale and are re-queued
                    self.error = str(e).splitlines()[0] if str(e) else type(e).__name__

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


def drain(q: WorkQueue, train: Callable[[list[Ticket], Callable[[str], None]], None], *,
          claim: int | Callable[[dict[str, Any]], int], keys: set[str] | None, say: Callable[[str], None],
          poll: float = 1.0, stop: Callable[[], bool], idle: float | None = None,
          check: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Claim and train until ``stop()`` is true (checked whenever nothing is waiting), or nothing
    was waiting for ``idle`` seconds; returns the number of tickets this process trained.
    ``claim`` and ``check``: as :meth:`WorkQueue.claim`'s ``limit`` and ``check``.

    ``train(tickets, stored)`` trains the tickets and calls ``stored(key)`` after storing each
    trial's result (so its ticket is closed). Claims left unfinished by an exception are failed
    (Ctrl-C: re-queued) before it propagates.
    """
    from lrlab.study.fleet import TrialsFailed

    trained = 0
    idle_since = time.monotonic()
    waited = False
    with q.beating():
        while True:
            q.fail_stale()
            batch = q.claim(claim, keys, check)
            if batch:
                open_ = {t.key: t for t in batch}

                def stored(key: str, open_: dict[str, Ticket] = open_) -> None:
                    t = open_.pop(key, None)
                    if t is not None:
                        q.close(t)

                try:
                    train(batch, stored)
                except KeyboardInterrupt:
                    q.release(list(open_.values()), "interrupted", requeue=True)
                    raise
                except TrialsFailed as e:
                    q.release(list(open_.values()), str(e).splitlines()[0], requeue=False)
                    raise
                except BaseException as e:
                    q.release(list(open_.values()), f"{type(e).__name__}: {e}", requeue=True)
                    raise
                trained += len(batch)
                idle_since = time.monotonic()
                waited = False
                continue
            if stop():
                return trained
            if idle is not None and time.monotonic() - idle_since > idle:
                return trained
            if not waited:
                running = len([t for t in q.tickets(_running()) if keys is None or t.user_attrs[TICKET_ATTR] in keys])
                if running:
                    say(f"waiting for {running} trials claimed by other workers (a dead worker's claims are "
                        "re-queued after its heartbeat times out)")
                waited = True
            time.sleep(poll)


def run_worker(storage: str, study_name: str = "lrlab", *, workers: int | None = None, device: str | None = None,
               idle: float = 300.0, poll: float = 1.0, say: Callable[[str], None] = print,
               executor: Callable[..., Any] | None = None, checkpoint_dir: str | None = None) -> int:
    """``lrlab study worker``: claim and train waiting trials of the study until its plan is complete
    (its final trials are planned and all stored), or nothing was waiting for ``idle`` seconds.
    Returns the number of trials this worker trained. The task, epochs and each trial come with the
    tickets; ``workers``, ``device`` and ``checkpoint_dir`` are this machine's (default: the
    study's config; a shared checkpoint directory may be mounted at another path here).

    A training function's tickets carry its ``module:function`` reference: the worker imports it
    as the driver does (the current directory on ``sys.path``) and runs each trial with the same
    :class:`~lrlab.study.trainfn.Trial` settings. A worker that cannot import it raises a one-line
    ``ValueError`` before taking any of its tickets: they stay waiting for the driver and the
    workers that can (recording them as failed would let one misconfigured machine fail a
    whole study in seconds).
    """
    from rich.console import Console

    from lrlab.study.config import StudyConfig
    from lrlab.study.runner import _STUDY_ATTR, FUNCTION_FIELDS, _claim_size, _train

    st = StudyStorage(storage, study_name)
    if not queue_enabled(st):
        raise ValueError(f"storage {shown_url(st.url)!r} cannot be a work queue: use an RDB storage (sqlite:///..., "
                         "postgresql://...), not a journal file")
    q = WorkQueue(st)
    con = Console(stderr=True, highlight=False)

    def settings() -> StudyConfig:
        info = st.get_attr(_STUDY_ATTR) or {}
        cfg = {k: v for k, v in (info.get("config") or {}).items() if v is not None}
        if workers is not None:
            cfg["workers"] = workers
        if device is not None:
            cfg["device"] = device
        if checkpoint_dir is not None:
            cfg["checkpoint_dir"] = checkpoint_dir
        return StudyConfig.from_mapping(cfg)

    def complete() -> bool:
        info = _retry(lambda: st.get_attr(_STUDY_ATTR)) or {}
        keys = [*info.get("tune_keys", []), *info.get("keys", [])]
        return bool(info.get("keys")) and not set(keys) - q.done_keys()

    imported: dict[str, Callable[..., Any]] = {}

    def function_of(plan: dict[str, Any]) -> Any:
        """The :class:`~lrlab.study.trainfn.TrainingFunction` a ticket names (imported once), or
        ``None`` for a built-in task."""
        if plan.get("kind") != "function":
            return None
        from lrlab.study.trainfn import TrainingFunction

        ref = str(plan["task"])
        if ref not in imported:
            from lrlab.study.tasks import import_ref

            try:
                imported[ref] = import_ref(ref, what="training function")
            except ValueError as e:
                raise ValueError(f"{e}; run `lrlab study worker` where it imports (the current directory "
                                 f"{os.getcwd()} is on the path); its trials stay queued for other workers") from e
        return TrainingFunction(imported[ref], ref, dict(plan.get("task_kwargs") or {}))

    def train(tickets: list[Ticket], stored: Callable[[str], None]) -> None:
        plan = tickets[0].plan
        cfg, fn = settings(), function_of(plan)
        if fn is not None:  # the driver's settings for its trials, carried by the ticket
            cfg = cfg.replace(task=fn.ref, task_kwargs=fn.kwargs, **{k: plan[k] for k in FUNCTION_FIELDS})
        _train(cfg, [ticket_plan(t) for t in tickets], int(plan["epochs"]), st, con, False,
               f"worker {q.worker}", fn, on_stored=stored, executor=executor)
        say(f"worker {q.worker}: trained {len(tickets)} trials")

    def claim_size(plan: dict[str, Any]) -> int:
        return _claim_size(settings(), function=plan.get("kind") == "function")

    from lrlab.study.fleet import keep_workers

    started = "" if _retry(lambda: st.get_attr(_STUDY_ATTR)) else (
        "; no `lrlab study` has started it on this storage yet: check the URL and --study-name")
    say(f"worker {q.worker}: waiting for trials of study {study_name!r} (until its plan is complete, or "
        f"{idle:g} s with nothing to claim){started}")
    with keep_workers():  # one pool of worker processes serves every claim
        return drain(q, train, claim=claim_size, keys=None, say=say, poll=poll, stop=complete, idle=idle,
                     check=function_of)


def ticket_entry(plan: Any, task: str, task_kwargs: dict[str, Any], epochs: int,
                 function: dict[str, Any] | None = None) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """What :meth:`WorkQueue.enqueue` stores for a :class:`~lrlab.study.runner.PlannedTrial`;
    ``function``: a training function's settings (:func:`lrlab.study.runner.function_plan`), with
    ``task`` its ``module:function`` reference."""
    from lrlab.study.fleet import _group_key

    data = {"spec": plan.spec.to_dict(), "schedule_name": plan.schedule_name,
            "schedule_text": plan.schedule_text, "peak_lr": plan.peak_lr, "role": plan.role,
            "task": task, "task_kwargs": task_kwargs, "epochs": epochs, **(function or {})}
    return plan.key, repr(_group_key(plan.spec)), data, {"seed": plan.spec.seed, "peak_lr": plan.peak_lr}


def ticket_plan(ticket: Ticket) -> Any:
    """The :class:`~lrlab.study.runner.PlannedTrial` a ticket carries."""
    from lrlab.study.fleet import TrialSpec
    from lrlab.study.runner import PlannedTrial

    p = ticket.plan
    return PlannedTrial(ticket.key, TrialSpec.from_dict(p["spec"]), p["schedule_name"], p["schedule_text"],
                        float(p["peak_lr"]), p["role"])


def _running() -> Any:
    from optuna.trial import TrialState

    return TrialState.RUNNING
