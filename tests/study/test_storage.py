"""Study storage on Optuna: one Optuna trial per lrlab trial, round trip, diverged trials, URLs."""

from __future__ import annotations

import math
import time

import numpy as np
import optuna
import pytest

from lrlab.study.storage import CURVE_FIELDS, StudyStorage, TrialRecord, storage_url


def record(key="linear/sgd/s0@abc", *, diverged=False, nan_epoch=None):
    n = 3
    curves = {
        "epoch": np.array([1.0, 2.0, 3.0]),
        "lr": np.array([0.1, 0.05, 0.0]),
        "train_loss": np.array([1.2, 0.6, 0.3]),
        "train_acc": np.array([0.5, 0.8, 0.9]),
        "val_loss": np.array([1.3, 0.7, 0.5]),
        "val_acc": np.array([0.45, 0.75, 0.85]),
        "test_loss": np.array([math.nan, math.nan, 0.55]),
        "test_acc": np.array([math.nan, math.nan, 0.83]),
    }
    if nan_epoch is not None:
        for k in ("train_loss", "val_loss", "val_acc"):
            curves[k][nan_epoch] = math.nan
    assert set(curves) == set(CURVE_FIELDS) and all(len(v) == n for v in curves.values())
    final = {"val_acc": 0.85, "val_loss": 0.5, "best_val_acc": 0.85, "best_epoch": 2.0, "test_acc": 0.83,
             "test_loss": 0.55, "train_acc": 0.9, "train_loss": 0.3}
    if diverged:
        final = {k: math.nan for k in final}
    return TrialRecord(
        key=key, trial_id=key.split("@")[0], schedule_name="linear", schedule_text="linear(1.0, 0.0, steps=100%)",
        schedule_config={"name": "scale", "factor": 0.1}, optimizer="sgd", optimizer_kwargs={"momentum": 0.5},
        seed=0, peak_lr=0.1, epochs=3, curves=curves, final=final, diverged=diverged,
        diverged_epoch=3 if diverged else None, seconds=1.25,
    )


@pytest.fixture(params=["sqlite", "journal"])
def store(request, tmp_path):
    path = tmp_path / ("s.db" if request.param == "sqlite" else "s.log")
    return StudyStorage(str(path), "t")


def test_round_trip(store):
    r = record()
    store.save(r)
    assert store.done_keys() == {r.key}
    back = store.records()[r.key]
    for k in CURVE_FIELDS:
        np.testing.assert_array_equal(back.curves[k], r.curves[k])
    assert back.final == r.final
    assert CURVE_FIELDS == ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
    assert (back.schedule_name, back.schedule_text, back.optimizer, back.seed, back.peak_lr, back.epochs) == (
        "linear", "linear(1.0, 0.0, steps=100%)", "sgd", 0, 0.1, 3)
    assert back.optimizer_kwargs == {"momentum": 0.5}
    assert back.schedule_config == {"name": "scale", "factor": 0.1}
    assert back.seconds == 1.25 and not back.diverged and back.status == "done"


def test_one_optuna_trial_per_lrlab_trial(store):
    store.save(record("a/sgd/s0@1"))
    store.save(record("a/sgd/s1@1"))
    trials = store.study.get_trials()
    assert len(trials) == 2
    t = trials[0]
    assert t.state == optuna.trial.TrialState.COMPLETE and t.value == 0.85  # final validation accuracy
    assert t.params == {"seed": 0, "peak_lr": 0.1}
    assert t.intermediate_values == {1: 0.45, 2: 0.75, 3: 0.85}  # validation accuracy per epoch
    assert t.user_attrs["lrlab_key"] == "a/sgd/s0@1"


def test_diverged_and_nan_values(store):
    store.save(record("d/sgd/s0@1", diverged=True, nan_epoch=2))
    t = store.study.get_trials()[0]
    assert t.state == optuna.trial.TrialState.FAIL and t.value is None
    assert t.user_attrs["lrlab_status"] == "diverged"
    assert t.intermediate_values == {1: 0.45, 2: 0.75}  # the NaN epoch is not an intermediate value
    back = store.records()["d/sgd/s0@1"]
    assert back.diverged and back.diverged_epoch == 3 and back.status == "diverged"
    assert math.isnan(back.curves["val_acc"][2]) and back.curves["val_acc"][1] == 0.75
    assert math.isnan(back.curves["test_acc"][0]) and back.curves["test_acc"][2] == 0.83
    assert math.isnan(back.final["test_acc"])
    assert store.done_keys() == {"d/sgd/s0@1"}  # a diverged trial is finished: not rerun


