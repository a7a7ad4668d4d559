"""The study runner end to end on tiny MNIST-1D budgets: resume, a real SIGKILL, divergence,
rebuilding the report from storage, the LR range test, and config parsing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

import lrlab
from lrlab.study.config import DEFAULT_SCHEDULES, StudyConfig, load_config, parse_schedule
from lrlab.study.runner import plan_trials, rebuild_report, run_study
from lrlab.study.storage import StudyStorage

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:torch.*")

REPO = Path(__file__).resolve().parents[2]
TINY = {"task_kwargs": {"subset": 100}, "epochs": 2, "seeds": 2, "workers": 0,
        "schedules": ["constant", "linear"], "optimizers": ["sgd", "adam"], "tune": "none"}
TUNED = {"task_kwargs": {"subset": 100}, "epochs": 2, "seeds": 2, "workers": 0,
         "schedules": ["constant", "linear"], "optimizers": {"adam": 0.01}, "tune": {"grid": [0.5, 2], "seeds": [0]}}


def n_optuna_trials(out: Path) -> int:
    return len(StudyStorage(str(out / "study.db"), "lrlab").study.get_trials())


def test_run_resume_and_rebuild(tmp_path):
    out = tmp_path / "s"
    cfg = {**TINY, "out": str(out)}
    r1 = run_study(cfg, progress=False, quiet=True)
    assert (r1.ran, r1.reused, len(r1.records)) == (8, 0, 8)
    assert [r.trial_id for r in r1.records][:3] == ["constant/sgd/s0", "constant/sgd/s1", "linear/sgd/s0"]
    assert all(len(r.curves["epoch"]) == 2 and not r.diverged for r in r1.records)
    assert {r.peak_lr for r in r1.records} == {0.1, 0.01}  # the documented MNIST-1D defaults
    assert n_optuna_trials(out) == 8
    for f in ("report.html", "summary.csv", "trials.csv", "curves.csv", "results.json", "lr_curves.png"):
        assert (out / f).is_file()
    # the same command again: nothing is retrained, the table is identical
    r2 = run_study(cfg, progress=False, quiet=True, report=False)
    assert (r2.ran, r2.reused) == (0, 8) and n_optuna_trials(out) == 8
    assert [c.acc_mean for c in r2.summaries] == [c.acc_mean for c in r1.summaries]
    # --fresh ignores what is stored (a changed budget also reruns: see the key test below)
    r4 = run_study({**cfg, "schedules": ["constant"], "optimizers": ["adam"], "fresh": True},
                   progress=False, quiet=True, report=False)
    assert (r4.ran, r4.reused) == (2, 0) and n_optuna_trials(out) == 10
    # report from storage alone: the last run's study (the fresh 2-trial one)
    (out / "report.html").unlink()
    rb = rebuild_report(out, quiet=True)
    assert len(rb.records) == 2 and (out / "report.html").is_file() and rb.peak_lrs == {"adam": 0.01}
    assert [c.acc_mean for c in rb.summaries] == [c.acc_mean for c in r4.summaries]


def test_schedules_are_peak_times_relative_spec():
    cfg = StudyConfig.from_mapping({"schedules": ["warmup_cosine", "plateau", "step"], "optimizers": {"sgd": 0.2},
                                    "seeds": [3]})
    plans = plan_trials(cfg, epochs=10, steps_per_epoch=7, peak_lrs={"sgd": 0.2})
    assert [p.spec.trial_id for p in plans] == ["warmup_cosine/sgd/s3", "plateau/sgd/s3", "step/sgd/s3"]
    rel = parse_schedule(DEFAULT_SCHEDULES["warmup_cosine"]).resolve(total_steps=70, steps_per_epoch=7)
    np.testing.assert_allclose(plans[0].spec.schedule.values(80), 0.2 * rel.values(80), rtol=1e-15)
    assert plans[0].spec.schedule(3) == pytest.approx(0.2 * 3 / 4)  # 5% of 70 steps = 4 warmup steps (rounded)
    step = plans[2].spec.schedule  # x0.25 every 15% = 10.5 -> 10 steps (rounded): torch StepLR convention
    assert step(9) == pytest.approx(0.2) and step(10) == pytest.approx(0.05) and step(69) == pytest.approx(0.2 * 0.25**6)
    assert plans[1].spec.plateau_metric == "val_loss"  # the validation split, never test
    other = plan_trials(cfg, epochs=11, steps_per_epoch=7, peak_lrs={"sgd": 0.2})
    assert all(a.key != b.key and a.spec.trial_id == b.spec.trial_id for a, b in zip(plans, other))
    assert [p.key for p in plans] == [p.key for p in plan_trials(cfg, epochs=10, steps_per_epoch=7,
                                                                  peak_lrs={"sgd": 0.2})]


def test_builtin_task_keys_are_pinned():
    """Stored studies resume by key, and the README's results were stored under these: a change to
    what a Task trial's key covers would retrain them all, so its values are pinned here."""
    import hashlib

    from lrlab.study.runner import tuning_grid

    cfg = StudyConfig()  # the default study (README results), tuned
    base = {o: 0.1 for o in cfg.optimizers}
    tune = plan_trials(cfg, epochs=30, steps_per_epoch=25, peak_lrs=base, role="tune", grid=tuning_grid(cfg, base))
    final = plan_trials(cfg, epochs=30, steps_per_epoch=25, peak_lrs=base)
    assert (len(tune), len(final)) == (120, 72)
    assert [tune[0].key, tune[-1].key, final[0].key, final[-1].key] == [
        "constant/sgd/lr0.025/s0@7429bff4d13e", "plateau/adam/lr0.4/s0@09daf71508a8",
        "constant/sgd/s1000@e2aa6c5c3d1e", "plateau/adam/s1002@59a1460de8ca"]
    every = hashlib.sha256(" ".join(p.key for p in [*tune, *final]).encode()).hexdigest()
    assert every == "0ccfa7b809768b6225f5e96246e0b3f97f9bf5ec924ae12e70a043d8cc242f4e"
    custom = StudyConfig.from_mapping({"schedules": ["warmup_cosine", "constant"], "optimizers": {
        "sgd": 0.2, "adam": {"peak_lr": 0.01, "weight_decay": 1e-4}}, "seeds": [3], "metric": "val_loss",
        "batch_size": 64})
    keys = ["warmup_cosine/sgd/s3@c35d2e45fb81", "constant/sgd/s3@48474cfb7b3a",
            "warmup_cosine/adam/s3@1ebfb27b9444", "constant/adam/s3@1657380fe02b"]
    peaks = {"sgd": 0.2, "adam": 0.01}
    assert [p.key for p in plan_trials(custom, epochs=10, steps_per_epoch=7, peak_lrs=peaks)] == keys
    # a Task's selection metric and direction choose among stored trials, they do not change one
    again = custom.replace(metric="val_acc", direction="minimize")
    assert [p.key for p in plan_trials(again, epochs=10, steps_per_epoch=7, peak_lrs=peaks)] == keys


