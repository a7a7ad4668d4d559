"""What live trials cost a Ray run: the same Ray fleets with their epoch reports relayed and without.

``--executor ray`` relays each fleet task's epoch records to the driver through a Ray queue (an
actor), so the run's trials are live in Optuna and the progress bar
(:mod:`lrlab.study.executors`). This times one call of the Ray executor on a local Ray
(``ray.init(num_cpus=2)``), with ``on_epoch`` (reports relayed) and without (no queue: what a Ray
run did before), interleaved, and prints the wall seconds of each, their ratio and the relay's
share per report. It also times the queue calls alone, per report: a task sending them as lrlab
does (one ``put_nowait`` actor call each, not waited for, all waited for at the end), a
synchronous ``Queue.put_nowait`` (a round trip each) for comparison, and the driver's batched
``get_nowait_batch``::

    python benchmarks/bench_ray_live.py              # 2 pairs, 24 trials x 5 epochs (full MNIST-1D)
    python benchmarks/bench_ray_live.py --quick      # 1 pair, 4 trials x 2 epochs (a smoke test)

Needs Ray (``pip install 'lrlab[ray]'``); no network.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any


def _queue_costs(ray: Any, n: int) -> tuple[float, float, float]:
    """Microseconds per report: sent as a task does (:class:`lrlab.study.executors._Reporter`),
    put synchronously, and got by the driver's batched get."""
    from ray.util.queue import Queue

    from lrlab.study.fleet import EpochRecord

    q = Queue(actor_options={"num_cpus": 0})
    rec = EpochRecord("constant/sgd/s0", 0, 0.1, 1.0, 0.5, 1.0, 0.5, float("nan"), float("nan"))

    def put_many(q: Any, rec: Any, n: int, synchronous: bool) -> float:
        from lrlab.study.executors import _reporting  # imported before the clock starts

        t0 = time.perf_counter()
        if synchronous:
            for _ in range(n):
                q.put_nowait(rec)
        else:
            with _reporting(q) as report:
                for _ in range(n):
                    report(rec)
        return time.perf_counter() - t0

    task = ray.remote(put_many)
    for _ in range(2):  # the second round counts: the first also pays the worker's first calls
        sent_s = ray.get(task.remote(q, rec, n, False))
        sync_s = ray.get(task.remote(q, rec, n, True))
        t0 = time.perf_counter()
        got = 0
        while got < 2 * n:
            got += len(q.get_nowait_batch(q.qsize()))
        get_s = time.perf_counter() - t0
    q.shutdown(force=True)
    return 1e6 * sent_s / n, 1e6 * sync_s / n, 1e6 * get_s / (2 * n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 pair of 4 trials x 2 epochs (a smoke test)")
    ap.add_argument("--pairs", type=int, default=None, help="relayed/not pairs, interleaved (default 2)")
    args = ap.parse_args(argv)
    pairs = args.pairs if args.pairs is not None else (1 if args.quick else 2)
    if pairs < 1:
        ap.error(f"--pairs must be >= 1, got {pairs}")
    trials_n, epochs, subset = (4, 2, 200) if args.quick else (24, 5, None)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        print("bench_ray_live: needs Ray (pip install 'lrlab[ray]')", file=sys.stderr)
        return 2
    from lrlab.schedules import constant
    from lrlab.study.executors import ray_executor
    from lrlab.study.fleet import TrialSpec
    from lrlab.study.tasks import load_task

    kwargs = {} if subset is None else {"subset": subset}
    task = load_task("mnist1d", **kwargs)
    total = epochs * task.steps_per_epoch
    trials = [TrialSpec(f"constant/adam/s{s}", constant(0.01).resolve(total_steps=total,
                                                                      steps_per_epoch=task.steps_per_epoch),
                        "adam", {}, s) for s in range(trials_n)]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run = ray_executor()
        # warm: Ray's workers import torch, and the executor makes its report queue (once per executor)
        run("mnist1d", kwargs, trials[:2], epochs=1, on_epoch=lambda rec: None)
        walls: dict[bool, list[float]] = {True: [], False: []}
        reports = 0
        for _ in range(pairs):
            for relayed in (False, True):
                seen: list[object] = []
                t0 = time.perf_counter()
                run("mnist1d", kwargs, trials, epochs=epochs,
                    on_epoch=seen.append if relayed else None)
                walls[relayed].append(time.perf_counter() - t0)
                if relayed:
                    assert len(seen) == trials_n * epochs, len(seen)
                    reports = len(seen)
        sent_us, sync_us, get_us = _queue_costs(ray, 200 if args.quick else 2000)
    finally:
        ray.shutdown()
    off, on = statistics.median(walls[False]), statistics.median(walls[True])
    print(f"Ray executor, local Ray (2 CPUs): {trials_n} Adam trials x {epochs} epochs of MNIST-1D "
          f"({'all' if subset is None else subset} examples), one call each way, {pairs} interleaved "
          f"pair{'s' if pairs > 1 else ''}, median wall")
    print()
    print("| run | wall | vs not relayed |")
    print("|---|---|---|")
    print(f"| reports not relayed (no queue) | {off:.3f} s | 1.00 |")
    print(f"| each epoch record relayed to the driver ({reports} reports) | {on:.3f} s | {on / off:.2f} |")
    print()
    print(f"queue calls alone, per report: {sent_us:.0f} µs sent from a task as lrlab does (waited for "
          f"together at its end), {sync_us:.0f} µs with a synchronous put_nowait, {get_us:.1f} µs in the "
          f"driver's batched get (a {trials_n}-trial fleet epoch sends {trials_n})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
