"""Trials in Optuna as they train (storage.LiveTrials): RUNNING with per-epoch intermediate values
visible to another connection while the trial trains, the finished trial stored exactly as
without live writes, and no RUNNING trial left behind by an interrupted or killed run (a rerun
trains only what is not stored, and a second rerun trains nothing)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import lrlab.study.storage as storage_mod
from lrlab.study import run_study
from lrlab.study.fleet import run_trials
from lrlab.study.storage import LiveTrials, StudyStorage, live_reason

SMALL = {"task_kwargs": {"subset": 100}, "epochs": 3, "seeds": 1, "workers": 0, "tune": None,
         "schedules": ["constant", "linear"], "optimizers": ["adam"]}


@pytest.fixture(autouse=True)
def _quick_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage_mod, "LIVE_LINGER_S", 0.05)
    monkeypatch.delenv("LRLAB_LIVE", raising=False)


def _trials(url: str, study_name: str = "lrlab", **kw: Any) -> list[optuna.trial.FrozenTrial]:
    """The study's trials read through a fresh connection (not the writer's)."""
    return optuna.load_study(study_name=study_name, storage=url).get_trials(**kw)


def _hooked(check: Any) -> Any:
    """An executor: run_trials with ``check(rec)`` called after the study's own on_epoch."""
    def executor(*args: Any, on_epoch: Any = None, **kw: Any) -> Any:
        def hook(rec: Any) -> None:
            on_epoch(rec)
            check(rec)
        return run_trials(*args, on_epoch=hook, **kw)
    return executor


def _wait_visible(url: str, rec: Any, timeout: float = 30.0) -> optuna.trial.FrozenTrial:
    """Poll another connection until ``rec``'s trial is RUNNING with values for epochs 0..rec.epoch."""
    t0 = time.monotonic()
    while True:
        mine = [t for t in _trials(url, deepcopy=False) if t.user_attrs.get("trial_id") == rec.trial_id
                and t.state == TrialState.RUNNING]
        if mine and set(mine[-1].intermediate_values) == set(range(rec.epoch + 1)):
            return mine[-1]
        assert time.monotonic() - t0 < timeout, f"epoch {rec.epoch} of {rec.trial_id} not visible: {mine}"
        time.sleep(0.02)


def _comparable(t: optuna.trial.FrozenTrial) -> tuple[Any, ...]:
    attrs = {k: v for k, v in t.user_attrs.items() if k != "seconds"}  # wall time differs run to run
    return (t.state, t.value, t.params, t.distributions, t.intermediate_values, attrs)


def _visible_and_unchanged(url: str, plain_url: str, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each epoch's value is visible on another connection while its trial is RUNNING, and the
    finished trials equal those of the same study stored without live writes (``plain_url``)."""
    seen: list[tuple[str, int, dict[int, float]]] = []

    def check(rec: Any) -> None:
        t = _wait_visible(url, rec)
        assert t.intermediate_values[rec.epoch] == rec.val_acc
        assert "lrlab_key" not in t.user_attrs and t.user_attrs["lrlab_live"].startswith(rec.trial_id + "@")
        assert t.params["schedule"] == t.user_attrs["schedule_name"]  # sliceable while it trains
        seen.append((rec.trial_id, rec.epoch, dict(t.intermediate_values)))

    res = run_study({**SMALL, "out": str(out / "live"), "storage": url}, progress=False, quiet=True,
                    report=False, executor=_hooked(check))
    assert len(seen) == 2 * 3 and res.ran == 2
    live = _trials(url)
    assert [t.state for t in live] == [TrialState.COMPLETE] * 2  # the live trials themselves, no copies
    monkeypatch.setenv("LRLAB_LIVE", "0")
    run_study({**SMALL, "out": str(out / "plain"), "storage": plain_url, "study_name": "plain"}, progress=False,
              quiet=True, report=False)
    monkeypatch.delenv("LRLAB_LIVE")
    plain = _trials(plain_url, "plain")
    key = lambda t: t.user_attrs["lrlab_key"]  # noqa: E731
    assert [_comparable(t) for t in sorted(live, key=key)] == [_comparable(t) for t in sorted(plain, key=key)]
    for t in live:  # the real fleet start and end, not the moment the first epoch was written
        rec = {r.key: r for r in res.records}[t.user_attrs["lrlab_key"]]
        assert t.datetime_start.timestamp() == pytest.approx(rec.started, abs=1e-3)
        assert t.datetime_complete.timestamp() == pytest.approx(rec.finished, abs=1e-3)


def test_values_visible_while_running_and_final_trials_unchanged(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _visible_and_unchanged(f"sqlite:///{tmp_path / 'live.db'}", f"sqlite:///{tmp_path / 'plain.db'}", tmp_path,
                           monkeypatch)


def _queue_tests() -> Any:
    """tests/study/test_queue.py as a module (its PostgreSQL server fixture)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_lrlab_test_queue", Path(__file__).with_name("test_queue.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


postgres_url = _queue_tests().postgres_url  # a real PostgreSQL server (skips, saying why, without one)


@pytest.mark.slow
def test_values_visible_while_running_on_postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  postgres_url: Any) -> None:
    fresh = _queue_tests()._fresh_pg
    _visible_and_unchanged(fresh(postgres_url), fresh(postgres_url), tmp_path, monkeypatch)


