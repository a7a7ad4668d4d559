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
    assert list(OPTIMIZERS) == ["sgd", "adam", "rmsprop", "adagrad", "adadelta"]
    classes = {n: d.cls for n, d in OPTIMIZERS.items()}
    assert classes == {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop,
                       "adagrad": torch.optim.Adagrad, "adadelta": torch.optim.Adadelta}
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


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(VARIANTS)])
def test_update_scaled_from_unit_lr_equals_update_at_lr(name, kwargs):
    """30 steps with changing lrs: torch.optim at lr vs torch.optim at lr=1 with the step scaled."""
    gen = torch.Generator().manual_seed(1)
    p0 = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    a = torch.nn.Parameter(p0.clone())
    b = torch.nn.Parameter(p0.clone())
    opt_a = make_optimizer(name, [a], lr=0.0, **kwargs)
    opt_b = OPTIMIZERS[name].cls([b], lr=1.0, foreach=True, **optimizer_kwargs(name, kwargs))
    for t in range(30):
        lr = 0.05 * (1 + t % 7) if t % 5 else 0.0  # includes lr = 0 steps
        g = torch.randn(4, 3, generator=gen, dtype=torch.float64)
        opt_a.param_groups[0]["lr"] = lr
        a.grad = g.clone()
        opt_a.step()
        old = b.detach().clone()
        b.grad = g.clone()
        opt_b.step()
        with torch.no_grad():
            b.sub_(old).mul_(lr).add_(old)
        torch.testing.assert_close(b.detach(), a.detach(), rtol=1e-12, atol=1e-13)
