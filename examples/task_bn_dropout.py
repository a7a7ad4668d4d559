"""Your own torch model as a built-in-style Task: BatchNorm and dropout, trained in fleets.

A task builder returns an :class:`lrlab.study.Task` (data tensors, a ``model_fn``, batch size,
epochs, peak lrs); the study then trains its trials the built-in way, many at once in fleets
through ``torch.vmap``: each trial keeps and updates its own BatchNorm running statistics, and
draws its dropout masks from its own generator (seeded with the trial's seed), so a trial's
numbers do not depend on which trials share its fleet and equal those of the trial trained alone.
The study prints, per optimizer, which path its trials took::

    cd examples
    lrlab study --task task_bn_dropout:make_task --optimizers sgd,adam --schedules constant,linear \\
        --seeds 2 --tune none --epochs 2
    # sgd: fleet: vmap (per-trial BatchNorm statistics, per-trial dropout streams), up to 24 trials per fleet

Run as a script, it does the same from Python (``run_study``) on a small subset of MNIST-1D and
prints a final ``RESULT {...}`` line.
"""

from __future__ import annotations

import json
import tempfile

from torch import nn

from lrlab.study import Task
from lrlab.study.tasks import load_task


class BNDropoutCNN(nn.Module):
    """A small 1-d CNN for MNIST-1D's 40-sample signals: conv + BatchNorm + ReLU twice, dropout."""

    def __init__(self, width: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, width, 5, stride=2, padding=2, bias=False), nn.BatchNorm1d(width), nn.ReLU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm1d(width), nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(width * 10, 10)

    def forward(self, x):  # x: (batch, 40)
        return self.head(self.features(x.unsqueeze(1)).flatten(1))


def make_task(subset: int = 2000, epochs: int = 2, width: int = 16, dropout: float = 0.1) -> Task:
    """MNIST-1D (its first ``subset`` training examples) with :class:`BNDropoutCNN`."""
    base = load_task("mnist1d", subset=subset, test_subset=500, val_subset=500)
    return base.replace(name="mnist1d_bn_dropout", model_fn=lambda: BNDropoutCNN(width, dropout),
                        fleet_model=None, epochs=epochs, peak_lr={"sgd": 0.1, "adam": 0.01})


def main(out: str) -> dict:
    from lrlab.study import run_study

    res = run_study({"task": "task_bn_dropout:make_task", "optimizers": ["sgd", "adam"],
                     "schedules": ["constant", "linear"], "seeds": 2, "tune": "none", "workers": 0,
                     "out": out}, progress=False, report=False)
    return {"training_paths": [p["line"] for p in res.info["training_paths"]],
            "test_acc": {f"{r.schedule_name}/{r.optimizer}/{r.seed}": r.final["test_acc"] for r in res.records}}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print("RESULT " + json.dumps(main(tmp)))