def train_watched(trial: Any) -> None:
    """A training function that, before reporting epoch e >= 1, waits until another connection sees
    its own trial RUNNING in Optuna with the values of epochs 0..e-1 (fails the trial otherwise)."""
    url = trial.kwargs["url"]
    for epoch in range(trial.epochs):
        t0 = time.monotonic()
        while epoch:
            mine = [t for t in _trials(url, deepcopy=False) if t.user_attrs.get("trial_id") == trial.trial_id
                    and t.state == TrialState.RUNNING]
            if mine and mine[-1].intermediate_values == {e: 0.1 * (e + 1) for e in range(epoch)}:
                break
            if time.monotonic() - t0 > 30:
                raise RuntimeError(f"epoch {epoch - 1} of {trial.trial_id} is not visible live: {mine}")
            time.sleep(0.02)
        trial.report(epoch, val_loss=1.0 / (epoch + 1), val_f1=0.1 * (epoch + 1))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_training_functions_trials_are_live_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  workers: int) -> None:
    """Each report of a training function's trial (the study metric, here val_f1) is visible to
    another connection while the trial trains, in this process or in worker processes; the
    finished trial is the live one, completed in place."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    url = f"sqlite:///{tmp_path / 'fn.db'}"
    res = run_study({"task": "test_live:train_watched", "task_kwargs": {"url": url}, "epochs": 3,
                     "steps_per_epoch": 2, "schedules": ["constant", "linear"], "optimizers": {"sgd": 0.1},
                     "tune": "none", "seeds": 1, "workers": workers, "metric": "val_f1", "storage": url,
                     "out": str(tmp_path / "out")}, progress=False, quiet=True, report=False)
    assert [r.status for r in res.records] == ["done", "done"], [r.extra for r in res.records]
    trials = _trials(url)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2  # the live trials, no copies
    for t in trials:
        assert t.intermediate_values == {0: 0.1, 1: 0.2, 2: pytest.approx(0.3)} and t.value == pytest.approx(0.3)


def test_epoch_values_are_written_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet-epoch's records go to the database in one transaction, not one commit per value."""
    monkeypatch.setattr(storage_mod, "LIVE_LINGER_S", 0.5)  # the default: batch what arrives within it
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    commits: list[str] = []
    cfg = {**SMALL, "seeds": 2, "out": str(tmp_path)}
    listener = lambda conn: commits.append(threading.current_thread().name)  # noqa: E731
    event.listen(Engine, "commit", listener)  # every engine's commits, by the thread that made them
    try:
        last = [-1]

        def pause_between_epochs(*args: Any, on_epoch: Any = None, **kw: Any) -> Any:
            def hook(rec: Any) -> None:  # an epoch longer than the writer's linger, as in a real study
                if rec.epoch != last[0]:
                    time.sleep(0.8)
                    last[0] = rec.epoch
                on_epoch(rec)
            return run_trials(*args, on_epoch=hook, **kw)

        run_study(cfg, progress=False, quiet=True, report=False, executor=pause_between_epochs)
    finally:
        event.remove(Engine, "commit", listener)
    writer = commits.count("lrlab-live")
    # 12 epoch values (4 trials x 3 epochs): epochs 0 and 1 one transaction each (the trials created
    # in the first), epoch 2 written with the finished trials; one commit per value would be 8 here
    assert writer == 2, commits
    trials = _trials(f"sqlite:///{tmp_path / 'study.db'}")
    assert [sorted(t.intermediate_values) for t in trials] == [[0, 1, 2]] * 4


