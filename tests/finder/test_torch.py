"""The PyTorch range test: lrs actually applied, exact restoration of model/optimizer/RNG, tasks."""

from __future__ import annotations

import copy
import functools
import random

import numpy as np
import pytest
import torch

from lrlab.finder import find, find_for_task, sweep_lrs
from lrlab.finder._torch import find_torch


def make_model() -> torch.nn.Module:
    torch.manual_seed(123)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 12),
        torch.nn.BatchNorm1d(12),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(12, 3),
    )


def make_data(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, 6, generator=g)
    return x, (x[:, :3] @ torch.randn(3, 3, generator=g)).argmax(1)


def assert_state_equal(a, b) -> None:
    """Recursive equality of (optimizer) state dicts with torch.equal on tensors."""
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_state_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            assert_state_equal(u, v)
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    else:
        assert a == b


def test_model_optimizer_grads_modes_and_rngs_are_restored_exactly():
    model = make_model()
    x, y = make_data()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for i in range(3):  # Adam with state (exp_avg, exp_avg_sq, step), BatchNorm running stats moved
        opt.zero_grad()
        torch.nn.functional.cross_entropy(
            model(x[i * 16 : (i + 1) * 16]), y[i * 16 : (i + 1) * 16]
        ).backward()
        opt.step()
    torch.nn.functional.cross_entropy(model(x[:16]), y[:16]).backward()  # leave gradients in .grad
    model.eval()
    model[3].train()  # mixed modes must come back as they were

    params = [(p, p.detach().clone(), p.grad.clone()) for p in model.parameters()]
    buffers = [(b, b.clone()) for b in model.buffers()]
    modes = [m.training for m in model.modules()]
    opt_state = copy.deepcopy(opt.state_dict())
    twin, twin_opt = copy.deepcopy(model), None
    twin_opt = torch.optim.Adam(twin.parameters(), lr=3e-3)
    twin_opt.load_state_dict(copy.deepcopy(opt_state))
    rng = (torch.get_rng_state(), np.random.get_state(), random.getstate())

    r = find(
        model,
        torch.nn.functional.cross_entropy,
        (x, y),
        opt,
        batch_size=16,
        num_steps=40,
        seeds=(0, 1),
    )
    assert len(r.curves) == 2 and all(len(c.lrs) > 10 for c in r.curves)

    for p, value, grad in params:
        assert torch.equal(p, value) and torch.equal(p.grad, grad)
    assert [id(p) for p in model.parameters()] == [id(p) for p, _, _ in params]  # restored in place
    for b, value in buffers:
        assert torch.equal(b, value)
    assert [m.training for m in model.modules()] == modes
    assert_state_equal(opt.state_dict(), opt_state)
    assert opt.param_groups[0]["lr"] == 3e-3
    assert torch.equal(torch.get_rng_state(), rng[0])
    np_now = np.random.get_state()
    assert all(
        np.array_equal(u, v) if isinstance(u, np.ndarray) else u == v
        for u, v in zip(np_now, rng[1])
    )
    assert random.getstate() == rng[2]

    # training goes on exactly as if the range test had never run (fastai#2892's complaint)
    for m, o in ((model, opt), (twin, twin_opt)):
        m.train()
        torch.manual_seed(0)
        o.zero_grad()
        torch.nn.functional.cross_entropy(m(x[:32]), y[:32]).backward()
        o.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


def test_each_update_uses_the_sweep_lr_and_every_repeat_starts_from_the_same_weights():
    model = torch.nn.Linear(4, 2)
    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    seen: list[float] = []
    opt.register_step_pre_hook(lambda o, args, kwargs: seen.append(o.param_groups[0]["lr"]))
    w0 = model.weight.detach().clone()
    losses0 = torch.nn.functional.cross_entropy(model(x), y, reduction="none").detach()
    r = find(
        model,
        torch.nn.functional.cross_entropy,
        (x, y),
        opt,
        batch_size=8,
        start_lr=1e-4,
        end_lr=1.0,
        num_steps=12,
        seeds=(3, 4),
        diverge_factor=None,
    )
    lrs = sweep_lrs(1e-4, 1.0, 12)
    assert seen == lrs.tolist() * 2
    for c in r.curves:
        np.testing.assert_array_equal(c.lrs, lrs)
        # the first loss is that of the untouched model on the repeat's first batch
        perm = torch.randperm(40, generator=torch.Generator().manual_seed(c.seed))
        assert c.losses[0] == pytest.approx(float(losses0[perm[:8]].mean()), rel=1e-6)
    assert torch.equal(model.weight, w0)


