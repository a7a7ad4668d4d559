"""Scaling figures: fleet throughput against fleet size K and against model width, on one core or a GPU.

For each point, trains a fleet of K Adam trials of the MNIST-1D CNN (2 epochs of 1,000 examples,
batch 100, validation on 250 examples after every epoch, test on 250 after the last: the default
study's 4:1 train:evaluation ratio) with one torch thread, and one trial the usual way
(``torch.optim`` + ``LambdaLR``, the benchmark's baseline) with the same data. Throughput is
trial-steps (one trial's training step with its share of evaluation) per CPU second of this
process: CPU time, not wall time, because the machines are shared (see benchmarks.md).
Points are measured ``--repeats`` times, interleaved, and the median is kept.

With ``--device cuda`` both sides train on the GPU and throughput is per *wall* second (the CPU
only launches kernels there), K runs to 4096 and the figure is ``docs/perf/scaling_gpu.png``.

Writes ``docs/perf/scaling.png`` (``--out``) and prints the two tables (Markdown).

    python benchmarks/scaling.py                       # K = 1..128, widths 8..100
    python benchmarks/scaling.py --ks 1 8 --widths 25  # a quick look
    python benchmarks/scaling.py --device cuda         # on a GPU machine
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _task(width: int):  # type: ignore[no-untyped-def]
    from lrlab.study.tasks import ConvBase, load_task

    task = load_task("mnist1d", subset=1000, val_subset=250, test_subset=250)
    return task.replace(model_fn=lambda: ConvBase(channels=width, linear_in=5 * width))


def _specs(task, k: int):  # type: ignore[no-untyped-def]
    from lrlab.schedules import constant
    from lrlab.study.fleet import TrialSpec

    return [TrialSpec(f"t{i}", constant(task.peak_lr["adam"]), "adam", {}, seed=i) for i in range(k)]


def _clock(device: str) -> float:
    """CPU seconds of this thread on a CPU; wall seconds after the GPU's queue drains on a GPU."""
    if device == "cpu":
        return time.thread_time()
    torch.cuda.synchronize()
    return time.perf_counter()


def fleet_rate(task, k: int, epochs: int, device: str = "cpu") -> float:  # type: ignore[no-untyped-def]
    """Trial-steps per CPU second (GPU: per wall second) of a fleet of ``k``."""
    from lrlab.study.fleet import train_fleet

    c0 = _clock(device)
    train_fleet(task, _specs(task, k), epochs=epochs, device=device)
    return k * epochs * task.steps_per_epoch / (_clock(device) - c0)


def single_rate(task, epochs: int, device: str = "cpu") -> float:  # type: ignore[no-untyped-def]
    """Trial-steps per CPU second (GPU: per wall second) of one trial trained the usual way."""
    from bench_study import baseline_trial

    c0 = _clock(device)
    baseline_trial(task, _specs(task, 1)[0], epochs, device)
    return epochs * task.steps_per_epoch / (_clock(device) - c0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=None,
                    help="fleet sizes (default 1..128; cuda: 1..4096)")
    ap.add_argument("--widths", type=int, nargs="+", default=[8, 16, 25, 50, 100])
    ap.add_argument("--width-k", type=int, default=16, help="fleet size of the width sweep")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out", default=None, help="figure path (default docs/perf/scaling.png; cuda: scaling_gpu.png)")
    args = ap.parse_args(argv)
    gpu = args.device != "cpu"
    if gpu and not torch.cuda.is_available():
        print(f"scaling: --device {args.device} but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.ks is None:
        args.ks = [1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096] if gpu else [1, 2, 4, 8, 16, 24, 32, 64, 128]
    args.out = args.out or str(ROOT / "docs/perf" / ("scaling_gpu.png" if gpu else "scaling.png"))
    if min(args.ks + args.widths + [args.width_k, args.epochs, args.repeats]) < 1:
        print("scaling: every size, width, --epochs and --repeats must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    from lrlab.study.fleet import keep_freed_memory

    keep_freed_memory()  # the allocator setting of a run_trials worker
    med = statistics.median

    base = _task(25)
    dev = args.device
    _ = fleet_rate(base, 2, 1, dev), single_rate(base, 1, dev)  # warm-up: kernels, allocator
    by_k: dict[int, list[float]] = {k: [] for k in args.ks}
    single_k: list[float] = []
    tasks = {w: _task(w) for w in args.widths}
    by_w: dict[int, list[float]] = {w: [] for w in args.widths}
    single_w: dict[int, list[float]] = {w: [] for w in args.widths}
    for _ in range(args.repeats):  # interleaved: every point once per round
        single_k.append(single_rate(base, args.epochs, dev))
        for k in args.ks:
            by_k[k].append(fleet_rate(base, k, args.epochs, dev))
        for w in args.widths:
            single_w[w].append(single_rate(tasks[w], args.epochs, dev))
            by_w[w].append(fleet_rate(tasks[w], args.width_k, args.epochs, dev))
    one = med(single_k)
    unit = "wall second" if gpu else "CPU second"
    where = torch.cuda.get_device_name() if gpu else "1 thread"
    print(f"scaling: MNIST-1D CNN, Adam, {args.epochs} epochs x {base.steps_per_epoch} steps, {where}, "
          f"median of {args.repeats}; trial-steps per {unit}")
    print("\n| fleet size K | fleet | vs one at a time |\n|---|---|---|")
    print(f"| one at a time | {one:.0f} | 1.00x |")
    for k in args.ks:
        print(f"| {k} | {med(by_k[k]):.0f} | {med(by_k[k]) / one:.2f}x |")
    print(f"\n| width (channels) | one at a time | fleet of {args.width_k} | speedup |\n|---|---|---|---|")
    for w in args.widths:
        s, f = med(single_w[w]), med(by_w[w])
        print(f"| {w} | {s:.0f} | {f:.0f} | {f / s:.2f}x |")

    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(args.ks, [med(by_k[k]) for k in args.ks], "o-", label="fleet of K")
    a.axhline(one, color="gray", ls="--", label="one at a time (torch.optim)")
    a.set_xscale("log", base=2)
    a.set_xlabel("fleet size K (trials trained together)")
    a.set_ylabel(f"trial-steps per {unit}")
    a.set_title(f"MNIST-1D CNN (25 channels), {torch.cuda.get_device_name() if gpu else 'one core'}")
    a.legend()
    a.grid(alpha=0.3)
    b.plot(args.widths, [med(by_w[w]) / med(single_w[w]) for w in args.widths], "o-")
    b.axhline(1.0, color="gray", ls="--")
    b.set_xscale("log")
    b.set_xticks(args.widths, [str(w) for w in args.widths])
    b.set_xlabel("CNN width (channels per conv layer)")
    b.set_ylabel(f"fleet of {args.width_k} / one at a time")
    b.set_title("speedup against model width" + ("" if gpu else " (per core)"))
    b.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
