"""LRLabScheduler on real torch optimizers: the lr each update really used equals the schedule,
for every registered schedule; skipped updates don't advance; resume is bit for bit; per-group;
momentum/beta1 cycling; plateau through step(metric); and no torch warnings on correct use."""

from __future__ import annotations

import io
import json
import math
import warnings

import numpy as np
import pytest
import torch

from lrlab.adapters.torch import LRLabOverwriteWarning, LRLabScheduler, momentum_schedule
from lrlab.schedules import Schedule, constant, cosine, examples, from_config, warmup
from lrlab.schedules._plateau import PlateauController, plateau

N_STEPS = 240
ALL = [pytest.param(s, id=f"{name}-{i}") for name, ss in examples().items() for i, s in enumerate(ss)]


def _param(dtype=torch.float64):
    return torch.nn.Parameter(torch.zeros(2, dtype=dtype))


def _run(opt, sched, n, p, *, record_params=False):
    """n updates with a constant gradient; the lr and momentum each update used (pre-hook)."""
    used, params = [], []
    h = opt.register_step_pre_hook(lambda o, a, k: used.append(o.param_groups[0]["lr"]))
    for _ in range(n):
        p.grad = torch.ones_like(p)
        if record_params:
            params.append(p.detach().clone())
        opt.step()
        sched.step()
    h.remove()
    if record_params:
        params.append(p.detach().clone())
    return used, params


@pytest.mark.parametrize("schedule", ALL)
def test_lr_used_by_sgd_and_adam_equals_schedule(schedule: Schedule):
    want = schedule.values(N_STEPS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = _param()
        sgd = torch.optim.SGD([p], lr=123.0)  # the optimizer's own lr is ignored (absolute=True)
        sched = LRLabScheduler(sgd, schedule)
        used, params = _run(sgd, sched, N_STEPS, p, record_params=True)
        np.testing.assert_allclose(used, want, rtol=1e-7, atol=1e-15)
        # ... and through SGD's update math: p_{k+1} = p_k - lr_k * grad, grad = 1.
        steps = -np.diff([q[0].item() for q in params])
        np.testing.assert_allclose(steps, want, rtol=1e-7, atol=1e-12)

        q = _param()
        adam = torch.optim.Adam([q], lr=1.0)
        used_adam, _ = _run(adam, LRLabScheduler(adam, schedule), N_STEPS, q)
        np.testing.assert_allclose(used_adam, want, rtol=1e-7, atol=1e-15)
    assert sched.get_last_lr()[0] == pytest.approx(schedule(N_STEPS), rel=1e-12, abs=1e-15)
    assert sched.last_epoch == sched.step_count == N_STEPS


def _fresh(schedule):
    p = _param()
    opt = torch.optim.SGD([p], lr=1.0)
    return p, opt, LRLabScheduler(opt, schedule)


@pytest.mark.parametrize("schedule", ALL)
def test_resume_from_state_dict_is_bit_for_bit(schedule: Schedule):
    n, cut = 160, 67
    metric = 1.0 if any(isinstance(x, plateau) for x in schedule.walk()) else None

    p, opt, sched = _fresh(schedule)
    a, _ = _run(opt, sched, cut, p)
    if metric is not None:
        sched.step(metric)  # an evaluation at the cut, before the checkpoint
    b, _ = _run(opt, sched, n - cut, p)

    p1, opt1, s1 = _fresh(schedule)
    first, _ = _run(opt1, s1, cut, p1)
    if metric is not None:
        s1.step(metric)
    buf = io.BytesIO()
    torch.save(json.loads(json.dumps(s1.state_dict())), buf)
    buf.seek(0)
    restored = torch.load(buf, weights_only=True)

    # a fresh optimizer (nothing loaded into it) and a scheduler rebuilt from the saved config
    p2 = _param()
    opt2 = torch.optim.SGD([p2], lr=1.0)
    s2 = LRLabScheduler(opt2, from_config(restored["groups"][0]["schedule"]))
    s2.load_state_dict(restored)
    rest, _ = _run(opt2, s2, n - cut, p2)
    assert first == a and rest == b  # bit for bit


def test_skipped_amp_steps_and_accumulation_do_not_advance():
    s = warmup(constant(0.1), steps=10)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = LRLabScheduler(opt, s)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    used = []
    opt.register_step_pre_hook(lambda o, a, k: used.append(o.param_groups[0]["lr"]))
    x = torch.ones(4, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "lr_scheduler.step() before optimizer.step()" warning
        for i in range(12):
            loss = model(x).sum()
            scaler.scale(loss).backward()
            if i in (0, 5, 6):  # an overflow: GradScaler skips optimizer.step()
                model.weight.grad[0, 0] = math.inf
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
            sched.step()
    assert sched.step_count == 9
    assert used == pytest.approx([0.01 * k for k in range(9)], abs=1e-15)

    # gradient accumulation: scheduler.step() after every micro-batch, optimizer.step() every 4th
    p = _param()
    opt = torch.optim.SGD([p], lr=1.0)
    sched = LRLabScheduler(opt, s)
    used = []
    opt.register_step_pre_hook(lambda o, a, k: used.append(o.param_groups[0]["lr"]))
    for micro in range(20):
        if micro % 4 == 3:
            p.grad = torch.ones_like(p)
            opt.step()
        sched.step()
    assert sched.step_count == 5 and used == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04])


