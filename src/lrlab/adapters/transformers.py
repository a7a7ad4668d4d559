"""🤗 transformers adapter: feed an :class:`~lrlab.adapters.torch.LRLabScheduler`'s plateau nodes
from each evaluation of a ``Trainer``.

The scheduler goes in through ``Trainer(optimizers=(optimizer, scheduler))``; the Trainer checkpoints
its ``state_dict`` (``scheduler.pt``: plain JSON, so ``torch.load(weights_only=True)`` reads it) and
restores it on ``train(resume_from_checkpoint=...)``, plateau state included. The Trainer feeds
metrics only to torch's own ``ReduceLROnPlateau``; :class:`LRLabCallback` feeds lrlab's:

* ``metrics[monitor]`` of every evaluation made *during* ``train()`` (a ``trainer.evaluate()``
  after training does not change the lr of a finished run);
* at most once per ``state.global_step``, so the same step's evaluation is never fed twice.

The Trainer evaluates before it saves in the same step, so a checkpoint holds that step's
observation and a resumed run neither replays nor loses it. With ``eval_strategy="epoch"`` and
``save_strategy="steps"`` a checkpoint on an epoch's last step is saved *before* the epoch-end
evaluation and a run resumed from it skips that evaluation (the Trainer's behaviour, which its own
``ReduceLROnPlateau`` and early stopping share); evaluate and save on the same strategy (both
``"steps"`` or both ``"epoch"``) to resume exactly; the callback warns (``LRLabResumeWarning``)
when a run resumes from such a checkpoint.

>>> callback = LRLabCallback(monitor="eval_loss")   # Trainer(..., callbacks=[callback])
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from transformers import TrainerCallback

from lrlab.adapters.torch import LRLabResumeWarning, LRLabScheduler, check_feed, require_plateau

__all__ = ["LRLabCallback", "LRLabResumeWarning"]


def _unwrap(scheduler: Any) -> Any:
    """The LRLabScheduler inside accelerate's ``AcceleratedScheduler`` (or the object itself)."""
    for _ in range(4):
        if isinstance(scheduler, LRLabScheduler):
            return scheduler
        scheduler = getattr(scheduler, "scheduler", None)
    return scheduler


class LRLabCallback(TrainerCallback):
    """Feed ``metrics[monitor]`` of each evaluation during ``train()`` to the scheduler's plateau nodes.

    Args:
        monitor: the metric key (``"eval_loss"``; the Trainer prefixes ``eval_``; with several eval
            datasets ``"eval_<name>_loss"``). The plateau node's ``mode`` says whether lower or
            higher is better.
        scheduler: the scheduler to feed; by default the Trainer's ``lr_scheduler`` (an error at
            the start of ``train()`` when it is not an ``LRLabScheduler``).

    Raises ``ValueError`` at the start of ``train()`` when there is no ``LRLabScheduler`` or its
    schedule has no ``plateau`` node; after an evaluation none of whose datasets' metrics had
    ``monitor`` (at the next step, or at the end of training, naming the keys there were).
    """

    def __init__(self, monitor: str = "eval_loss", scheduler: LRLabScheduler | None = None) -> None:
        check_feed(monitor, scheduler, "eval_loss")
        self.monitor = monitor
        self.scheduler = scheduler
        self.observed_at: int | None = None  # state.global_step of the last observation
        self.observations = 0
        self._training = False
        self._unmatched: tuple[int, list[str]] | None = None  # (step, metric keys) of evaluations without monitor

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.scheduler is None:
            found = _unwrap(kwargs.get("lr_scheduler"))
            if not isinstance(found, LRLabScheduler):
                raise ValueError(
                    f"LRLabCallback: the Trainer's lr_scheduler is {type(found).__name__}, not an LRLabScheduler; "
                    "pass Trainer(optimizers=(optimizer, LRLabScheduler(optimizer, schedule)))"
                )
            self.scheduler = found
        require_plateau(self.scheduler, self.monitor)
        self._training = True
        self._warn_if_resumed_before_evaluation(args, state)

    def _warn_if_resumed_before_evaluation(self, args: Any, state: Any) -> None:
        """A run resumed from a checkpoint on an epoch's last step that has no evaluation at that
        step (``eval_strategy="epoch"`` with ``save_strategy="steps"``) skips that evaluation."""
        step = int(state.global_step)
        strategy = getattr(args.eval_strategy, "value", args.eval_strategy)
        if not step or strategy != "epoch" or not state.max_steps or not state.num_train_epochs:
            return
        per_epoch = math.ceil(state.max_steps / state.num_train_epochs)
        evaluated = {h.get("step") for h in state.log_history if self.monitor in h}
        if step % per_epoch == 0 and step not in evaluated:
            warnings.warn(
                f"LRLabCallback: the checkpoint was saved at step {step}, the end of epoch {step // per_epoch - 1}, "
                "before its evaluation, which the Trainer does not run on resume: the plateau misses "
                f"{self.monitor!r} of that epoch. Evaluate and save on the same strategy to continue exactly",
                LRLabResumeWarning,
                stacklevel=1,
            )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._check_unmatched()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._training = False
        self._check_unmatched()

    def _check_unmatched(self) -> None:
        if self._unmatched is not None and self._unmatched[0] != self.observed_at:
            step, keys = self._unmatched
            self._unmatched = None
            raise ValueError(
                f"LRLabCallback: monitor={self.monitor!r} was in none of the metrics of the evaluation at step {step} "
                f"(there were: {', '.join(keys) or 'none'})"
            )
        self._unmatched = None

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                    **kwargs: Any) -> None:
        if not self._training or self.scheduler is None:
            return
        step = int(state.global_step)
        if self.observed_at == step:
            return
        metrics = metrics or {}
        if self.monitor not in metrics:
            # With several eval datasets each has its own on_evaluate call; the monitor is in one of
            # them. Remember the keys and complain only if no call of this step had it.
            keys = self._unmatched[1] if self._unmatched and self._unmatched[0] == step else []
            self._unmatched = (step, sorted({*keys, *metrics}))
            return
        try:
            self.scheduler.observe(float(metrics[self.monitor]))
        except ValueError as e:
            raise ValueError(f"LRLabCallback: {self.monitor}={metrics[self.monitor]} at step {step}: {e}") from None
        self.observed_at = step
        self.observations += 1