def test_optimizer_by_name_factory_and_errors():
    model = make_model()
    x, y = make_data()
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy
    r1 = find(model, loss, (x, y), "sgd", batch_size=16, num_steps=30, seeds=(0, 1))
    r2 = find(model, loss, (x, y), "sgd", batch_size=16, num_steps=30, seeds=(0, 1))
    for a, b in zip(r1.curves, r2.curves):  # reproducible: same seeds, same curves
        np.testing.assert_array_equal(a.losses, b.losses)
    assert not np.array_equal(
        r1.curves[0].losses, r1.curves[1].losses
    )  # seeds change the data order
    assert r1.settings["optimizer"] == "sgd" and r1.settings["seeds"] == [0, 1]
    r3 = find(
        model,
        loss,
        (x, y),
        functools.partial(torch.optim.SGD, lr=1.0, momentum=0.9),
        batch_size=16,
        num_steps=30,
        seeds=(0, 1),
    )
    for a, b in zip(r1.curves, r3.curves):  # the study's "sgd" is SGD with momentum 0.9
        np.testing.assert_allclose(a.losses, b.losses, rtol=1e-6)
    for p, v in zip(model.parameters(), before):
        assert torch.equal(p, v)
    with pytest.raises(ValueError, match="optimizer_kwargs"):
        find(
            model,
            loss,
            (x, y),
            torch.optim.SGD(model.parameters()),
            optimizer_kwargs={"momentum": 0.5},
            batch_size=8,
        )
    with pytest.raises(ValueError, match="batch_size"):
        find(model, loss, (x, y), "adam")
    with pytest.raises(ValueError, match="unknown optimizer"):
        find(model, loss, (x, y), "lbfgs2", batch_size=8)
    with pytest.raises(ValueError, match="model must be"):
        find(object(), loss, (x, y), batch_size=8)
    with pytest.raises(ValueError, match="seeds"):
        find(model, loss, (x, y), batch_size=8, seeds=())


def test_data_loader_input_and_non_finite_stop_restore():
    model = torch.nn.Linear(6, 1)
    x, _ = make_data()
    y = x.sum(1, keepdim=True)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True
    )
    before = [p.detach().clone() for p in model.parameters()]
    mse = torch.nn.functional.mse_loss
    r = find_torch(
        model,
        mse,
        loader,
        "sgd",
        start_lr=1e-4,
        end_lr=1e4,
        num_steps=60,
        seeds=(0, 1),
        diverge_factor=None,
    )
    assert {c.stop for c in r.curves} == {"non-finite"}  # squared error under a huge lr overflows
    assert r.curves[0].losses[0] != r.curves[1].losses[0]  # the shuffling loader follows each seed
    for p, v in zip(model.parameters(), before):
        assert torch.equal(p, v)


def test_find_for_task_fresh_models_per_seed_and_rng_untouched():
    from finder_tasks import tiny_task  # tests/finder is on sys.path (see conftest.py)

    task = tiny_task()
    state = torch.get_rng_state()
    r = find_for_task(task, "adam", seeds=(0, 1, 2), num_steps=50)
    assert torch.equal(torch.get_rng_state(), state)
    assert r.settings["task"] == "tiny" and r.settings["batch_size"] == 32 and len(r.curves) == 3
    # each repeat: torch.manual_seed(seed) then task.model_fn(), so the first loss is that model's
    for c in r.curves:
        torch.manual_seed(c.seed)
        model = task.model_fn()
        perm = torch.randperm(256, generator=torch.Generator().manual_seed(c.seed))
        with torch.no_grad():
            first = torch.nn.functional.cross_entropy(
                model(task.x_train[perm[:32]]), task.y_train[perm[:32]]
            )
        assert c.losses[0] == pytest.approx(float(first), rel=1e-6)
    again = find_for_task(task, "adam", seeds=(0, 1, 2), num_steps=50)
    assert again.lr == r.lr and 0 < r.lr < 10
    momentum = find_for_task(task, "sgd", {"momentum": 0.0}, seeds=(0, 1), num_steps=30)
    assert momentum.settings["optimizer_kwargs"] == {"momentum": 0.0}
    with pytest.raises(ValueError, match="optimizer"):
        find_for_task(task, torch.optim.SGD)
