"""Where a study's fleets train: local worker processes (:func:`lrlab.study.fleet.run_trials`, the
default) or Ray tasks on a Ray cluster (:func:`ray_executor`, ``lrlab study --executor ray``).

A Ray task trains one fleet (:func:`lrlab.study.fleet.train_fleet`) with ``num_cpus=1`` (and
``num_gpus=1`` on ``cuda``) and returns its results as plain data; the driver stores each trial as
its task finishes, in the same storage as a local run. On the CPU a trial's float32 numbers do not
depend on the fleet it shares, so a Ray run stores the same numbers as a local one (tested).

Trials are live as with local workers: each epoch record of a fleet task, and each
:meth:`~lrlab.study.trainfn.Trial.report` of a training-function task, goes through a Ray queue
(:class:`ray.util.queue.Queue`, an actor using no CPU) to the driver, which relays them (to the
progress bar and the study's live Optuna trials) between waits on the tasks. A task sends its
reports without waiting for each, and waits for all of them before it returns, so every report
of a trial arrives before its result (``benchmarks/bench_ray_live.py`` times it).

A training function's trials (:mod:`lrlab.study.trainfn`) run one Ray task each: the task imports
the function by its ``module:function`` reference, with the driver's current directory on its
path (where the module is on a local cluster or a shared filesystem; on a remote cluster, install
the module there or ship it with a Ray ``runtime_env``). A function that cannot be imported by
name trains in the driver, as without Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["EXECUTORS", "ray_executor"]

EXECUTORS = ("local", "ray")


_KEEPS_FREED_MEMORY: bool | None = None
"""What :func:`lrlab.study.fleet.keep_freed_memory` returned in this process (``None``: no fleet
task ran here yet)."""


def _fleet_process() -> bool:
    """Set a Ray worker process up for fleets once, as :func:`lrlab.study.fleet.run_trials` sets up
    its own worker processes: glibc keeps freed blocks for reuse (:func:`~lrlab.study.fleet.keep_freed_memory`:
    ~10 % less CPU per fleet step, no number changes). Returns whether that setting is active."""
    global _KEEPS_FREED_MEMORY
    if _KEEPS_FREED_MEMORY is None:
        from lrlab.study.fleet import keep_freed_memory

        _KEEPS_FREED_MEMORY = keep_freed_memory()
    return _KEEPS_FREED_MEMORY


class _Reporter:
    """A task's end of the reports: each call sends one to the driver's queue ``reports`` without
    waiting for it (a synchronous put is a round trip to the queue actor, ~ms each: a 24-trial
    fleet epoch would wait for 24); :meth:`flush`, before the task returns, waits until all of
    them are in the queue, so the driver relays a trial's reports before its result. A report
    that cannot be put is dropped: showing a trial live must never stop its training."""

    def __init__(self, reports: Any) -> None:
        self.reports = reports
        self.sent: list[Any] = []

    def __call__(self, item: Any) -> None:
        with contextlib.suppress(Exception):  # the driver's queue actor is gone
            self.sent.append(self.reports.actor.put_nowait.remote(item))

    def flush(self) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.get(self.sent)
        self.sent = []


@contextlib.contextmanager
def _reporting(reports: Any) -> Iterator[_Reporter | None]:
    """A :class:`_Reporter` for the task's block (``None`` when no reports are wanted), flushed
    when the block ends, however it ends."""
    if reports is None:
        yield None
        return
    rep = _Reporter(reports)
    try:
        yield rep
    finally:
        rep.flush()


def _train_fleet_task(task_ref: str, task_kwargs: dict[str, Any], trial_dicts: list[dict[str, Any]], epochs: int,
                      device: str, checkpoint_dir: str | None = None, reports: Any = None) -> list[dict[str, Any]]:
    """The body of a Ray task: one fleet, results as plain dicts (epoch-end checkpoints in
    ``checkpoint_dir`` on the node that trains it; the driver removes them once stored); each
    :class:`~lrlab.study.fleet.EpochRecord` is put in ``reports`` as it happens."""
    import torch

    from lrlab.study.fleet import TrialSpec, train_fleet
    from lrlab.study.tasks import load_task

    torch.set_num_threads(1)  # as local workers: the numbers do not depend on the thread count
    _fleet_process()
    task = load_task(task_ref, **task_kwargs)
    specs = [TrialSpec.from_dict(d) for d in trial_dicts]
    with _reporting(reports) as report:
        return [r.to_dict() for r in train_fleet(task, specs, epochs=epochs, device=device,
                                                 checkpoint_dir=checkpoint_dir, discard_checkpoints=False,
                                                 on_epoch=report)]


def _train_function_task(ref: str, kwargs: dict[str, Any], trial_args: dict[str, Any], cwd: str,
                         reports: Any = None) -> dict[str, Any]:
    """The body of a Ray task: one training-function trial, its result as a plain dict; each
    :meth:`~lrlab.study.trainfn.Trial.report` is put in ``reports`` as ``(trial_id, epoch, values)``."""
    import sys

    import torch

    from lrlab.study.tasks import import_ref
    from lrlab.study.trainfn import _trial_from, run_one

    torch.set_num_threads(1)  # as the local worker processes
    if cwd not in sys.path:
        sys.path.append(cwd)  # the driver's directory: where its `module:function` was found
    fn = import_ref(ref, what="training function")
    trial = _trial_from(trial_args, kwargs)
    with _reporting(reports) as report:
        if report is not None:
            trial._on_report = lambda tid, epoch, values: report((tid, epoch, values))
        return run_one(fn, trial)


@contextlib.contextmanager
def _cancelling(ray: Any, pending: Mapping[Any, Any]) -> Iterator[None]:
    """Cancel the tasks still in ``pending`` when the block is left by an exception (Ctrl-C in the
    driver): nothing would store their results, and a rerun trains those trials again, from their
    checkpoints."""
    try:
        yield
    except BaseException:
        for ref in list(pending):
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        raise


def _drain(ray: Any, reports: _Reports, pending: dict[Any, Any],
           handle: Callable[[Any, Any, Exception | None], None]) -> None:
    """Wait for every task of ``pending`` (its ref -> what it trains), relaying reports meanwhile:
    ``handle(what, result, None)`` for a task that returned, ``handle(what, None, error)`` for one
    that raised or lost its node. An exception here (Ctrl-C) cancels the tasks left."""
    with _cancelling(ray, pending):
        while pending:
            for ref in reports.wait(pending):
                what = pending.pop(ref)
                try:
                    got = ray.get(ref)
                except Exception as e:
                    handle(what, None, e)
                    continue
                handle(what, got, None)


class _ReportQueue:
    """The driver's Ray queue for the tasks' reports: made on first use and kept for the
    executor's later calls (making its actor starts a Ray worker process, a fixed cost per call
    otherwise). A call relays all its tasks' reports before it returns; tasks of an interrupted
    call may still send some later, which the next call drops (:class:`_Reports` relays only its
    own trials')."""

    def __init__(self) -> None:
        self.queue: Any = None

    def get(self) -> Any:
        if self.queue is None:
            from ray.util.queue import Queue

            self.queue = Queue(actor_options={"num_cpus": 0})
        return self.queue


class _Reports:
    """The driver's end of the tasks' reports in one call: the executor's queue while
    ``on_report`` is given; a report is relayed when ``trial_of(report)`` is in ``trial_ids``."""

    def __init__(self, ray: Any, on_report: Callable[[Any], None] | None, queue: _ReportQueue,
                 trial_ids: set[str], trial_of: Callable[[Any], str]) -> None:
        self.ray, self.on_report, self.trial_ids, self.trial_of = ray, on_report, trial_ids, trial_of
        self.queue = None if on_report is None else queue.get()

    def wait(self, pending: Mapping[Any, Any]) -> list[Any]:
        """The tasks of ``pending`` that finished (at most one), after relaying every report
        waiting meanwhile (so a trial's reports come before its result)."""
        ready, _ = self.ray.wait(list(pending), num_returns=1, timeout=None if self.queue is None else 0.5)
        self.relay()
        return list(ready)

    def relay(self) -> None:
        if self.queue is None or self.on_report is None:
            return
        while n := self.queue.qsize():
            for item in self.queue.get_nowait_batch(n):
                if self.trial_of(item) in self.trial_ids:
                    self.on_report(item)


def _probe(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast with one line when ``HOST:PORT`` (optionally ``ray://``) accepts no connection
    (``ray.init`` itself keeps retrying an unreachable cluster for minutes)."""
    import socket

    if address is None or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--ray-address {address!r}: give HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ValueError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from e


def ray_executor(address: str | None = None) -> Callable[..., list[Any]]:
    """A drop-in for :func:`lrlab.study.fleet.run_trials` that runs each fleet as a Ray task.

    Connects to the Ray cluster at ``address`` (``None``: the running local instance if this process
    started one, else ``ray.init()``'s default: a cluster given by ``RAY_ADDRESS`` or a new local
    one); an unreachable cluster is a one-line ``ValueError``.
    """
    try:
        import ray
    except ImportError as e:
        raise ValueError("--executor ray needs Ray: pip install 'lrlab[ray]'") from e
    if not ray.is_initialized():
        _probe(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as e:  # ConnectionError, a timeout, a bad address
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"cannot reach the Ray cluster at {address or 'the default address'}: {first}") from e
    remote = ray.remote(_train_fleet_task)
    report_queue = _ReportQueue()

    def run(task_ref: str, task_kwargs: Mapping[str, Any] | None, trials: Sequence[Any], *, epochs: int,
            workers: int | None = None, device: str = "cpu", on_epoch: Callable[[Any], None] | None = None,
            on_trial_done: Callable[[Any], None] | None = None, max_fleet: int | None = None,
            checkpoint_dir: Any = None) -> list[Any]:
        from lrlab.study.checkpoint import discard
        from lrlab.study.fleet import TrialResult, TrialsFailed, checkpoint_file, plan_fleets

        cuda = str(device).startswith("cuda")
        n_cpus = int(ray.cluster_resources().get("CPU", 1))
        fleets = plan_fleets(list(trials), max(1, n_cpus), max_fleet or (512 if cuda else 24))
        opts = remote.options(num_cpus=1, num_gpus=1 if cuda else 0)
        ck = None if checkpoint_dir is None else str(checkpoint_dir)
        by_id = {t.trial_id: t for t in trials}
        results: dict[str, Any] = {}
        failed: dict[str, str] = {}
        reports = _Reports(ray, on_epoch, report_queue, set(by_id), lambda rec: rec.trial_id)
        pending = {opts.remote(task_ref, dict(task_kwargs or {}), [t.to_dict() for t in f], epochs, device, ck,
                               reports.queue): [t.trial_id for t in f] for f in fleets}

        def fleet_done(ids: list[str], got: Any, error: Exception | None) -> None:
            if error is not None:  # the task raised or its node died: those trials fail, the rest go on
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                failed.update({i: reason for i in ids})
                return
            for d in got:
                r = TrialResult.from_dict(d)
                results[r.trial_id] = r
                if on_trial_done is not None:
                    on_trial_done(r)
                if ck is not None:
                    discard(checkpoint_file(ck, by_id[r.trial_id], epochs))

        _drain(ray, reports, pending, fleet_done)
        done = [results[t.trial_id] for t in trials if t.trial_id in results]
        if failed:
            first = next(iter(failed.values()))
            raise TrialsFailed(f"{len(failed)} trials failed on Ray: {first}", done, failed)
        return done

    remote_fn = ray.remote(_train_function_task)

    def functions(task: Any, trials: Sequence[dict[str, Any]], *, device: str = "cpu",
                  on_trial_done: Callable[[dict[str, Any]], None],
                  on_epoch: Callable[[str, int, dict[str, float]], None] | None = None) -> None:
        """Each training-function trial (``trials``: :class:`~lrlab.study.trainfn.Trial` keyword
        arguments) as one Ray task; ``on_trial_done`` gets each result as its task finishes,
        ``on_epoch`` each report as ``(trial_id, epoch, values)`` as it happens. A task that raises
        or whose node dies fails that trial with a one-line reason."""
        from lrlab.study.trainfn import _failure

        opts = remote_fn.options(num_cpus=1, num_gpus=1 if str(device).startswith("cuda") else 0)
        cwd = os.getcwd()
        reports = _Reports(ray, None if on_epoch is None else lambda item: on_epoch(*item), report_queue,
                           {str(a["trial_id"]) for a in trials}, lambda item: item[0])
        pending = {opts.remote(str(task.ref), dict(task.kwargs), dict(a), cwd, reports.queue): a for a in trials}

        def trial_done(args: dict[str, Any], res: Any, error: Exception | None) -> None:
            if error is not None:
                lines = [x for x in str(error).strip().splitlines() if x.strip()]
                res = _failure(args, f"its Ray task failed: {lines[-1] if lines else type(error).__name__}")
            on_trial_done(res)

        _drain(ray, reports, pending, trial_done)

    run.functions = functions  # type: ignore[attr-defined]  # how the runner trains a training function's trials
    return run
