"""The study: train many trials (schedule x optimizer x seed) and report which schedule is best.

Public API (imported lazily, so ``import lrlab.study`` alone does not import torch):
:class:`Task` and :func:`load_task` (:mod:`lrlab.study.tasks`).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Task": "lrlab.study.tasks",
    "load_task": "lrlab.study.tasks",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lrlab.study' has no attribute {name!r}")