@pytest.mark.parametrize("change", [{"metric": "val_loss"}, {"direction": "minimize"}, {"batch_size": 32},
                                    {"task_kwargs": {"batch_size": 32}}, {"steps_per_epoch": 4},
                                    {"plateau_metric": "train_loss"}])
def test_training_function_keys_cover_every_setting_its_trial_gets(change):
    """A training function's Trial carries metric, direction, batch_size, peak_lr and
    steps_per_epoch besides what a Task trial's key covers: each one is in its key."""
    base = {"task": "tfmod:train", "schedules": ["constant"], "optimizers": {"sgd": 0.1}, "seeds": [1],
            "steps_per_epoch": 3, "epochs": 2, "tune": "none"}
    cfg = StudyConfig.from_mapping(base)
    other = StudyConfig.from_mapping({**base, **change})
    spe = int(other.steps_per_epoch or 3)
    (a,) = plan_trials(cfg, epochs=2, steps_per_epoch=3, peak_lrs={"sgd": 0.1})
    (b,) = plan_trials(other, epochs=2, steps_per_epoch=spe, peak_lrs={"sgd": 0.1})
    (c,) = plan_trials(cfg, epochs=2, steps_per_epoch=3, peak_lrs={"sgd": 0.1})
    assert a.key != b.key and a.key == c.key


