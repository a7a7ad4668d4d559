"""Benchmark: the default study's trials through the fleet engine vs one-at-a-time training.

All three ways train the same trials (the default study grid: every default schedule x SGD and
Adam x 3 seeds on the MNIST-1D CNN, D2's default epochs; see ``lrlab.study.config``), measured in
the same run, interleaved:

* **fleet**: :func:`lrlab.study.fleet.run_trials` (batched fleets over worker processes), wall
  time including worker start-up and task loading;
* **baseline**: the usual user code, one trial after another in this process with torch's default
  threads: a model, ``torch.optim``, ``torch.optim.lr_scheduler.LambdaLR`` of the schedule (plateau
  multipliers updated once per epoch), the study's evaluation protocol: the training loss and
  accuracy as running means of the epoch's minibatches, the validation set after every epoch, the
  test set after the last one (the same evaluation work as the fleets). By
  default it times one seed of every (schedule, optimizer) cell and scales the time to the full
  trial count (``--baseline all`` times every trial);
* **peers**: the best thing a user does instead: the same one-at-a-time loop in N single-thread
  processes side by side (N = usable cores; what Optuna ``n_jobs=N`` or joblib gives), timed over
  the same trials as the baseline and scaled the same way, except the pool's start-up (spawn,
  imports, task loading), measured alone in the same repeat and counted once.

Prints the three wall times and both ratios (targets on a 2-core CPU: fleets >= 3x the peers,
>= 5x the baseline). Timings on a shared machine are noisy: use ``--repeats`` (interleaved; the
median of each is reported).

    python benchmarks/bench_study.py                 # default study, CPU
    python benchmarks/bench_study.py --repeats 3     # what the README reports
    python benchmarks/bench_study.py --quick         # seconds: a smoke run (1 epoch, 4 cells)
    python benchmarks/bench_study.py --device cuda   # on a GPU machine
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

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


_PEER_TASK: Any = None


def _peer_init(task_ref: str, task_kwargs: dict[str, Any]) -> None:
    """A peer process: one torch thread, the task loaded once."""
    global _PEER_TASK
    torch.set_num_threads(1)
    from lrlab.study.tasks import load_task

    _PEER_TASK = load_task(task_ref, **task_kwargs)


def _peer_trial(spec_dict: dict[str, Any], epochs: int, device: str) -> float:
    from lrlab.study.fleet import TrialSpec

    return baseline_trial(_PEER_TASK, TrialSpec.from_dict(spec_dict), epochs, device)


def _peer_ready(_: int) -> int:
    time.sleep(0.2)  # long enough that every worker of the pool takes one
    return 0


def peers(task_ref: str, task_kwargs: dict[str, Any], specs: list, epochs: int, device: str, n: int) -> float:
    """Wall time of ``specs`` trained one at a time by ``n`` single-thread processes side by side
    (``specs`` empty: the pool's start-up alone, every worker started and its task loaded)."""
    import multiprocessing as mp

    t0 = time.perf_counter()
    with ProcessPoolExecutor(n, mp_context=mp.get_context("spawn"), initializer=_peer_init,
                             initargs=(task_ref, task_kwargs)) as pool:
        list(pool.map(_peer_ready, range(n)))
        list(pool.map(_peer_trial, [s.to_dict() for s in specs], [epochs] * len(specs), [device] * len(specs)))
    return time.perf_counter() - t0


def _cpu(who: int) -> float:
    """CPU seconds (user + system) used so far by this process or its reaped children."""
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the study's)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--workers", type=int, default=None, help="fleet worker processes (default: cores)")
    ap.add_argument("--peers", type=int, default=None, help="peer processes (default: cores)")
    ap.add_argument("--max-fleet", type=int, default=None, help="most trials per fleet (default: run_trials')")
    ap.add_argument("--baseline", choices=("subset", "all"), default="subset",
                    help="time one seed per (schedule, optimizer) and scale (subset), or every trial")
    ap.add_argument("--trials", type=int, default=None,
                    help="only the first N (schedule, optimizer) cells of the grid, all seeds (default: all)")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved repeats (median ratio)")
    ap.add_argument("--subset", type=int, default=None, help="train on the first N examples only (default: all)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run in seconds: as --epochs 1 --trials 2 --subset 400")
    ap.add_argument("--task", default="mnist1d", help="mnist1d (CNN) or mnist1d_mlp")
    ap.add_argument("--no-one-process", action="store_true",
                    help="skip the one-process baseline (fleets against the peers only: on a busy machine its "
                         "2-thread loop spin-waits and takes many times longer)")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.trials, args.subset = args.epochs or 1, args.trials or 2, args.subset or 400
    for name in ("epochs", "trials", "repeats", "peers", "workers", "subset"):
        v = getattr(args, name)
        if v is not None and v < (0 if name == "workers" else 1):
            print(f"bench_study: --{name} must be >= 1, got {v}", file=sys.stderr)
            return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_study: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2

    from lrlab.study.config import StudyConfig
    from lrlab.study.fleet import _usable_cores, run_trials
    from lrlab.study.runner import plan_trials
    from lrlab.study.tasks import load_task

    cfg = StudyConfig(task=args.task)
    task_kwargs = {} if args.subset is None else {"subset": args.subset}
    task = load_task(args.task, **task_kwargs)
    epochs = args.epochs or cfg.resolved_epochs(task.epochs)
    plans = plan_trials(cfg, epochs=epochs, steps_per_epoch=task.steps_per_epoch,
                        peak_lrs={n: task.peak_lr[n] for n in cfg.optimizers})
    specs = [p.spec for p in plans]
    cells = list(dict.fromkeys((s.schedule.to_config().__repr__(), s.optimizer) for s in specs))
    if args.trials is not None:
        keep = set(cells[: args.trials])
        specs = [s for s in specs if (s.schedule.to_config().__repr__(), s.optimizer) in keep]
    first_seed = min(cfg.seeds)
    subset = specs if args.baseline == "all" else [s for s in specs if s.seed == first_seed]
    scale = len(specs) / len(subset)
    n_peers = args.peers or _usable_cores()
    print(f"bench_study: {len(specs)} trials ({len(specs) // len(cfg.seeds)} (schedule, optimizer) cells x "
          f"{len(cfg.seeds)} seeds), {args.task}, {epochs} epochs x {task.steps_per_epoch} steps, device {args.device}, "
          f"baseline torch threads {torch.get_num_threads()}, {n_peers} peer processes x 1 thread"
          + ("" if scale == 1 else f"; one-at-a-time paths time {len(subset)} trials (one seed) and scale x{scale:g}"))
    paths = ["fleets", "peers"] + ([] if args.no_one_process else ["base"])
    wall: dict[str, list[float]] = {k: [] for k in paths}
    cpu: dict[str, list[float]] = {k: [] for k in paths}
    kids, me = resource.RUSAGE_CHILDREN, resource.RUSAGE_SELF
    for rep in range(args.repeats):
        c0, t0 = _cpu(kids), time.perf_counter()
        results = run_trials(args.task, task_kwargs, specs, epochs=epochs, workers=args.workers, device=args.device,
                             max_fleet=args.max_fleet)
        wall["fleets"].append(time.perf_counter() - t0)
        cpu["fleets"].append(_cpu(kids) - c0)
        # the pool's start-up (spawn, import torch, load the task) is paid once, not once per
        # scaled share: measure it alone and scale only the rest
        c0 = _cpu(kids)
        w_start = peers(args.task, task_kwargs, [], epochs, args.device, n_peers)
        c_start, c0 = _cpu(kids) - c0, _cpu(kids)
        w_all = peers(args.task, task_kwargs, subset, epochs, args.device, n_peers)
        c_all = _cpu(kids) - c0
        wall["peers"].append(w_start + max(0.0, w_all - w_start) * scale)
        cpu["peers"].append(c_start + max(0.0, c_all - c_start) * scale)
        if "base" in paths:
            c0 = _cpu(me)
            wall["base"].append(sum(baseline_trial(task, s, epochs, args.device) for s in subset) * scale)
            cpu["base"].append((_cpu(me) - c0) * scale)
        acc = statistics.mean(r.final["val_acc"] for r in results if not r.diverged)
        f, p = wall["fleets"][-1], wall["peers"][-1]
        one = f"one process {wall['base'][-1]:.1f} s ({wall['base'][-1] / f:.2f}x) | " if "base" in paths else ""
        print(f"  repeat {rep + 1}: fleets {f:.1f} s | {n_peers} peers {p:.1f} s ({p / f:.2f}x) | {one}"
              f"CPU s {' / '.join(f'{cpu[k][-1]:.1f}' for k in paths)} | mean final val acc {acc:.3f}")
    med = statistics.median

    def ratio(d: dict[str, list[float]], k: str) -> str:
        r = [a / f for a, f in zip(d[k], d["fleets"])]
        return f"{med(r):.2f}x" + ("" if len(r) == 1 else f" ({min(r):.2f}-{max(r):.2f})")

    workers = args.workers if args.workers is not None else n_peers
    print(f"\nmedian of {args.repeats} interleaved repeat(s), {len(specs)} trials, {epochs} epochs "
          "(CPU seconds: user + system of all processes; they resist noise from other jobs on the machine):")
    print("| way to train them | wall time | CPU time | fleets are faster, wall | CPU |")
    print("|---|---|---|---|---|")
    rows = [("fleets", f"lrlab fleets (run_trials, {workers} workers x 1 thread)"),
            ("peers", f"one at a time, {n_peers} single-thread processes side by side (target >= 3x)"),
            ("base", f"one at a time, one process, {torch.get_num_threads()} threads (target >= 5x)")]
    for k, label in rows:
        if k not in paths:
            continue
        print(f"| {label} | {med(wall[k]):.1f} s | {med(cpu[k]):.1f} s | {ratio(wall, k)} | {ratio(cpu, k)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
