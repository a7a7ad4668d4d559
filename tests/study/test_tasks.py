"""Study tasks: MNIST-1D data (offline, cached as .npz), the benchmark models, load_task references."""

from __future__ import annotations

import math
import sys
import textwrap

import numpy as np
import pytest
import torch

from lrlab.study import tasks as tasks_mod
from lrlab.study.optimizers import OPTIMIZERS
from lrlab.study.tasks import ConvBase, MLPBase, Task, load_task, mnist1d_arrays


def test_mnist1d_shapes_and_models():
    t = load_task()
    assert t.name == "mnist1d" and t.fleet_model == "mnist1d_cnn"
    assert t.x_train.shape == (4000, 40) and t.x_test.shape == (1000, 40) and t.x_val.shape == (1000, 40)
    assert t.has_validation and t.with_validation() is t and t.y_val.dtype == torch.int64
    assert t.x_train.dtype == torch.float32 and t.y_train.dtype == torch.int64
    assert t.steps_per_epoch == 40 and t.total_steps(3) == 120 and t.num_classes == 10
    assert t.peak_lr["adam"] == 1e-2 and t.peak_lr["sgd"] == 0.1 and set(t.peak_lr) == set(OPTIMIZERS)
    torch.manual_seed(0)
    cnn, mlp = ConvBase(), MLPBase()
    # parameter counts of the benchmark's models (greydanus/mnist1d notebooks/models.py)
    assert sum(p.numel() for p in cnn.parameters()) == 5210
    assert sum(p.numel() for p in mlp.parameters()) == 15210
    assert cnn(t.x_train[:3]).shape == (3, 10) and mlp(t.x_train[:3]).shape == (3, 10)
    m = load_task("mnist1d_mlp", subset=50)
    assert m.name == "mnist1d_mlp" and m.fleet_model == "mnist1d_mlp" and isinstance(m.model_fn(), MLPBase)


