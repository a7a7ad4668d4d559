"""The Keras and optax examples run, and the lrs they print are the schedule's (with plateau)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lrlab.schedules import from_config
from lrlab.schedules._plateau import PlateauController, simulate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(name: str, **env: str) -> dict:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, proc.stdout[-2000:]
    assert "epoch 0: lr" in proc.stdout
    return json.loads(lines[0][len("RESULT "):])


@pytest.mark.keras
def test_keras_fit_example():
    out = _run("keras_fit.py", KERAS_BACKEND="torch")
    schedule = from_config(out["schedule"])
    expected = simulate(schedule, out["val_loss"], steps_per_epoch=out["steps_per_epoch"])
    # Keras computes the lr in float32: compare within 1e-5 of the curve's peak (see tests/adapters/test_keras.py)
    np.testing.assert_allclose(out["lrs"], expected, rtol=0, atol=1e-5 * expected.max())
    unscaled = schedule.values(len(expected))
    assert (np.asarray(out["lrs"]) < 0.75 * unscaled).any()  # the plateau callback did reduce


@pytest.mark.jax
def test_optax_loop_example():
    out = _run("optax_loop.py")
    schedule, spe = from_config(out["schedule"]), out["steps_per_epoch"]
    c = PlateauController(from_config(out["node"]))
    scales = []
    for k, _ in enumerate(out["losses"]):
        if (k + 1) % spe == 0:  # optax convention: the epoch's last update already uses the new scale
            c.observe(float(np.mean(out["losses"][k + 1 - spe:k + 1])))
        scales.append(c.scale)
    np.testing.assert_allclose(out["scales"], scales, rtol=1e-6)
    applied_before = [1.0, *scales[:-1]]  # current_lr is read before the update observes its loss
    expected = schedule.values(len(scales)) * np.asarray(applied_before)
    np.testing.assert_allclose(out["lrs"], expected, rtol=1e-6)
    assert min(scales) < 1.0