def test_records_filter_and_latest_wins(store):
    store.save(record("a/sgd/s0@1"))
    r2 = record("a/sgd/s0@1")
    r2.final["test_acc"] = 0.99
    store.save(r2)
    store.save(record("b/sgd/s0@1"))
    got = store.records(["a/sgd/s0@1"])
    assert list(got) == ["a/sgd/s0@1"] and got["a/sgd/s0@1"].final["test_acc"] == 0.99


def test_a_record_stored_without_some_curves_reads_back_with_nan(store):
    """Curves stored by an lrlab without validation curves: NaN of the right length, no KeyError."""
    r = record("old/sgd/s0@1")
    store.save(r)
    t = store.study.get_trials()[0]
    attrs = dict(t.user_attrs)
    attrs["curves"] = {k: v for k, v in attrs["curves"].items() if not k.startswith("val_")}
    from lrlab.study.storage import _record_from_attrs

    back = _record_from_attrs(attrs)
    assert all(len(back.curves[k]) == 3 for k in CURVE_FIELDS)
    assert np.isnan(back.curves["val_acc"]).all() and back.curves["test_acc"][2] == 0.83


def test_reopen_sees_saved_trials_and_attrs(tmp_path):
    path = str(tmp_path / "x.db")
    s1 = StudyStorage(path, "t")
    s1.save(record())
    s1.set_attr("lrlab_study", {"keys": ["k"], "lr": math.inf})
    s2 = StudyStorage(path, "t")
    assert s2.done_keys() == {record().key}
    assert s2.get_attr("lrlab_study") == {"keys": ["k"], "lr": None}  # non-finite -> null
    assert StudyStorage(path, "other").done_keys() == set()  # studies are separate


def test_non_lrlab_trials_are_ignored(store):
    store.study.add_trial(optuna.trial.create_trial(value=1.0))
    assert store.done_keys() == set() and store.records() == {}


def test_storage_url(tmp_path):
    assert storage_url(None, tmp_path) == f"sqlite:///{(tmp_path / 'study.db').resolve()}"
    assert storage_url("postgresql://u@h/db", tmp_path) == "postgresql://u@h/db"
    assert storage_url(str(tmp_path / "a.sqlite"), ".").startswith("sqlite:///")
    assert storage_url(str(tmp_path / "a.jsonl"), ".") == str((tmp_path / "a.jsonl").resolve())
    with pytest.raises(ValueError, match=r"storage='x\.txt'"):
        storage_url("x.txt", ".")
    with pytest.raises(ValueError, match="storage must be"):
        storage_url("", ".")


def test_bad_url_is_a_value_error():
    with pytest.raises(ValueError, match="storage"):
        StudyStorage("nosuchdialect://x/y", "t")


def test_role_and_any_positive_peak_lr_round_trip(tmp_path):
    """The trial's role is stored and read back; old trials without one read as 'final'; a peak lr
    far outside the old (1e-12, 1e6) distribution is stored, not refused after training."""
    st = StudyStorage(str(tmp_path / "r.db"), "t")
    base = record()
    tiny = TrialRecord(**{**base.__dict__, "key": "constant/sgd/lr1e-300/s0@x", "peak_lr": 1e-300, "role": "tune"})
    huge = TrialRecord(**{**base.__dict__, "key": "constant/sgd/lr1e+300/s0@x", "peak_lr": 1e300, "role": "tune"})
    st.save(base)
    st.save(tiny)
    st.save(huge)
    back = st.records()
    assert back[base.key].role == "final"
    assert (back[tiny.key].role, back[tiny.key].peak_lr) == ("tune", 1e-300)
    assert back[huge.key].peak_lr == 1e300
    old = {**{t.user_attrs["lrlab_key"]: t for t in st.study.get_trials()}[base.key].user_attrs}
    old.pop("role")
    from lrlab.study.storage import _record_from_attrs

    assert _record_from_attrs(old).role == "final"


