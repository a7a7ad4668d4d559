"""Lightning: LRLabCallback feeds the plateau once per real validation (never in the sanity check,
never twice after a resume), a REAL ``fit(ckpt_path=...)`` from an epoch-end and a mid-epoch
checkpoint gives the uninterrupted run's lrs and weights, and every ``"interval"`` gives the same
per-update lrs."""

from __future__ import annotations

import warnings

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lrlab.adapters.lightning import LRLabCallback, LRLabResumeWarning
from lrlab.adapters.torch import LRLabScheduler
from lrlab.schedules import constant, cosine, plateau, warmup
from lrlab.schedules._plateau import simulate

# Lightning 2.6's pytree use under torch 2.13 (not ours)
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")

SPE, EPOCHS = 6, 5  # steps per epoch (48 rows, batch 8), epochs
SCHEDULE = warmup(cosine(peak=0.2, end=0.01, steps=SPE * EPOCHS - 4), steps=4) * plateau(
    patience=0, factor=0.5, threshold=0.3)  # the loss must fall 30 % per epoch or the lr halves


class Batches:
    """The training batches in a fixed order, stateful (``state_dict``/``load_state_dict``) so that
    Lightning saves the position in the epoch and a mid-epoch resume continues with the next batch
    (a plain DataLoader would restart the epoch's data: Lightning's behaviour, not the scheduler's)."""

    def __init__(self, batches: list) -> None:
        self.batches, self.yielded, self._start = batches, 0, 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        start, self._start = self._start, 0
        for i in range(start, len(self.batches)):
            self.yielded = i + 1
            yield self.batches[i]

    def state_dict(self) -> dict:
        return {"yielded": self.yielded}

    def load_state_dict(self, state: dict) -> None:
        self._start = state["yielded"] % len(self.batches)


def _data():
    g = torch.Generator().manual_seed(0)
    x, xv = torch.randn(48, 4, generator=g), torch.randn(32, 4, generator=g)
    w = torch.randn(4, 1, generator=g)
    y = x @ w + 0.3 * torch.randn(48, 1, generator=g)
    val = TensorDataset(xv, xv @ w + 0.3 * torch.randn(32, 1, generator=g))
    return Batches([(x[i:i + 8], y[i:i + 8]) for i in range(0, 48, 8)]), DataLoader(val, batch_size=16)


class Regressor(L.LightningModule):
    def __init__(self, schedule=SCHEDULE, interval: str | None = "step", seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Linear(4, 1)
        self.schedule, self.interval = schedule, interval

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y), on_epoch=True)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.0)
        sched = LRLabScheduler(opt, self.schedule)
        if self.interval is None:  # Lightning's default: interval "epoch"
            return [opt], [sched]
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": self.interval}}


