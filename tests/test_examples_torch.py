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


VMAP_LINE = "fleet: vmap (per-trial BatchNorm statistics, per-trial dropout streams), up to 24 trials per fleet"


def test_task_with_batchnorm_and_dropout_trains_in_fleets():
    """examples/task_bn_dropout.py: a Task whose model has BatchNorm and dropout goes through
    the study's vmap fleets (and says so), and learns (chance is 10 %)."""
    _, result = _run("task_bn_dropout.py")
    assert result["training_paths"] == [f"sgd: {VMAP_LINE}", f"adam: {VMAP_LINE}"]
    accs = result["test_acc"]
    assert len(accs) == 8 and min(accs.values()) > 0.2
    assert len(set(accs.values())) > 4  # seeds and schedules really differ


def test_task_with_batchnorm_and_dropout_from_the_command_line(tmp_path, monkeypatch):
    """The README's command, run from examples/: the same fleets, and a stored trial has the
    numbers of the same trial trained alone in Python (a fleet does not depend on its mates)."""
    from typer.testing import CliRunner

    from lrlab.cli import app
    from lrlab.schedules import constant
    from lrlab.study.fleet import TrialSpec, train_fleet
    from lrlab.study.storage import StudyStorage
    from lrlab.study.tasks import load_task

    monkeypatch.chdir(EXAMPLES)
    try:
        res = CliRunner().invoke(app, ["study", "--task", "task_bn_dropout:make_task", "--task-kwargs", "subset=500",
                                       "--optimizers", "adam", "--schedules", "constant", "--seeds", "2",
                                       "--tune", "none", "--workers", "0", "--out", str(tmp_path), "--no-progress"])
        assert res.exit_code == 0, res.output
        assert f"adam: {VMAP_LINE}" in " ".join(res.output.split())

        records = list(StudyStorage(str(tmp_path / "study.db"), "lrlab").records().values())
        assert len(records) == 2
        rec = records[0]
        task = load_task("task_bn_dropout:make_task", subset=500)
        spe = task.steps_per_epoch
        alone = train_fleet(task, [TrialSpec("x", constant(0.01), "adam", rec.optimizer_kwargs, rec.seed)],
                            epochs=2)[0]
        # float32 and vmap's products (no bit-for-bit guarantee on the generic path): equal to rounding
        assert rec.final["val_loss"] == pytest.approx(alone.final["val_loss"], rel=1e-5)
        assert abs(rec.final["test_acc"] - alone.final["test_acc"]) <= 0.01
        assert rec.epochs == 2 and spe == 5
    finally:
        sys.modules.pop("task_bn_dropout", None)