def test_step_before_optimizer_step_neither_warns_nor_skips():
    p = _param()
    opt = torch.optim.SGD([p], lr=1.0)
    sched = LRLabScheduler(opt, constant(0.1, steps=1) >> constant(0.01))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()  # wrong order for torch: here it cannot skip a value
        sched.step()
        assert opt.param_groups[0]["lr"] == 0.1
        p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.01


def test_relative_mode_keeps_per_group_ratios():
    a, b = _param(), _param()
    opt = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}], lr=1.0)
    mult = warmup(constant(1.0), steps=4)
    sched = LRLabScheduler(opt, mult, absolute=False)
    seen = []
    for _ in range(6):
        seen.append([g["lr"] for g in opt.param_groups])
        a.grad, b.grad = torch.ones_like(a), torch.ones_like(b)
        opt.step()
        sched.step()
    assert np.allclose(seen, [[0.1 * m, 0.01 * m] for m in [0, 0.25, 0.5, 0.75, 1, 1]])
    assert str(sched.states[1].schedule) == "0.01 * warmup(schedule=constant(value=1.0), steps=4)"


def test_per_group_schedules():
    a, b = _param(), _param()
    opt = torch.optim.Adam([{"params": [a]}, {"params": [b]}], lr=1.0)
    s0, s1 = constant(0.1, steps=3) >> constant(0.05), warmup(constant(0.02), steps=2)
    sched = LRLabScheduler(opt, per_group=[s0, s1])
    seen = []
    for _ in range(5):
        seen.append([g["lr"] for g in opt.param_groups])
        a.grad, b.grad = torch.ones_like(a), torch.ones_like(b)
        opt.step()
        sched.step()
    np.testing.assert_allclose(seen, [[0.1, 0.0], [0.1, 0.01], [0.1, 0.02], [0.05, 0.02], [0.05, 0.02]])
    assert sched.get_last_lr() == pytest.approx([0.05, 0.02])
    sd = sched.state_dict()
    assert [g["schedule"]["name"] for g in sd["groups"]] == ["sequence", "warmup"]
    with pytest.raises(ValueError, match="per_group has 1 schedules"):
        LRLabScheduler(opt, per_group=[s0])
    with pytest.raises(ValueError, match="exactly one"):
        LRLabScheduler(opt, s0, per_group=[s0, s1])


