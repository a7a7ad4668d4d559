"""A regression model in a study: the metric is a mean squared error, so the study selects with
``metric: val_mse`` (minimized: the default direction for names ending in ``mse``) and compares
the final runs on ``test_mse``. Run it from this directory::

    lrlab study --task train_regression:train --metric val_mse --epochs 2 --steps-per-epoch 8

A torch MLP fits ``y = sin(3x) + noise`` on [-1, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from lrlab.study.trainfn import Trial


def sine(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 2 - 1
    return x, torch.sin(3 * x) + 0.1 * torch.randn(n, 1, generator=g)


def train(trial: Trial) -> None:
    x, y = sine(256, seed=0)
    x_val, y_val = sine(128, seed=1)
    x_test, y_test = sine(128, seed=2)
    net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
    opt, sched = trial.torch_optimizer(net.parameters())
    batch = len(x) // trial.steps_per_epoch
    g = torch.Generator().manual_seed(trial.seed)
    for epoch in range(trial.epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(trial.steps_per_epoch):
            idx = order[i * batch:(i + 1) * batch]
            loss = nn.functional.mse_loss(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            metrics = {"val_mse": nn.functional.mse_loss(net(x_val), y_val).item()}
            if epoch == trial.epochs - 1:
                metrics["test_mse"] = nn.functional.mse_loss(net(x_test), y_test).item()
        trial.report(epoch, **metrics)
