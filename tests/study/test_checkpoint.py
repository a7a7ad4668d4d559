"""Epoch-end checkpoints: an interrupted fleet, one-at-a-time trial, study or ``lrlab study`` resumes
mid-trial and ends bit for bit where an uninterrupted run ends (float32, one torch thread);
unusable checkpoints are ignored with a warning; files are written atomically and removed once
their trial is stored."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lrlab.schedules import constant, cosine, plateau, warmup
from lrlab.study import checkpoint as ck
from lrlab.study.fleet import TrialSpec, checkpoint_file, run_trials, train_fleet, train_one
from lrlab.study.runner import run_study
from lrlab.study.storage import StudyStorage
from lrlab.study.tasks import load_task

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 4
SPE = 6  # subset 300 (300 training examples) / batch 50
PEAK = {"sgd": 0.05, "adam": 1e-2, "rmsprop": 1e-3, "adagrad": 5e-2, "adadelta": 1.0,
        "sgd_schedulefree": 0.5, "adamw_schedulefree": 1e-2, "prodigy": 1.0}


@pytest.fixture(scope="module")
def task():
    return load_task("mnist1d", subset=300, batch_size=50)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the study's workers: the float32 numbers do not depend on anything else
    yield
    torch.set_num_threads(before)


def _trials(opt: str, n: int = 3, prefix: str = "t") -> list[TrialSpec]:
    peak = PEAK[opt]
    scheds = [cosine(peak, peak / 10, steps=EPOCHS * SPE),
              constant(peak) * plateau(patience=0, factor=0.5),  # plateau state crosses the checkpoint
              warmup(constant(peak), steps=7)]
    return [TrialSpec(f"{prefix}{opt}/{i}", scheds[i % 3], opt, {}, seed=i) for i in range(n)]


def _interrupt_after(epoch: int, trial_id: str):
    """An ``on_epoch`` callback raising KeyboardInterrupt once ``trial_id`` finished ``epoch``."""
    def cb(rec):
        if rec.epoch == epoch and rec.trial_id == trial_id:
            raise KeyboardInterrupt
    return cb


def _same(a, b) -> None:
    """Bit-identical results: curves, final metrics, weights (repr compares NaN too)."""
    assert [r.trial_id for r in a] == [r.trial_id for r in b]
    for x, y in zip(a, b):
        assert repr(x.curves) == repr(y.curves), x.trial_id
        assert repr(x.final) == repr(y.final) and x.diverged == y.diverged, x.trial_id
        assert x.weights is not None and y.weights is not None
        assert all(torch.equal(x.weights[k], y.weights[k]) for k in x.weights), x.trial_id


# ---- the file format -------------------------------------------------------------------------------


def test_pack_round_trips_nested_tensors_arrays_and_plain_values():
    import jax.numpy as jnp

    state = {"model": {"w": torch.randn(3, 2), "n": torch.tensor(5)}, "np": np.arange(4.0), "jax": jnp.ones(2),
             "rng": torch.get_rng_state(), "tuple": (1, 2.5, "x", None, True), 7: [float("nan"), math.inf],
             "scalar": np.float32(0.25), "f64": np.float64(0.5), "step": torch.tensor(3.0), "$odd": 1}
    meta, tensors = ck.pack(state)
    back = ck.unpack(json.loads(json.dumps(meta)), tensors)
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["model"]["n"].item() == 5
    assert isinstance(back["np"], np.ndarray) and back["np"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert type(back["jax"]).__module__.startswith("jax") and back["jax"].tolist() == [1.0, 1.0]
    assert torch.equal(back["rng"], state["rng"]) and back["tuple"] == (1, 2.5, "x", None, True)
    assert math.isnan(back[7][0]) and back[7][1] == math.inf and back["$odd"] == 1
    assert back["scalar"] == np.float32(0.25) and back["scalar"].dtype == np.float32
    assert type(back["f64"]) is np.float64 and back["f64"] == 0.5
    assert back["step"].dtype == torch.float32 and back["step"].dim() == 0 and back["step"].item() == 3.0
    assert sorted(tensors) == ["t0", "t1", "t2", "t3"]  # w, np, jax, rng: 0-d tensors and NumPy scalars are JSON
    with pytest.raises(TypeError, match=r"cannot save state.model.f of type function"):
        ck.pack({"model": {"f": lambda: 0}})


def test_save_is_atomic_and_load_ignores_corrupt_or_foreign_files(tmp_path, monkeypatch):
    path = tmp_path / "c" / "a"
    ident = {"trial": "a", "epochs": 3}
    ck.save(path, ident, {"epoch": 1, "w": torch.ones(2)})
    assert ck.saved_epochs(path) == 1 and ck.load(path, ident)["w"].tolist() == [1.0, 1.0]
    assert ck.files(path) == [tmp_path / "c" / "a.1.safetensors"]

    def killed(src, dst):  # the process dies between writing the temporary file and the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        ck.save(path, ident, {"epoch": 2, "w": torch.zeros(2)})
    monkeypatch.undo()
    assert ck.load(path, ident)["epoch"] == 1 and sorted(os.listdir(path.parent)) == ["a.1.safetensors"]
    (path.parent / "a.2.999.tmp").write_bytes(b"half")  # a writer killed by SIGKILL leaves its temporary file
    ck.save(path, ident, {"epoch": 2, "w": torch.zeros(2)})  # the next epoch replaces the previous file
    assert sorted(os.listdir(path.parent)) == ["a.2.999.tmp", "a.2.safetensors"] and ck.saved_epochs(path) == 2
    with pytest.warns(ck.LRLabCheckpointWarning, match=r"ignoring the checkpoint a.2.safetensors \(saved for a "
                                                       r"different epochs\); the trial restarts from epoch 0"):
        assert ck.load(path, {"trial": "a", "epochs": 4}) is None
    assert sorted(os.listdir(path.parent)) == ["a.2.safetensors"]  # loading removed the leftover
    newest = ck.files(path)[0]
    newest.write_bytes(newest.read_bytes()[:-5])  # truncated
    with pytest.warns(ck.LRLabCheckpointWarning, match="corrupt"):
        assert ck.load(path, ident) is None
    newest.write_bytes(b"garbage")
    with pytest.warns(ck.LRLabCheckpointWarning, match="corrupt"):
        assert ck.load(path, ident) is None
    assert ck.saved_epochs(path) == 0 and ck.load(tmp_path / "none", ident) is None
    ck.discard(path)
    ck.discard(path)  # twice: nothing there, no error
    assert os.listdir(path.parent) == []


def test_checkpoint_dir_sits_next_to_the_storage():
    assert ck.checkpoint_dir("sqlite:////r/s/study.db", "/out", "lrlab") == Path("/r/s/checkpoints/lrlab")
    assert ck.checkpoint_dir("/j/trials.log", "/out", "a/b") == Path("/j/checkpoints/a_b")
    assert ck.checkpoint_dir("postgresql://u@h/db", "/out", "lrlab") == Path("/out/checkpoints/lrlab")
    assert ck.checkpoint_dir("postgresql://u@h/db", "/out", "a/b", "/mnt/ck") == Path("/mnt/ck/a_b")  # given
    assert ck.checkpoint_dir("sqlite:////r/s/study.db", "/out", "lrlab", "rel") == Path("rel/lrlab")


# ---- fleets and one-at-a-time trials ---------------------------------------------------------------


@pytest.mark.parametrize("opt", ["sgd", "adam", "rmsprop", "adagrad", "adadelta"])
def test_an_interrupted_fleet_resumes_bit_identical(task, tmp_path, opt):
    trials = _trials(opt)
    whole = train_fleet(task, trials, epochs=EPOCHS, keep_weights=True)
    with pytest.raises(KeyboardInterrupt):
        train_fleet(task, trials, epochs=EPOCHS, keep_weights=True, checkpoint_dir=tmp_path,
                    on_epoch=_interrupt_after(1, trials[-1].trial_id))
    files = {t.trial_id: checkpoint_file(tmp_path, t, EPOCHS) for t in trials}
    assert [ck.saved_epochs(f) for f in files.values()] == [2, 2, 2]
    seen: list[int] = []
    resumed = train_fleet(task, trials, epochs=EPOCHS, keep_weights=True, checkpoint_dir=tmp_path,
                          on_epoch=lambda r: seen.append(r.epoch))
    assert sorted(set(seen)) == [2, 3]  # epochs 0 and 1 were not trained again
    _same(whole, resumed)
    assert os.listdir(tmp_path) == []  # removed once each trial was delivered


def test_resumed_trials_can_join_other_fleets_and_unusable_checkpoints_restart(task, tmp_path):
    """Checkpoints are per trial: a rerun may group the trials differently (a resumed fleet and a
    fresh one), and a checkpoint saved for another trial is ignored with a warning."""
    trials = _trials("adam", n=4)
    whole = train_fleet(task, trials, epochs=EPOCHS, keep_weights=True)
    with pytest.raises(KeyboardInterrupt):
        train_fleet(task, trials, epochs=EPOCHS, keep_weights=True, checkpoint_dir=tmp_path,
                    on_epoch=_interrupt_after(0, trials[-1].trial_id))
    files = [checkpoint_file(tmp_path, t, EPOCHS) for t in trials]
    ck.discard(files[2])  # trial 2 lost its checkpoint: starts over in a fleet of its own
    (saved3,) = ck.files(files[3])
    shutil.copy(ck.files(files[0])[0], saved3)  # trial 3's file holds trial 0's state
    with pytest.warns(ck.LRLabCheckpointWarning, match="saved for a different trial"):
        resumed = train_fleet(task, trials, epochs=EPOCHS, keep_weights=True, checkpoint_dir=tmp_path)
    _same(whole, resumed)
    # run_trials in two worker processes continues from checkpoints made in this one
    with pytest.raises(KeyboardInterrupt):
        train_fleet(task, trials, epochs=EPOCHS, keep_weights=True, checkpoint_dir=tmp_path,
                    on_epoch=_interrupt_after(2, trials[-1].trial_id))
    assert [ck.saved_epochs(f) for f in files] == [3, 3, 3, 3]
    epochs_seen: list[int] = []
    got = run_trials("mnist1d", {"subset": 300, "batch_size": 50}, trials, epochs=EPOCHS, workers=2, max_fleet=2,
                     checkpoint_dir=tmp_path, on_epoch=lambda r: epochs_seen.append(r.epoch))
    assert set(epochs_seen) == {3}
    assert [repr(r.curves) for r in got] == [repr(r.curves) for r in whole]
    assert [repr(r.final) for r in got] == [repr(r.final) for r in whole]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("opt", ["adamw_schedulefree", "prodigy", "sgd_schedulefree"])
def test_one_at_a_time_trials_resume_bit_identical(task, tmp_path, opt):
    trials = _trials(opt, n=2)
    whole = train_fleet(task, trials, epochs=EPOCHS, keep_weights=True)
    with pytest.raises(KeyboardInterrupt):
        train_fleet(task, trials, epochs=EPOCHS, keep_weights=True, checkpoint_dir=tmp_path,
                    on_epoch=_interrupt_after(1, trials[1].trial_id))
    assert ck.saved_epochs(checkpoint_file(tmp_path, trials[1], EPOCHS)) == 2
    assert ck.files(checkpoint_file(tmp_path, trials[0], EPOCHS)) == []  # finished and delivered
    seen: list[tuple[str, int]] = []
    _same(whole, train_fleet(task, trials, epochs=EPOCHS, keep_weights=True, checkpoint_dir=tmp_path,
                             on_epoch=lambda r: seen.append((r.trial_id, r.epoch))))
    assert [e for i, e in seen if i == trials[1].trial_id] == [2, 3]  # continued after its 2 saved epochs
    # train_one itself: interrupted, resumed, and its checkpoint gone once it returns
    t = trials[1]
    with pytest.raises(KeyboardInterrupt):
        train_one(task, t, epochs=EPOCHS, keep_weights=True, checkpoint_dir=tmp_path,
                  on_epoch=_interrupt_after(2, t.trial_id))
    seen.clear()
    _same([whole[1]], [train_one(task, t, epochs=EPOCHS, keep_weights=True, checkpoint_dir=tmp_path,
                                 on_epoch=lambda r: seen.append((r.trial_id, r.epoch)))])
    assert seen == [(t.trial_id, 3)]
    assert os.listdir(tmp_path) == []


def test_dropout_in_a_one_at_a_time_model_resumes_its_random_stream(tmp_path):
    """train_one saves torch's global random state: a model with dropout draws the same masks."""
    from lrlab.study.tasks import Task

    base = load_task("mnist1d", subset=300, batch_size=50)

    def model():
        return torch.nn.Sequential(torch.nn.Linear(40, 32), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                   torch.nn.Linear(32, 10))

    task = Task("dropout", base.x_train, base.y_train, base.x_test, base.y_test, model, batch_size=50)
    t = _trials("adam", n=1)[0]
    whole = train_one(task, t, epochs=EPOCHS, keep_weights=True)
    with pytest.raises(KeyboardInterrupt):
        train_one(task, t, epochs=EPOCHS, keep_weights=True, checkpoint_dir=tmp_path,
                  on_epoch=_interrupt_after(1, t.trial_id))
    torch.manual_seed(1234)  # a rerun starts in a fresh process: another global random state
    seen: list[int] = []
    _same([whole], [train_one(task, t, epochs=EPOCHS, keep_weights=True, checkpoint_dir=tmp_path,
                              on_epoch=lambda r: seen.append(r.epoch))])
    assert seen == [2, 3]


