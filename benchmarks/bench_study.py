"""Benchmark: the default study's trials through the fleet engine vs one-at-a-time training.

Both sides train the same trials (the default study grid: every default schedule x SGD and Adam
x 3 seeds on the MNIST-1D CNN, D2's default epochs; see ``lrlab.study.config``), measured in the
same run:

* **fleet**: :func:`lrlab.study.fleet.run_trials` (batched fleets over worker processes), wall
  time including worker start-up and task loading;
* **baseline**: the usual user code, one trial after another in this process with torch's default
  threads: a model, ``torch.optim``, ``torch.optim.lr_scheduler.LambdaLR`` of the schedule (plateau
  multipliers updated once per epoch), the study's evaluation protocol: the training loss and
  accuracy as running means of the epoch's minibatches, the validation set after every epoch, the
  test set after the last one (the same evaluation work as the fleets). By
  default it times one seed of every (schedule, optimizer) cell and scales the time to the full
  trial count (``--baseline all`` times every trial).

Prints both wall times and the speedup (target >= 3x on a 2-core CPU). Timings on a shared
machine are noisy: use ``--repeats`` (interleaved; the median ratio is reported).

    python benchmarks/bench_study.py                 # default study, CPU
    python benchmarks/bench_study.py --epochs 10     # shorter
    python benchmarks/bench_study.py --device cuda   # on a GPU machine
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def baseline_trial(task, spec, epochs: int, device: str) -> float:
    """Train one trial the usual way (LambdaLR); return its wall time in seconds."""
    from lrlab.schedules._plateau import ScheduleState
    from lrlab.study.fleet import epoch_order
    from lrlab.study.optimizers import make_optimizer

    t0 = time.perf_counter()
    x, y = task.x_train.to(device), task.y_train.to(device)
    xv, yv = task.x_val.to(device), task.y_val.to(device)
    xt, yt = task.x_test.to(device), task.y_test.to(device)
    torch.manual_seed(spec.seed)
    model = task.model_fn().to(device)
    opt = make_optimizer(spec.optimizer, model.parameters(), lr=1.0, **spec.optimizer_kwargs)
    st = ScheduleState(spec.schedule)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: st.schedule(step, st.state))
    n, bsz = x.shape[0], task.batch_size
    for epoch in range(epochs):
        order = epoch_order(spec.seed, epoch, n).to(device)
        model.train()
        loss_sum, correct = 0.0, 0
        for i in range(0, n, bsz):
            idx = order[i:i + bsz]
            out = model(x[idx])
            loss = F.cross_entropy(out, y[idx])
            loss_sum += loss.item() * idx.shape[0]
            correct += int((out.detach().argmax(1) == y[idx]).sum())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        metrics = {"train_loss": loss_sum / n, "train_acc": correct / n}
        with torch.no_grad():
            for name, xx, yy in (("val", xv, yv), ("test", xt, yt)):
                if name == "test" and epoch < epochs - 1:
                    continue
                out = model(xx)
                metrics[f"{name}_loss"] = float(F.cross_entropy(out, yy))
                metrics[f"{name}_acc"] = float((out.argmax(1) == yy).float().mean())
        if st.controllers:
            st.step = (epoch + 1) * math.ceil(n / bsz)
            st.observe(metrics[spec.plateau_metric])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the study's)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--workers", type=int, default=None, help="fleet worker processes (default: cores)")
    ap.add_argument("--max-fleet", type=int, default=None, help="most trials per fleet (default: run_trials')")
    ap.add_argument("--baseline", choices=("subset", "all"), default="subset",
                    help="time one seed per (schedule, optimizer) and scale (subset), or every trial")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved repeats (median ratio)")
    ap.add_argument("--task", default="mnist1d", help="mnist1d (CNN) or mnist1d_mlp")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_study: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2

    from lrlab.study.config import StudyConfig
    from lrlab.study.fleet import run_trials
    from lrlab.study.runner import plan_trials
    from lrlab.study.tasks import load_task

    cfg = StudyConfig(task=args.task)
    task = load_task(args.task)
    epochs = args.epochs or cfg.resolved_epochs(task.epochs)
    plans = plan_trials(cfg, epochs=epochs, steps_per_epoch=task.steps_per_epoch,
                        peak_lrs={n: task.peak_lr[n] for n in cfg.optimizers})
    specs = [p.spec for p in plans]
    first_seed = min(cfg.seeds)
    subset = specs if args.baseline == "all" else [s for s in specs if s.seed == first_seed]
    print(f"bench_study: {len(specs)} trials ({len(cfg.schedules)} schedules x {len(cfg.optimizers)} optimizers x "
          f"{len(cfg.seeds)} seeds), {args.task}, {epochs} epochs x {task.steps_per_epoch} steps, device {args.device}, "
          f"torch threads {torch.get_num_threads()}")
    fleet_times, base_times, ratios = [], [], []
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        results = run_trials(args.task, {}, specs, epochs=epochs, workers=args.workers, device=args.device,
                             max_fleet=args.max_fleet)
        fleet = time.perf_counter() - t0
        t_sub = sum(baseline_trial(task, s, epochs, args.device) for s in subset)
        base = t_sub * len(specs) / len(subset)
        fleet_times.append(fleet)
        base_times.append(base)
        ratios.append(base / fleet)
        acc = statistics.mean(r.final["val_acc"] for r in results if not r.diverged)
        scaled = "" if len(subset) == len(specs) else f" ({len(subset)} trials timed: {t_sub:.1f} s, scaled x{len(specs) / len(subset):g})"
        print(f"  repeat {rep + 1}: fleet run_trials {fleet:.1f} s | one-at-a-time LambdaLR {base:.1f} s{scaled} | "
              f"speedup {base / fleet:.2f}x | mean final val acc {acc:.3f}")
    print(f"fleet {statistics.median(fleet_times):.1f} s, baseline {statistics.median(base_times):.1f} s, "
          f"speedup {statistics.median(ratios):.2f}x (median of {args.repeats}; min {min(ratios):.2f}x, "
          f"max {max(ratios):.2f}x; target >= 3x on 2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