def test_interrupted_study_leaves_no_running_trial_and_reruns_only_the_rest(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"

    def stop(rec: Any) -> None:
        if rec.epoch == 1:
            _wait_visible(url, rec)
            raise KeyboardInterrupt

    cfg = {**SMALL, "out": str(tmp_path)}
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, progress=False, quiet=True, report=False, executor=_hooked(stop))
    after = _trials(url)
    assert not [t for t in after if t.state == TrialState.RUNNING]
    assert [(t.state, t.user_attrs["lrlab_status"]) for t in after] == [(TrialState.FAIL, "interrupted")] * 2
    assert StudyStorage(url, "lrlab").done_keys() == set()  # an interrupted trial is not a stored one
    assert run_study(cfg, progress=False, quiet=True, report=False).ran == 2
    again = run_study(cfg, progress=False, quiet=True, report=False)
    assert (again.ran, again.reused) == (0, 2)
    final = _trials(url)
    assert sorted(t.state.name for t in final) == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]


_KILLED = """
import sys, time
from lrlab.study import run_study
from lrlab.study.fleet import run_trials

def executor(*args, on_epoch=None, **kw):
    def hook(rec):
        on_epoch(rec)
        if rec.epoch == 1:
            print("epoch 1", flush=True)
            time.sleep(600)  # killed here
    return run_trials(*args, on_epoch=hook, **kw)

run_study({cfg!r}, progress=False, quiet=True, report=False, executor=executor)
"""


@pytest.mark.slow
def test_a_killed_study_leaves_running_trials_that_the_rerun_ends(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    cfg = {**SMALL, "out": str(tmp_path)}
    monkeypatch.setenv("LRLAB_HEARTBEAT", "1")  # the dead run's queue claims go stale after 3 s, not 30
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(storage_mod.__file__).parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED.format(cfg=cfg)], stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "epoch 1\n"
        t0 = time.monotonic()
        while not [t for t in _trials(url) if t.state == TrialState.RUNNING and len(t.intermediate_values) == 2]:
            assert time.monotonic() - t0 < 60
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    zombies = [t for t in _trials(url) if t.state == TrialState.RUNNING]
    assert zombies and all("lrlab_key" not in t.user_attrs for t in zombies)  # not counted as stored
    res = run_study(cfg, progress=False, quiet=True, report=False)
    assert (res.ran, res.reused) == (2, 0)
    final = _trials(url)
    assert not [t for t in final if t.state == TrialState.RUNNING]
    ended = {t.number: t.user_attrs["lrlab_status"] for t in final if t.state == TrialState.FAIL}
    assert sorted(ended) == sorted(t.number for t in zombies) and set(ended.values()) == {"abandoned"}
    assert run_study(cfg, progress=False, quiet=True, report=False).ran == 0


def test_where_trials_cannot_be_written_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = StudyStorage(str(tmp_path / "s.log"), "j")
    assert "journal file" in str(live_reason(journal))
    assert not LiveTrials(journal, {}).live
    db = StudyStorage(str(tmp_path / "s.db"), "d")
    assert live_reason(db) is None
    monkeypatch.setenv("LRLAB_LIVE", "0")
    assert live_reason(db) == "LRLAB_LIVE=0"
    monkeypatch.setenv("LRLAB_LIVE", "yes")
    with pytest.raises(ValueError, match=r"LRLAB_LIVE='yes': give 1 .* or 0"):
        live_reason(db)


