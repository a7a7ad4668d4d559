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
tune: none
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
    assert "2 cells; 2 trials (1 seeds), 1 epochs of 2 steps" in text  # --epochs/--seeds override the file
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
        (["--lr-grid", "0.5,0,2"], "lr grid: expected a positive, finite number, got '0'"),
        (["--lr-grid", "1,nan"], "lr grid: expected a positive, finite number, got 'nan'"),
        (["--lr-grid", "1,-2"], "lr grid: expected a positive, finite number, got '-2'"),
        (["--tune", "none", "--lr-grid", "1,2"], "--lr-grid and --tune-seeds need tuning"),
        (["--tune", "bayes"], "--tune must be none or grid"),
        (["--tune-seeds", "0"], "--tune-seeds must be >= 1"),
        (["--format", "xml"], "--format must be table or json"),
        (["--device", "bogus", "--epochs", "1"], "device 'bogus' is not a torch device"),
        (["--out", "/proc/lrlab_cannot_write", "--epochs", "1"], "cannot write to the output directory"),
        (["--checkpoint-dir", " ", "--epochs", "1"], "checkpoint_dir must be a directory path, got ' '"),
        (["--checkpoint-dir", "/proc/lrlab_ck", "--epochs", "1"],
         "cannot write to the checkpoint directory '/proc/lrlab_ck'"),
        (["--config", "bad_kwargs.yaml"], "task_kwargs: task 'mnist1d' does not accept these arguments"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad_kwargs.yaml").write_text("task_kwargs: {subset: 100, nosuch: 1}\nepochs: 1\n")
    with pytest.raises(SystemExit) as e:
        main(["study", *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("lrlab: error: ") and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "source, message",
    [
        ("x = 1\n\ndef make(:\n", "cannot import module 'broken_task_syntax': SyntaxError: invalid syntax "
                                  "(broken_task_syntax.py, line 3)"),
        ("x = 1\nraise RuntimeError('no data here')\n",
         "cannot import module 'broken_task_raises': RuntimeError: no data here (broken_task_raises.py, line 2)"),
        ("import nopkg_xyz_inner\n", "cannot import module 'broken_task_imports': ModuleNotFoundError: "
                                     "No module named 'nopkg_xyz_inner' (broken_task_imports.py, line 1)"),
    ],
)
def test_a_task_module_that_fails_to_import_is_one_line_and_exit_2(source, message, capsys, tmp_path,
                                                                    monkeypatch):
    """A module that exists but fails while importing (a SyntaxError, an exception at import, a
    missing dependency) is named with the exception's type and line, not a traceback."""
    name = message.split("'")[1]
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as e:
        main(["study", "--task", f"{name}:make", "--epochs", "1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("lrlab: error: ") and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_subprocess_error_and_help():
    script = Path(sys.executable).parent / "lrlab"  # the installed console script
    lrlab = [str(script)] if script.is_file() else [sys.executable, "-c", "from lrlab.cli import main; main()"]
    bad = subprocess.run([*lrlab, "study", "--optimizers", "lion"], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("lrlab: error: ") and "unknown optimizer 'lion'" in bad.stderr
    helped = subprocess.run([*lrlab, "study", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert helped.returncode == 0
    for opt in ("--out", "--model", "--optimizers", "--schedules", "--seeds", "--epochs", "--workers", "--storage",
                "--config", "--task", "--data", "--device", "--peak-lr", "--fresh", "--tune", "--lr-grid", "--tune-seeds",
                "--format", "report"):
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
    assert ("toy, 2 schedules x 2 optimizers = 4 cells; tuning 20 trials (5 lrs x 1 tuning seed per cell), "
            "then 8 final trials (2 seeds), 2 epochs of 4 steps (batch 8)") in text
    sys.modules.pop("my_study_task", None)


def test_format_json_prints_one_document_on_stdout(tmp_path, capsys, monkeypatch):
    """Tuning wired from the CLI (--lr-grid, --tune-seeds); stdout holds only the JSON document."""
    import json

    import lrlab

    monkeypatch.chdir(tmp_path)
    main_args = ["study", "--out", "o[/b]", "--epochs", "1", "--seeds", "2", "--workers", "0", "--optimizers", "adam",
                 "--schedules", "constant,linear", "--lr-grid", "0.5,2", "--tune-seeds", "1", "--format", "json",
                 "--no-progress"]
    (tmp_path / "cfg.yaml").write_text("task_kwargs: {subset: 100}\n")
    with pytest.raises(SystemExit) as e:
        main([*main_args, "--config", "cfg.yaml"])
    assert e.value.code == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # exactly one JSON document, nothing else
    assert "lrlab study" in captured.err and "report:" in captured.err  # the human part went to stderr
    assert "o[/b]/report.html" in "".join(captured.err.split())  # rich markup in a path is printed as is
    assert doc["versions"]["lrlab"] == lrlab.__version__ and {"torch", "numpy", "python", "platform"} <= set(
        doc["versions"])
    assert doc["command"].startswith("lrlab study --out") and "--format json" in doc["command"]
    assert doc["config"]["tune"] == {"grid": [0.5, 2.0], "relative": True, "seeds": [0]}
    assert doc["config"]["seeds"] == [1000, 1001]
    line = "adam: fleet: mnist1d_cnn (hand-batched), up to 24 trials per fleet"
    assert doc["training_paths"] == [{"optimizer": "adam", "path": "mnist1d_cnn", "line": line}]
    assert line in captured.err  # printed before training
    assert f"how the trials trained: {line}" in (tmp_path / "o[/b]" / "report.html").read_text()
    assert line in (tmp_path / "o[/b]" / "interactive.html").read_text()
    assert len(doc["cells"]) == 2
    for cell in doc["cells"]:
        assert cell["optimizer"] == "adam" and cell["n_seeds"] == 2
        assert cell["lr_grid"] == pytest.approx([0.005, 0.02]) and cell["peak_lr"] in cell["lr_grid"]
        assert 0 <= cell["test_acc"]["mean"] <= 1 and 0 <= cell["val_acc"]["mean"] <= 1
    lin = doc["cells"][1]
    assert lin["schedule"] == "linear" and lin["p_holm"] == pytest.approx(lin["p"])  # one comparison: no adjustment
    assert (tmp_path / "o[/b]" / "report.html").is_file()


def test_report_docs_writes_the_readme_block(tmp_path):
    from lrlab.study.report import README_BEGIN, README_END, readme_block

    out = tmp_path / "o"
    runner = CliRunner()
    res = runner.invoke(app, ["study", "--out", str(out), "--epochs", "1", "--seeds", "1", "--workers", "0",
                              "--optimizers", "adam", "--schedules", "constant", "--lr-grid", "1,2",
                              "--no-progress", "--config", str(_tiny_cfg(tmp_path))])
    assert res.exit_code == 0, res.output
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{README_BEGIN}\n{README_END}\n")
    rep = runner.invoke(app, ["study", "report", "--out", str(out), "--docs", str(tmp_path / "docs"),
                              "--readme", str(readme)])
    assert rep.exit_code == 0, rep.output
    table = (tmp_path / "docs" / "table.txt").read_text()
    assert "constant" in table and "baseline" in table
    assert readme.read_text() == f"# x\n{readme_block(table)}\n"
    assert (tmp_path / "docs" / "lr_sensitivity.png").read_bytes()[:4] == b"\x89PNG"


def _tiny_cfg(tmp_path):
    p = tmp_path / "tiny_cfg.yaml"
    p.write_text("task_kwargs: {subset: 100}\n")
    return p


def test_a_task_too_small_for_a_validation_split_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "tiny_task_mod.py").write_text(
        "import torch\n"
        "from lrlab.study import Task\n"
        "def make():\n"
        "    x = torch.randn(2, 3)\n"
        "    y = torch.tensor([0, 1])\n"
        "    return Task('two', x, y, x, y, lambda: torch.nn.Linear(3, 2), batch_size=1, epochs=1,\n"
        "                peak_lr={'adam': 0.01})\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    with pytest.raises(SystemExit) as e:
        main(["study", "--task", "tiny_task_mod:make", "--optimizers", "adam", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "validation fraction of 0.2 leaves 0 validation and 2 training examples out of 2" in err
    sys.modules.pop("tiny_task_mod", None)


def test_a_study_config_with_a_yaml_alias_is_refused_in_one_line(tmp_path):
    """Study configs go through the same alias-free safe loader as schedule configs (no billion laughs)."""
    from lrlab.study.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("a: &x [1, 2]\nschedules: *x\n")
    with pytest.raises(ValueError, match="YAML aliases"):
        load_config(cfg)
