"""What the epoch-end checkpoints cost: a fleet of 24 MNIST-1D CNN trials with and without them.

Trains the same fleet (the default study's task, model and batch size; Adam, 24 seeds, one torch
thread as in a study's workers) with ``checkpoint_dir`` unset and set, alternating, and prints:

* the time the ``checkpoint`` phase of the fleet loop took per epoch (measured by the fleet's
  own :class:`~lrlab.study.fleet.PhaseTimer`: packing and writing 24 safetensors files, renaming
  each into place and removing the previous epoch's), and its share of an epoch's wall time;
* the wall time per epoch of both runs and their ratio (noisier: other processes share the CPU);
* the size of one trial's checkpoint file.

    python benchmarks/bench_checkpoint.py            # 24 trials, 4 epochs, 3 repeats
    python benchmarks/bench_checkpoint.py --quick    # 4 trials, 2 epochs, 1 repeat (a smoke test)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import torch

import lrlab.study.fleet as fleet
from lrlab.schedules import constant, warmup
from lrlab.study.checkpoint import files
from lrlab.study.fleet import PhaseTimer, TrialSpec, checkpoint_file, train_fleet
from lrlab.study.tasks import load_task


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=24, help="trials in the fleet")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="4 trials, 2 epochs, 1 repeat, a 600-example subset")
    args = ap.parse_args(argv)
    if args.quick:
        args.k, args.epochs, args.repeats = 4, 2, 1
    for name in ("k", "repeats"):
        if getattr(args, name) < 1:
            print(f"bench_checkpoint: --{name} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            sys.exit(2)
    if args.epochs < 2:
        print(f"bench_checkpoint: --epochs must be >= 2 (the last epoch saves nothing), got {args.epochs}",
              file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(1)
    task = load_task("mnist1d", **({"subset": 600} if args.quick else {})).with_validation()
    spe = task.steps_per_epoch
    trials = [TrialSpec(f"adam/s{s}", warmup(constant(0.01), steps=spe)
                        .resolve(total_steps=args.epochs * spe, steps_per_epoch=spe), "adam", {}, seed=s)
              for s in range(args.k)]
    plain: list[float] = []
    with_ck: list[float] = []
    phase: list[float] = []
    size = 0
    train_fleet(task, trials, epochs=1)  # warm-up (first-call costs), not timed
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        train_fleet(task, trials, epochs=args.epochs)
        plain.append((time.perf_counter() - t0) / args.epochs)
        with tempfile.TemporaryDirectory() as d:
            timer = PhaseTimer()
            fleet.PROFILE = timer
            t0 = time.perf_counter()
            try:
                train_fleet(task, trials, epochs=args.epochs, checkpoint_dir=d, discard_checkpoints=False)
            finally:
                fleet.PROFILE = None
            with_ck.append((time.perf_counter() - t0) / args.epochs)
            phase.append(timer.wall["checkpoint"] / (args.epochs - 1))
            size = files(checkpoint_file(d, trials[0], args.epochs))[0].stat().st_size
    epoch = statistics.median(plain)
    cost = statistics.median(phase)
    print(f"fleet of {args.k} MNIST-1D CNN trials (adam), {args.epochs} epochs of {spe} steps, batch "
          f"{task.batch_size}, 1 torch thread, median of {args.repeats}")
    print("| what | per epoch |")
    print("|---|---|")
    print(f"| checkpoint phase ({args.k} files) | {cost * 1e3:.1f} ms = {100 * cost / epoch:.2f} % of an epoch |")
    print(f"| epoch without checkpoints | {epoch * 1e3:.0f} ms |")
    print(f"| epoch with checkpoints | {statistics.median(with_ck) * 1e3:.0f} ms "
          f"({statistics.median(with_ck) / epoch:.3f}x) |")
    print(f"| one trial's checkpoint file | {size / 1024:.1f} KiB |")


if __name__ == "__main__":
    main()
