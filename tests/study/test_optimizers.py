"""Study optimizers: the real torch.optim classes, their defaults, and the property the fleet relies on.

The fleet engine steps each study optimizer with ``lr = 1`` on stacked parameters and scales each
trial's update by its own lr. That is exact only if the update is ``p <- p - lr * d`` with ``d``
and the optimizer state independent of ``lr``; these tests check it against the real torch.optim
classes over many steps with changing lrs, for every optimizer and its lr-coupled options.
"""

from __future__ import annotations

import pytest
import torch

from lrlab.study.optimizers import (
    OPTIMIZERS,
    make_optimizer,
    optimizer_kwargs,
    update_is_linear_in_lr,
)

VARIANTS = [
    ("sgd", {}),
    ("sgd", {"nesterov": True, "weight_decay": 1e-2}),
    ("sgd", {"momentum": 0.5, "dampening": 0.1, "maximize": True}),
    ("adam", {}),
    ("adam", {"weight_decay": 1e-2, "decoupled_weight_decay": True}),
    ("adam", {"amsgrad": True, "weight_decay": 1e-3}),
    ("rmsprop", {}),
    ("rmsprop", {"centered": True, "momentum": 0.9, "weight_decay": 1e-3}),
    ("adagrad", {"lr_decay": 0.05, "initial_accumulator_value": 0.1}),
    ("adadelta", {"weight_decay": 1e-2}),
]


def test_registry_names_classes_and_defaults():
    import prodigyopt
    import schedulefree

    assert list(OPTIMIZERS) == ["sgd", "adam", "rmsprop", "adagrad", "adadelta", "sgd_schedulefree",
                                "adamw_schedulefree", "prodigy"]
    classes = {n: d.cls for n, d in OPTIMIZERS.items()}
    assert classes == {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop,
                       "adagrad": torch.optim.Adagrad, "adadelta": torch.optim.Adadelta,
                       "sgd_schedulefree": schedulefree.SGDScheduleFree,
                       "adamw_schedulefree": schedulefree.AdamWScheduleFree, "prodigy": prodigyopt.Prodigy}
    assert [n for n, d in OPTIMIZERS.items() if d.eval_mode] == ["sgd_schedulefree", "adamw_schedulefree"]
    p = torch.nn.Parameter(torch.zeros(2))
    sgd = make_optimizer("sgd", [p], lr=0.1)
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["nesterov"] is False
    adam = make_optimizer("adam", [p], lr=0.01, betas=(0.8, 0.99))
    assert adam.param_groups[0]["betas"] == (0.8, 0.99) and adam.param_groups[0]["lr"] == 0.01


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: make_optimizer("lbfgs", p, lr=0.1), "unknown optimizer 'lbfgs'"),
        (lambda p: make_optimizer("sgd", p, lr=-1.0), "lr must be a finite number >= 0, got lr=-1.0"),
        (lambda p: make_optimizer("sgd", p, lr=float("nan")), "lr must be a finite number"),
        (lambda p: make_optimizer("adam", p, lr=0.1, momentum=0.9), "has no argument.*momentum"),
        (lambda p: make_optimizer("sgd", p, lr=0.1, momentum=-0.5), "optimizer 'sgd': Invalid momentum"),
        (lambda p: optimizer_kwargs("adam", {"lr": 0.1}), "lr comes from the schedule"),
    ],
)
def test_bad_input_raises_value_error_naming_it(call, match):
    with pytest.raises(ValueError, match=match):
        call([torch.nn.Parameter(torch.zeros(2))])


def test_implementation_switches_are_refused_for_fleets():
    assert update_is_linear_in_lr("adam", {"fused": True}).startswith("fused=True")
    assert update_is_linear_in_lr("sgd", {"foreach": False}) is None
    for name, kw in VARIANTS:
        assert update_is_linear_in_lr(name, kw) is None


def _scaled_unit_lr_error(name, kwargs, lr_of_step, foreach=True, steps=30) -> float:
    """Largest gap, over ``steps`` steps and relative to how far the parameters moved, between the
    optimizer at its lr and the fleet's way: the optimizer at ``lr = 1`` (``foreach``, as the fleet
    builds it) with each step scaled by the lr. The gradient is that of a noisy quadratic at the
    current point (as in training: progress is made, so Prodigy's d estimate grows)."""
    gen = torch.Generator().manual_seed(1)
    p0 = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    target = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    a = torch.nn.Parameter(p0.clone())
    b = torch.nn.Parameter(p0.clone())
    opt_a = make_optimizer(name, [a], lr=0.0, **kwargs)
    opt_b = make_optimizer(name, [b], lr=1.0, **({"foreach": True} if foreach else {}), **kwargs)
    err = moved = 0.0
    for t in range(steps):
        lr = lr_of_step(t)
        noise = 0.1 * torch.randn(4, 3, generator=gen, dtype=torch.float64)
        opt_a.param_groups[0]["lr"] = lr
        a.grad = a.detach() - target + noise
        opt_a.step()
        old = b.detach().clone()
        b.grad = b.detach() - target + noise
        opt_b.step()
        with torch.no_grad():
            b.sub_(old).mul_(lr).add_(old)
        err = max(err, float((b.detach() - a.detach()).abs().max()))
        moved = max(moved, float((a.detach() - p0).abs().max()))
    assert moved > 0
    return err / moved


def _changing_lr(t: int) -> float:
    return 0.05 * (1 + t % 7) if t % 5 else 0.0  # includes lr = 0 steps


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(VARIANTS)])
def test_update_scaled_from_unit_lr_equals_update_at_lr(name, kwargs):
    """30 steps with changing lrs: torch.optim at lr vs torch.optim at lr=1 with the step scaled."""
    assert _scaled_unit_lr_error(name, kwargs, _changing_lr) < 1e-12


@pytest.mark.parametrize("name", ["sgd_schedulefree", "adamw_schedulefree", "prodigy"])
@pytest.mark.parametrize("lr_of_step", [_changing_lr, lambda t: 0.05], ids=["changing-lr", "constant-lr"])
def test_lr_free_arms_are_not_linear_in_lr_so_the_fleet_refuses_them(name, lr_of_step):
    """Schedule-free keeps z (moved by lr x gradient) and averages with lr_max**2 weights; Prodigy
    estimates d from lr-weighted sums of its updates: the fleet's scaled unit-lr step drifts away
    from the real optimizer, even at a constant lr, and update_is_linear_in_lr says why."""
    err = _scaled_unit_lr_error(name, {}, lr_of_step, foreach=False)
    assert err > 1e-2, err  # far beyond rounding (the exact optimizers stay below 1e-12)
    reason = update_is_linear_in_lr(name, {})
    assert reason is not None and reason.endswith("depends on the lr")
    assert ("Prodigy" in reason) == (name == "prodigy")


def test_only_the_lr_free_arms_are_refused_for_fleets():
    refused = {n for n in OPTIMIZERS if update_is_linear_in_lr(n, {}) is not None}
    assert refused == {"sgd_schedulefree", "adamw_schedulefree", "prodigy"}
    # the fleet has no eval-mode hook (only train_one does): an optimizer with one must be refused
    assert {n for n, d in OPTIMIZERS.items() if d.eval_mode} <= refused
    for name in OPTIMIZERS:  # refusal == the proof above: the scaled unit-lr update drifts
        assert (_scaled_unit_lr_error(name, {}, _changing_lr, foreach=False) > 1e-2) == (name in refused)