def test_a_journal_study_still_stores_each_trial_when_it_finishes(tmp_path: Path) -> None:
    res = run_study({**SMALL, "out": str(tmp_path), "storage": str(tmp_path / "s.log")}, progress=False,
                    quiet=True, report=False)
    trials = StudyStorage(str(tmp_path / "s.log"), "lrlab").study.get_trials()
    assert res.ran == 2 and [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(sorted(t.intermediate_values) == [0, 1, 2] for t in trials)


def _record(key: str = "linear/sgd/s0@abc", epochs: int = 2) -> Any:
    """A finished trial's record, and its skeleton (what is known before it trains)."""
    import dataclasses

    import numpy as np

    from lrlab.study.storage import CURVE_FIELDS, TrialRecord

    skeleton = TrialRecord(key=key, trial_id=key.split("@")[0], schedule_name="linear", schedule_text="linear",
                           schedule_config={}, optimizer="sgd", optimizer_kwargs={}, seed=0, peak_lr=0.1,
                           epochs=epochs, curves={}, final={})
    curves = {k: np.linspace(0.1, 0.2, epochs) for k in CURVE_FIELDS}
    curves["epoch"] = np.arange(epochs, dtype=np.float64)
    return dataclasses.replace(skeleton, curves=curves, final={"val_acc": 0.2}), skeleton


def _epoch(trial_id: str, epoch: int, acc: float) -> Any:
    from lrlab.study.fleet import EpochRecord

    return EpochRecord(trial_id, epoch, 0.1, 1.0, acc, 1.0, acc, float("nan"), float("nan"))


def _running(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    t0 = time.monotonic()
    while not (got := _trials(url, study, states=(TrialState.RUNNING,))):
        assert time.monotonic() - t0 < 30, "no live trial appeared"
        time.sleep(0.02)
    return got


def test_a_live_trial_ended_by_another_process_is_stored_as_a_new_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    rec, skeleton = _record()
    with LiveTrials(StudyStorage(url, "u"), {rec.trial_id: skeleton}) as live:
        live.epoch(_epoch(rec.trial_id, 0, 0.1))
        (zombie,) = _running(url, "u")
        # another process trains the same key (a rerun that took this one for dead): it ends it
        LiveTrials(StudyStorage(url, "u"), {rec.trial_id: skeleton}).close()
        live.save(rec)
    ended, stored = _trials(url, "u")
    assert (ended.number, ended.state, ended.user_attrs["lrlab_status"]) == (zombie.number, TrialState.FAIL,
                                                                            "abandoned")
    assert stored.state == TrialState.COMPLETE and stored.user_attrs["lrlab_key"] == rec.key
    assert stored.intermediate_values == {0: 0.1, 1: 0.2}
    assert StudyStorage(url, "u").done_keys() == {rec.key}


def test_a_running_trial_whose_key_is_stored_is_ended_by_the_next_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    rec, skeleton = _record()
    StudyStorage(url, "u").save(rec)
    killed = LiveTrials(StudyStorage(url, "u"), {rec.trial_id: skeleton})  # never closed, as if killed
    killed.epoch(_epoch(rec.trial_id, 0, 0.1))
    _running(url, "u")
    other, other_skeleton = _record("cosine/sgd/s0@def")
    LiveTrials(StudyStorage(url, "u"), {other.trial_id: other_skeleton}).close()
    assert not _trials(url, "u", states=(TrialState.RUNNING,))
    assert [t.user_attrs["lrlab_status"] for t in _trials(url, "u", states=(TrialState.FAIL,))] == ["abandoned"]
    killed.close()


def test_a_fresh_run_is_live_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    cfg = {**SMALL, "out": str(tmp_path), "epochs": 2}
    run_study(cfg, progress=False, quiet=True, report=False)
    seen: list[int] = []
    res = run_study({**cfg, "fresh": True}, progress=False, quiet=True, report=False,
                    executor=_hooked(lambda rec: seen.append(_wait_visible(url, rec).number)))
    assert res.ran == 2 and sorted(set(seen)) == [2, 3]  # new trials, after the first run's two
    assert [t.state for t in _trials(url)] == [TrialState.COMPLETE] * 4


def test_optuna_dashboard_serves_a_running_trial_with_its_values(tmp_path: Path) -> None:
    """What optuna-dashboard's API (the data of its pages) says while the study trains."""
    pytest.importorskip("optuna_dashboard")
    import json
    import socket
    import urllib.request
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    import optuna_dashboard

    url = f"sqlite:///{tmp_path / 'study.db'}"

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:  # no request lines on stderr
            pass

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    seen: list[tuple[str, int]] = []

    def check(rec: Any) -> None:
        if rec.epoch != 1:
            return
        _wait_visible(url, rec)
        server = make_server("127.0.0.1", port, optuna_dashboard.wsgi(url), handler_class=Quiet)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{port}/api/studies"
            (sid,) = [s["study_id"] for s in json.load(urllib.request.urlopen(base, timeout=30))["study_summaries"]
                      if s["study_name"] == "lrlab"]
            trials = json.load(urllib.request.urlopen(f"{base}/{sid}?after=0", timeout=30))["trials"]
            (mine,) = [t for t in trials if t["state"] == "Running"
                       and {"key": "trial_id", "value": rec.trial_id} in t["user_attrs"]]
            seen.append((mine["state"], len(mine["intermediate_values"])))
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)

    run_study({**SMALL, "out": str(tmp_path)}, progress=False, quiet=True, report=False, executor=_hooked(check))
    assert seen == [("Running", 2)] * 2  # both trials, at epoch 1: values for epochs 0 and 1