def test_mnist1d_matches_the_generator_and_caches_npz(tmp_path, monkeypatch):
    from mnist1d.data import get_dataset_args, make_dataset

    ref = make_dataset(get_dataset_args())
    args = get_dataset_args()
    args.seed = 43
    val = make_dataset(args)
    ref.update(x_val=val["x"][:1000], y_val=val["y"][:1000])
    keys = ("x", "y", "x_val", "y_val", "x_test", "y_test")
    monkeypatch.setenv("LRLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(tasks_mod, "_MNIST1D_MEMO", {})
    # an older cache without the validation arrays is regenerated and replaced
    np.savez(tmp_path / "mnist1d.npz", **{k: ref[k] for k in ("x", "y", "x_test", "y_test")})
    d = mnist1d_arrays()
    for k in keys:
        np.testing.assert_array_equal(d[k], ref[k])
    assert d["x_val"].shape == (1000, 40) and set(np.unique(d["y_val"])) == set(range(10))
    # an independent draw: no validation sequence is a training or test sequence
    assert not (d["x_val"][:, None, :] == d["x"][None, :, :]).all(-1).any()
    assert not (d["x_val"][:, None, :] == d["x_test"][None, :, :]).all(-1).any()
    monkeypatch.setattr(tasks_mod, "_MNIST1D_MEMO", {})
    (tmp_path / "mnist1d.npz").write_bytes(b"truncated")  # a broken cache is regenerated too
    np.testing.assert_array_equal(mnist1d_arrays()["x_val"], ref["x_val"])
    monkeypatch.setattr(tasks_mod, "_MNIST1D_MEMO", {})
    monkeypatch.setattr("mnist1d.data.make_dataset", None)  # now it must come from the .npz file
    d2 = mnist1d_arrays()
    for k in keys:
        np.testing.assert_array_equal(d2[k], ref[k])
    with np.load(tmp_path / "mnist1d.npz", allow_pickle=False) as z:  # plain arrays, no pickle
        assert sorted(z.files) == sorted(keys)


def test_subset_and_steps_per_epoch_keep_last_partial_batch():
    t = load_task("mnist1d", subset=250, batch_size=100)
    assert t.x_train.shape[0] == 250 and t.x_test.shape[0] == 250 and t.x_val.shape[0] == 250 and t.steps_per_epoch == 3
    t2 = load_task("mnist1d", subset=250, test_subset=40, val_subset=30)
    assert t2.x_test.shape[0] == 40 and t2.x_val.shape[0] == 30
    assert load_task("mnist1d", subset=5000).x_val.shape[0] == 1000
    with pytest.raises(ValueError, match="val_subset must be a positive int"):
        load_task("mnist1d", val_subset=0)


@pytest.mark.parametrize(
    ("ref", "kwargs", "match"),
    [
        ("imagenet", {}, "unknown task 'imagenet'"),
        ("mnist1d", {"model": "gru"}, "model='gru'"),
        ("mnist1d", {"subset": 0}, "subset=0"),
        ("mnist1d_mlp", {"model": "cnn"}, "fixes model='mlp'"),
        ("no_such_pkg_xyz.mod:fn", {}, "cannot import module"),
        ("math:nope", {}, "has no function 'nope'"),
        ("json:dumps", {"obj": 1}, "returned str"),
        ("json:dumps", {"nope": 1}, "does not take these arguments"),
        ("a.b:1x", {}, "package.module:function"),
        ("", {}, "non-empty"),
    ],
)
def test_load_task_errors(ref, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_task(ref, **kwargs)


def test_user_task_by_reference(tmp_path, monkeypatch):
    (tmp_path / "my_task_mod.py").write_text(textwrap.dedent("""
        import torch
        from lrlab.study import Task

        def make(n=20):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(n, 4, generator=g)
            y = (x[:, 0] > 0).long()
            return Task("toy", x, y, x[:8], y[:8], lambda: torch.nn.Linear(4, 2), batch_size=8, epochs=2,
                        peak_lr={"sgd": 0.1})
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    t = load_task("my_task_mod:make", n=30)
    assert t.name == "toy" and t.x_train.shape == (30, 4) and t.steps_per_epoch == 4
    sys.modules.pop("my_task_mod", None)


def test_task_validation():
    x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="x_train has 4 rows"):
        Task("t", x, y[:3], x, y, lambda: torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="batch_size"):
        Task("t", x, y, x, y, lambda: torch.nn.Linear(2, 2), batch_size=0)
    with pytest.raises(ValueError, match="peak_lr"):
        Task("t", x, y, x, y, lambda: torch.nn.Linear(2, 2), peak_lr={"sgd": -1.0})
    with pytest.raises(ValueError, match="torch tensors"):
        Task("t", x.numpy(), y, x, y, lambda: torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="give both x_val and y_val"):
        Task("t", x, y, x, y, lambda: torch.nn.Linear(2, 2), x_val=x)
    with pytest.raises(ValueError, match="x_val has 4 rows"):
        Task("t", x, y, x, y, lambda: torch.nn.Linear(2, 2), x_val=x, y_val=y[:2])
    t = Task("t", x, y, x, y, lambda: torch.nn.Linear(2, 2), batch_size=3)
    assert t.steps_per_epoch == math.ceil(4 / 3) and t.replace(batch_size=4).steps_per_epoch == 1


def test_with_validation_is_a_seeded_split_of_train():
    x = torch.arange(50.0).view(50, 1)
    y = torch.arange(50) % 3
    t = Task("t", x, y, x[:5], y[:5], lambda: torch.nn.Linear(1, 3))
    assert not t.has_validation and t.x_val is None
    v = t.with_validation()
    assert v.has_validation and v.x_val.shape == (10, 1) and v.x_train.shape == (40, 1)
    assert v.steps_per_epoch == 1 and not t.has_validation  # a copy; the original is unchanged
    # disjoint, covers train, labels follow their inputs, kept in their original order
    tr, va = v.x_train.flatten().tolist(), v.x_val.flatten().tolist()
    assert sorted(tr + va) == list(range(50)) and tr == sorted(tr) and va == sorted(va)
    assert torch.equal(v.y_val, v.x_val.flatten().long() % 3)
    assert torch.equal(t.with_validation().x_val, v.x_val)  # deterministic
    assert not torch.equal(t.with_validation(seed=1).x_val, v.x_val)  # the seed chooses it
    assert t.with_validation(0.5).x_val.shape[0] == 25 and v.with_validation(0.5) is v  # no-op once it has one
    for bad in (0.0, 1.0, 1.5, -0.1, True, "0.2"):
        with pytest.raises(ValueError, match="validation fraction must be in"):
            t.with_validation(bad)
    with pytest.raises(ValueError, match="leaves 0 validation and 50 training examples out of 50"):
        t.with_validation(0.001)
    tiny = Task("t", x[:2], y[:2], x, y, lambda: torch.nn.Linear(1, 3))
    with pytest.raises(ValueError, match="leaves 2 validation and 0 training"):
        tiny.with_validation(0.9)


def test_study_package_imports_lazily():
    import subprocess

    code = ("import sys, lrlab, lrlab.study, lrlab.study.config; from lrlab.study import StudyConfig; StudyConfig(); "
            "print(sorted(m for m in ('torch', 'optuna', 'matplotlib', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
