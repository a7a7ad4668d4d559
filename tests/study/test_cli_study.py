"""``lrlab study`` and ``lrlab study report`` through the real CLI (typer app, main() and a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lrlab.cli import app, main
from lrlab.study.storage import StudyStorage

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:torch.*")

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = """
task_kwargs: {subset: 200}
epochs: 3
seeds: 2
workers: 0
optimizers: {adam: 0.01}
schedules: [constant, "mine=warmup(linear(1.0, 0.0, steps=90%), steps=10%)"]
"""


def test_study_with_config_and_overrides_then_report(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML)
    out = tmp_path / "o"
    runner = CliRunner()
    res = runner.invoke(app, ["study", "--config", str(cfg), "--out", str(out), "--epochs", "1", "--seeds", "1",
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())  # rich wraps at the terminal width
    assert "2 trials, 1 epochs of 2 steps" in text  # --epochs/--seeds override the file
    assert "baseline" in res.output and "report:" in res.output
    st = StudyStorage(str(out / "study.db"), "lrlab")
    assert len(st.done_keys()) == 2
    assert {t.user_attrs["schedule_name"] for t in st.study.get_trials()} == {"constant", "mine"}
    again = runner.invoke(app, ["study", "--config", str(cfg), "--out", str(out), "--epochs", "1", "--seeds", "1",
                                "--no-progress"])
    assert again.exit_code == 0 and "2 trials already in" in " ".join(again.output.split())
    (out / "report.html").unlink()
    rep = runner.invoke(app, ["study", "report", "--out", str(out)])
    assert rep.exit_code == 0, rep.output
    assert (out / "report.html").is_file() and "baseline" in rep.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--optimizers", "sgd,lion"], "unknown optimizer 'lion'"),
        (["--schedules", "constant,bogus"], "unknown schedule name 'bogus'"),
        (["--peak-lr", "auto"], "peak_lr must be 'fixed' or 'find'"),
        (["--model", "gru"], "model must be 'cnn' or 'mlp'"),
        (["--config", "no/such.yaml"], "does not exist"),
        (["--seeds", "0"], "number of seeds must be >= 1"),
        (["--task", "nopkg_xyz.mod:make"], "cannot import module"),
        (["--data", "/no/such/dir"], "CIFAR-10 directory '/no/such/dir' does not exist"),
        (["--storage", "x.txt", "--epochs", "1"], "storage='x.txt'"),
        (["report", "--out", "/no/such/out"], "no study storage"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["study", *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("lrlab: error: ") and message in err and err.count("\n") == 1, err


def test_subprocess_error_and_help():
    script = Path(sys.executable).parent / "lrlab"  # the installed console script
    lrlab = [str(script)] if script.is_file() else [sys.executable, "-c", "from lrlab.cli import main; main()"]
    bad = subprocess.run([*lrlab, "study", "--optimizers", "lion"], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("lrlab: error: ") and "unknown optimizer 'lion'" in bad.stderr
    helped = subprocess.run([*lrlab, "study", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert helped.returncode == 0
    for opt in ("--out", "--model", "--optimizers", "--schedules", "--seeds", "--epochs", "--workers", "--storage",
                "--config", "--task", "--data", "--device", "--peak-lr", "--fresh", "report"):
        assert opt in helped.stdout, opt


def test_user_task_from_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "my_study_task.py").write_text(
        "import torch\n"
        "from lrlab.study import Task\n"
        "def make():\n"
        "    g = torch.Generator().manual_seed(0)\n"
        "    x = torch.randn(40, 6, generator=g)\n"
        "    y = (x[:, 0] > 0).long()\n"
        "    return Task('toy', x, y, x[:10], y[:10], lambda: torch.nn.Linear(6, 2), batch_size=8, epochs=2,\n"
        "                peak_lr={'sgd': 0.1, 'adam': 0.01})\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    res = CliRunner().invoke(app, ["study", "--task", "my_study_task:make", "--schedules", "constant,linear",
                                   "--seeds", "2", "--workers", "0", "--out", str(tmp_path / "o"), "--no-progress"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    # no validation set given: 20 % of the 40 training examples become one, so 32 / 8 = 4 steps an epoch
    assert "task toy has no validation set: using a seeded 20 % of its training set (8 examples" in text
    assert "toy, 2 schedules x 2 optimizers x 2 seeds = 8 trials, 2 epochs of 4 steps (batch 8)" in text
    sys.modules.pop("my_study_task", None)