# ---- the study -------------------------------------------------------------------------------------

STUDY = {"task_kwargs": {"subset": 300, "batch_size": 50}, "epochs": EPOCHS, "seeds": 2, "workers": 0,
         "schedules": ["constant", "plateau"], "optimizers": ["adam", "adamw_schedulefree"], "tune": "none"}


def _stored(out: Path, db: Path | None = None) -> dict[str, str]:
    """Every stored trial's curves and final metrics, exactly (repr of the floats, NaN included)."""
    st = StudyStorage(str(db or out / "study.db"), "lrlab")
    recs = st.records(sorted(st.done_keys()))
    return {k: repr(({c: v.tolist() for c, v in sorted(r.curves.items())}, sorted(r.final.items()), r.diverged))
            for k, r in recs.items()}


def _interrupting() -> Any:
    """run_trials, interrupted (Ctrl-C) once STUDY's adam fleet of 4 saved its third epoch and reports it."""
    calls = {"n": 0}

    def run(*args, on_epoch=None, **kw):
        def cb(rec):
            calls["n"] += 1
            on_epoch(rec)
            if calls["n"] == 4 * 2 + 1:
                raise KeyboardInterrupt
        return run_trials(*args, on_epoch=cb, **kw)

    return run


def _counting(trained: list[tuple[str, int]]) -> Any:
    """run_trials, noting each epoch it trains as ``(optimizer, epoch)`` in ``trained``."""
    def run(*args, on_epoch=None, **kw):
        def cb(rec):
            trained.append((rec.trial_id.split("/")[1], rec.epoch))
            on_epoch(rec)
        return run_trials(*args, on_epoch=cb, **kw)

    return run


