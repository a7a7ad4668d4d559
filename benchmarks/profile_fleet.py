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
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import pickle
import statistics
import sys
import time
from dataclasses import asdict

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=18, help="trials in the fleet (default 18: the default study's fleets)")
    ap.add_argument("--optimizer", default="adam", help="sgd or adam")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--task", default="mnist1d")
    args = ap.parse_args(argv)
    if args.k < 1 or args.epochs < 1 or args.repeats < 1:
        print("profile_fleet: --k, --epochs and --repeats must be >= 1", file=sys.stderr)
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
    specs = [fleet.TrialSpec(f"{s.trial_id}-{j}", s.schedule, s.optimizer, s.optimizer_kwargs, s.seed)
             for j, s in enumerate(specs * (args.k // len(specs) + 1))][: args.k]
    steps = args.epochs * task.steps_per_epoch
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


if __name__ == "__main__":
    sys.exit(main())