def test_momentum_cycling_sgd_and_adam_beta1():
    from lrlab.schedules import onecycle

    s = onecycle(peak=0.1, steps=50)
    curve = s.momentum()
    want = curve.values(50)
    p = _param()
    sgd = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = LRLabScheduler(sgd, s, momentum="auto")
    got = []
    sgd.register_step_pre_hook(lambda o, a, k: got.append(o.param_groups[0]["momentum"]))
    _run(sgd, sched, 50, p)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # torch's own OneCycleLR sets the same momentum
    q = _param()
    ref_opt = torch.optim.SGD([q], lr=0.1, momentum=0.9)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.1, total_steps=50)
    ref_m = []
    for _ in range(50):
        ref_m.append(ref_opt.param_groups[0]["momentum"])
        q.grad = torch.ones_like(q)
        ref_opt.step()
        ref.step() if len(ref_m) < 50 else None
    np.testing.assert_allclose(got, ref_m, rtol=1e-12)

    r = _param()
    adam = torch.optim.Adam([r], lr=0.1, betas=(0.9, 0.99))
    sched = LRLabScheduler(adam, s, momentum="auto")  # Adam: beta1
    betas = []
    adam.register_step_pre_hook(lambda o, a, k: betas.append(o.param_groups[0]["betas"]))
    _run(adam, sched, 50, r)
    np.testing.assert_allclose([b1 for b1, _ in betas], want, rtol=1e-12)
    assert {b2 for _, b2 in betas} == {0.99}


def test_momentum_is_never_switched_on_or_invented():
    from lrlab.schedules import onecycle

    s = onecycle(peak=0.1, steps=50)
    p = _param()
    with pytest.raises(ValueError, match="momentum=0"):
        LRLabScheduler(torch.optim.SGD([p], lr=0.1), s, momentum="auto")
    with pytest.raises(ValueError, match="neither momentum nor betas"):
        LRLabScheduler(torch.optim.Adagrad([p], lr=0.1), s, momentum="auto")
    with pytest.raises(ValueError, match="no momentum curve"):
        LRLabScheduler(torch.optim.SGD([p], lr=0.1, momentum=0.9), constant(0.1), momentum="auto")
    with pytest.raises(ValueError, match="has no betas"):
        LRLabScheduler(torch.optim.SGD([p], lr=0.1, momentum=0.9), s, momentum="beta1")
    opt = torch.optim.SGD([p], lr=0.1)  # default: momentum untouched
    LRLabScheduler(opt, s)
    assert opt.param_groups[0]["momentum"] == 0
    assert momentum_schedule(0.5 * s) == s.momentum() and momentum_schedule(constant(1.0)) is None
    # durations in epochs resolve for the lr and the momentum curve alike
    q = _param()
    opt = torch.optim.SGD([q], lr=0.1, momentum=0.9)
    sched = LRLabScheduler(opt, onecycle(peak=0.1, steps="5ep"), momentum="auto", steps_per_epoch=10)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.95) and sched.states[0].schedule.steps == 50


def test_plateau_through_step_metric_matches_controller_and_torch():
    node = plateau(patience=1, factor=0.5, cooldown=1)
    s = constant(0.1) * node
    p = _param()
    opt = torch.optim.SGD([p], lr=1.0)
    sched = LRLabScheduler(opt, s)
    q = _param()
    ref_opt = torch.optim.SGD([q], lr=0.1)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, patience=1, factor=0.5, cooldown=1)
    metrics = [1.0, 0.9, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for m in metrics:
            for _ in range(3):
                p.grad = torch.ones_like(p)
                opt.step()
                sched.step()
            sched.step(m)  # once per epoch
            ref.step(m)
            assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-12)
    c = PlateauController(node)
    for m in metrics:
        c.observe(m)
    assert sched.states[0].state == {"plateau": c.scale}
    assert sched.observe(0.8) == [pytest.approx(0.1 * c.observe(0.8, lr=0.1))]


