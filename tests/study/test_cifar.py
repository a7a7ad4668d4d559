"""CIFAR-10 reader (restricted unpickler) and a 1-epoch study on a tiny synthetic dataset in the real format."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from lrlab.study.cifar import ResNet20, cifar10_task, load_cifar10, read_batch

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:torch.*")


def write_cifar(root, n_train=6, n_test=8, seed=0):
    """The CIFAR-10 python layout: data_batch_1..5, test_batch, batches.meta (dicts with bytes keys,
    pickled with protocol 2 like the Python-2 originals)."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)

    def dump(name, obj):
        with (d / name).open("wb") as f:
            pickle.dump(obj, f, protocol=2)

    for i in range(1, 6):
        dump(f"data_batch_{i}", {
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": [int(x) for x in rng.integers(0, 10, n_train)],
            b"data": rng.integers(0, 256, (n_train, 3072), dtype=np.uint8),
            b"filenames": [f"img{j}.png".encode() for j in range(n_train)],
        })
    dump("test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": list(range(n_test % 10 or 10))[:n_test]
                        + [0] * max(0, n_test - 10), b"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)})
    dump("batches.meta", {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog",
                                            b"frog", b"horse", b"ship", b"truck"], b"num_vis": 3072})
    return d


def test_read_and_load(tmp_path):
    d = write_cifar(tmp_path)
    b = read_batch(d / "data_batch_1")
    assert b["data"].shape == (6, 3072) and b["data"].dtype == np.uint8 and b["labels"].dtype == np.int64
    x, y, xt, yt = load_cifar10(tmp_path)  # the parent directory works too
    assert x.shape == (30, 3, 32, 32) and x.dtype == np.float32 and y.shape == (30,)
    assert xt.shape == (8, 3, 32, 32) and yt.shape == (8,)
    raw = read_batch(d / "data_batch_1")["data"][0]
    # channel-major rows: the first 1024 bytes are the red plane, scaled to [0, 1]
    np.testing.assert_array_equal(x[0, 0].ravel(), raw[:1024].astype(np.float32) / 255.0)
    np.testing.assert_array_equal(x[0, 2].ravel(), raw[2048:].astype(np.float32) / 255.0)
    assert x.min() >= 0.0 and x.max() <= 1.0


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_restricted_unpickler_refuses_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match=r"posix\.system|os\.system"):
        read_batch(tmp_path / "evil")
    assert not (tmp_path / "PWNED").exists()


def test_malformed_files(tmp_path):
    (tmp_path / "x").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        read_batch(tmp_path / "x")
    (tmp_path / "y").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(ValueError, match=r"shape \(N, 3072\)"):
        read_batch(tmp_path / "y")
    with pytest.raises(ValueError, match="does not exist"):
        read_batch(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="missing data_batch_1"):
        load_cifar10(tmp_path / "empty")
    with pytest.raises(ValueError, match="--data DIR"):
        cifar10_task(None)


def test_task_and_model(tmp_path):
    write_cifar(tmp_path)
    task = cifar10_task(str(tmp_path), subset=12, batch_size=4)
    assert task.x_train.shape == (12, 3, 32, 32) and task.steps_per_epoch == 3
    assert task.peak_lr["sgd"] == 0.1 and task.epochs == 100 and task.fleet_model is None
    torch.manual_seed(0)
    out = task.model_fn()(task.x_train[:2])
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert isinstance(task.model_fn(), ResNet20)


def test_one_epoch_study_on_synthetic_cifar(tmp_path):
    from lrlab.study.runner import run_study

    write_cifar(tmp_path / "data")
    res = run_study(
        {"task": "cifar10", "data": str(tmp_path / "data"), "task_kwargs": {"subset": 8, "test_subset": 8},
         "batch_size": 4, "epochs": 1, "schedules": ["constant", "linear"], "optimizers": ["sgd"], "seeds": 1,
         "workers": 0, "tune": "none", "out": str(tmp_path / "out")},
        progress=False, quiet=True, report=False,
    )
    assert res.ran == 2 and len(res.records) == 2
    r = res.records[0]
    assert r.epochs == 1 and r.peak_lr == 0.1 and len(r.curves["epoch"]) == 1
    assert (tmp_path / "out" / "study.db").is_file()
