"""Your own torch model in a study: a CNN with BatchNorm and dropout, a DataLoader with augmentation.

The study calls :func:`train` once per trial (``lrlab study --task train_torch_cnn:train`` from
this directory, or ``run_study({"task": train, ...})``). ``trial.torch_optimizer`` builds the
study's optimizer with an :class:`lrlab.adapters.torch.LRLabScheduler` on the trial's schedule;
``trial.report`` records each epoch's validation metrics (and feeds plateau nodes) and, after the
last epoch, the test metrics the study compares.

Interruptions lose at most one epoch: ``trial.checkpoint(epoch, state)`` saves what the loop needs
to continue exactly (weights and BatchNorm statistics, optimizer, scheduler, and the random
states of the data order, augmentation and dropout) at each epoch end, and ``trial.restore()``
hands it back when the study is rerun after Ctrl-C; the resumed trial ends with the same numbers
as an uninterrupted one.

The data is synthetic so the example runs anywhere in seconds: 12x12 images of a horizontal (class
0) or vertical (class 1) bar at a random position, with noise. Augmentation (random flips and
noise) keeps the class, as augmentation should.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrlab.study.trainfn import Trial


def bars(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` noisy 1x12x12 images of one bar each; label 0 horizontal, 1 vertical."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    pos = torch.randint(2, 10, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, 12, 12, generator=g)
    for i in range(n):
        if y[i] == 0:
            x[i, 0, pos[i], 2:10] += 1.0
        else:
            x[i, 0, 2:10, pos[i]] += 1.0
    return x, y


def augment(x: torch.Tensor) -> torch.Tensor:
    """Random horizontal/vertical flips and fresh noise (a bar's orientation survives both)."""
    if torch.rand(()) < 0.5:
        x = x.flip(-1)
    if torch.rand(()) < 0.5:
        x = x.flip(-2)
    return x + 0.1 * torch.randn_like(x)


class Augmented(TensorDataset):
    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        x, y = super().__getitem__(i)
        return augment(x), y


def model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, 2),
    )


def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    net.eval()
    with torch.no_grad():
        out = net(x)
        return nn.functional.cross_entropy(out, y).item(), (out.argmax(1) == y).float().mean().item()


def train(trial: Trial) -> None:
    n = trial.kwargs.get("n_train", 256)
    x, y = bars(n, seed=0)
    x_val, y_val = bars(128, seed=1)
    x_test, y_test = bars(128, seed=2)
    batch = n // trial.steps_per_epoch  # the study's steps_per_epoch fixes the batch size
    order = torch.Generator().manual_seed(trial.seed)
    loader = DataLoader(Augmented(x, y), batch_size=batch, shuffle=True, drop_last=True, generator=order)
    net = model()  # the study seeded torch with trial.seed before calling train
    opt, sched = trial.torch_optimizer(net.parameters())
    state = trial.restore()  # None, or what the last trial.checkpoint saved before an interruption
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        order.set_state(state["order"])
        torch.set_rng_state(state["rng"])  # augmentation and dropout draw from torch's global generator
    for epoch in range(trial.start_epoch, trial.epochs):
        net.train()
        for xb, yb in loader:
            loss = nn.functional.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        val_loss, val_acc = evaluate(net, x_val, y_val)
        test = {}
        if epoch == trial.epochs - 1:  # the test set is read once, after training
            test_loss, test_acc = evaluate(net, x_test, y_test)
            test = {"test_loss": test_loss, "test_acc": test_acc}
        trial.report(epoch, val_loss=val_loss, val_acc=val_acc, **test)
        trial.checkpoint(epoch, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                                 "scheduler": sched.state_dict(), "order": order.get_state(),
                                 "rng": torch.get_rng_state()})
