"""The optimizers a study can use: torch.optim classes with documented defaults.

Every study optimizer is a real ``torch.optim`` class; :data:`OPTIMIZERS` records which one and the
keyword arguments the study uses by default (the lr always comes from the trial's schedule):

========= ======================== ==================================================
name      class                    defaults (``lr`` excluded)
========= ======================== ==================================================
sgd       ``torch.optim.SGD``      ``momentum=0.9`` (heavy ball, no Nesterov)
adam      ``torch.optim.Adam``     torch's: ``betas=(0.9, 0.999), eps=1e-8``
rmsprop   ``torch.optim.RMSprop``  torch's: ``alpha=0.99, eps=1e-8``
adagrad   ``torch.optim.Adagrad``  torch's: ``lr_decay=0, eps=1e-10``
adadelta  ``torch.optim.Adadelta`` torch's: ``rho=0.9, eps=1e-6``
========= ======================== ==================================================

All five update each parameter element by element, and the lr enters their update linearly
(``p <- p - lr * d`` where ``d`` and the optimizer state do not depend on ``lr``; AdamW-style
decoupled weight decay ``p <- p (1 - lr wd)`` is linear too). The fleet engine
(:mod:`lrlab.study.fleet`) relies on both facts to train many trials with one optimizer over
stacked parameters; :func:`update_is_linear_in_lr` names the arguments that would break them.

>>> import torch
>>> p = torch.nn.Parameter(torch.zeros(3))
>>> opt = make_optimizer("sgd", [p], lr=0.1)
>>> type(opt).__name__, opt.param_groups[0]["momentum"], opt.param_groups[0]["lr"]
('SGD', 0.9, 0.1)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OPTIMIZERS", "OptimizerDef", "make_optimizer", "optimizer_kwargs", "update_is_linear_in_lr"]


@dataclass(frozen=True)
class OptimizerDef:
    """A study optimizer: the ``torch.optim`` class (by name) and its default keyword arguments.

    Args:
        name: the study's key (``"sgd"``).
        class_name: attribute of ``torch.optim`` (``"SGD"``).
        defaults: keyword arguments passed unless the trial overrides them (never ``lr``).
        description: one line for reports and ``--help``.
    """

    name: str
    class_name: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def cls(self) -> type:
        """The ``torch.optim`` class (imports torch)."""
        import torch.optim

        return getattr(torch.optim, self.class_name)


OPTIMIZERS: dict[str, OptimizerDef] = {
    "sgd": OptimizerDef("sgd", "SGD", {"momentum": 0.9}, "SGD with heavy-ball momentum 0.9"),
    "adam": OptimizerDef("adam", "Adam", {}, "Adam (Kingma & Ba 2015), torch defaults"),
    "rmsprop": OptimizerDef("rmsprop", "RMSprop", {}, "RMSprop (Hinton 2012), torch defaults"),
    "adagrad": OptimizerDef("adagrad", "Adagrad", {}, "Adagrad (Duchi et al. 2011), torch defaults"),
    "adadelta": OptimizerDef("adadelta", "Adadelta", {}, "Adadelta (Zeiler 2012), torch defaults"),
}
"""Study optimizers by name."""

# Keyword arguments that are not hyper-parameters of the update (implementation switches).
_IMPLEMENTATION_KW = ("foreach", "fused", "capturable", "differentiable")


def _check_name(name: Any) -> OptimizerDef:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


def optimizer_kwargs(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The keyword arguments (without ``lr``) a trial's optimizer is built with.

    ``overrides`` replace the defaults of :data:`OPTIMIZERS`; each must be a keyword argument of
    the ``torch.optim`` class, and ``lr`` is refused (it comes from the schedule).

    >>> optimizer_kwargs("sgd", {"nesterov": True})
    {'momentum': 0.9, 'nesterov': True}
    >>> optimizer_kwargs("adam", {"lr": 0.1})
    Traceback (most recent call last):
    ...
    ValueError: optimizer 'adam': lr comes from the schedule, do not pass it in optimizer_kwargs (got lr=0.1)
    """
    d = _check_name(name)
    overrides = dict(overrides or {})
    if "lr" in overrides:
        raise ValueError(
            f"optimizer {name!r}: lr comes from the schedule, do not pass it in optimizer_kwargs (got lr={overrides['lr']!r})"
        )
    accepted = set(inspect.signature(d.cls).parameters) - {"params", "lr"}
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise ValueError(
            f"optimizer {name!r} ({d.class_name}) has no argument(s) {', '.join(unknown)}; "
            f"it takes {', '.join(sorted(accepted))}"
        )
    return {**d.defaults, **overrides}


def make_optimizer(name: str, params: Iterable[Any], lr: float, **kwargs: Any):
    """A ``torch.optim`` optimizer ``name`` over ``params`` with learning rate ``lr``.

    ``kwargs`` override the defaults (see :func:`optimizer_kwargs`).

    Raises:
        ValueError: unknown name, an argument the class does not take, or a bad ``lr``.
    """
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr < 0:
        raise ValueError(f"lr must be a finite number >= 0, got lr={lr!r}")
    kw = optimizer_kwargs(name, kwargs)
    try:
        return OPTIMIZERS[name].cls(params, lr=lr, **kw)
    except (ValueError, TypeError) as e:  # torch validates values (e.g. momentum < 0)
        raise ValueError(f"optimizer {name!r}: {e}") from None


def update_is_linear_in_lr(name: str, kwargs: Mapping[str, Any]) -> str | None:
    """``None`` if the update of ``name`` with ``kwargs`` is elementwise and linear in ``lr``.

    Otherwise a reason (a string). For the five study optimizers this holds for every documented
    hyper-parameter (weight decay, Nesterov, dampening, AMSGrad, centered RMSprop, Adagrad's
    ``lr_decay``, AdamW-style ``decoupled_weight_decay``, ``maximize``); only a tensor-valued lr or
    ``fused``/``capturable``/``differentiable`` implementations are refused, because the fleet
    engine drives the optimizer with ``lr=1`` on CPU-style stacked tensors.

    >>> update_is_linear_in_lr("adam", {"weight_decay": 0.01, "decoupled_weight_decay": True}) is None
    True
    >>> update_is_linear_in_lr("sgd", {"fused": True})
    "fused=True changes torch.optim's implementation; the fleet engine runs the foreach one"
    """
    _check_name(name)
    for k in _IMPLEMENTATION_KW:
        if kwargs.get(k):
            return f"{k}=True changes torch.optim's implementation; the fleet engine runs the foreach one"
    return None