def test_run_study_interrupted_mid_fleet_continues_and_matches(tmp_path):
    from rich.console import Console

    whole = run_study({**STUDY, "out": str(tmp_path / "whole")}, progress=False, quiet=True, report=False)
    out = tmp_path / "cut"
    con = Console(record=True, width=200)
    with pytest.raises(KeyboardInterrupt):
        run_study({**STUDY, "out": str(out)}, progress=False, console=con, report=False, executor=_interrupting())
    text = " ".join(con.export_text().split())
    assert ("interrupted: 0 finished trials stored in sqlite:///" in text
            # one claim holds both optimizers' trials: the schedule-free ones had not started yet
            and "12 epochs of 4 running trials saved (4 others had no finished epoch); rerun the same "
                "command to continue" in text), text
    trained: list[tuple[str, int]] = []
    # the rerun takes the re-queued tickets: the adam fleet trains only its last epoch
    again = run_study({**STUDY, "out": str(out)}, progress=False, quiet=True, report=False, executor=_counting(trained))
    assert sorted(e for o, e in trained if o == "adam") == [3, 3, 3, 3]
    assert len([e for o, e in trained if o == "adamw_schedulefree"]) == 4 * EPOCHS
    assert (again.ran, again.reused) == (8, 0)
    assert _stored(out) == _stored(tmp_path / "whole") and len(_stored(out)) == 8
    assert [repr(r.final) for r in again.records] == [repr(r.final) for r in whole.records]
    assert list((out / "checkpoints" / "lrlab").iterdir()) == []