def test_training_function_batch_size_is_told_apart_from_a_task_kwarg():
    """``batch_size: 32`` gives ``trial.batch_size == 32``; ``task_kwargs: {batch_size: 32}`` gives
    ``trial.kwargs["batch_size"]`` and ``trial.batch_size is None``: another trial, another key."""
    base = {"task": "tfmod:train", "schedules": ["constant"], "optimizers": {"sgd": 0.1}, "seeds": [1],
            "steps_per_epoch": 3, "epochs": 2, "tune": "none"}
    one, other = (StudyConfig.from_mapping({**base, **extra}) for extra in
                  ({"batch_size": 32}, {"task_kwargs": {"batch_size": 32}}))
    assert one.task_build_kwargs() == other.task_build_kwargs()
    (a,) = plan_trials(one, epochs=2, steps_per_epoch=3, peak_lrs={"sgd": 0.1})
    (b,) = plan_trials(other, epochs=2, steps_per_epoch=3, peak_lrs={"sgd": 0.1})
    assert a.key != b.key


def test_default_grid_parses_and_covers_the_seeds_catalogue():
    assert len(DEFAULT_SCHEDULES) == 12
    for name, spec in DEFAULT_SCHEDULES.items():
        s = parse_schedule(spec).resolve(total_steps=1600, steps_per_epoch=40)
        v = s.values(1600)
        assert np.all(np.isfinite(v)) and v.max() == pytest.approx(1.0, abs=1e-3), name
        assert lrlab.parse(str(parse_schedule(spec))) == parse_schedule(spec)
    cfg = StudyConfig()
    assert list(cfg.optimizers) == ["sgd", "adam"] and cfg.seeds == (1000, 1001, 1002)
    assert cfg.tune is not None and cfg.tune.grid == (0.25, 0.5, 1.0, 2.0, 4.0) and cfg.tune.seeds == (0,)
    assert cfg.tune.relative and cfg.plateau_metric == "val_loss"
    assert StudyConfig(tune=None).seeds == (0, 1, 2)  # the fixed-lr mode keeps seeds 0, 1, 2


def test_divergence_is_recorded_and_the_study_goes_on(tmp_path):
    res = run_study({**TINY, "optimizers": {"sgd": 1e4}, "seeds": 1, "out": str(tmp_path)}, progress=False, quiet=True)
    assert len(res.records) == 2 and all(r.diverged for r in res.records)
    assert all(c.diverged == 1 for c in res.summaries)
    assert "1/1 diverged" in (tmp_path / "report.html").read_text()
    st = StudyStorage(str(tmp_path / "study.db"), "lrlab")
    assert {t.state for t in st.study.get_trials()} == {optuna.trial.TrialState.FAIL}
    again = run_study({**TINY, "optimizers": {"sgd": 1e4}, "seeds": 1, "out": str(tmp_path)}, progress=False,
                      quiet=True, report=False)
    assert again.ran == 0  # a diverged trial is a finished trial


def test_journal_storage_and_report_verb(tmp_path):
    journal = tmp_path / "j" / "study.log"
    run_study({**TINY, "schedules": ["constant"], "optimizers": ["adam"], "seeds": 1, "epochs": 1,
               "out": str(tmp_path / "o"), "storage": str(journal), "study_name": "mine"}, progress=False, quiet=True,
              report=False)
    assert journal.is_file() and not (tmp_path / "o" / "study.db").exists()
    rb = rebuild_report(tmp_path / "r", storage=str(journal), study_name="mine", quiet=True)
    assert len(rb.records) == 1 and (tmp_path / "r" / "report.html").is_file()
    with pytest.raises(ValueError, match="no lrlab study named 'other'"):
        rebuild_report(tmp_path / "r", storage=str(journal), study_name="other", quiet=True)
    with pytest.raises(ValueError, match="no study storage"):
        rebuild_report(tmp_path / "empty", quiet=True)


