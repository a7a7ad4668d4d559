"""A plain PyTorch loop driven by an lrlab schedule: linear warmup, cosine decay, plateau control.

Run it: ``python examples/torch_loop.py``. It trains a linear model on a synthetic regression task
for a few epochs and prints, per epoch, the lrs the optimizer actually used and the validation
loss fed to the plateau node; the last line is a JSON record (``RESULT {...}``) that the test
suite checks against ``lrlab.schedules.simulate`` (the same schedule and metric trace, no torch).

The three lines that matter::

    schedule = warmup(cosine(peak=0.1, end=1e-4, steps=...), steps=...) * plateau(...)
    scheduler = LRLabScheduler(optimizer, schedule)   # lr = schedule(updates so far)
    scheduler.step() after optimizer.step(); scheduler.step(val_loss) once per epoch
"""

from __future__ import annotations

import json

import torch

from lrlab.adapters.torch import LRLabScheduler
from lrlab.schedules import cosine, plateau, warmup

EPOCHS, STEPS_PER_EPOCH, BATCH = 12, 16, 32


def main() -> dict:
    torch.manual_seed(0)
    w_true = torch.randn(8, 1)
    x = torch.randn(STEPS_PER_EPOCH * BATCH, 8)
    y = x @ w_true + 0.1 * torch.randn(len(x), 1)
    x_val = torch.randn(256, 8)
    y_val = x_val @ w_true + 0.1 * torch.randn(len(x_val), 1)

    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)  # lr comes from the schedule
    # One epoch of warmup, then a cosine over the rest; durations in epochs resolve to steps.
    decay = cosine(peak=0.1, end=1e-4, steps=f"{EPOCHS - 1}ep")
    schedule = warmup(decay, steps="1ep") * plateau(patience=1, threshold=0.01)
    schedule = schedule.resolve(steps_per_epoch=STEPS_PER_EPOCH)
    scheduler = LRLabScheduler(optimizer, schedule)

    applied: list[float] = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: applied.append(opt.param_groups[0]["lr"]))
    metrics: list[float] = []
    print(f"schedule: {schedule}")
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(STEPS_PER_EPOCH):
            idx = perm[i * BATCH:(i + 1) * BATCH]
            loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()  # the lr for the next update
        model.eval()
        with torch.no_grad():
            val = torch.nn.functional.mse_loss(model(x_val), y_val).item()
        metrics.append(val)
        scheduler.step(val)  # feeds the plateau node (once per epoch)
        lrs = applied[-STEPS_PER_EPOCH:]
        print(f"epoch {epoch}: lr {lrs[0]:.6f} -> {lrs[-1]:.6f}  val_loss {val:.5f}  "
              f"plateau x{scheduler.states[0].state['plateau']:g}")
    result = {"schedule": str(schedule), "steps_per_epoch": STEPS_PER_EPOCH, "metrics": metrics, "lrs": applied}
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
