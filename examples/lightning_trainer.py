"""An lrlab schedule in a Lightning ``Trainer``: per-step schedule, plateau fed by ``val_loss``.

Run it: ``python examples/lightning_trainer.py``. ``configure_optimizers`` returns the
``LRLabScheduler`` (any ``"interval"`` gives the same lrs: the scheduler writes the lr before every
optimizer update and counts real updates itself, so accumulation and skipped steps are handled).
``LRLabCallback(monitor="val_loss")`` feeds the plateau node the logged ``val_loss`` once per real
validation: not during the sanity check, not twice after ``fit(ckpt_path=...)``, its state in the
checkpoint. Don't call ``observe`` from ``on_validation_epoch_end`` yourself, and don't put
``"monitor"`` in the scheduler entry (Lightning would feed it at every interval).

The last line is a JSON record (``RESULT {...}``) that the test suite checks against
``lrlab.schedules.simulate`` on the same schedule and validation-loss trace.
"""

from __future__ import annotations

import json
import tempfile

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lrlab.adapters.lightning import LRLabCallback
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

    def on_fit_start(self):  # record the lr every optimizer update really uses (after the scheduler wrote it)
        self.optimizers().optimizer.register_step_pre_hook(lambda o, a, k: self.applied.append(o.param_groups[0]["lr"]))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y), on_epoch=True)  # LRLabCallback reads it

    def on_validation_end(self):
        if not self.trainer.sanity_checking:
            self.val_losses.append(float(self.trainer.callback_metrics["val_loss"]))

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
            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp,
            callbacks=[LRLabCallback(monitor="val_loss")],  # the sanity check runs and is not observed
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
