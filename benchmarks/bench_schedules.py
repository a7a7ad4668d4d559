"""What one warmup+cosine schedule costs in lrlab, next to torch's scheduler and optax, same run.

The schedule: a linear warmup from 1e-3 to 0.1 over 1,000 steps, then a cosine to 0 over 9,000:

* lrlab ``linear(0.001, 0.1, steps=1000) >> cosine(0.1, 0.0, steps=9000)``;
* torch ``SequentialLR(SGD, [LinearLR(start_factor=0.01, total_iters=1000),
  CosineAnnealingLR(T_max=9000)], milestones=[1000])``, advanced with ``scheduler.step()``;
* optax ``warmup_cosine_decay_schedule(0.001, 0.1, warmup_steps=1000, decay_steps=10000)``.

Measured: one scalar lr (a Python int step; torch: one ``step()``), and the lrs of 1e6 steps at
once (lrlab NumPy and jitted JAX, optax jitted; torch has no vectorized form, so its figure is one
``step()`` times 1e6, marked "extrapolated"). Each figure is the median of repeats; ratios are
against the baseline named in each group, measured in the same run. Also checked: the three
libraries give the same lrs over the first 10,000 steps (max abs difference printed).

Run: ``.venv/bin/python benchmarks/bench_schedules.py`` (about 20 s; ``make bench`` runs it too).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np

import lrlab

SPEC = "linear(0.001, 0.1, steps=1000) >> cosine(0.1, 0.0, steps=9000)"
N_VEC = 1_000_000
REPEATS = 7


def median_time(fn: Callable[[], object], *, number: int, repeats: int = REPEATS) -> float:
    """Median over ``repeats`` of the seconds one call of ``fn`` takes (timed ``number`` at a time)."""
    fn()  # warm up (and compile, for jitted functions)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times)


def fmt(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale:
            return f"{seconds / scale:8.2f} {unit}"
    return f"{seconds / 1e-9:8.2f} ns"


def main() -> None:
    import jax
    import jax.numpy as jnp
    import optax
    import torch

    torch.set_num_threads(1)
    s = lrlab.parse(SPEC)

    # -- the same curve in three libraries ------------------------------------------------------
    param = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = torch.optim.SGD([param], lr=0.1)
    sched = torch.optim.lr_scheduler.SequentialLR(
        opt,
        [torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=1000),
         torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=9000)],
        milestones=[1000],
    )  # fmt: skip
    opt.step()
    torch_lrs = []
    for _ in range(10_000):
        torch_lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    optax_fn = optax.warmup_cosine_decay_schedule(0.001, 0.1, warmup_steps=1000, decay_steps=10_000, end_value=0.0)
    with jax.enable_x64(True):
        optax_lrs = np.asarray(jax.jit(optax_fn)(jnp.arange(10_000, dtype=jnp.float64)))
    ours = s.values(10_000)
    print(f"schedule: {s}")
    print(f"agreement over 10,000 steps: max |lrlab - torch| = {np.max(np.abs(ours - np.asarray(torch_lrs))):.1e}, "
          f"max |lrlab - optax (float64)| = {np.max(np.abs(ours - optax_lrs)):.1e}")  # fmt: skip

    # -- one lr at a time -----------------------------------------------------------------------
    step = iter(range(10**9))
    lrlab_scalar = median_time(lambda: s(next(step) % 12_000), number=20_000)
    torch_step = median_time(sched.step, number=20_000)
    optax_eager = median_time(lambda: float(optax_fn(next(step) % 12_000)), number=300)
    optax_jit = jax.jit(optax_fn)
    optax_jitted = median_time(lambda: float(optax_jit(next(step) % 12_000)), number=2_000)
    lrlab_jit = jax.jit(lambda t: s(t))
    lrlab_jitted = median_time(lambda: float(lrlab_jit(next(step) % 12_000)), number=2_000)

    # -- 1e6 lrs at once ------------------------------------------------------------------------
    steps_np = np.arange(N_VEC, dtype=np.float64)
    steps_jnp = jnp.arange(N_VEC, dtype=jnp.float32)
    lrlab_numpy = median_time(lambda: s(steps_np), number=3)
    lrlab_jax_vec = median_time(lambda: lrlab_jit(steps_jnp).block_until_ready(), number=5)
    optax_vec = median_time(lambda: optax_jit(steps_jnp).block_until_ready(), number=5)

    rows = [
        ("one lr (scalar step)", "torch SequentialLR.step()", torch_step, [
            ("lrlab s(step), Python int", lrlab_scalar),
            ("lrlab jax.jit, scalar", lrlab_jitted),
            ("optax schedule(step), eager", optax_eager),
            ("optax jax.jit, scalar", optax_jitted),
        ]),
        (f"{N_VEC:,} lrs at once", "optax jax.jit, vector", optax_vec, [
            ("lrlab NumPy s(steps)", lrlab_numpy),
            ("lrlab jax.jit, vector", lrlab_jax_vec),
            ("torch 1e6 x step() (extrapolated)", torch_step * N_VEC),
        ]),
    ]  # fmt: skip
    print(f"\nmedian of {REPEATS} repeats; ratio = time / baseline (lower is faster)")
    print(f"{'':38} {'time':>11} {'per step':>11} {'ratio':>8}")
    for group, base_name, base, others in rows:
        per = N_VEC if "at once" in group else 1
        print(f"-- {group}")
        print(f"  {base_name + ' (baseline)':36} {fmt(base)} {fmt(base / per)} {1.0:8.2f}")
        for name, t in others:
            print(f"  {name:36} {fmt(t)} {fmt(t / per)} {t / base:8.2f}")


if __name__ == "__main__":
    main()
