"""The study: train many trials (schedule x optimizer x seed) and report which schedule is best.

Public API (imported lazily, so ``import lrlab.study`` alone does not import torch, Optuna or
matplotlib):

* :func:`run_study` (``lrlab study``) and :func:`rebuild_report` (``lrlab study report``),
  returning a :class:`StudyResult` (:meth:`StudyResult.to_pandas` for data frames;
  :func:`load_results` for the same frames from a stored study);
* :class:`StudyConfig` (also from YAML/TOML/JSON with :func:`load_config`),
  :data:`DEFAULT_SCHEDULES` (the default grid, as text specs in multiples of the peak lr);
* :class:`Task` and :func:`load_task` (MNIST-1D, CIFAR-10, or your own ``package.module:function``);
* your own training loop in any framework: a function ``train(trial)`` that gets a :class:`Trial`
  (:mod:`lrlab.study.trainfn`; :func:`training_function` marks one whose first parameter is not
  named ``trial``).

>>> from lrlab.study import StudyConfig
>>> StudyConfig().seeds, StudyConfig(tune=None).seeds  # final seeds: fresh ones when the lr is tuned
((1000, 1001, 1002), (0, 1, 2))
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Task": "lrlab.study.tasks",
    "load_task": "lrlab.study.tasks",
    "StudyConfig": "lrlab.study.config",
    "OptimizerChoice": "lrlab.study.config",
    "DEFAULT_SCHEDULES": "lrlab.study.config",
    "load_config": "lrlab.study.config",
    "run_study": "lrlab.study.runner",
    "rebuild_report": "lrlab.study.runner",
    "StudyResult": "lrlab.study.runner",
    "load_results": "lrlab.study.export",
    "Trial": "lrlab.study.trainfn",
    "training_function": "lrlab.study.trainfn",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lrlab.study' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