def test_a_shared_checkpoint_dir_lets_a_worker_elsewhere_continue_an_interrupted_study(tmp_path, monkeypatch):
    """``checkpoint_dir``: the driver saves its running trials there (not next to the storage), and a
    ``lrlab study worker`` in another directory, which mounts it at another path (``--checkpoint-dir``),
    continues them from their checkpoints: it trains only the epochs left, the results are bit for
    bit an uninterrupted run's, and the shared directory ends empty."""
    from lrlab.study.queue import run_worker

    whole = tmp_path / "whole"
    run_study({**STUDY, "out": str(whole)}, progress=False, quiet=True, report=False)
    shared, db = tmp_path / "shared", tmp_path / "db" / "study.db"
    cfg = {**STUDY, "out": str(tmp_path / "driver"), "storage": str(db), "checkpoint_dir": str(shared)}
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, progress=False, quiet=True, report=False, executor=_interrupting())
    assert set(_epochs_on_disk(shared / "lrlab").values()) == {3}  # the adam fleet's trials, 3 epochs each
    assert not (db.parent / "checkpoints").exists()  # not the default place
    mnt = shared.rename(tmp_path / "mnt")  # the same directory, mounted at another path "there"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    trained: list[tuple[str, int]] = []
    said: list[str] = []
    n = run_worker(f"sqlite:///{db}", idle=1, poll=0.2, say=said.append, executor=_counting(trained),
                   checkpoint_dir=str(mnt))
    assert said[0].endswith("s with nothing to claim)")  # the driver started this study: no warning
    assert n == 8 and sorted(e for o, e in trained if o == "adam") == [3, 3, 3, 3]
    assert len([e for o, e in trained if o == "adamw_schedulefree"]) == 4 * EPOCHS
    assert _stored(tmp_path, db) == _stored(whole) and len(_stored(whole)) == 8
    assert list((mnt / "lrlab").iterdir()) == [] and not shared.exists() and list(elsewhere.iterdir()) == []