class Record(L.Callback):
    """The lr every optimizer update used (a pre-hook registered after the scheduler's) and the
    val_loss of every real validation."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.val: list[float] = []

    def on_train_start(self, trainer, pl_module):
        trainer.optimizers[0].register_step_pre_hook(lambda o, a, k: self.lrs.append(o.param_groups[0]["lr"]))

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.val.append(float(trainer.callback_metrics["val_loss"]))


def _fit(tmp, model, *, epochs=EPOCHS, ckpt_path=None, checkpoints=(), feed=True, sanity=2):
    rec = Record()
    callbacks = [rec, *checkpoints] + ([LRLabCallback(monitor="val_loss")] if feed else [])
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=bool(checkpoints), default_root_dir=tmp,
                        num_sanity_val_steps=sanity, callbacks=callbacks)
    trainer.fit(model, *_data(), ckpt_path=ckpt_path)
    return rec, trainer


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()


def test_plateau_is_fed_once_per_validation_and_never_in_the_sanity_check(tmp_path):
    model = Regressor()
    rec, _ = _fit(tmp_path, model)  # default num_sanity_val_steps=2: the sanity check runs
    assert len(rec.val) == EPOCHS and len(rec.lrs) == EPOCHS * SPE
    np.testing.assert_allclose(rec.lrs, simulate(SCHEDULE, rec.val, SPE), rtol=1e-12, atol=0)
    sched = model.trainer.lr_scheduler_configs[0].scheduler
    c = sched.states[0].controllers["plateau"]
    assert c.num_observed == EPOCHS and c.num_reductions >= 1  # the plateau did cut


def test_resume_from_an_epoch_end_and_a_mid_epoch_checkpoint_equals_the_uninterrupted_run(tmp_path):
    ends = ModelCheckpoint(dirpath=tmp_path / "ends", filename="{epoch}-{step}", save_top_k=-1)
    mid = ModelCheckpoint(dirpath=tmp_path / "mid", filename="{step}", save_top_k=-1, every_n_train_steps=9)
    full = Regressor()
    rec, _ = _fit(tmp_path / "full", full, checkpoints=[ends, mid])
    assert full.trainer.lr_scheduler_configs[0].scheduler.states[0].controllers["plateau"].num_reductions >= 1

    for ckpt, done in [(tmp_path / "ends" / "epoch=1-step=12.ckpt", 12), (tmp_path / "ends" / "epoch=3-step=24.ckpt", 24),
                       (tmp_path / "mid" / "step=9.ckpt", 9), (tmp_path / "mid" / "step=27.ckpt", 27)]:
        resumed = Regressor(seed=1)  # other initial weights: everything must come from the checkpoint
        again, trainer = _fit(tmp_path / f"r{done}", resumed, ckpt_path=str(ckpt))
        assert again.lrs == rec.lrs[done:], ckpt.name  # bit for bit
        assert _weights(resumed) == _weights(full), ckpt.name
        feed = next(c for c in trainer.callbacks if isinstance(c, LRLabCallback))
        # the count went on from the checkpoint's: no validation was replayed or lost
        assert feed.observations == feed.scheduler.states[0].controllers["plateau"].num_observed == EPOCHS


def test_a_checkpoint_between_an_epochs_last_batch_and_its_validation_misses_that_validation(tmp_path):
    # Lightning's own behaviour (documented in lrlab.adapters.lightning): resuming from a checkpoint
    # saved at the epoch's last training batch skips that epoch's validation, so the plateau (like
    # torch's ReduceLROnPlateau or EarlyStopping) never sees it. The epoch-end checkpoints above
    # (ModelCheckpoint's default, saved after validation) are exact.
    mid = ModelCheckpoint(dirpath=tmp_path / "mid", filename="{step}", save_top_k=-1, every_n_train_steps=SPE)
    rec, _ = _fit(tmp_path / "full", Regressor(), checkpoints=[mid])
    with warnings.catch_warnings(record=True) as caught:  # Lightning warns about its own callbacks, too
        warnings.simplefilter("always")
        again, trainer = _fit(tmp_path / "r", Regressor(seed=1), ckpt_path=str(tmp_path / "mid" / "step=12.ckpt"))
    ours = [str(w.message) for w in caught if issubclass(w.category, LRLabResumeWarning)]
    assert len(ours) == 1 and "saved at step 12, after the last batch of epoch 1 but before its validation" in ours[0]
    feed = next(c for c in trainer.callbacks if isinstance(c, LRLabCallback))
    assert len(rec.val) == EPOCHS and len(again.val) == EPOCHS - 2  # epochs 2, 3, 4; not 1
    assert feed.observations == EPOCHS - 1


@pytest.mark.parametrize("interval", ["step", "epoch", None])
def test_every_interval_gives_every_update_the_schedule(tmp_path, interval):
    # "epoch" (and Lightning's default, a bare [scheduler] list) calls scheduler.step() once per
    # epoch; the scheduler writes the lr before every optimizer update anyway.
    s = warmup(cosine(peak=0.2, end=0.01, steps=SPE * 3 - 4), steps=4)
    model = Regressor(s, interval=interval)
    rec, _ = _fit(tmp_path, model, epochs=3, feed=False)
    np.testing.assert_allclose(rec.lrs, s.values(3 * SPE), rtol=1e-12, atol=0)
    reference = Regressor(s, interval="step")
    _fit(tmp_path / "ref", reference, epochs=3, feed=False)
    assert _weights(model) == _weights(reference)


class _Monitored(Regressor):
    def configure_optimizers(self):
        out = super().configure_optimizers()
        out["lr_scheduler"]["monitor"] = "val_loss"
        return out


@pytest.mark.parametrize("model,match", [
    (Regressor(constant(0.1)), "has no plateau node"),
    (_Monitored(), "monitor='val_loss'.*remove 'monitor'"),
])
def test_callback_refuses_a_setup_it_cannot_feed_at_fit_start(tmp_path, model, match):
    with pytest.raises(ValueError, match=match):
        _fit(tmp_path, model, epochs=1)


def test_callback_names_the_logged_metrics_when_monitor_is_missing(tmp_path):
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                        callbacks=[LRLabCallback(monitor="val_acc")])
    with pytest.raises(ValueError, match=r"monitor='val_acc' was not logged .*logged: val_loss"):
        trainer.fit(Regressor(), *_data())


class _Replay(L.Callback):
    """Replays LRLabCallback's hook for a validation it has already seen (at the same global step):
    after each validation, and at the start of a resumed run (the checkpoint's step)."""

    def on_validation_end(self, trainer, pl_module):
        self._feed(trainer).on_validation_end(trainer, pl_module)

    def on_train_start(self, trainer, pl_module):
        if trainer.global_step:  # resumed
            trainer.callback_metrics["val_loss"] = torch.tensor(123.0)  # would count as a bad epoch
            self._feed(trainer).on_validation_end(trainer, pl_module)

    @staticmethod
    def _feed(trainer):
        return next(c for c in trainer.callbacks if isinstance(c, LRLabCallback))


def test_a_replayed_validation_is_not_fed_twice_even_across_a_resume(tmp_path):
    ends = ModelCheckpoint(dirpath=tmp_path / "ends", filename="{epoch}-{step}", save_top_k=-1)
    rec, trainer = _fit(tmp_path / "full", Regressor(), checkpoints=[ends, _Replay()])
    assert _Replay._feed(trainer).observations == EPOCHS
    np.testing.assert_allclose(rec.lrs, simulate(SCHEDULE, rec.val, SPE), rtol=1e-12, atol=0)
    again, trainer = _fit(tmp_path / "r", Regressor(seed=1), ckpt_path=str(tmp_path / "ends" / "epoch=1-step=12.ckpt"),
                          checkpoints=[_Replay()])  # replays step 12's validation: the checkpoint says it was fed
    assert again.lrs == rec.lrs[12:] and _Replay._feed(trainer).observations == EPOCHS
