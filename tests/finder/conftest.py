"""Finder test setup: `tests/finder` on sys.path (so `finder_tasks:tiny_task` imports like a user's task module) and one torch thread per test."""

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The finder's tests train tiny models: one intra-op thread is faster than two, and under
    ``pytest -n 2`` it keeps two workers from fighting over the 2 cores. Restored after each test."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
