"""The torch examples run as real processes, and the lrs they applied equal the schedule.

Each example prints a final ``RESULT {...}`` line: the schedule text, the per-epoch metric trace it
fed to the plateau node, and the lr of every optimizer update (read in a step pre-hook). The lrs
must equal :func:`lrlab.schedules.simulate` on that schedule and trace: the plateau decisions and
the warmup/cosine values are recomputed here without torch, Lightning or transformers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lrlab
from lrlab.schedules._plateau import simulate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(name: str) -> tuple[str, dict]:
    env = {**os.environ, "PYTHONHASHSEED": "0", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, proc.stdout[-3000:]
    return proc.stdout, json.loads(lines[0][len("RESULT "):])


@pytest.mark.parametrize("name", [
    "torch_loop.py",
    pytest.param("lightning_trainer.py", marks=pytest.mark.slow),
    pytest.param("hf_trainer.py", marks=pytest.mark.slow),
])
def test_example_applies_the_schedule(name):
    out, result = _run(name)
    schedule = lrlab.parse(result["schedule"])
    spe, metrics, lrs = result["steps_per_epoch"], result["metrics"], result["lrs"]
    assert len(metrics) >= 5 and len(lrs) == len(metrics) * spe
    want = simulate(schedule, metrics, spe)
    np.testing.assert_allclose(lrs, want, rtol=1e-12, atol=1e-15)
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(0.1)  # warmup from 0 to the cosine's peak
    assert "epoch 0: lr 0.000000" in out
    if name == "torch_loop.py":  # its trace makes the plateau node cut the lr before the end
        ratio = np.asarray(lrs[1:]) / schedule.values(len(lrs))[1:]  # vs. the multiplier left at 1
        assert ratio[0] == pytest.approx(1.0) and ratio[-1] == pytest.approx(0.1)
