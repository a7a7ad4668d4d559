"""--executor ray: fleets as Ray tasks on a local Ray instance started here (no network)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CFG = {"schedules": ["constant", "linear"], "optimizers": ["sgd", "adam"], "seeds": 1, "epochs": 2,
       "tune": "none", "workers": 0}


@pytest.fixture(scope="module")
def local_ray() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as e:
        pytest.skip(f"Ray is not installed: {e} (pip install 'lrlab[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # Ray's own deprecation warnings
def test_ray_executor_stores_the_numbers_a_local_run_stores(local_ray: Any, tmp_path: Path) -> None:
    from lrlab.study.executors import ray_executor
    from lrlab.study.runner import run_study

    local = run_study({**CFG, "out": str(tmp_path / "local")}, progress=False, quiet=True, report=False)
    ray_run, events = ray_executor(), []

    def spy(*args: Any, on_epoch: Any, on_trial_done: Any, **kwargs: Any) -> Any:
        """The Ray executor, noting the order in which the epoch records and results reach the driver."""
        def epoch(rec: Any) -> None:
            events.append(("epoch", rec.trial_id, rec.epoch, rec.val_acc))
            on_epoch(rec)

        def done(res: Any) -> None:
            events.append(("done", res.trial_id))
            on_trial_done(res)

        return ray_run(*args, on_epoch=epoch, on_trial_done=done, **kwargs)

    remote = run_study({**CFG, "out": str(tmp_path / "ray")}, progress=False, quiet=True, report=False,
                       executor=spy)
    assert remote.ran == 4 and [r.key for r in remote.records] == [r.key for r in local.records]
    for a, b in zip(local.records, remote.records):  # float32 results do not depend on the fleet
        np.testing.assert_array_equal(a.curves["val_loss"], b.curves["val_loss"])
        assert a.final == b.final
        # live: each epoch record reached the driver from the Ray task, before the trial's result
        mine = [e for e in events if e[1] == b.trial_id]
        assert [e[0] for e in mine] == ["epoch", "epoch", "done"] and [e[2] for e in mine[:2]] == [0, 1]
        np.testing.assert_array_equal([e[3] for e in mine[:2]], b.curves["val_acc"])


def test_an_unreachable_ray_cluster_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "RAY_USAGE_STATS_ENABLED": "0"}
    p = subprocess.run([sys.executable, "-c", "from lrlab.cli import main; main()", "study", "--executor", "ray",
                        "--ray-address", "127.0.0.1:9", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, timeout=180)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert lines[-1].startswith("lrlab: error: cannot reach the Ray cluster at 127.0.0.1:9"), p.stderr[-2000:]


FN_MODULE = '''
import math
import os
from pathlib import Path


def train(trial):
    """A training function whose numbers follow from its seed and peak lr (wherever it runs); it
    leaves a mark saying whether it ran inside a Ray worker."""
    import ray

    where = "ray" if ray.is_initialized() else "local"
    (Path(trial.kwargs["marks"]) / f"{where}-{os.getpid()}-{trial.trial_id.replace('/', '_')}").touch()
    if trial.seed == 13:
        raise RuntimeError("seed 13 is unlucky")
    for epoch in range(trial.epochs):
        acc = 0.5 + 0.01 * trial.seed + 0.1 * math.tanh(trial.peak_lr) + 0.01 * epoch
        trial.report(epoch, val_loss=1.0 - acc, val_acc=acc, test_acc=acc, test_loss=1.0 - acc)
'''


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # Ray's own deprecation warnings
def test_ray_runs_a_training_functions_trials_as_tasks(local_ray: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Each trial of a `module:function` training function is one Ray task (imported from the
    driver's directory there): the stored numbers equal a local run's, a trial that raises is
    stored as failed with its one-line reason, and the others go on."""
    from lrlab.study.executors import ray_executor
    from lrlab.study.runner import run_study

    (tmp_path / "rayfn.py").write_text(FN_MODULE)
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = {"task": "rayfn:train", "schedules": ["constant", "linear"], "optimizers": {"sgd": {"peak_lr": 0.1}},
           "seeds": [1, 13], "epochs": 2, "steps_per_epoch": 5, "tune": "none", "workers": 1,
           "task_kwargs": {"marks": str(marks)}}
    remote = run_study({**cfg, "out": str(tmp_path / "ray")}, progress=False, quiet=True, report=False,
                       executor=ray_executor())
    in_ray = sorted(p.name for p in marks.iterdir())
    local = run_study({**cfg, "out": str(tmp_path / "local")}, progress=False, quiet=True, report=False)
    assert remote.ran == 4 and len(in_ray) == 4 and all(m.startswith("ray-") for m in in_ray), in_ray
    assert os.getpid() not in {int(m.split("-")[1]) for m in in_ray}  # Ray's worker processes
    assert len([p for p in marks.iterdir() if p.name.startswith("local-")]) == 4
    assert [r.key for r in remote.records] == [r.key for r in local.records]
    for a, b in zip(local.records, remote.records):
        assert (a.status, a.seed) == (b.status, b.seed)
        np.testing.assert_array_equal(a.curves["val_acc"], b.curves["val_acc"])
    bad = [r for r in remote.records if r.seed == 13]
    assert bad and all(r.status == "failed" and "seed 13 is unlucky" in str(r.extra.get("failed")) for r in bad)