def test_peak_lr_find_is_used_and_cached(tmp_path, monkeypatch):
    import lrlab.finder as finder

    calls = []
    real = finder.find_for_task

    def spy(task, optimizer, kwargs=None, **kw):
        calls.append(optimizer)
        return real(task, optimizer, kwargs, seeds=(0,), num_steps=20, **kw)

    monkeypatch.setattr(finder, "find_for_task", spy)
    cfg = {**TINY, "schedules": ["constant"], "optimizers": {"adam": None, "sgd": 0.05}, "seeds": 1, "epochs": 1,
           "peak_lr": "find", "out": str(tmp_path)}
    r1 = run_study(cfg, progress=False, quiet=True, report=False)
    assert calls == ["adam"]  # sgd has a fixed peak lr in the config
    assert r1.peak_lrs["sgd"] == 0.05 and 1e-7 < r1.peak_lrs["adam"] < 10
    r2 = run_study(cfg, progress=False, quiet=True, report=False)
    assert calls == ["adam"] and r2.ran == 0 and r2.peak_lrs == r1.peak_lrs  # stored: no second search


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from lrlab.study.runner import run_study
    run_study({"task_kwargs": {"subset": 200}, "epochs": 4, "seeds": 2, "workers": 0,
               "schedules": ["constant", "linear"], "optimizers": ["sgd", "adam", "rmsprop", "adagrad"],
               "tune": "none", "out": sys.argv[1]}, progress=False)