def _open_at(args):
    url, start = args
    import time as _time

    from lrlab.study.storage import StudyStorage as _S

    _time.sleep(max(0.0, start - _time.time()))
    _S(url, "lrlab").set_attr("opened", True)
    return True


def test_processes_opening_a_new_sqlite_file_at_once_do_not_race_on_the_schema(tmp_path):
    """Several processes creating the same new study database at once: every one opens it (the
    loser of SQLAlchemy's create_all used to die with 'table ... already exists')."""
    import multiprocessing as mp
    import time as _time

    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        pool.map(_open_at, [("sqlite:///" + str(tmp_path / "warm.db"), 0.0)])  # imports warmed up
        for i in range(4):
            url = "sqlite:///" + str(tmp_path / f"s{i}.db")
            start = _time.time() + 0.5
            assert pool.map(_open_at, [(url, start)] * 4) == [True] * 4


def _check_is_stored(url: str) -> None:
    """:meth:`StudyStorage.is_stored` agrees with :meth:`done_keys` on every kind of trial: finished
    and diverged trials count; a waiting/running/pruned trial with the key, the key in another study,
    a prefix of a key and a live trial that has not finished do not; keys needing JSON escapes match."""
    from lrlab.study.storage import LiveTrials

    st, other = StudyStorage(url, "t"), StudyStorage(url, "t2")
    odd = 'ünï/"q\\uote"/s0@abc'
    assert not st.is_stored("linear/sgd/s0@abc")
    st.save(record())
    st.save(record("linear/sgd/s1@abc", diverged=True))  # FAIL: counts (diverged trials are not rerun)
    st.save(record(odd))
    other.save(record("only/in/other@abc"))
    for state, key in (("RUNNING", "running@abc"), ("PRUNED", "pruned@abc"), ("WAITING", "waiting@abc")):
        st.study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState[state],
                                                     user_attrs={"lrlab_key": key}))
    live = LiveTrials(st, {"live/sgd/s0": record("live/sgd/s0@abc")})
    with live:
        from lrlab.study.fleet import EpochRecord

        live.epoch(EpochRecord("live/sgd/s0", 0, 0.1, 1.0, 0.5, 1.0, 0.5, math.nan, math.nan))
        deadline = time.time() + 10
        while live.live and not live._ids and time.time() < deadline:  # its RUNNING trial written
            time.sleep(0.05)
        assert bool(live._ids) == ("://" in st.url)  # live on an RDB storage, not on a journal file
        candidates = ["linear/sgd/s0@abc", "linear/sgd/s1@abc", odd, "only/in/other@abc", "running@abc",
                      "pruned@abc", "waiting@abc", "live/sgd/s0@abc", "linear/sgd/s0@ab", "linear/sgd/s0"]
        expect = {"linear/sgd/s0@abc", "linear/sgd/s1@abc", odd}
        assert st.done_keys() == expect
        assert {k for k in candidates if st.is_stored(k)} == expect
        assert other.is_stored("only/in/other@abc") and not other.is_stored("linear/sgd/s0@abc")
        assert live.save(record("live/sgd/s0@abc"), once=True)  # the live trial completed in place
        assert st.is_stored("live/sgd/s0@abc") and not live.save(record("live/sgd/s0@abc"), once=True)
    assert st.save_once(record(odd)) is False and len(st.done_keys()) == 4


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_is_stored_looks_up_one_key(tmp_path, kind):
    _check_is_stored(str(tmp_path / ("s.db" if kind == "sqlite" else "s.log")))


def test_is_stored_on_sqlite_does_not_load_the_trials(tmp_path, monkeypatch):
    """On an RDB storage the check is a query for the one key: no trial is loaded (the old check
    loaded every trial of the study for each stored trial)."""
    st = StudyStorage(str(tmp_path / "s.db"), "t")
    st.save(record())

    def loaded(*a, **k):
        raise AssertionError("is_stored loaded the study's trials")

    monkeypatch.setattr(type(st.study), "get_trials", loaded)
    assert st.is_stored(record().key) and not st.is_stored("linear/sgd/s9@abc")
    assert st.save_once(record("linear/sgd/s9@abc")) and not st.save_once(record("linear/sgd/s9@abc"))