def test_metric_without_plateau_and_bad_inputs_raise():
    p = _param()
    opt = torch.optim.SGD([p], lr=1.0)
    sched = LRLabScheduler(opt, constant(0.1))
    with pytest.raises(ValueError, match="no plateau node"):
        sched.step(0.5)
    with pytest.raises(ValueError, match="epoch"):
        sched.step(epoch=3)
    with pytest.raises(ValueError, match="momentum must be"):
        LRLabScheduler(opt, constant(0.1), momentum="nesterov")
    with pytest.raises(ValueError, match="total_steps"):
        LRLabScheduler(opt, constant(0.1, steps="10%"))
    with pytest.raises(ValueError, match="Optimizer"):
        LRLabScheduler(object(), constant(0.1))
    s = LRLabScheduler(opt, constant(0.1, steps="10%") >> constant(0.01), total_steps=100)
    assert str(s.states[0].schedule) == "constant(value=0.1, steps=10) >> constant(value=0.01)"


def test_load_state_dict_rejects_another_schedule_and_stays_intact():
    p = _param()
    opt = torch.optim.SGD([p], lr=1.0)
    a = LRLabScheduler(opt, constant(0.1))
    b = LRLabScheduler(torch.optim.SGD([_param()], lr=1.0), constant(0.2))
    before = b.state_dict()
    with pytest.raises(ValueError, match=r"param group 0: .*saved for schedule constant\(value=0\.1\)"):
        b.load_state_dict(a.state_dict())
    assert b.state_dict() == before
    with pytest.raises(ValueError, match="not an LRLabScheduler state_dict"):
        b.load_state_dict({"last_epoch": 3})


def test_state_dict_is_plain_json_and_torch_weights_only_loadable(tmp_path):
    p = _param()
    opt = torch.optim.SGD([p], lr=1.0)
    sched = LRLabScheduler(opt, warmup(constant(0.1), steps=5) * plateau(patience=2))
    _run(opt, sched, 7, p)
    sched.step(0.3)
    sd = sched.state_dict()
    assert json.loads(json.dumps(sd)) == sd
    torch.save({"scheduler": sd, "optimizer": opt.state_dict()}, tmp_path / "ckpt.pt")
    loaded = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert loaded["scheduler"] == sd
    assert sd["groups"][0]["step"] == 7 and sd["groups"][0]["plateau"]["plateau"]["best"] == 0.3


def test_relative_mode_plateau_matches_torch_per_group_min_lr_and_eps():
    # Two groups (0.1 and 0.001): torch reduces each on its own, down to min_lr, skipping
    # reductions smaller than eps. absolute=False gives each group its own controller in lr units.
    a, b = _param(), _param()
    groups = [{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.001}]
    opt = torch.optim.SGD(groups, lr=1.0)
    sched = LRLabScheduler(opt, constant(1.0) * plateau(patience=0, factor=0.3, min_lr=4e-4, eps=1e-6),
                           absolute=False)
    x, y = _param(), _param()
    ref_opt = torch.optim.SGD([{"params": [x], "lr": 0.1}, {"params": [y], "lr": 0.001}], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, patience=0, factor=0.3, min_lr=4e-4, eps=1e-6)
    for m in [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5]:
        sched.step(m)
        ref.step(m)
        np.testing.assert_allclose([g["lr"] for g in opt.param_groups],
                                   [g["lr"] for g in ref_opt.param_groups], rtol=1e-12)
    assert opt.param_groups[1]["lr"] == pytest.approx(4e-4) and opt.param_groups[0]["lr"] < 1e-3


# ---- issue 10: cadence, overwrites, text specs ----------------------------------------------------
def _sgd_lrs(opt, p, n, after_update=None):
    """n plain-SGD updates with gradient 1: the lr each one really used, read from the weights."""
    lrs = []
    for k in range(n):
        before = p.detach().clone()
        p.grad = torch.ones_like(p)
        opt.step()
        lrs.append((before - p.detach())[0].item())
        if after_update is not None:
            after_update(k)
    return lrs


