"""An lrlab schedule in a transformers ``Trainer``, with a small custom ``nn.Module`` (no downloads).

Run it: ``python examples/hf_trainer.py``. The ``LRLabScheduler`` goes in through
``Trainer(optimizers=(optimizer, scheduler))``; the Trainer calls ``scheduler.step()`` after each
optimizer update, and the scheduler counts updates that really happened (skipped mixed-precision
steps and accumulation micro-batches don't advance it) and writes the lr before every update. The
Trainer feeds metrics only to torch's own ``ReduceLROnPlateau``, so
``lrlab.adapters.transformers.LRLabCallback(monitor="eval_loss")`` feeds the plateau node at each
evaluation during ``train()`` (here once per epoch), at most once per step; the plateau state is
in the scheduler's ``state_dict``, which the Trainer checkpoints and restores on resume.

The last line is a JSON record (``RESULT {...}``) that the test suite checks against
``lrlab.schedules.simulate`` on the same schedule and eval-loss trace.
"""

from __future__ import annotations

import json
import tempfile

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from lrlab.adapters.torch import LRLabScheduler
from lrlab.adapters.transformers import LRLabCallback
from lrlab.schedules import cosine, plateau, warmup

EPOCHS, BATCH, N_TRAIN = 6, 32, 384  # 12 steps per epoch


class Regressor(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(8, 1)

    def forward(self, x, labels=None):
        pred = self.net(x)
        out = {"logits": pred}
        if labels is not None:
            out["loss"] = torch.nn.functional.mse_loss(pred, labels)
        return out


class Rows(torch.utils.data.Dataset):
    def __init__(self, x, y) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class RecordEvals(TrainerCallback):
    """Keep each evaluation's eval_loss (for the printout and the test)."""

    def __init__(self) -> None:
        self.metrics: list[float] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.metrics.append(metrics["eval_loss"])


def main() -> dict:
    torch.manual_seed(0)
    w = torch.randn(8, 1)
    x, x_val = torch.randn(N_TRAIN, 8), torch.randn(256, 8)
    train = Rows(x, x @ w + 0.1 * torch.randn(N_TRAIN, 1))
    val = Rows(x_val, x_val @ w + 0.1 * torch.randn(256, 1))
    steps_per_epoch = N_TRAIN // BATCH

    model = Regressor()
    decay = cosine(peak=0.1, end=1e-4, steps=f"{EPOCHS - 1}ep")
    schedule = (warmup(decay, steps="1ep") * plateau(patience=1, threshold=0.01)).resolve(steps_per_epoch=steps_per_epoch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    scheduler = LRLabScheduler(optimizer, schedule)
    applied: list[float] = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: applied.append(opt.param_groups[0]["lr"]))
    feed = RecordEvals()

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH,
            per_device_eval_batch_size=128, eval_strategy="epoch", save_strategy="no",
            logging_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
            dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                          optimizers=(optimizer, scheduler), callbacks=[LRLabCallback(monitor="eval_loss"), feed])
        trainer.train()
    for epoch, v in enumerate(feed.metrics):
        lrs = applied[epoch * steps_per_epoch:(epoch + 1) * steps_per_epoch]
        print(f"epoch {epoch}: lr {lrs[0]:.6f} -> {lrs[-1]:.6f}  eval_loss {v:.5f}")
    result = {"schedule": str(schedule), "steps_per_epoch": steps_per_epoch, "metrics": feed.metrics, "lrs": applied}
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
