"""An lrlab schedule in a Lightning ``Trainer``: per-step schedule, per-epoch plateau.

Run it: ``python examples/lightning_trainer.py``. ``configure_optimizers`` returns the
``LRLabScheduler`` with ``"interval": "step"``, so Lightning calls ``scheduler.step()`` after every
optimizer update (the scheduler counts real updates itself, so accumulation and skipped steps are
handled). The plateau node is fed once per validation epoch with ``scheduler.observe(val_loss)``:
a single Lightning scheduler entry cannot be stepped per batch *and* given a monitored metric per
epoch, and lrlab does not need it to be.

The last line is a JSON record (``RESULT {...}``) that the test suite checks against
``lrlab.schedules.simulate`` on the same schedule and validation-loss trace.
"""

from __future__ import annotations

import json
import tempfile

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lrlab.adapters.torch import LRLabScheduler
from lrlab.schedules import cosine, plateau, warmup

EPOCHS, BATCH, N_TRAIN = 6, 32, 384  # 12 steps per epoch


class Regressor(L.LightningModule):
    def __init__(self, steps_per_epoch: int) -> None:
        super().__init__()
        self.net = torch.nn.Linear(8, 1)
        decay = cosine(peak=0.1, end=1e-4, steps=f"{EPOCHS - 1}ep")
        self.schedule = (warmup(decay, steps="1ep") * plateau(patience=1, threshold=0.01)).resolve(
            steps_per_epoch=steps_per_epoch)
        self.applied: list[float] = []
        self.val_losses: list[float] = []
        self._batch_losses: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.applied.append(self.optimizers().param_groups[0]["lr"])  # the lr this update uses
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self._batch_losses.append(torch.nn.functional.mse_loss(self.net(x), y, reduction="sum"))

    def on_validation_epoch_end(self):
        n = len(self.trainer.val_dataloaders.dataset)
        val = float(torch.stack(self._batch_losses).sum() / n)
        self._batch_losses.clear()
        if self.trainer.sanity_checking:
            return
        self.val_losses.append(val)
        self.lr_schedulers().observe(val)  # the plateau node, once per epoch

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.0, momentum=0.9)
        scheduler = LRLabScheduler(optimizer, self.schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def main() -> dict:
    torch.manual_seed(0)
    w = torch.randn(8, 1)
    x, x_val = torch.randn(N_TRAIN, 8), torch.randn(256, 8)
    train = TensorDataset(x, x @ w + 0.1 * torch.randn(N_TRAIN, 1))
    val = TensorDataset(x_val, x_val @ w + 0.1 * torch.randn(256, 1))
    steps_per_epoch = N_TRAIN // BATCH
    model = Regressor(steps_per_epoch)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp,
        )
        trainer.fit(model, DataLoader(train, batch_size=BATCH, shuffle=True), DataLoader(val, batch_size=128))
    for epoch, v in enumerate(model.val_losses):
        lrs = model.applied[epoch * steps_per_epoch:(epoch + 1) * steps_per_epoch]
        print(f"epoch {epoch}: lr {lrs[0]:.6f} -> {lrs[-1]:.6f}  val_loss {v:.5f}")
    result = {"schedule": str(model.schedule), "steps_per_epoch": steps_per_epoch,
              "metrics": model.val_losses, "lrs": model.applied}
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
