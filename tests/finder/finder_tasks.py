"""A tiny study task for the finder's CLI tests: ``--task finder_tasks:tiny_task``.

The tests put ``tests/finder`` on ``sys.path`` so that :func:`lrlab.study.tasks.load_task` can
import this module by name, exactly as it imports a user's ``package.module:function``.
"""

from __future__ import annotations

import torch

from lrlab.study.tasks import Task


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def tiny_task(n: int = 256) -> Task:
    """256 random 8-d points labelled by the argmax of a fixed linear map (3 classes), a small MLP."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = (x @ torch.randn(8, 3, generator=g)).argmax(1)
    return Task(
        name="tiny",
        x_train=x,
        y_train=y,
        x_test=x[:64],
        y_test=y[:64],
        model_fn=_model,
        batch_size=32,
        epochs=2,
        peak_lr={"sgd": 0.1, "adam": 0.01},
    )
