"""The study as Optuna sees it: params with distributions, real times, intermediate values, and
optuna-dashboard serving it (on 127.0.0.1, a free port, bounded waits)."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from lrlab.study import run_study
from lrlab.study.optimizers import OPTIMIZERS
from lrlab.study.storage import CURVE_FIELDS, LRLabStorageWarning, StudyStorage, TrialRecord


def record(key="linear/sgd/s0@abc"):
    """A finished 3-epoch trial (sgd, linear, lr 0.1, seed 0)."""
    curves = {k: np.array([0.1, 0.2, 0.3]) for k in CURVE_FIELDS}
    curves["epoch"] = np.array([0.0, 1.0, 2.0])
    return TrialRecord(key=key, trial_id=key.split("@")[0], schedule_name="linear", schedule_text="linear",
                       schedule_config={}, optimizer="sgd", optimizer_kwargs={}, seed=0, peak_lr=0.1, epochs=3,
                       curves=curves, final={"val_acc": 0.3})


TUNED = {"task_kwargs": {"subset": 100}, "epochs": 3, "seeds": 2, "workers": 0,
         "schedules": ["constant", "linear"], "optimizers": {"adam": 0.01, "sgd": 0.1},
         "tune": {"grid": [0.5, 2], "seeds": [0]}}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("optuna_native")
    t0 = time.time()
    res = run_study({**TUNED, "out": str(out)}, progress=False, quiet=True, report=False)
    return out, res, t0, time.time()


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="lrlab", storage=f"sqlite:///{out / 'study.db'}")


def test_params_and_distributions(tuned):
    out, res, _, _ = tuned
    trials = load(out).get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == len(res.records) + len(res.tune_records) == 16
    sched = CategoricalDistribution(["constant", "linear"])
    opt = CategoricalDistribution(sorted(OPTIMIZERS))
    lrs = [r.peak_lr for r in [*res.records, *res.tune_records]]
    for t in trials:
        assert set(t.params) == {"schedule", "optimizer", "peak_lr", "seed"}
        assert t.distributions["schedule"] == sched and t.distributions["optimizer"] == opt
        d = t.distributions["peak_lr"]
        assert isinstance(d, FloatDistribution) and d.log
        assert (d.low, d.high) == pytest.approx((min(lrs) / 10, max(lrs) * 10))
        assert t.distributions["seed"] == IntDistribution(0, 2**31 - 1)
        assert t.params["schedule"] == t.user_attrs["schedule_name"]
        assert t.params["optimizer"] == t.user_attrs["optimizer"]
        assert t.params["peak_lr"] == t.user_attrs["peak_lr"]
        assert t.user_attrs["role"] in ("tune", "final")
    # the tuning trials ran at the grid (0.5x, 2x the base lr), the finals at the chosen lr
    tune = {(t.params["optimizer"], t.params["peak_lr"]) for t in trials if t.user_attrs["role"] == "tune"}
    assert tune == {("adam", 0.005), ("adam", 0.02), ("sgd", 0.05), ("sgd", 0.2)}


def test_intermediate_values_and_times(tuned):
    out, res, t0, t1 = tuned
    trials = load(out).get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    by_id = {r.trial_id: r for r in [*res.records, *res.tune_records]}
    for t in trials:
        r = by_id[t.user_attrs["trial_id"]]
        assert t.intermediate_values == {int(e): a for e, a in zip(r.curves["epoch"], r.curves["val_acc"])}
        assert sorted(t.intermediate_values) == [0, 1, 2]
        assert t.value == t.intermediate_values[2] == r.final["val_acc"]
        # real times: within the run, the start before the end, a positive duration
        start, end = t.datetime_start.timestamp(), t.datetime_complete.timestamp()
        assert t0 - 1 <= start < end <= t1 + 1
        assert t.duration.total_seconds() > 0
        assert (start, end) == pytest.approx((r.started, r.finished), abs=1e-3)
    # a fleet's trials share its start; the tuning fleet starts before the final fleet
    starts = {t.user_attrs["role"]: set() for t in trials}
    for t in trials:
        starts[t.user_attrs["role"]].add(t.datetime_start)
    assert max(starts["tune"]) < min(starts["final"])


def test_importance_runs(tuned):
    out, _, _, _ = tuned
    study = load(out)
    imp = optuna.importance.get_param_importances(study)
    assert set(imp) <= {"schedule", "optimizer", "peak_lr", "seed"} and "peak_lr" in imp
    assert sum(imp.values()) == pytest.approx(1.0)
    assert all(v >= 0 for v in imp.values())


def test_records_read_back_the_times(tuned):
    out, res, _, _ = tuned
    back = StudyStorage(str(out / "study.db"), "lrlab").records()
    for r in res.records:
        assert back[r.key].started == pytest.approx(r.started, abs=1e-3)
        assert back[r.key].finished == pytest.approx(r.finished, abs=1e-3)


def test_outside_the_space_warns_and_keeps_the_attr(tmp_path):
    st = StudyStorage(str(tmp_path / "s.db"), "t")
    assert st.param_space() == {"schedule": [], "optimizer": [], "peak_lr": []}  # nothing declared
    space = st.param_space(["linear", "constant"], ["sgd", "adam"], [0.1, 0.01])
    assert space == {"schedule": ["constant", "linear"], "optimizer": ["adam", "sgd"], "peak_lr": [0.001, 1.0]}
    assert st.param_space(["other"], ["sgd"], [5.0]) == space  # fixed by the first declaration
    r = record()
    st.save(r)
    r2 = record("cosine/sgd/s0@def")
    r2.schedule_name, r2.peak_lr = "cosine", 3.0
    with pytest.warns(LRLabStorageWarning, match=r"schedule 'cosine', peak_lr 3: outside study 't'"):
        st.save(r2)
    t1, t2 = st.study.get_trials()
    assert t1.params == {"schedule": "linear", "optimizer": "sgd", "peak_lr": 0.1, "seed": 0}
    assert t2.params == {"optimizer": "sgd", "seed": 0}
    assert st.records()[r2.key].schedule_name == "cosine" and st.records()[r2.key].peak_lr == 3.0


def test_undeclared_space_stores_numbers_only(tmp_path):
    st = StudyStorage(str(tmp_path / "s.log"), "t")
    r = record()
    r.started, r.finished = 1.7e9, 1.7e9 + 2.5
    st.save(r)
    (t,) = st.study.get_trials()
    assert set(t.params) == {"seed", "peak_lr"}
    assert t.duration.total_seconds() == pytest.approx(2.5, abs=1e-3)
    assert math.isclose(st.records()[r.key].started, 1.7e9, abs_tol=1e-3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_optuna_dashboard_serves_the_study(tuned):
    pytest.importorskip("optuna_dashboard")
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    import optuna_dashboard

    out, _, _, _ = tuned
    app = optuna_dashboard.wsgi(f"sqlite:///{out / 'study.db'}")

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):  # no request lines on stderr
            pass

    server: WSGIServer = make_server("127.0.0.1", _free_port(), app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        studies = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=30))["study_summaries"]
        (summary,) = [s for s in studies if s["study_name"] == "lrlab"]
        detail = json.load(urllib.request.urlopen(f"{base}/api/studies/{summary['study_id']}?after=0",
                                                  timeout=30))
        assert len(detail["trials"]) == 16
        names = {p["name"] for p in detail["union_search_space"]}
        assert names == {"schedule", "optimizer", "peak_lr", "seed"}
        t = detail["trials"][0]
        assert len(t["intermediate_values"]) == 3 and t["datetime_complete"] > t["datetime_start"]
        imp = json.load(urllib.request.urlopen(f"{base}/api/studies/{summary['study_id']}/param_importances",
                                               timeout=60))
        assert {p["name"] for p in imp["param_importances"][0]} >= {"peak_lr"}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_worker_messages_carry_the_times():
    """Workers send results as dicts: the start and end times survive the round trip."""
    from lrlab.study.fleet import TrialResult

    r = TrialResult("a", [], False, None, {"val_acc": 0.5}, 1.0, None, 1.7e9, 1.7e9 + 3)
    back = TrialResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert (back.started, back.finished) == (1.7e9, 1.7e9 + 3)
    old = {k: v for k, v in r.to_dict().items() if k not in ("started", "finished")}
    assert math.isnan(TrialResult.from_dict(old).started)