""")


@pytest.mark.slow
def test_sigkill_loses_no_finished_trial(tmp_path):
    """kill -9 after some trials finished; rerun; nothing finished is rerun and the table is complete."""
    out = tmp_path / "k"
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, str(script), str(out)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = out / "study.db"
    stored: set[str] = set()
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db.is_file():
                try:
                    stored = StudyStorage(str(db), "lrlab").done_keys()
                except Exception:  # the database is being created
                    stored = set()
                if stored:
                    break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-500:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    stored = StudyStorage(str(db), "lrlab").done_keys()
    assert 0 < len(stored) < 16, len(stored)
    before = {t.user_attrs["lrlab_key"]: t.datetime_complete for t in StudyStorage(str(db), "lrlab").study.get_trials()}
    res = run_study({"task_kwargs": {"subset": 200}, "epochs": 4, "seeds": 2, "workers": 0,
                     "schedules": ["constant", "linear"], "optimizers": ["sgd", "adam", "rmsprop", "adagrad"],
                     "tune": "none", "out": str(out)}, progress=False, quiet=True)
    assert res.reused == len(stored) and res.ran == 16 - len(stored)
    trials = StudyStorage(str(db), "lrlab").study.get_trials()
    assert len(trials) == 16  # one Optuna trial per lrlab trial: nothing stored twice
    for t in trials:  # the stored ones were not touched
        k = t.user_attrs["lrlab_key"]
        if k in before:
            assert t.datetime_complete == before[k]
    assert len(res.summaries) == 8 and all(c.n == 2 for c in res.summaries)
    data = json.loads((out / "results.json").read_text())
    assert len(data["trials"]) == 16


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"schedule": ["constant"]}, "unknown key 'schedule'"),
        ({"schedules": ["cosine_typo"]}, "unknown schedule name 'cosine_typo'"),
        ({"schedules": {"a": 3}}, r"schedules\.a: expected a text spec"),
        ({"optimizers": ["lion"]}, "unknown optimizer 'lion'"),
        ({"optimizers": {"sgd": -1}}, "optimizers.sgd: expected a positive, finite number, got -1"),
        ({"optimizers": {"sgd": {"lr": 0.1}}}, "give the learning rate as peak_lr"),
        ({"seeds": 0}, "number of seeds must be >= 1"),
        ({"seeds": [1, 1]}, "seeds must be distinct"),
        ({"epochs": 0}, "epochs must be an int >= 1"),
        ({"peak_lr": "auto"}, "peak_lr must be 'fixed' or 'find'"),
        ({"model": "gru"}, "model must be 'cnn' or 'mlp'"),
        ({"task": "cifar10", "model": "mlp"}, "applies to the mnist1d task only"),
        ({"plateau_metric": "test_loss"}, "plateau_metric must be one of val_loss"),  # test never selects
        ({"tune": {"grid": [0, 1]}}, r"tune\.grid: expected a positive, finite number, got 0"),
        ({"tune": {"grid": [-0.5, 1]}}, r"tune\.grid: expected a positive, finite number"),
        ({"tune": {"grid": [float("nan")]}}, r"tune\.grid: expected a positive, finite number"),
        ({"tune": {"grid": [1, float("inf")]}}, r"tune\.grid: expected a positive, finite number"),
        ({"tune": {"grid": "1,x"}}, r"lr grid: expected a positive number, got 'x'"),
        ({"tune": {"grid": []}}, r"tune\.grid: expected a non-empty list"),
        ({"tune": {"grid": [1, 1.0]}}, r"tune\.grid: values must be distinct"),
        ({"tune": {"grids": [1]}}, r"tune: unknown key 'grids'"),
        ({"tune": "random"}, r"tune: expected 'none', 'grid' or a mapping"),
        ({"tune": {"seeds": 0}}, r"tune\.seeds must be non-negative ints"),
        ({"seeds": [0, 1]}, r"seeds \[0\] are both tuning and final seeds"),
        ({"optimizers": {"adam": "1e-3x"}}, r"optimizers\.adam: expected a positive number, got '1e-3x'"),
        ({"optimizers": {"adam": 1e-320}}, "optimizers.adam: expected a positive, finite number"),
        ({"fresh": "yes"}, "fresh must be true or false"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_malformed_configs(data, match):
    with pytest.raises(ValueError, match=match):
        StudyConfig.from_mapping(data)


def test_bad_spec_names_the_schedule(tmp_path):
    cfg = StudyConfig.from_mapping({"schedules": ["mine=cosine(1.0, steps=100%"]})
    with pytest.raises(ValueError, match=r"^schedules\.mine: "):
        cfg.schedule_objects()
    with pytest.raises(ValueError, match="no default peak lr for optimizer"):
        from lrlab.study.runner import _peak_lrs

        class T:
            name, peak_lr = "toy", {}

        _peak_lrs(StudyConfig(), T(), None, print)


def test_config_files(tmp_path):
    cfg = load_config(REPO / "examples" / "study_config.yaml")
    assert cfg.schedule_objects() and cfg.optimizers
    (tmp_path / "c.toml").write_text('epochs = 3\nseeds = [1, 5]\nschedules = ["constant", "mine=linear(1.0, 0.0, '
                                     'steps=100%)"]\n[optimizers.sgd]\npeak_lr = 0.1\nmomentum = 0.5\n')
    t = load_config(tmp_path / "c.toml")
    assert t.epochs == 3 and t.seeds == (1, 5) and t.optimizers["sgd"].kwargs == {"momentum": 0.5}
    assert t.schedules["mine"] == "linear(1.0, 0.0, steps=100%)"
    (tmp_path / "bad.yaml").write_text("epochs: [1\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_config(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "none.yaml")
    (tmp_path / "c.ini").write_text("")
    with pytest.raises(ValueError, match=r"use \.yaml"):
        load_config(tmp_path / "c.ini")
    round_trip = StudyConfig.from_mapping(t.to_dict())
    assert round_trip == t and round_trip.fingerprint() == t.fingerprint()
    shared = StudyConfig.from_mapping({**t.to_dict(), "checkpoint_dir": tmp_path / "ck"})
    assert shared.checkpoint_dir == str(tmp_path / "ck")
    assert shared.fingerprint() == t.fingerprint()  # where checkpoints go changes no result
    with pytest.raises(ValueError, match=r"^c\.yaml: checkpoint_dir must be a directory path, got ' '$"):
        StudyConfig.from_mapping({"checkpoint_dir": " "}, where="c.yaml")


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    """PyYAML reads ``1e-3`` as a string (YAML 1.1 wants ``1.0e-3``); study configs take it as a number."""
    (tmp_path / "c.yaml").write_text(
        "optimizers:\n  adam: 1e-3\n  sgd: {peak_lr: 5E-2, weight_decay: 5e-4}\n"
        "tune: {grid: [5e-1, 1, 2e0]}\nschedules: [constant]\nstudy_name: 1e3x\n"
    )
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.optimizers["adam"].peak_lr == 0.001 and cfg.optimizers["sgd"].peak_lr == 0.05
    assert cfg.optimizers["sgd"].kwargs == {"weight_decay": 0.0005}
    assert cfg.tune.grid == (0.5, 1.0, 2.0) and cfg.study_name == "1e3x"  # only numbers change
    # numeric strings from any source (JSON, Python) are read the same way for lrs
    assert StudyConfig.from_mapping({"optimizers": {"adam": "1e-3"}}).optimizers["adam"].peak_lr == 0.001


def test_tuned_study_selects_on_validation_then_runs_fresh_seeds_and_resumes(tmp_path, monkeypatch):
    import lrlab.study.fleet as fleet

    calls = []
    real = fleet.run_trials

    def spy(task_ref, task_kwargs, trials, **kw):
        calls.append([t.trial_id for t in trials])
        return real(task_ref, task_kwargs, trials, **kw)

    monkeypatch.setattr(fleet, "run_trials", spy)
    out = tmp_path / "t"
    res = run_study({**TUNED, "out": str(out)}, progress=False, quiet=True)
    # one call with every tuning trial of every cell, then one with every final trial
    assert [len(c) for c in calls] == [4, 4]
    assert calls[0][0] == "constant/adam/lr0.005/s0" and calls[1][0] == "constant/adam/s1000"
    assert (res.ran, res.reused) == (8, 0)
    assert {r.role for r in res.tune_records} == {"tune"} and {r.role for r in res.records} == {"final"}
    assert sorted({r.peak_lr for r in res.tune_records}) == [0.005, 0.02]
    assert {r.seed for r in res.tune_records} == {0} and {r.seed for r in res.records} == {1000, 1001}
    for cell in (("constant", "adam"), ("linear", "adam")):
        tune = {r.peak_lr: r.final["val_acc"] for r in res.tune_records if (r.schedule_name, r.optimizer) == cell}
        best = max(sorted(tune), key=lambda lr: tune[lr])  # highest validation accuracy, ties to the smaller lr
        sel = res.selections[cell]
        assert sel.chosen == best and sel.at_edge  # a 2-point grid: every choice is at an edge
        assert {r.peak_lr for r in res.records if (r.schedule_name, r.optimizer) == cell} == {best}
        summary = next(c for c in res.summaries if (c.schedule, c.optimizer) == cell)
        assert summary.peak_lr == best and summary.selection == sel
    st = StudyStorage(str(out / "study.db"), "lrlab")
    roles = sorted(t.user_attrs["role"] for t in st.study.get_trials())
    assert roles == ["final"] * 4 + ["tune"] * 4
    assert all(t.value == t.user_attrs["final"]["val_acc"] for t in st.study.get_trials())  # selection's metric
    data = json.loads((out / "results.json").read_text())
    assert len(data["trials"]) == 8 and (out / "lr_sensitivity.png").is_file()
    assert data["versions"]["torch"] and data["command"]
    # resume: nothing retrained, the same lrs re-selected from storage, the same numbers
    calls.clear()
    again = run_study({**TUNED, "out": str(out)}, progress=False, quiet=True, report=False)
    assert calls == [] and (again.ran, again.reused) == (0, 8)
    assert again.selections == res.selections
    assert [c.acc_mean for c in again.summaries] == [c.acc_mean for c in res.summaries]
    rb = rebuild_report(out, quiet=True)
    assert rb.selections == res.selections and len(rb.tune_records) == 4
    assert [c.vs_baseline for c in rb.summaries] == [c.vs_baseline for c in res.summaries]


def test_a_study_starts_one_pool_of_workers_for_its_tuning_and_final_phases(tmp_path, monkeypatch):
    """Both phases (each a work-queue claim on the default SQLite storage) train in the same worker
    processes: one start-up per study run, not one per phase; they end with the run."""
    import lrlab.study.fleet as fleet

    started = []

    class Counted(fleet._WorkerPool):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            started.append(self)

    monkeypatch.setattr(fleet, "_WorkerPool", Counted)
    res = run_study({**TUNED, "workers": 2, "out": str(tmp_path / "t")}, progress=False, quiet=True)
    assert (res.ran, res.reused) == (8, 0) and len(res.records) == 4  # 2 cells x 2 final seeds
    assert len(started) == 1 and started[0].closed
    assert not any(p.is_alive() for p in started[0].procs)
    with fleet.keep_workers():  # two studies inside one block share one pool
        for name in ("a", "b"):
            assert run_study({**TUNED, "workers": 2, "out": str(tmp_path / name)}, progress=False,
                             quiet=True).ran == 8
        assert len(started) == 2 and not started[1].closed
    assert started[1].closed


def test_every_tuning_lr_diverged_marks_the_cell_and_trains_no_finals(tmp_path):
    cfg = {**TUNED, "optimizers": {"sgd": 1e8}, "schedules": ["constant"], "out": str(tmp_path)}
    res = run_study(cfg, progress=False, quiet=True)
    sel = res.selections[("constant", "sgd")]
    assert sel.all_diverged and sel.chosen is None and sel.diverged == (1, 1)
    assert res.records == [] and len(res.tune_records) == 2
    cell = res.summaries[0]
    assert cell.n == 0 and cell.peak_lr is None
    assert "every tuning lr diverged" in (tmp_path / "report.html").read_text()
    assert run_study(cfg, progress=False, quiet=True, report=False).ran == 0


def test_bad_environment_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="device 'bogus' is not a torch device"):
        run_study({**TINY, "device": "bogus", "out": str(tmp_path / "a")}, quiet=True)
    with pytest.raises(ValueError, match=r"task_kwargs: task 'mnist1d' does not accept these arguments"):
        run_study({**TINY, "task_kwargs": {"subsett": 10}, "out": str(tmp_path / "b")}, quiet=True)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot write to the output directory"):
        run_study({**TINY, "out": str(blocker / "sub")}, quiet=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before anything was made


def test_a_tiny_peak_lr_is_stored(tmp_path):
    """Any lr the config accepts fits the Optuna distribution (it used to be refused after training)."""
    res = run_study({**TINY, "optimizers": {"adam": 1e-13}, "schedules": ["constant"], "seeds": 1, "epochs": 1,
                     "out": str(tmp_path)}, progress=False, quiet=True, report=False)
    assert res.records[0].peak_lr == 1e-13
    st = StudyStorage(str(tmp_path / "study.db"), "lrlab")
    assert st.study.get_trials()[0].params["peak_lr"] == 1e-13


_FN_MODULE = '''
def train(trial):
    for epoch in range(trial.epochs):
        trial.report(epoch, val_acc=0.5 + 0.01 * trial.seed, test_acc=0.5)
'''


@pytest.mark.slow
@pytest.mark.parametrize("task", ["mnist1d", "fnmod:train"])
@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_calling_a_study_outside_its_main_guard_is_refused_before_a_worker_starts(tmp_path, task, guarded):
    """Spawned workers import the main script again: an unguarded top-level run_study would run once
    more in each of them (studies of their own on the same storage: it never ended). It is refused
    in one line naming the script's line, before any worker starts; nothing is stored or lost. The
    same call under ``if __name__ == "__main__":`` (inside a function, too) runs."""
    (tmp_path / "fnmod.py").write_text(_FN_MODULE)
    cfg = {"task": task, "epochs": 1, "seeds": 1, "workers": 2, "tune": "none", "schedules": ["constant"],
           "optimizers": {"sgd": 0.1}, "out": str(tmp_path / "out"),
           **({"task_kwargs": {"subset": 100}} if task == "mnist1d" else {"steps_per_epoch": 2})}
    call = f"res = lrlab.study.run_study({cfg!r}, progress=False, quiet=True)\nprint('ran', res.ran)"
    body = (f"def main():\n{textwrap.indent(call, '    ')}\n\nif __name__ == '__main__':\n    main()\n"
            if guarded else call + "\n")
    script = tmp_path / "study_script.py"
    script.write_text(f"import lrlab.study\nprint('started', flush=True)\n{body}")
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=240)
    if guarded:
        # (each worker imports the script and prints "started"; only the main process runs the study)
        assert p.returncode == 0 and p.stdout.split()[-2:] == ["ran", "1"], p.stdout + p.stderr[-2000:]
        assert p.stdout.count("ran") == 1 and p.stdout.count("started") > 1
        return
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 1 and p.stdout.split() == ["started"], p.stdout + p.stderr[-2000:]
    assert last.startswith(f"ValueError: {script}, line 3 calls lrlab at the script's top level") and (
        'put it under `if __name__ == "__main__":` (or train in this process: workers=0)' in last), last
    st = StudyStorage(str(tmp_path / "out" / "study.db"), "lrlab")
    assert st.done_keys() == set() and not [t for t in st.study.get_trials() if t.state.name == "FAIL"]
