"""Adapters: lrlab schedules driving real optimizers. Import the one you need; this package imports
no framework itself.

* :mod:`lrlab.adapters.torch`: ``LRLabScheduler``, a ``torch.optim.lr_scheduler.LRScheduler`` that
  counts real optimizer updates (so skipped AMP steps and gradient-accumulation micro-steps do not
  advance it), with plateau control, per-group schedules, momentum/beta1 cycling and a JSON-able
  ``state_dict``. Works with plain loops, Lightning and the transformers ``Trainer``.
* :mod:`lrlab.adapters.lightning` / :mod:`lrlab.adapters.transformers`: ``LRLabCallback``, which
  feeds the scheduler's plateau nodes from a monitored metric once per real evaluation (not in
  Lightning's sanity check, not twice after a resume).
* :mod:`lrlab.adapters.keras`: Keras 3 ``LearningRateSchedule`` and callbacks.
* :mod:`lrlab.adapters.optax`: optax learning rates and a plateau transform.

All of them run on :class:`lrlab.schedules.ScheduleState`, the one stateful runner (step count plus
plateau controllers) defined next to the ``plateau`` node.
"""
