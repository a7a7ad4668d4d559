"""The generic (torch.vmap) fleet against one trial at a time, with and without BatchNorm + dropout.

For a plain 1-d CNN and for examples/task_bn_dropout.py's CNN (the same convolutions plus
BatchNorm and dropout, which the vmap fleet handles with per-trial running statistics and
per-trial dropout generators), trains K Adam trials on a subset of MNIST-1D with
:func:`lrlab.study.fleet.train_fleet` (one fleet) and with :func:`train_one` one after the other,
both with one torch thread, in the same process, and prints the median wall times and their
ratio::

    python benchmarks/bench_fleet_vmap.py            # 16 trials, 2 epochs, 2000 examples, 3 repeats
    python benchmarks/bench_fleet_vmap.py --quick    # a smoke run (4 trials, 1 epoch, 400 examples)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from task_bn_dropout import BNDropoutCNN, make_task

from lrlab.schedules import constant
from lrlab.study.fleet import TrialSpec, path_description, train_fleet, train_one


class PlainCNN(nn.Module):
    """BNDropoutCNN's convolutions without BatchNorm and dropout (biases instead)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, width, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(width * 10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.unsqueeze(1)).flatten(1))


def _median_seconds(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_fleet_vmap", description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--subset", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.trials, a.epochs, a.subset, a.repeats = 4, 1, 400, 1
    for name in ("trials", "epochs", "subset", "repeats"):
        if getattr(a, name) < 1:
            print(f"bench_fleet_vmap: --{name} must be >= 1, got {getattr(a, name)}", file=sys.stderr)
            return 2
    torch.set_num_threads(1)
    base = make_task(subset=a.subset, epochs=a.epochs)
    trials = [TrialSpec(f"t{s}", constant(0.01), "adam", {}, seed=s) for s in range(a.trials)]
    epochs = f"{a.epochs} epoch{'s' if a.epochs > 1 else ''}"
    print(f"{a.trials} Adam trials, {epochs} of {base.steps_per_epoch} steps (batch {base.batch_size}), "
          f"MNIST-1D subset {a.subset}, 1 torch thread, median of {a.repeats}")
    print("| model | path | fleet | one at a time | fleet speed-up |")
    print("|---|---|---|---|---|")
    for label, model_fn in (("plain CNN", PlainCNN), ("CNN + BatchNorm + dropout", BNDropoutCNN)):
        task = base.replace(model_fn=model_fn)
        path = path_description(task, trials[0])[1]
        train_fleet(task, trials[:2], epochs=1)  # warm-up: first-call costs are not what is measured
        fleet = _median_seconds(lambda t=task: train_fleet(t, trials, epochs=a.epochs), a.repeats)
        alone = _median_seconds(lambda t=task: [train_one(t, tr, epochs=a.epochs) for tr in trials], a.repeats)
        print(f"| {label} | {path} | {fleet:.2f} s | {alone:.2f} s | {alone / fleet:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
