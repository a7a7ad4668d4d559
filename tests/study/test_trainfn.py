"""Training functions (your own model, any framework) in a study: the Trial API, plateau feeding,
selection on a declared metric and direction, failures stored with a reason, workers, and the
one task loader behind configs, the CLI and the Python API."""

from __future__ import annotations

import dataclasses
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from lrlab.cli import main
from lrlab.schedules import constant, plateau
from lrlab.study import StudyConfig, Task, run_study
from lrlab.study.config import parse_task_kwargs
from lrlab.study.report import results_document, table_rows
from lrlab.study.runner import rebuild_report, select_all, study_title
from lrlab.study.storage import StudyStorage
from lrlab.study.tasks import import_ref
from lrlab.study.trainfn import (
    Trial,
    TrialDiverged,
    default_direction,
    is_training_function,
    run_one,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# A toy "model": gradient descent on f(w) = 5 ||w - 1||^2 with the study's torch optimizer, so the
# outcome depends on the lr (sgd with momentum 0.9 diverges for lr > 0.38). Seeds select the bad
# behaviours of `train_bad`.
MODULE = '''
import math, os
import torch


def _fit(trial):
    w = torch.zeros(3, requires_grad=True)
    opt, sched = trial.torch_optimizer([w])
    for epoch in range(trial.epochs):
        for _ in range(trial.steps_per_epoch):
            loss = 5 * ((w - 1) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        f = float(5 * ((w.detach() - 1) ** 2).sum())
        extra = {"test_acc": math.exp(-f) * 0.99} if epoch == trial.epochs - 1 else {}
        trial.report(epoch, val_loss=f, val_acc=math.exp(-f) if math.isfinite(f) else f, **extra)


def train_quad(trial):
    _fit(trial)


def train_probe(trial):
    """Reports what it was given, as metrics."""
    for epoch in range(trial.epochs):
        trial.report(epoch, val_acc=0.5, seen_peak=trial.peak_lr, seen_lr0=trial.schedule(0),
                     seen_total=trial.total_steps, seen_momentum=trial.optimizer_kwargs["momentum"],
                     seen_scale=trial.kwargs.get("scale", -1), seen_rand=float(torch.rand(())))


def train_bad(trial):
    if trial.seed == 1000:
        raise RuntimeError("boom in the model\\nsecond line")
    if trial.seed == 1001:
        trial.report(0, val_acc=float("nan"))
    if trial.seed == 1002:
        return
    if trial.seed == 1003:
        for e in range(trial.epochs):
            trial.report(e, val_bleu=0.3)
        return
    if trial.seed == 1005:
        os._exit(3)  # a worker that dies
    for e in range(trial.epochs):
        trial.report(e, val_acc=0.8 + 0.01 * e, **({"test_acc": 0.75} if e == trial.epochs - 1 else {}))


def make_task(n=64):
    from lrlab.study import Task
    from lrlab.study.tasks import MLPBase

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 40, generator=g), torch.randint(0, 10, (n,), generator=g)
    return Task("mine", x, y, x[:16], y[:16], MLPBase, batch_size=32, epochs=1, x_val=x[:16], y_val=y[:16])
'''


@pytest.fixture
def tfmod(tmp_path, monkeypatch):
    """``tfmod.py`` in a fresh current directory, importable as ``tfmod:...`` (cwd on the path)."""
    (tmp_path / "tfmod.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    sys.modules.pop("tfmod", None)
    yield tmp_path
    sys.modules.pop("tfmod", None)


def _base(tmp_path, **kw):
    cfg = {"schedules": ["constant"], "optimizers": {"sgd": 0.1}, "epochs": 2, "steps_per_epoch": 3,
           "tune": "none", "seeds": 1, "workers": 0, "out": str(tmp_path / "out")}
    cfg.update(kw)
    return cfg


# ---- the Trial ---------------------------------------------------------------------------------


def test_trial_gets_the_resolved_schedule_settings_and_kwargs(tfmod):
    res = run_study(_base(tfmod, task="tfmod:train_probe", task_kwargs={"scale": 2},
                          schedules=["w=warmup(constant(1.0), steps=50%)"], seeds=[3]), quiet=True)
    (r,) = res.records
    assert r.status == "done"
    c = r.curves
    assert c["seen_peak"][0] == 0.1 and c["seen_total"][0] == 6 and c["seen_momentum"][0] == 0.9
    assert c["seen_lr0"][0] == 0.0  # warmup from 0: the schedule is resolved, peak lr included
    assert c["seen_scale"][0] == 2
    torch.manual_seed(3)
    assert c["seen_rand"][0] == pytest.approx(float(torch.rand(())))  # torch seeded with trial.seed
    assert math.isnan(c["test_acc"][0]) and list(c["epoch"]) == [0.0, 1.0]


def test_report_feeds_plateau_nodes_of_the_torch_helper():
    tr = Trial(trial_id="t", role="final", schedule=constant(0.1) * plateau(factor=0.5, patience=0),
               optimizer="sgd", optimizer_kwargs={}, seed=0, epochs=3, steps_per_epoch=2, peak_lr=0.1)
    w = torch.zeros(1, requires_grad=True)
    opt, sched = tr.torch_optimizer([w])
    seen = []
    for epoch in range(3):
        seen.append(opt.param_groups[0]["lr"])
        for _ in range(2):
            w.sum().backward()
            opt.step()
            sched.step()
        tr.report(epoch, val_loss=1.0)  # never improves: patience 0 halves from the 2nd report on
    assert seen == [0.1, 0.1, 0.05]
    assert tr.lrs == [0.1, 0.1, 0.05]  # the record's lr curve (each epoch's last update) follows them too


def test_report_feeds_the_keras_schedule():
    keras = pytest.importorskip("keras")
    tr = Trial(trial_id="t", role="final", schedule=constant(0.1) * plateau(factor=0.5, patience=0),
               optimizer="adam", optimizer_kwargs={}, seed=0, epochs=3, steps_per_epoch=1, peak_lr=0.1)
    opt = tr.keras_optimizer()
    assert isinstance(opt, keras.optimizers.Adam)
    tr.report(0, val_loss=1.0)
    tr.report(1, val_loss=1.0)
    from lrlab.adapters.keras import _find_keras_schedule

    assert _find_keras_schedule(opt).scales == {"plateau": 0.5}


def test_report_rejects_bad_calls():
    tr = Trial(trial_id="t", role="final", schedule=constant(0.1), optimizer="adam", optimizer_kwargs={},
               seed=0, epochs=2, steps_per_epoch=1, peak_lr=0.1)
    with pytest.raises(Exception, match="expected epoch 0 next, got epoch=1"):
        tr.report(1, val_acc=0.5)
    with pytest.raises(Exception, match="val_acc must be a number"):
        tr.report(0, val_acc="high")
    with pytest.raises(TrialDiverged, match="val_loss=inf at epoch 0"):
        tr.report(0, val_loss=float("inf"))


def test_is_training_function_and_default_direction():
    def train(trial):
        pass

    def make(n=1):
        pass

    assert is_training_function(train) and not is_training_function(make)
    assert default_direction("val_loss") == "minimize" and default_direction("val_acc") == "maximize"


# ---- the study ---------------------------------------------------------------------------------


def test_training_function_study_tunes_selects_and_resumes(tfmod):
    cfg = _base(tfmod, task="tfmod:train_quad", schedules=["constant", "linear"], seeds=2,
                tune={"grid": [0.1, 1.0, 2e4], "seeds": [0]}, optimizers={"sgd": 0.05})
    res = run_study(cfg, quiet=True)
    assert res.ran == 2 * 3 + 2 * 2 and all(r.status == "done" for r in res.records)
    div = [r for r in res.tune_records if r.peak_lr == 1000.0]  # float32 overflows to inf: diverged
    assert div and all(r.status == "diverged" and "reported" in r.extra["reason"] for r in div)
    for (s, _o), sel in res.selections.items():  # the chosen lr has the best final val_acc
        by_lr = {r.peak_lr: r.final["val_acc"] for r in res.tune_records if r.schedule_name == s and not r.diverged}
        assert sel.chosen == max(by_lr, key=by_lr.get)
    again = run_study(cfg, quiet=True)
    assert again.ran == 0 and again.reused == res.ran
    assert [r.final["test_acc"] for r in again.records] == [r.final["test_acc"] for r in res.records]


def test_a_rerun_with_another_metric_retrains_the_same_settings_reuse(tfmod):
    """The selection metric and direction reach the function (``trial.metric``/``direction``) and
    its stored ``best_<metric>``: a rerun that changes them retrains, one that keeps them does not."""
    cfg = _base(tfmod, task="tfmod:train_quad", seeds=2, optimizers={"sgd": 0.05},
                tune={"grid": [0.5, 1.0], "seeds": [0]})
    res = run_study(cfg, quiet=True)
    assert (res.ran, res.reused) == (4, 0)
    assert all(math.isfinite(r.final["best_val_acc"]) and "best_val_loss" not in r.final for r in res.records)
    same = run_study(cfg, quiet=True)
    assert (same.ran, same.reused) == (0, 4)
    other = run_study({**cfg, "metric": "val_loss"}, quiet=True)
    assert (other.ran, other.reused) == (4, 0)
    assert all(math.isfinite(r.final["best_val_loss"]) for r in [*other.records, *other.tune_records])
    flipped = run_study({**cfg, "direction": "minimize"}, quiet=True)  # val_acc, minimized
    assert (flipped.ran, flipped.reused) == (4, 0)
    assert (run_study(cfg, quiet=True).ran, run_study({**cfg, "metric": "val_loss"}, quiet=True).ran) == (0, 0)


def test_minimize_selects_the_lowest_loss(tfmod):
    cfg = _base(tfmod, task="tfmod:train_quad", metric="val_loss", optimizers={"sgd": 0.05},
                tune={"grid": [0.1, 1.0, 4.0], "seeds": [0]})
    res = run_study(cfg, quiet=True)
    assert res.config.direction == "minimize"
    (sel,) = res.selections.values()
    losses = {r.peak_lr: r.final["val_loss"] for r in res.tune_records}
    assert sel.chosen == min(losses, key=losses.get)
    # selecting with val_acc (maximize) would agree here: exp(-f) is decreasing in f
    assert select_all(res.tune_records, "val_acc", "maximize")[("constant", "sgd")].chosen == sel.chosen


BAD_REASONS = {
    1000: "RuntimeError: boom in the model",
    1002: "returned after reporting 0 of 2 epochs",
    1003: "never reported the selection metric val_acc in its last epoch (reported: val_bleu)",
}


def _check_bad(res, tmp_path, extra=None):
    reasons = {**BAD_REASONS, **(extra or {})}
    by_seed = {r.seed: r for r in res.records}
    assert by_seed[1004].status == "done" and by_seed[1004].final["test_acc"] == 0.75
    assert by_seed[1001].status == "diverged" and by_seed[1001].extra["reason"] == "reported val_acc=nan at epoch 0"
    for seed, text in reasons.items():
        r = by_seed[seed]
        assert r.status == "failed" and text in r.extra["failed"] and "\n" not in r.extra["failed"], r.extra
    stored = StudyStorage(str(tmp_path / "out" / "study.db")).records()
    assert {r.seed: r.status for r in stored.values()} == {r.seed: r.status for r in res.records}
    assert stored[by_seed[1000].key].extra["failed"] == by_seed[1000].extra["failed"]


def test_bad_training_functions_fail_their_trial_and_the_study_goes_on(tfmod):
    res = run_study(_base(tfmod, task="tfmod:train_bad", seeds=[1000, 1001, 1002, 1003, 1004]), quiet=True)
    _check_bad(res, tfmod)
    assert table_rows(res.summaries)[0]["note"] == "1/5 diverged; 3/5 failed"
    assert "3/5 failed" in (tfmod / "out" / "report.html").read_text()


@pytest.mark.slow
def test_workers_run_trials_in_processes_and_a_dead_worker_fails_one_trial(tfmod):
    res = run_study(_base(tfmod, task="tfmod:train_bad", seeds=[1000, 1001, 1002, 1003, 1004, 1005], workers=2),
                    progress=False, quiet=True)
    _check_bad(res, tfmod, {1005: "its worker process died"})


@pytest.mark.slow
def test_workers_give_the_numbers_of_in_process_training(tfmod):
    base = _base(tfmod, task="tfmod:train_quad", schedules=["constant", "linear"], seeds=1)
    here = run_study(dict(base, out=str(tfmod / "a")), quiet=True)
    there = run_study(dict(base, out=str(tfmod / "b"), workers=2), quiet=True)
    assert [r.final for r in here.records] == [r.final for r in there.records]


# ---- one loader everywhere -------------------------------------------------------------------


def test_run_study_takes_a_function_object_and_a_task_object(tfmod):
    res = run_study(_base(tfmod, task=import_ref("tfmod:train_quad")), quiet=True)
    assert res.records[0].status == "done" and res.info["config"]["task"] == "tfmod:train_quad"
    assert {p["path"] for p in res.info["training_paths"]} == {"training function"}
    task = import_ref("tfmod:make_task")(48)
    out = run_study({"task": task, "schedules": ["constant"], "optimizers": {"adam": 0.01}, "tune": "none",
                     "seeds": 1, "out": str(tfmod / "t")}, quiet=True)
    assert out.info["task"] == "mine" and out.info["n_train"] == 48 and out.records[0].status == "done"
    with pytest.raises(ValueError, match="cannot apply to a Task object"):
        run_study({"task": task, "task_kwargs": {"n": 3}, "out": str(tfmod / "u")}, quiet=True)


def test_a_function_that_cannot_be_imported_by_name_trains_in_process(tmp_path):
    calls = []

    def train(trial):  # a local function: workers could not import it
        calls.append(trial.seed)
        for e in range(trial.epochs):
            trial.report(e, val_acc=0.5, **({"test_acc": 0.5} if e == trial.epochs - 1 else {}))

    import io

    from rich.console import Console

    buf = io.StringIO()
    res = run_study(_base(tmp_path, task=train, workers=2, seeds=2), progress=False,
                    console=Console(file=buf, width=80, highlight=False))
    assert calls == [0, 1] and all(r.status == "done" for r in res.records)
    (line,) = [ln for ln in buf.getvalue().splitlines() if "not importable" in ln]  # one line, however narrow
    assert line == ("training function test_a_function_that_cannot_be_imported_by_name_trains_in_process.<locals>"
                    ".train is not importable as module:function (defined in __main__ or inside a function): its "
                    "trials train in this process, not shared with `lrlab study worker`")


def test_config_file_task_and_task_kwargs_from_the_current_directory(tfmod, capsys):
    (tfmod / "s.yaml").write_text("task: tfmod:train_probe\nepochs: 1\nsteps_per_epoch: 2\ntune: none\n"
                                  "seeds: 1\nschedules: [constant]\noptimizers: {sgd: 0.01}\nworkers: 0\n")
    with pytest.raises(SystemExit) as e:
        main(["study", "--config", "s.yaml", "--out", "o", "--task-kwargs", "scale=1e-3", "--no-progress"])
    assert e.value.code == 0
    (r,) = StudyStorage("o/study.db").records().values()
    assert r.status == "done", r.extra
    assert r.curves["seen_scale"][0] == 0.001
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["find", "--task", "tfmod:make_task", "--task-kwargs", "n=40", "--num-steps", "30", "--seeds", "0",
              "--format", "json"])
    assert e.value.code == 0 and '"task": "mine"' in capsys.readouterr().out


def test_readme_command_line_with_peak_lrs_in_optimizers(tmp_path, monkeypatch):
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = text.split("<!-- trainfn-example -->\n```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_model.py").write_text(block)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    sys.modules.pop("my_model", None)
    cmd = "lrlab study --task my_model:train --optimizers sgd=0.1,adam=0.01 --epochs 2 --steps-per-epoch 4 " \
          "--schedules constant,linear"
    assert cmd in text
    with pytest.raises(SystemExit) as e:
        main([*cmd.split()[1:], "--seeds", "1", "--tune", "none", "--workers", "0", "--no-progress"])
    assert e.value.code == 0
    recs = StudyStorage("runs/study/study.db").records().values()
    assert sorted((r.optimizer, r.peak_lr, r.status) for r in recs) == [
        ("adam", 0.01, "done"), ("adam", 0.01, "done"), ("sgd", 0.1, "done"), ("sgd", 0.1, "done")]
    sys.modules.pop("my_model", None)


def test_parse_task_kwargs():
    assert parse_task_kwargs(["a=1,b=x", "c=null", "d='p,q'"]) == {"a": 1, "b": "x", "c": None, "d": "p,q"}
    for bad, msg in (("a", "expected key=value"), ("a=[1, 2]", "expected a number, string"),
                     ("1a=2", "expected key=value"), ("a={b: 1}", "expected a number, string")):
        with pytest.raises(ValueError, match=msg):
            parse_task_kwargs(bad)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "tfmod:train_quad", "--epochs", "2"], "a training function needs steps_per_epoch"),
        (["--task", "tfmod:nosuch"], "module 'tfmod' has no function 'nosuch'"),
        (["--task-kwargs", "oops"], "--task-kwargs: expected key=value, got 'oops'"),
        (["--metric", "test_acc"], "metric must name a validation metric"),
        (["--direction", "up"], "direction must be maximize or minimize"),
        (["--steps-per-epoch", "3", "--epochs", "1"], "steps_per_epoch applies to a training function"),
        (["--optimizers", "sgd=fast"], "optimizers.sgd: expected a positive number, got 'fast'"),
        (["--task", "tfmod:train_quad", "--epochs", "1", "--steps-per-epoch", "1"],
         "has no default peak lr for optimizer 'sgd': give one (optimizers: {sgd: {peak_lr: ...}} in the config)\n"),
        (["--task", "tfmod:train_quad", "--epochs", "1", "--steps-per-epoch", "1", "--peak-lr", "find"],
         "peak_lr: find runs the LR range test on a Task"),
    ],
)
def test_bad_cli_input_is_one_line(tfmod, args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["study", "--out", "o", *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("lrlab: error: ") and message in err and err.count("\n") == 1, err


def test_find_rejects_a_training_function(tfmod, capsys):
    with pytest.raises(SystemExit) as e:
        main(["find", "--task", "tfmod:train_quad"])
    assert e.value.code == 2 and "is a training function, not a Task builder" in capsys.readouterr().err


# ---- the examples ------------------------------------------------------------------------------


def _example(monkeypatch, tmp_path, name, **kw):
    monkeypatch.chdir(EXAMPLES)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return run_study(_base(tmp_path, task=f"{name}:train", **kw), quiet=True)


def test_example_torch_cnn(monkeypatch, tmp_path):
    res = _example(monkeypatch, tmp_path, "train_torch_cnn", steps_per_epoch=8, schedules=["constant", "plateau"])
    assert [r.status for r in res.records] == ["done", "done"]
    assert all(r.final["test_acc"] > 0.7 for r in res.records)  # chance is 0.5
    assert res.records[0].curves["val_loss"].shape == (2,)


def test_example_keras(monkeypatch, tmp_path):
    pytest.importorskip("keras")
    res = _example(monkeypatch, tmp_path, "train_keras", steps_per_epoch=4, optimizers={"adam": 0.02})
    (r,) = res.records
    assert r.status == "done" and r.final["test_acc"] > 0.8


def test_example_jax(monkeypatch, tmp_path):
    pytest.importorskip("optax")
    res = _example(monkeypatch, tmp_path, "train_jax", steps_per_epoch=4, optimizers={"adam": 0.02},
                   schedules=["w=warmup(cosine(1.0, 0.0, steps=50%), steps=50%)"])
    (r,) = res.records
    assert r.status == "done" and r.final["test_acc"] > 0.7  # chance is 0.5
    from lrlab.schedules import from_config

    sched = from_config(r.schedule_config)  # the lr curve: the schedule at each epoch's last update
    assert list(r.curves["lr"]) == [sched(3), sched(7)] and sched(0) == 0.0 < sched(3)


def test_example_regression_minimizes_val_mse(monkeypatch, tmp_path, capsys):
    res = _example(monkeypatch, tmp_path, "train_regression", steps_per_epoch=8, metric="val_mse",
                   tune={"grid": [0.25, 1.0], "seeds": [0]}, seeds=2)
    rebuild_report(tmp_path / "out")
    out = " ".join(capsys.readouterr().out.split())
    assert "lr selected to minimize val_mse" in out and "test %" not in out
    assert res.config.direction == "minimize"
    (sel,) = res.selections.values()
    mse = {r.peak_lr: r.final["val_mse"] for r in res.tune_records}
    assert sel.chosen == min(mse, key=mse.get)
    page = (tmp_path / "out" / "interactive.html").read_text(encoding="utf-8")
    assert "val_mse (mean over final seeds)" in page  # the interactive report plots the declared metric
    (cell,) = res.summaries
    assert cell.acc_mean == pytest.approx(np.mean([r.final["test_mse"] for r in res.records]))  # not x100
    from lrlab.study.report import _best_per_optimizer

    fake = [dataclasses.replace(cell, schedule="other", acc_mean=cell.acc_mean + 1.0), cell]
    assert _best_per_optimizer(fake, maximize=False)["sgd"] == cell.acc_mean  # the lowest test_mse is best
    assert _best_per_optimizer(fake)["sgd"] == cell.acc_mean + 1.0
    doc = results_document(res.summaries, res.effects, res.info)
    assert doc["metric"] == "val_mse" and doc["cells"][0]["test_acc"]["mean"] == pytest.approx(cell.acc_mean)
    assert study_title(res.info).endswith("selected on val_mse (minimize), compared on test_mse")
    again = run_study(dict(res.config.to_dict(), steps_per_epoch=4), quiet=True)  # another budget: new keys
    assert again.reused == 0 and again.ran == len(res.records) + len(res.tune_records)


def test_a_regression_study_names_its_metric_with_enough_digits(monkeypatch, tmp_path, capsys):
    """A study compared on test_mse labels its columns and legend test_mse (not "test %", "final
    test accuracy"), shows 3 significant digits (not 0.3±0.0) in the terminal, report.html and
    interactive.html, and says nothing of the batch size a training function does not give."""
    import re

    monkeypatch.chdir(EXAMPLES)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as e:
        main(["study", "--task", "train_regression:train", "--metric", "val_mse", "--schedules", "constant,linear",
              "--seeds", "2", "--epochs", "2", "--steps-per-epoch", "4", "--workers", "0", "--tune", "none",
              "--optimizers", "sgd=0.05", "--out", str(out), "--no-progress"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    header = next(ln for ln in text.splitlines() if "schedule" in ln and "Δ vs const" in ln)
    assert "test_mse" in header and "%" not in header, header
    flat = " ".join(text.split())
    assert "test_mse: final test_mse (as reported)" in flat and "test accuracy" not in flat
    assert "batch" not in flat.split("report:")[0], flat
    assert "fixed lr, compared on test_mse" in flat and "selected" not in flat  # --tune none: no lr was selected
    row = next(ln for ln in text.splitlines() if ln.split()[:2] == ["sgd", "linear"])
    mse, delta = re.findall(r"[-+]?\d+\.\d+±\d+\.\d+", row)
    assert re.fullmatch(r"0\.\d{3}±\d\.\d{3}", mse) and re.fullmatch(r"[-+]0\.\d{3}±\d+\.\d{3}", delta), row
    (linear,) = [c for c in run_study({"task": "train_regression:train", "metric": "val_mse", "epochs": 2,
                                       "steps_per_epoch": 4, "seeds": 2, "workers": 0, "tune": None,
                                       "schedules": ["constant", "linear"], "optimizers": {"sgd": 0.05},
                                       "out": str(out)}, quiet=True).summaries if c.schedule == "linear"]
    assert mse == f"{linear.acc_mean:.3f}±{linear.acc_sd:.3f}"  # the stored study, its own digits
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<th class=\"\">val_mse</th>" in page and "<th class=\"\">test_mse</th>" in page
    assert f"<td class=\"\">{mse}</td>" in page and "test %" not in page and "final test accuracy" not in page
    assert "Bold: best mean test_mse (lowest) per optimizer" in page and "batch" not in page.split("Results")[0]
    if (out / "interactive.html").is_file():
        inter = (out / "interactive.html").read_text(encoding="utf-8")
        assert "test_mse" in inter and mse in inter and "test %" not in inter


def test_metric_digits_keep_three_significant_digits():
    from lrlab.study.report import metric_digits

    assert metric_digits("val_acc", [0.31]) == 1  # percent: one decimal, as always
    assert [metric_digits("val_mse", [v]) for v in (0.312, 0.0312, 3.12, 31.2, 3120.0)] == [3, 4, 2, 1, 0]
    assert metric_digits("val_mse", [0.5, 0.0042, math.nan, 0.0]) == 5  # the smallest nonzero value decides


def test_readme_training_function_block(tmp_path, monkeypatch):
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = text.split("<!-- trainfn-example -->\n```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_model.py").write_text(textwrap.dedent(block))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    sys.modules.pop("my_model", None)
    res = run_study(_base(tmp_path, task="my_model:train", steps_per_epoch=4, seeds=2,
                          schedules=["constant", "cosine=cosine(1.0, 0.0, steps=100%)"]), quiet=True)
    assert all(r.status == "done" and math.isfinite(r.final["test_acc"]) for r in res.records)
    sys.modules.pop("my_model", None)


def test_task_object_in_config_keeps_the_type():
    t = StudyConfig(task=Task("x", torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), torch.zeros(2, 2),
                              torch.zeros(2, dtype=torch.long), lambda: torch.nn.Linear(2, 2)))
    assert t.task_ref == "x" and t.to_dict()["task"] == "x"
    with pytest.raises(ValueError, match="task must be a name"):
        StudyConfig(task=3)
    assert run_one(lambda trial: None, Trial(trial_id="t", role="final", schedule=constant(0.1), optimizer="sgd",
                                             optimizer_kwargs={}, seed=0, epochs=1, steps_per_epoch=1,
                                             peak_lr=0.1))["failed"].startswith("the training function returned")
