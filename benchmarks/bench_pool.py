"""Benchmark: a study's successive training calls with a fresh pool of workers each, or one kept pool.

A study trains in several :func:`lrlab.study.fleet.run_trials` calls: its tuning and final phases,
and on a work-queue storage every claim (the tuned default study on 2 cores makes 5 claims of up
to 48 trials). Each call used to spawn its worker processes again (import torch, load the task;
with CUDA also a context per process). Inside :func:`lrlab.study.fleet.keep_workers` (what
``lrlab study`` and ``lrlab study worker`` use) the calls share one pool. This times ``--calls``
calls of the same small trials both ways, interleaved, in the same run, and prints wall and CPU
seconds (CPU: user + system of the worker processes and this one) and the ratios. The trials'
numbers are the same either way (tested in tests/study/test_fleet.py).

    python benchmarks/bench_pool.py                # 5 calls of 8 trials x 1 epoch, 3 repeats
    python benchmarks/bench_pool.py --quick        # seconds: 3 calls, 1 repeat
    python benchmarks/bench_pool.py --device cuda  # on a GPU machine
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time


def _cpu() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=5, help="run_trials calls per way (default 5: the tuned default study's claims on 2 cores)")
    ap.add_argument("--trials", type=int, default=8, help="trials per call")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: run_trials')")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median)")
    ap.add_argument("--quick", action="store_true", help="3 calls, 1 repeat")
    args = ap.parse_args(argv)
    if args.quick:
        args.calls, args.repeats = 3, 1
    for name in ("calls", "trials", "epochs", "repeats", "workers"):
        v = getattr(args, name)
        if v is not None and v < 1:
            print(f"bench_pool: --{name} must be >= 1, got {v}", file=sys.stderr)
            return 2

    from lrlab.schedules import constant
    from lrlab.study.fleet import TrialSpec, keep_workers, run_trials

    trials = [TrialSpec(f"{o}/{s}", constant(0.01), o, {}, seed=s)
              for o in ("sgd", "adam") for s in range(max(1, args.trials // 2))][: args.trials]
    kwargs = {"subset": 400, "batch_size": 50}

    def calls() -> None:
        for _ in range(args.calls):
            run_trials("mnist1d", kwargs, trials, epochs=args.epochs, workers=args.workers, device=args.device)

    wall: dict[str, list[float]] = {"fresh": [], "kept": []}
    cpu: dict[str, list[float]] = {"fresh": [], "kept": []}
    print(f"bench_pool: {args.calls} run_trials calls of {len(trials)} trials x {args.epochs} epoch(s) "
          f"(MNIST-1D CNN, 400 examples), device {args.device}")
    for rep in range(args.repeats):
        for way in ("fresh", "kept"):
            c0, t0 = _cpu(), time.perf_counter()
            if way == "kept":
                with keep_workers():
                    calls()
            else:
                calls()
            wall[way].append(time.perf_counter() - t0)  # the kept pool's exit is inside the block
            cpu[way].append(_cpu() - c0)
        print(f"  repeat {rep + 1}: fresh pools {wall['fresh'][-1]:.2f} s wall / {cpu['fresh'][-1]:.2f} s CPU | "
              f"kept pool {wall['kept'][-1]:.2f} s / {cpu['kept'][-1]:.2f} s")
    med = statistics.median

    def ratio(d: dict[str, list[float]]) -> str:
        r = [a / b for a, b in zip(d["fresh"], d["kept"])]
        return f"{med(r):.2f}x" + ("" if len(r) == 1 else f" ({min(r):.2f}-{max(r):.2f})")

    print(f"\nmedian of {args.repeats} interleaved repeat(s):")
    print("| workers | wall time | CPU time |")
    print("|---|---|---|")
    print(f"| a fresh pool per call | {med(wall['fresh']):.2f} s | {med(cpu['fresh']):.2f} s |")
    print(f"| one pool kept (keep_workers) | {med(wall['kept']):.2f} s | {med(cpu['kept']):.2f} s |")
    print(f"| kept pool faster by | {ratio(wall)} | {ratio(cpu)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