@pytest.mark.parametrize("cadence", ["never", "every 5th update", "every update"])
def test_every_update_gets_the_schedule_whatever_the_step_cadence(cadence):
    # Lightning's "interval": "epoch" calls scheduler.step() once per epoch; a loop may never call it.
    s = warmup(cosine(peak=0.1, end=0.001, steps=20), steps=5)
    p = _param()
    opt = torch.optim.SGD([p], lr=0.0)
    sched = LRLabScheduler(opt, s)
    every = {"never": 0, "every 5th update": 5, "every update": 1}[cadence]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lrs = _sgd_lrs(opt, p, 30, lambda k: sched.step() if every and (k + 1) % every == 0 else None)
    np.testing.assert_allclose(lrs, s.values(30), rtol=1e-12, atol=1e-16)
    assert opt.param_groups[0]["lr"] == s(30)  # the next update's lr is readable between updates
    assert sched.step_count == 30


def test_an_lr_changed_behind_the_schedulers_back_warns_and_is_set_back():
    s = constant(0.1)
    p = _param()
    opt = torch.optim.SGD([p], lr=0.0)
    sched = LRLabScheduler(opt, s)
    rop = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    _sgd_lrs(opt, p, 2)
    rop.step(1.0)
    rop.step(1.0)  # a bad epoch: torch cuts the lr to 0.05 ...
    assert opt.param_groups[0]["lr"] == 0.05
    with pytest.warns(LRLabOverwriteWarning, match=r"param group 0's lr was changed from 0\.1 to 0\.05 "
                      r"outside the scheduler .*ReduceLROnPlateau.*lrlab\.plateau") as caught:
        lrs = _sgd_lrs(opt, p, 1)
    assert caught[0].filename == __file__  # it points at the optimizer.step() line
    assert lrs == [pytest.approx(0.1)]  # ... which the next update undoes: hence the warning

    opt.param_groups[0]["lr"] = 0.3  # user code
    with pytest.warns(LRLabOverwriteWarning, match="from 0.1 to 0.3") as caught:
        sched.step()
    assert caught[0].filename == __file__
    assert opt.param_groups[0]["lr"] == 0.1
    with warnings.catch_warnings():  # the documented way to silence it
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=LRLabOverwriteWarning)
        opt.param_groups[0]["lr"] = 0.3
        assert _sgd_lrs(opt, p, 1) == [pytest.approx(0.1)]


@pytest.mark.parametrize("order", ["optimizer first", "scheduler first"])
def test_resuming_optimizer_and_scheduler_is_no_overwrite(order):
    s = warmup(constant(0.1), steps=10) * plateau(patience=0)
    p, opt, sched = _fresh(s)
    _sgd_lrs(opt, p, 4)
    sched.observe(1.0)
    ckpt = {"opt": opt.state_dict(), "sched": sched.state_dict()}
    p2, opt2, sched2 = _fresh(s)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loads = [lambda: opt2.load_state_dict(ckpt["opt"]), lambda: sched2.load_state_dict(ckpt["sched"])]
        for load in loads if order == "optimizer first" else loads[::-1]:
            load()
        assert _sgd_lrs(opt2, p2, 3) == pytest.approx(s.values(7)[4:].tolist())


def test_a_text_spec_is_parsed():
    p = _param()
    opt = torch.optim.SGD([p], lr=0.0)
    sched = LRLabScheduler(opt, "warmup(cosine(peak=0.1, end=0.0, steps=8), steps=2)")
    assert sched.states[0].schedule == warmup(cosine(peak=0.1, end=0.0, steps=8), steps=2)
    q = _param()
    opt2 = torch.optim.SGD([{"params": [p]}, {"params": [q]}], lr=1.0)
    both = LRLabScheduler(opt2, per_group=["constant(0.1)", constant(0.2)])
    assert both.get_lr() == [0.1, 0.2]
    with pytest.raises(ValueError, match="cosinus"):
        LRLabScheduler(opt, "cosinus(0.1)")
