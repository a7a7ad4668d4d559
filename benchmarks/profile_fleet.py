"""Profile: where a fleet's time goes, phase by phase, in the real training loop.

Trains one fleet of the default study's trials (one optimizer, ``--k`` trials, MNIST-1D CNN) with
one torch thread (as in a :func:`lrlab.study.fleet.run_trials` worker), with
:data:`lrlab.study.fleet.PROFILE` set: the loop marks the end of each phase (data gathering,
forward, loss and running metrics, backward, the optimizer, the per-trial lr application,
evaluation, epoch bookkeeping), and this script adds the inter-process traffic a worker has
(each epoch record pickled and sent through a ``multiprocessing`` pipe, read on the other end).
Prints wall and CPU seconds per phase and microseconds per trial-step (CPU), against one trial
trained the usual way (``torch.optim`` + ``LambdaLR``, the benchmark's baseline) in the same run.

CPU time (``time.thread_time``) is the figure to read on a shared machine: wall time includes
the time other processes held the core. Repeats are interleaved with the baseline; the median
per phase is printed.

    python benchmarks/profile_fleet.py                  # K=18 Adam, 3 epochs, 3 repeats
    python benchmarks/profile_fleet.py --k 36 --optimizer sgd
    python benchmarks/profile_fleet.py --sweep 4 9 18 36  # fixed and per-trial costs, products' share

``--sweep`` trains a fleet of each size K (same epochs and repeats) and times its CPU per
trial-step and the part spent inside the batched matrix products (``torch.bmm``, ``baddbmm``,
``baddbmm_``, timed by wrappers), then fits ``CPU per step = fixed + K x marginal`` by least
squares: ``fixed`` is what a step costs whatever the fleet size (Python, dispatch), ``marginal``
what each trial adds (its products and the element-wise passes over its tensors). One trial the
usual way divided by ``marginal`` is the most any fleet size can win on one core.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import pickle
import statistics
import sys
import time
from dataclasses import asdict

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=18, help="trials in the fleet (default 18: the default study's fleets)")
    ap.add_argument("--optimizer", default="adam", help="sgd or adam")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--task", default="mnist1d")
    ap.add_argument("--sweep", type=int, nargs="+", default=None, metavar="K",
                    help="fleet sizes to fit fixed and per-trial costs on (instead of the phase table)")
    args = ap.parse_args(argv)
    if args.k < 1 or args.epochs < 1 or args.repeats < 1 or min(args.sweep or [1]) < 1:
        print("profile_fleet: --k, --sweep, --epochs and --repeats must be >= 1", file=sys.stderr)
        return 2
    if args.sweep is not None and len(set(args.sweep)) < 2:
        print("profile_fleet: --sweep needs at least two different fleet sizes", file=sys.stderr)
        return 2
    torch.set_num_threads(1)

    from bench_study import baseline_trial

    import lrlab.study.fleet as fleet

    fleet.keep_freed_memory()  # the allocator setting of a run_trials worker
    from lrlab.study.config import StudyConfig
    from lrlab.study.runner import plan_trials
    from lrlab.study.tasks import load_task

    cfg = StudyConfig(task=args.task)
    task = load_task(args.task)
    plans = plan_trials(cfg, epochs=args.epochs, steps_per_epoch=task.steps_per_epoch,
                        peak_lrs={n: task.peak_lr[n] for n in cfg.optimizers})
    specs = [p.spec for p in plans if p.spec.optimizer == args.optimizer]
    if not specs:
        print(f"profile_fleet: no trial of optimizer {args.optimizer!r} in the default study", file=sys.stderr)
        return 2
    def fleet_of(k: int) -> list:
        return [fleet.TrialSpec(f"{s.trial_id}-{j}", s.schedule, s.optimizer, s.optimizer_kwargs, s.seed)
                for j, s in enumerate(specs * (k // len(specs) + 1))][:k]

    steps = args.epochs * task.steps_per_epoch
    if args.sweep is not None:
        return sweep(args, task, fleet_of, steps)
    specs = fleet_of(args.k)
    rx, tx = mp.Pipe(duplex=False)
    traffic = "inter-process traffic (epoch records through a pipe)"

    def on_epoch(rec: fleet.EpochRecord) -> None:
        timer = fleet.PROFILE
        assert timer is not None
        timer.mark("epoch records, callbacks, plateau")
        tx.send(("epoch", 0, 0, asdict(rec)))
        pickle.loads(pickle.dumps(rx.recv_bytes()))  # the reading end's work (one process here)
        timer.mark(traffic)

    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    base_cpu = []
    for _ in range(args.repeats):
        timer = fleet.PROFILE = fleet.PhaseTimer()
        fleet.train_fleet(task, specs, epochs=args.epochs, on_epoch=on_epoch)
        fleet.PROFILE = None
        for ph in timer.wall:
            walls.setdefault(ph, []).append(timer.wall[ph])
            cpus.setdefault(ph, []).append(timer.cpu[ph])
        c0 = time.thread_time()
        baseline_trial(task, specs[0], args.epochs, "cpu")
        base_cpu.append(time.thread_time() - c0)
    med = statistics.median
    total_cpu = sum(med(v) for v in cpus.values())
    total_wall = sum(med(v) for v in walls.values())
    per = args.k * steps
    print(f"profile_fleet: one fleet of {args.k} {args.optimizer} trials, {args.task}, {args.epochs} epochs x "
          f"{task.steps_per_epoch} steps, 1 torch thread; median of {args.repeats} repeats")
    print("| phase | wall s | CPU s | share of CPU | CPU us per trial-step |")
    print("|---|---|---|---|---|")
    for ph in sorted(cpus, key=lambda p: -med(cpus[p])):
        c = med(cpus[ph])
        print(f"| {ph} | {med(walls[ph]):.3f} | {c:.3f} | {100 * c / total_cpu:.1f} % | {1e6 * c / per:.0f} |")
    print(f"| **fleet total** | {total_wall:.3f} | {total_cpu:.3f} | 100 % | {1e6 * total_cpu / per:.0f} |")
    b = med(base_cpu)
    print(f"| one trial the usual way (torch.optim + LambdaLR, same epochs and evaluation) | | {b:.3f} | | "
          f"{1e6 * b / steps:.0f} |")
    print(f"fleet CPU per trial-step: {b / steps / (total_cpu / per):.2f}x less than one at a time")
    return 0


def sweep(args: argparse.Namespace, task: object, fleet_of: object, steps: int) -> int:
    """``--sweep``: CPU per trial-step and in products for each fleet size, and the fitted fixed
    and marginal costs (see the module docstring)."""
    from bench_study import baseline_trial

    import lrlab.study.fleet as fleet

    spent = {"products": 0.0}
    real = {"bmm": torch.bmm, "baddbmm": torch.baddbmm, "baddbmm_": torch.Tensor.baddbmm_}

    def timed(f):  # type: ignore[no-untyped-def]
        def g(*a, **kw):  # type: ignore[no-untyped-def]
            t0 = time.thread_time()
            try:
                return f(*a, **kw)
            finally:
                spent["products"] += time.thread_time() - t0
        return g

    torch.bmm, torch.baddbmm = timed(real["bmm"]), timed(real["baddbmm"])  # type: ignore[assignment]
    torch.Tensor.baddbmm_ = timed(real["baddbmm_"])  # type: ignore[method-assign]
    rows = []
    try:
        fleet.train_fleet(task, fleet_of(2), epochs=1)  # warm-up: first-call costs are not the fleet's
        for k in args.sweep:
            totals, products = [], []
            for _ in range(args.repeats):
                spent["products"] = 0.0
                c0 = time.thread_time()
                fleet.train_fleet(task, fleet_of(k), epochs=args.epochs)
                totals.append(time.thread_time() - c0)
                products.append(spent["products"])
            rows.append((k, statistics.median(totals), statistics.median(products)))
    finally:
        torch.bmm, torch.baddbmm = real["bmm"], real["baddbmm"]  # type: ignore[assignment]
        torch.Tensor.baddbmm_ = real["baddbmm_"]  # type: ignore[method-assign]
    base = []
    for _ in range(args.repeats):
        c0 = time.thread_time()
        baseline_trial(task, fleet_of(1)[0], args.epochs, "cpu")
        base.append(time.thread_time() - c0)
    one = 1e6 * statistics.median(base) / steps
    ks = np.array([r[0] for r in rows], dtype=float)
    per_step = np.array([r[1] for r in rows]) / steps * 1e6  # us per fleet step
    marginal, fixed = np.polyfit(ks, per_step, 1)
    print(f"profile_fleet --sweep: {args.optimizer} fleets, {args.task}, {args.epochs} epochs x "
          f"{steps // args.epochs} steps, 1 torch thread; median of {args.repeats} repeats (CPU time)")
    print("| fleet size K | CPU us per trial-step | in the products | products' share |")
    print("|---|---|---|---|")
    for k, tot, prod in rows:
        print(f"| {k} | {1e6 * tot / (k * steps):.0f} | {1e6 * prod / (k * steps):.0f} | {100 * prod / tot:.0f} % |")
    print(f"| one trial the usual way | {one:.0f} | | |")
    print(f"fit: a fleet step costs {fixed:.0f} us + {marginal:.0f} us per trial; one trial the usual way "
          f"costs {one / marginal:.2f}x one fleet trial's marginal cost (the most any fleet size wins on one core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
