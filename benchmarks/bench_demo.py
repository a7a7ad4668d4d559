"""The default study's budget: `lrlab study` (= `make demo`) against the 5-minute target of issue 8.

Runs the default tuned study (every MNIST-1D schedule x SGD and Adam, a 5-point peak-lr grid on
one tuning seed, then 3 fresh final seeds: 192 trials) into a fresh temporary directory, so
nothing is reused from a stored study, and prints its wall and CPU time against the budget::

    python benchmarks/bench_demo.py            # the default study (~3 min on 2 idle cores)
    python benchmarks/bench_demo.py --quick    # 1 epoch on a 400-sample subset (a smoke test)
    python benchmarks/bench_demo.py --live 2   # the cost of live Optuna trials: 2 pairs of runs
                                               # with LRLAB_LIVE=1 and =0, interleaved (on/off, off/on)

CPU time is printed next to wall time because the project's machines are shared: the ratio of
wall time to the budget is what a user sees, CPU time / cores what an idle machine would give.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from typing import Any

BUDGET_S = 300.0  # issue 8: the default tuned study within 5 minutes on a 2-core CPU


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (the fleet workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(config: dict) -> tuple[float, float, Any]:
    """Wall and CPU seconds of one study run into a fresh temporary directory, and its result."""
    from lrlab.study import run_study

    with tempfile.TemporaryDirectory() as out:
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        res = run_study({**config, "out": out}, progress=False, quiet=True, report=False)
        return time.perf_counter() - t0, _cpu_seconds() - cpu0, res


def live_overhead(config: dict, pairs: int) -> int:
    """Runs the study ``2 * pairs`` times, live Optuna trials on (``LRLAB_LIVE=1``) and off, in the
    order on/off, off/on, ... (so a drift in the machine's load hits both), and prints each run and
    the ratio of the totals (on / off) for wall and CPU time."""
    runs: dict[str, list[tuple[float, float]]] = {"1": [], "0": []}
    print("| run | live | wall | CPU |")
    print("|---|---|---|---|")
    for i in range(pairs):
        for mode in ("1", "0") if i % 2 == 0 else ("0", "1"):
            os.environ["LRLAB_LIVE"] = mode
            wall, cpu, _ = _timed(config)
            runs[mode].append((wall, cpu))
            print(f"| {len(runs['1']) + len(runs['0'])} | {'on' if mode == '1' else 'off'} | {wall:.2f} s "
                  f"| {cpu:.2f} s |", flush=True)
    os.environ.pop("LRLAB_LIVE")
    on = [sum(x[k] for x in runs["1"]) for k in (0, 1)]
    off = [sum(x[k] for x in runs["0"]) for k in (0, 1)]
    print(f"live on / off over {pairs} pairs: wall {on[0] / off[0]:.3f}, CPU {on[1] / off[1]:.3f} "
          f"({on[0]:.1f} s / {off[0]:.1f} s wall, {on[1]:.1f} s / {off[1]:.1f} s CPU)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_demo", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 epoch on a 400-sample subset (smoke test)")
    ap.add_argument("--live", type=int, metavar="PAIRS", default=0,
                    help="compare live Optuna trials on and off over PAIRS interleaved pairs of runs")
    args = ap.parse_args(argv)

    config: dict = {"task_kwargs": {"subset": 400}, "epochs": 1} if args.quick else {}
    if args.live:
        return live_overhead(config, args.live)
    wall, cpu, res = _timed(config)
    n_tune, n_final = len(res.tune_records), len(res.records)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(f"default study{' (quick)' if args.quick else ''}: {n_tune} tuning + {n_final} final trials, "
          f"{res.ran} trained, {res.reused} reused, {cores} cores")
    print("| what | wall | CPU | wall / budget |")
    print("|---|---|---|---|")
    print(f"| lrlab study (default) | {wall:.1f} s | {cpu:.1f} s | {wall / BUDGET_S:.2f} of {BUDGET_S:.0f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
