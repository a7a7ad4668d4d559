"""Exports: tidy pandas frames from a run and from storage alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from lrlab.study import load_results, run_study  # noqa: E402
from lrlab.study.storage import CURVE_FIELDS  # noqa: E402

CFG = {"task_kwargs": {"subset": 100}, "epochs": 3, "seeds": 2, "workers": 0,
       "schedules": ["constant", "linear"], "optimizers": {"adam": 0.01, "sgd": 1e4},
       "tune": "none"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    return out, run_study({**CFG, "out": str(out)}, progress=False, quiet=True, report=False)


def test_to_pandas_is_tidy_and_matches_the_records(study):
    _, res = study
    trials, curves = res.to_pandas()
    assert len(trials) == len(res.records) == 8 and trials["key"].is_unique
    by_key = {r.key: r for r in res.records}
    for row in trials.itertuples():
        r = by_key[row.key]
        assert (row.schedule, row.optimizer, row.seed, row.peak_lr, row.role) == (
            r.schedule_name, r.optimizer, r.seed, r.peak_lr, "final")
        assert row.status == r.status
        acc = row.final_val_acc
        assert (math.isnan(acc) and math.isnan(r.final["val_acc"])) or acc == r.final["val_acc"]
        assert row.started == pd.Timestamp(r.started, unit="s", tz="UTC")
        assert row.finished > row.started
    # sgd at lr 1e4 diverges: status, diverged_epoch and a short curve say so
    div = trials[trials.optimizer == "sgd"]
    assert (div.status == "diverged").all() and div.diverged_epoch.notna().all()
    assert (trials[trials.optimizer == "adam"].status == "done").all()
    assert trials.diverged_epoch.dtype == "Int64"
    # curves: one row per trial x trained epoch, every curve field, joined on key
    assert list(curves.columns) == ["key", "role", "schedule", "optimizer", "seed", "peak_lr", *CURVE_FIELDS]
    assert len(curves) == sum(len(r.curves["epoch"]) for r in res.records)
    for key, g in curves.groupby("key"):
        np.testing.assert_array_equal(g["val_acc"].to_numpy(), by_key[key].curves["val_acc"])
        assert g["epoch"].tolist() == list(range(len(g)))
    adam = curves[curves.optimizer == "adam"]
    assert len(adam) == 4 * 3 and adam.groupby(["schedule", "seed"]).size().eq(3).all()


def test_load_results_from_the_directory_and_the_url(study):
    out, res = study
    trials, curves = res.to_pandas()
    for where in (out, str(out / "study.db"), f"sqlite:///{out / 'study.db'}"):
        t2, c2 = load_results(where)
        pd.testing.assert_frame_equal(t2.sort_values("key").reset_index(drop=True),
                                      trials.sort_values("key").reset_index(drop=True))
        pd.testing.assert_frame_equal(c2.sort_values(["key", "epoch"]).reset_index(drop=True),
                                      curves.sort_values(["key", "epoch"]).reset_index(drop=True))


def test_load_results_errors(tmp_path):
    with pytest.raises(ValueError, match="no study storage in"):
        load_results(tmp_path)
    with pytest.raises(ValueError, match="holds no lrlab trials"):
        load_results(tmp_path / "empty.db")


def test_tensorboard_runs_read_back(study, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lrlab.study.export import log_tensorboard

    _, res = study
    dirs = log_tensorboard(res.records, tmp_path / "tb")
    assert len(dirs) == 8
    for r in res.records:
        acc = EventAccumulator(str(tmp_path / "tb" / "final" / r.trial_id))
        acc.Reload()
        events = acc.Scalars("val_acc")
        finite = [(int(e), float(a)) for e, a in zip(r.curves["epoch"], r.curves["val_acc"]) if math.isfinite(a)]
        assert [(e.step, e.value) for e in events] == [(s, pytest.approx(v, rel=1e-6)) for s, v in finite]
        assert [e.step for e in acc.Scalars("lr")] == [int(e) for e in r.curves["epoch"]]
    assert log_tensorboard(res.records, tmp_path / "tb") == []  # a rerun adds nothing


@pytest.mark.slow  # MLflow's SQLite store runs its schema migrations (~15 s)
def test_mlflow_runs_read_back(study, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from lrlab.study.export import log_mlflow

    _, res = study
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = log_mlflow(res.records, uri, "lrlab-test")
    assert len(ids) == 8
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name("lrlab-test")
        runs = client.search_runs([exp.experiment_id])
        by_key = {run.data.tags["lrlab_key"]: run for run in runs}
        assert set(by_key) == {r.key for r in res.records}
        for r in res.records:
            run = by_key[r.key]
            assert run.data.params["schedule"] == r.schedule_name and run.data.params["optimizer"] == r.optimizer
            assert float(run.data.params["peak_lr"]) == r.peak_lr
            assert run.info.status == ("FAILED" if r.diverged else "FINISHED")
            assert run.info.start_time == int(r.started * 1000) and run.info.end_time == int(r.finished * 1000)
            hist = client.get_metric_history(run.info.run_id, "val_acc")
            finite = [(int(e), float(a)) for e, a in zip(r.curves["epoch"], r.curves["val_acc"]) if math.isfinite(a)]
            assert sorted((m.step, m.value) for m in hist) == finite
        assert log_mlflow(res.records, uri, "lrlab-test") == []  # logged once


def test_log_to_names_are_checked():
    from lrlab.study.export import parse_log_to

    assert parse_log_to("tensorboard,mlflow,tensorboard") == ("tensorboard", "mlflow")
    with pytest.raises(ValueError, match="--log-to takes tensorboard and/or mlflow"):
        parse_log_to("wandb")


@pytest.mark.parametrize("missing", ["tensorboard", "mlflow"])
def test_a_logger_that_is_not_installed_is_refused_before_training(tmp_path, capsys, monkeypatch, missing):
    """(A README audit: a study trained to the end, then failed with a traceback.)"""
    import sys

    from lrlab.cli import main

    monkeypatch.setitem(sys.modules, missing, None)  # what importing it then does: ImportError
    with pytest.raises(SystemExit) as e:
        main(["study", "--log-to", f"mlflow,{missing}", "--out", str(tmp_path / "x"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == f"lrlab: error: --log-to {missing} needs {missing}: pip install 'lrlab[{missing}]'\n"
    assert not (tmp_path / "x").exists()  # refused before training


def test_cli_log_to(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from lrlab.cli import main

    with pytest.raises(SystemExit) as e:
        main(["study", "--log-to", "wandb", "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "--log-to takes tensorboard and/or mlflow" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before training
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as e:
        main(["study", "--out", str(out), "--epochs", "1", "--seeds", "1", "--tune", "none", "--workers", "0",
              "--schedules", "constant,linear", "--optimizers", "adam", "--no-progress", "--log-to", "tensorboard"])
    assert e.value.code == 0
    assert f"logged tensorboard runs to {out / 'tensorboard'}" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "tensorboard" / "final" / "constant" / "adam").iterdir()) == ["s0"]
    assert len(list((out / "tensorboard" / "final").glob("*/adam/s0/events.out.tfevents.*"))) == 2
