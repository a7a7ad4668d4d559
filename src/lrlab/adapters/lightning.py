"""Lightning adapter: feed an :class:`~lrlab.adapters.torch.LRLabScheduler`'s plateau nodes from a
monitored metric, once per real validation.

The scheduler itself is returned from ``configure_optimizers`` as usual; the lr of every update is
right whatever its ``"interval"`` (the scheduler writes it before each optimizer step). What
Lightning cannot do for lrlab is feed the metric: a scheduler entry with ``"monitor"`` is stepped
with the metric at every interval, and calling ``observe(val_loss)`` in
``on_validation_epoch_end`` also runs during the sanity check (the untrained model's loss) and, for
some checkpoints, again for the same validation after ``fit(ckpt_path=...)``. :class:`LRLabCallback`
does it right:

* it reads ``trainer.callback_metrics[monitor]`` in ``on_validation_end`` (after every
  ``self.log(..., on_epoch=True)`` value of the validation is reduced, and before
  ``ModelCheckpoint``, which Lightning runs last, saves: the checkpoint holds the observation);
* never during the sanity check, ``trainer.validate()`` or ``trainer.test()``;
* at most once per ``trainer.global_step``, and that step is in its ``state_dict`` (saved in the
  checkpoint), so a validation replayed at the step of the checkpoint it resumed from is not fed
  twice.

The plateau state lives in the scheduler's ``state_dict``, which Lightning checkpoints with the
other schedulers (plain JSON).

One limit is Lightning's: a checkpoint saved after an epoch's last training batch but before its
validation (``ModelCheckpoint(every_n_train_steps=...)`` landing on that step) resumes without
that validation, so the plateau never sees it (nor would ``ReduceLROnPlateau`` or
``EarlyStopping``). The callback then warns (:class:`LRLabResumeWarning`) at the start of training.
Checkpoints saved after validation (``ModelCheckpoint``'s default) and mid-epoch ones resume
exactly.

>>> import lightning as L, torch
>>> from lrlab.adapters.torch import LRLabResumeWarning, LRLabScheduler, check_feed, require_plateau
>>> from lrlab.schedules import constant, plateau
>>> class Model(L.LightningModule):
...     def configure_optimizers(self):
...         opt = torch.optim.SGD(self.parameters(), lr=0.0)
...         scheduler = LRLabScheduler(opt, constant(0.1) * plateau(patience=2))
...         return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
>>> callback = LRLabCallback(monitor="val_loss")   # Trainer(callbacks=[callback])
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import lightning as L
import torch

from lrlab.adapters.torch import LRLabResumeWarning, LRLabScheduler, check_feed, require_plateau

__all__ = ["LRLabCallback", "LRLabResumeWarning"]

_FORMAT = "lrlab.lightning/1"


class LRLabCallback(L.Callback):
    """Feed ``monitor`` to the plateau nodes of the ``LRLabScheduler`` returned by ``configure_optimizers``.

    Args:
        monitor: the logged metric to watch (``"val_loss"``: whatever the module logs with
            ``self.log(monitor, ..., on_epoch=True)`` during validation). The plateau node's
            ``mode`` says whether lower or higher is better.
        scheduler: the scheduler to feed; by default the one ``LRLabScheduler`` among the
            Trainer's schedulers (an error when there are none or several).

    Raises ``ValueError`` at the start of ``fit`` when there is no ``LRLabScheduler``, when its
    schedule has no ``plateau`` node, or when its scheduler entry also has ``"monitor"`` (Lightning
    would feed the metric a second time); after a validation, when ``monitor`` was not logged
    (naming the metrics that were).
    """

    def __init__(self, monitor: str = "val_loss", scheduler: LRLabScheduler | None = None) -> None:
        check_feed(monitor, scheduler, "val_loss")
        self.monitor = monitor
        self._given = scheduler
        self.scheduler: LRLabScheduler | None = scheduler
        self.observed_at: int | None = None  # trainer.global_step of the last observation
        self.observations = 0
        self._restored = False  # whether load_state_dict ran (a resume)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        found = [c for c in trainer.lr_scheduler_configs if isinstance(c.scheduler, LRLabScheduler)]
        if self._given is None:
            if len(found) != 1:
                raise ValueError(
                    f"LRLabCallback: configure_optimizers returned {len(found)} LRLabScheduler(s); return "
                    "exactly one (or pass scheduler=)"
                )
            self.scheduler = found[0].scheduler  # type: ignore[assignment]
        sched = self.scheduler
        assert sched is not None
        for c in found:
            if c.scheduler is sched and c.monitor is not None:
                raise ValueError(
                    f"LRLabCallback: the lr_scheduler entry has monitor={c.monitor!r}, so Lightning would also "
                    "call scheduler.step(metric) at every interval; remove 'monitor' from the entry"
                )
        require_plateau(sched, self.monitor)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After a resume: warn when the checkpoint was saved between an epoch's last batch and its
        validation, which Lightning does not run again (the plateau misses that observation)."""
        step = int(trainer.global_step)
        if not self._restored or step == 0 or self.observed_at == step:
            return
        batches = trainer.num_training_batches
        if not isinstance(batches, int) or batches <= 0 or trainer.val_check_interval != 1.0:
            return
        per_epoch = math.ceil(batches / max(1, trainer.accumulate_grad_batches))
        every = trainer.check_val_every_n_epoch
        if step % per_epoch == 0 and (every is None or (step // per_epoch) % every == 0):
            warnings.warn(
                f"LRLabCallback: the checkpoint was saved at step {step}, after the last batch of epoch "
                f"{step // per_epoch - 1} but before its validation, which Lightning does not run on resume: the "
                f"plateau misses {self.monitor!r} of that epoch (as ReduceLROnPlateau and EarlyStopping would). "
                "Resume from checkpoints saved after validation (ModelCheckpoint's default) to continue exactly",
                LRLabResumeWarning,
                stacklevel=1,
            )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self.scheduler is None:
            return
        step = int(trainer.global_step)
        if self.observed_at == step:  # this validation was fed before the checkpoint we resumed from
            return
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            raise ValueError(
                f"LRLabCallback: monitor={self.monitor!r} was not logged in this validation (logged: "
                f"{', '.join(sorted(metrics)) or 'nothing'}); log it with self.log({self.monitor!r}, value, "
                "on_epoch=True) in validation_step"
            )
        value = metrics[self.monitor]
        metric = float(value.item() if isinstance(value, torch.Tensor) else value)
        try:
            self.scheduler.observe(metric)  # a NaN raises, or is skipped with on_nan='skip'
        except ValueError as e:
            raise ValueError(f"LRLabCallback: {self.monitor}={metric} at step {step}: {e}") from None
        self.observed_at = step
        self.observations += 1

    def state_dict(self) -> dict[str, Any]:
        return {"format": _FORMAT, "monitor": self.monitor, "observed_at": self.observed_at,
                "observations": self.observations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict) or state_dict.get("format") != _FORMAT:
            raise ValueError(f"LRLabCallback: not an LRLabCallback state ({_FORMAT!r} expected), got {state_dict!r}")
        at = state_dict["observed_at"]
        self.observed_at = None if at is None else int(at)
        self.observations = int(state_dict["observations"])
        self._restored = True