def _epochs_on_disk(ckdir: Path) -> dict[str, int]:
    """The newest saved epoch count of each trial's checkpoint files (``<stem>.<epochs>.safetensors``)."""
    out: dict[str, int] = {}
    for f in ckdir.glob("*.safetensors"):
        stem, epochs = f.name.split(".")[:2]
        out[stem] = max(out.get(stem, 0), int(epochs))
    return out


@pytest.mark.slow
def test_ctrl_c_on_lrlab_study_saves_epochs_and_a_rerun_matches(tmp_path):
    """SIGINT to a real ``lrlab study`` (2 worker processes) once checkpoints exist: exit code
    130 and the summary line; the same command again finishes with an uninterrupted run's numbers."""
    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "lrlab.cli", "study", "--out", str(out), "--task-kwargs", "subset=600",
                "--epochs", "12", "--seeds", "2", "--schedules", "constant,warmup_cosine", "--optimizers", "adam,sgd",
                "--tune", "none", "--workers", "2", "--no-progress"]

    env = {**os.environ, "PYTHONWARNINGS": "ignore", "LRLAB_CLAIM": "4"}
    subprocess.run(cmd(tmp_path / "whole"), env=env, cwd=tmp_path, check=True, capture_output=True, timeout=600)
    out = tmp_path / "cut"
    proc = subprocess.Popen(cmd(out), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    ckdir = out / "checkpoints" / "lrlab"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ckdir.is_dir() and any(v >= 2 for v in _epochs_on_disk(ckdir).values()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "finished before the interrupt: " + proc.stderr.read()[-500:]
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole process group
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, stdout[-500:], stderr[-1500:])
    line = " ".join(stdout.split())
    assert "interrupted:" in line and "running trials saved" in line and "rerun the same command to continue" in line
    assert "Traceback" not in stderr, stderr[-1500:]
    saved = sum(_epochs_on_disk(ckdir).values())
    assert saved >= 2 and f"{saved} epochs of" in line, line
    subprocess.run(cmd(out), env=env, cwd=tmp_path, check=True, capture_output=True, timeout=600)
    assert _stored(out) == _stored(tmp_path / "whole") and len(_stored(out)) == 8
    assert list(ckdir.glob("*.safetensors")) == []


# ---- training functions: trial.checkpoint / trial.restore ------------------------------------------

EXAMPLES = REPO / "examples"
CNN = {"task": "train_torch_cnn:train", "schedules": ["constant", "plateau"], "optimizers": {"adam": 0.01},
       "epochs": 4, "steps_per_epoch": 8, "seeds": 1, "tune": "none", "workers": 0}


def _function_stored(out: Path) -> dict[str, str]:
    st = StudyStorage(str(out / "study.db"), "lrlab")
    recs = st.records(sorted(st.done_keys()))
    return {k: repr(({c: v.tolist() for c, v in sorted(r.curves.items())}, sorted(r.final.items()), r.status))
            for k, r in recs.items()}


def test_the_torch_cnn_example_resumes_from_its_checkpoint_and_matches(tmp_path, monkeypatch):
    """examples/train_torch_cnn.py (BatchNorm, dropout, an augmenting DataLoader) interrupted after
    epoch 1 of its second trial; the rerun restores the saved state and ends bit for bit as an
    uninterrupted study."""
    from rich.console import Console

    from lrlab.study.trainfn import Trial

    monkeypatch.chdir(EXAMPLES)
    monkeypatch.setattr(sys, "path", list(sys.path))
    whole = run_study({**CNN, "out": str(tmp_path / "whole")}, quiet=True, report=False)
    assert [r.status for r in whole.records] == ["done", "done"]
    real = Trial.checkpoint
    restored: list[tuple[str, int]] = []

    def interrupted(self, epoch, state):
        real(self, epoch, state)
        if self.trial_id.startswith("plateau") and epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trial, "checkpoint", interrupted)
    con = Console(record=True, width=300)
    with pytest.raises(KeyboardInterrupt):
        run_study({**CNN, "out": str(tmp_path / "cut")}, console=con, report=False)
    text = " ".join(con.export_text().split())
    assert ("1 finished trial stored in sqlite:///" in text
            and "2 epochs of 1 running trial saved; rerun the same command to continue" in text), text
    monkeypatch.setattr(Trial, "checkpoint", real)
    real_restore = Trial.restore

    def spying(self):
        state = real_restore(self)
        restored.append((self.trial_id, self.start_epoch))
        return state

    monkeypatch.setattr(Trial, "restore", spying)
    again = run_study({**CNN, "out": str(tmp_path / "cut")}, quiet=True, report=False)
    assert (again.ran, again.reused) == (1, 1) and restored == [("plateau/adam/s0", 2)]
    assert _function_stored(tmp_path / "cut") == _function_stored(tmp_path / "whole")
    assert list((tmp_path / "cut" / "checkpoints" / "lrlab").iterdir()) == []