LIVE_MODULE = '''
import time

import optuna


def train(trial):
    """Reports epoch 0, then waits until the study shows it (a RUNNING trial with that value)
    before it goes on: a study that relays reports only when the trial ends fails it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for epoch in range(trial.epochs):
        trial.report(epoch, val_acc=0.5 + 0.01 * trial.seed + 0.01 * epoch, test_acc=0.5)
        if epoch == 0:
            deadline = time.monotonic() + 90
            while not any(t.state.name == "RUNNING" and t.params.get("seed") == trial.seed
                          and t.intermediate_values.get(0) == 0.5 + 0.01 * trial.seed
                          for t in optuna.load_study(study_name="lrlab", storage=trial.kwargs["storage"]).trials):
                if time.monotonic() > deadline:
                    raise RuntimeError("its epoch 0 never showed in the study")
                time.sleep(0.2)
'''


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # Ray's own deprecation warnings
def test_a_training_functions_trials_are_live_on_ray(local_ray: Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Each trial.report in a Ray task reaches the study while the trial still trains."""
    from lrlab.study.executors import ray_executor
    from lrlab.study.runner import run_study

    (tmp_path / "livefn.py").write_text(LIVE_MODULE)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'live.db'}"
    cfg = {"task": "livefn:train", "schedules": ["constant"], "optimizers": {"sgd": {"peak_lr": 0.1}},
           "seeds": [1, 2], "epochs": 2, "steps_per_epoch": 5, "tune": "none", "workers": 1,
           "task_kwargs": {"storage": url}, "storage": url, "out": str(tmp_path / "out")}
    got = run_study(cfg, progress=False, quiet=True, report=False, executor=ray_executor())
    assert got.ran == 2 and [r.status for r in got.records] == ["done", "done"], [r.extra for r in got.records]


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.filterwarnings("ignore")  # Ray's own deprecation warnings
def test_a_ray_fleet_task_keeps_freed_memory_in_its_process(local_ray: Any) -> None:
    """A Ray worker that trained a fleet (the task body ray_executor sends) has glibc keeping freed
    blocks, as run_trials' own workers do: MB-sized buffers allocated and freed again cause no page
    faults there (tens of thousands without the setting, see test_fleet's allocator test)."""
    import importlib.util

    from lrlab.schedules import constant
    from lrlab.study.fleet import TrialSpec

    spec = importlib.util.spec_from_file_location("_lrlab_test_fleet", Path(__file__).with_name("test_fleet.py"))
    assert spec is not None and spec.loader is not None
    test_fleet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_fleet)
    probe = test_fleet.FAULTS_PROBE

    def fleet_then_probe(trials: list[dict[str, Any]]) -> tuple[int, Any, int, int]:
        """Train the fleet as a Ray task does, then count this process's page faults over rounds of
        reused MB-sized buffers (defined here: Ray ships it by value)."""
        from lrlab.study import executors

        out = executors._train_fleet_task("mnist1d", {"subset": 100}, trials, 1, "cpu")
        scope: dict[str, Any] = {}
        exec(probe, scope)  # test_fleet's probe: defines faults()
        scope["faults"]()  # the heap grows once
        return len(out), getattr(executors, "_KEEPS_FREED_MEMORY", None), scope["faults"](), os.getpid()

    trial = TrialSpec(trial_id="constant/sgd/s0", schedule=constant(0.1).resolve(total_steps=1, steps_per_epoch=1),
                      optimizer="sgd", optimizer_kwargs={}, seed=0)
    n, kept, faults, pid = local_ray.get(local_ray.remote(fleet_then_probe).remote([trial.to_dict()]))
    assert pid != os.getpid() and n == 1  # a Ray worker process trained the fleet
    assert kept is True and faults < 100, (kept, faults)


SLOW_MODULE = '''
import time
from pathlib import Path


def train(trial):
    """One marker file per epoch, 0.2 s per epoch."""
    for epoch in range(trial.epochs):
        time.sleep(0.2)
        (Path(trial.kwargs["marks"]) / f"{trial.seed}-{epoch}").touch()
        trial.report(epoch, val_acc=0.5, test_acc=0.5)
'''


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # Ray's own deprecation warnings
def test_ctrl_c_in_the_driver_cancels_its_ray_tasks(local_ray: Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in a Ray run's driver (here: at the first relayed report) cancels the tasks still
    running: nothing would store their results (a rerun trains those trials again)."""
    import time

    from lrlab.study.executors import ray_executor
    from lrlab.study.runner import run_study

    (tmp_path / "slowfn.py").write_text(SLOW_MODULE)
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.chdir(tmp_path)
    ray_run = ray_executor()

    def interrupt(*report: Any) -> None:
        raise KeyboardInterrupt

    def executor(*args: Any, **kwargs: Any) -> Any:  # fleets: not used by a training function's study
        return ray_run(*args, **kwargs)

    executor.functions = lambda task, trials, **kw: ray_run.functions(  # type: ignore[attr-defined]
        task, trials, **{**kw, "on_epoch": interrupt})
    cfg = {"task": "slowfn:train", "schedules": ["constant"], "optimizers": {"sgd": {"peak_lr": 0.1}},
           "seeds": [1, 2], "epochs": 40, "steps_per_epoch": 2, "tune": "none", "workers": 1,
           "task_kwargs": {"marks": str(marks)}, "out": str(tmp_path / "out")}
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, progress=False, quiet=True, report=False, executor=executor)
    # cancelled tasks stop marking; running ones would mark ~5 epochs a second until they end (40 epochs each)
    counts = [len(list(marks.iterdir()))]
    while len(counts) < 5 or counts[-1] != counts[-5]:  # until no new mark for 2 s
        time.sleep(0.5)
        counts.append(len(list(marks.iterdir())))
    assert 1 <= counts[-1] < 40, counts  # not even one trial ran to its end
