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