def test_trial_checkpoint_and_restore_check_their_use(tmp_path):
    from lrlab.study.trainfn import Trial, TrialFailed, run_one

    def make(path=None):
        return Trial(trial_id="t", role="final", schedule=constant(0.1), optimizer="sgd", optimizer_kwargs={},
                     seed=0, epochs=3, steps_per_epoch=2, peak_lr=0.1, checkpoint_path=path,
                     checkpoint_identity={"trial": "t"})

    free = make()  # outside a study: nothing is saved, nothing restored
    assert free.restore() is None and free.start_epoch == 0
    free.report(0, val_acc=0.5)
    free.checkpoint(0, {"w": torch.ones(1)})
    with pytest.raises(TrialFailed, match=r"give the epoch just reported \(0\), got epoch=1"):
        free.checkpoint(1, {})
    with pytest.raises(TrialFailed, match="state must be a dict, got list"):
        free.checkpoint(0, [1])
    with pytest.raises(TrialFailed, match=r"call it before the first trial\.report"):
        free.restore()
    path = tmp_path / "t"
    a = make(str(path))
    a.report(0, val_acc=0.5)
    a.checkpoint(0, {"w": np.ones(2), "step": 7})
    b = make(str(path))
    state = b.restore()
    assert state["w"].tolist() == [1.0, 1.0] and state["step"] == 7 and b.start_epoch == 1
    assert b.history == [{"val_acc": 0.5}]
    b.report(1, val_acc=0.6)  # continues with the next epoch
    b.checkpoint(1, {"w": np.zeros(2)})
    b.report(2, val_acc=0.7)
    b.checkpoint(2, {"w": 1})  # the last epoch: nothing to continue, nothing written
    assert ck.saved_epochs(path) == 2

    def bad(trial):
        trial.report(0, val_acc=0.5)
        trial.checkpoint(0, {"f": print})

    res = run_one(bad, make(str(tmp_path / "u")))
    assert res["failed"].startswith("TrialFailed: checkpoint: cannot save state.state.f of type builtin_function")
