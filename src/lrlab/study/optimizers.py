"""The optimizers a study can use: torch optimizer classes with documented defaults.

Every study optimizer is a real ``torch.optim.Optimizer`` class; :data:`OPTIMIZERS` records which
one and the keyword arguments the study uses by default (the lr always comes from the trial's
schedule):

================== =========================================== =========================================
name               class                                       defaults (``lr`` excluded)
================== =========================================== =========================================
sgd                ``torch.optim.SGD``                         ``momentum=0.9`` (heavy ball, no Nesterov)
adam               ``torch.optim.Adam``                        torch's: ``betas=(0.9, 0.999), eps=1e-8``
rmsprop            ``torch.optim.RMSprop``                     torch's: ``alpha=0.99, eps=1e-8``
adagrad            ``torch.optim.Adagrad``                     torch's: ``lr_decay=0, eps=1e-10``
adadelta           ``torch.optim.Adadelta``                    torch's: ``rho=0.9, eps=1e-6``
sgd_schedulefree   ``schedulefree.SGDScheduleFree``            the package's: ``momentum=0.9``,
                                                               ``warmup_steps=0``, ``r=0``,
                                                               ``weight_lr_power=2``
adamw_schedulefree ``schedulefree.AdamWScheduleFree``          the package's: ``betas=(0.9, 0.999)``,
                                                               ``weight_decay=0``, ``warmup_steps=0``
prodigy            ``prodigyopt.Prodigy``                      the package's, and
                                                               ``safeguard_warmup=True``
================== =========================================== =========================================

The last three are opt-in *lr-free / schedule-free* arms (``pip install 'lrlab[lrfree]'``), so a
study can answer "do I need a schedule at all?":

* **Schedule-free** SGD and AdamW (Defazio et al. 2024, "The Road Less Scheduled";
  ``facebookresearch/schedule_free``) train at a gradient point ``y`` and *evaluate* at the
  average ``x``: :attr:`OptimizerDef.eval_mode` says so, and the study engine calls
  :func:`eval_begin` (``optimizer.eval()``, plus BatchNorm statistics recomputed at ``x``)
  before every evaluation and :func:`eval_end` (``optimizer.train()``) before training resumes.
  Their own ``warmup_steps`` stays 0: the study's schedule is the only lr driver, so
  ``constant`` and ``warmup_constant`` are the arms the authors intend; any other schedule also
  runs (the package "is compatible with one"), as a clearly named variant: an external decay lowers
  the step but not the averaging weights, which use the running maximum lr.
* **Prodigy** (Mishchenko & Defazio 2024; ``konstmish/prodigy``) estimates the step size ``d``
  itself; the lr is a multiplier of it, 1.0 by design, so schedules act as multipliers of the
  estimate. ``safeguard_warmup=True`` follows the authors' advice for warmup (it only differs from
  the plain method while the multiplier is not 1, so the ``constant`` arm is plain Prodigy).

The five ``torch.optim`` optimizers update each parameter element by element, and the lr enters
their update linearly (``p <- p - lr * d`` where ``d`` and the optimizer state do not depend on
``lr``; AdamW-style decoupled weight decay ``p <- p (1 - lr wd)`` is linear too). The fleet engine
(:mod:`lrlab.study.fleet`) relies on both facts to train many trials with one optimizer over
stacked parameters; :func:`update_is_linear_in_lr` names what would break them. The three lr-free
arms break them by design (their state depends on the lr), so they train one trial at a time.

>>> import torch
>>> p = torch.nn.Parameter(torch.zeros(3))
>>> opt = make_optimizer("sgd", [p], lr=0.1)
>>> type(opt).__name__, opt.param_groups[0]["momentum"], opt.param_groups[0]["lr"]
('SGD', 0.9, 0.1)
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "OPTIMIZERS",
    "OptimizerDef",
    "eval_begin",
    "eval_end",
    "make_optimizer",
    "optimizer_kwargs",
    "recompute_batchnorm",
    "update_is_linear_in_lr",
]


@dataclass(frozen=True)
class OptimizerDef:
    """A study optimizer: its class (by module and name), default keyword arguments, and how the
    study engine must drive it.

    Args:
        name: the study's key (``"sgd"``).
        class_name: attribute of ``module`` (``"SGD"``).
        defaults: keyword arguments passed unless the trial overrides them (never ``lr``).
        description: one line for reports and ``--help``.
        module: the module holding the class (``"torch.optim"``).
        extra: the lrlab extra that installs ``module`` (named in the error when it is missing).
        eval_mode: the optimizer evaluates other weights than it trains (schedule-free: the
            average ``x``, not the gradient point ``y``): call ``optimizer.eval()`` before
            evaluating and ``optimizer.train()`` before training (:func:`eval_begin`,
            :func:`eval_end`).
        lr_dependent_state: why the optimizer's state depends on the lr (so the fleet's
            ``lr = 1`` step scaled by each trial's lr is not its update), or ``""``.
        zero_lr_ok: the constructor accepts ``lr=0`` (Prodigy's refuses it, its ``step`` does not).
    """

    name: str
    class_name: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    module: str = "torch.optim"
    extra: str = "torch"
    eval_mode: bool = False
    lr_dependent_state: str = ""
    zero_lr_ok: bool = True

    @property
    def cls(self) -> type:
        """The optimizer class (imports its module; a missing package is a one-line ``ValueError``)."""
        try:
            mod = importlib.import_module(self.module)
        except ImportError:
            raise ValueError(
                f"optimizer {self.name!r} needs the {self.module} package: pip install 'lrlab[{self.extra}]'"
            ) from None
        return getattr(mod, self.class_name)


_SCHEDULE_FREE_STATE = (
    "schedule-free's state (its sequence z, moved by lr x gradient, and its average weighted by "
    "lr_max**2) depends on the lr"
)

OPTIMIZERS: dict[str, OptimizerDef] = {
    "sgd": OptimizerDef("sgd", "SGD", {"momentum": 0.9}, "SGD with heavy-ball momentum 0.9"),
    "adam": OptimizerDef("adam", "Adam", {}, "Adam (Kingma & Ba 2015), torch defaults"),
    "rmsprop": OptimizerDef("rmsprop", "RMSprop", {}, "RMSprop (Hinton 2012), torch defaults"),
    "adagrad": OptimizerDef("adagrad", "Adagrad", {}, "Adagrad (Duchi et al. 2011), torch defaults"),
    "adadelta": OptimizerDef("adadelta", "Adadelta", {}, "Adadelta (Zeiler 2012), torch defaults"),
    "sgd_schedulefree": OptimizerDef(
        "sgd_schedulefree", "SGDScheduleFree", {}, "Schedule-free SGD (Defazio et al. 2024), package defaults",
        module="schedulefree", extra="lrfree", eval_mode=True, lr_dependent_state=_SCHEDULE_FREE_STATE),
    "adamw_schedulefree": OptimizerDef(
        "adamw_schedulefree", "AdamWScheduleFree", {},
        "Schedule-free AdamW (Defazio et al. 2024), package defaults",
        module="schedulefree", extra="lrfree", eval_mode=True, lr_dependent_state=_SCHEDULE_FREE_STATE),
    "prodigy": OptimizerDef(
        "prodigy", "Prodigy", {"safeguard_warmup": True},
        "Prodigy (Mishchenko & Defazio 2024): lr-free Adam, lr multiplies its step-size estimate d",
        module="prodigyopt", extra="lrfree", zero_lr_ok=False,
        lr_dependent_state="Prodigy estimates its step size d from lr-weighted sums of its past updates, so "
        "its state depends on the lr"),
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
    """The study optimizer ``name`` over ``params`` with learning rate ``lr``, ready to train.

    ``kwargs`` override the defaults (see :func:`optimizer_kwargs`). An optimizer with an eval
    mode (schedule-free) is returned in train mode (``optimizer.train()`` called), and one whose
    constructor refuses ``lr=0`` (Prodigy) is built at ``lr=1`` and then set to 0: a schedule that
    starts from 0 is fine for its ``step``.

    >>> import torch
    >>> opt = make_optimizer("sgd_schedulefree", [torch.nn.Parameter(torch.zeros(2))], lr=0.0)
    >>> type(opt).__name__, opt.param_groups[0]["train_mode"], opt.param_groups[0]["momentum"]
    ('SGDScheduleFree', True, 0.9)
    >>> make_optimizer("prodigy", [torch.nn.Parameter(torch.zeros(2))], lr=0.0).param_groups[0]["lr"]
    0.0

    Raises:
        ValueError: unknown name, a missing package, an argument the class does not take, or a
            bad ``lr``.
    """
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr < 0:
        raise ValueError(f"lr must be a finite number >= 0, got lr={lr!r}")
    kw = optimizer_kwargs(name, kwargs)
    d = OPTIMIZERS[name]
    try:
        opt = d.cls(params, lr=lr if lr > 0 or d.zero_lr_ok else 1.0, **kw)
    except (ValueError, TypeError) as e:  # torch validates values (e.g. momentum < 0)
        raise ValueError(f"optimizer {name!r}: {e}") from None
    if lr == 0 and not d.zero_lr_ok:
        opt.defaults["lr"] = lr
        for g in opt.param_groups:
            g["lr"] = lr
    if d.eval_mode:
        opt.train()
    return opt


def update_is_linear_in_lr(name: str, kwargs: Mapping[str, Any]) -> str | None:
    """``None`` if the update of ``name`` with ``kwargs`` is elementwise and linear in ``lr``.

    Otherwise a reason (a string). For the five ``torch.optim`` study optimizers this holds for
    every documented hyper-parameter (weight decay, Nesterov, dampening, AMSGrad, centered RMSprop,
    Adagrad's ``lr_decay``, AdamW-style ``decoupled_weight_decay``, ``maximize``); only a
    tensor-valued lr or ``fused``/``capturable``/``differentiable`` implementations are refused,
    because the fleet engine drives the optimizer with ``lr=1`` on CPU-style stacked tensors. It
    never holds for the schedule-free and Prodigy arms (:attr:`OptimizerDef.lr_dependent_state`).

    >>> update_is_linear_in_lr("adam", {"weight_decay": 0.01, "decoupled_weight_decay": True}) is None
    True
    >>> update_is_linear_in_lr("sgd", {"fused": True})
    "fused=True changes torch.optim's implementation; the fleet engine runs the foreach one"
    >>> update_is_linear_in_lr("prodigy", {})
    'Prodigy estimates its step size d from lr-weighted sums of its past updates, so its state depends on the lr'
    """
    d = _check_name(name)
    if d.lr_dependent_state:
        return d.lr_dependent_state
    for k in _IMPLEMENTATION_KW:
        if kwargs.get(k):
            return f"{k}=True changes torch.optim's implementation; the fleet engine runs the foreach one"
    return None


# ---- evaluation mode (schedule-free) ------------------------------------------------------------


def eval_begin(name: str, optimizer: Any, model: Any, x_train: Any, batch_size: int) -> None:
    """Put ``model`` in the state its optimizer wants evaluated; a no-op unless
    :attr:`OptimizerDef.eval_mode`.

    Schedule-free optimizers train at ``y`` and are evaluated at the average ``x``: this calls
    ``optimizer.eval()`` (the authors' requirement) and, when the model has BatchNorm layers that
    track running statistics, recomputes them at ``x`` (:func:`recompute_batchnorm`; the running
    statistics gathered during training were measured at ``y``, the package README's caveat).
    Undo with :func:`eval_end` before training again.
    """
    if not OPTIMIZERS[name].eval_mode:
        return
    optimizer.eval()
    recompute_batchnorm(model, x_train, batch_size)


def eval_end(name: str, optimizer: Any) -> None:
    """Back to training after :func:`eval_begin`: ``optimizer.train()`` for an optimizer with an
    eval mode, else nothing."""
    if OPTIMIZERS[name].eval_mode:
        optimizer.train()


def recompute_batchnorm(model: Any, x: Any, batch_size: int) -> int:
    """Recompute the running statistics of ``model``'s BatchNorm layers over all of ``x``.

    One pass without gradients over ``x`` in order, in batches of ``batch_size``, with the
    BatchNorm layers in training mode and cumulative averaging (``momentum=None``: each batch
    weighs equally, the old statistics are discarded), every other module in eval mode (no
    dropout, no random numbers drawn). The modes and momenta are restored afterwards. This is
    "precise BN" over the whole training set; the schedule-free authors suggest ~50 training
    batches, which on small sets like MNIST-1D's 4,000 examples is about the whole set anyway.

    Returns:
        the number of BatchNorm layers recomputed (0: nothing was run).
    """
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                model(x[i:i + batch_size])
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        for m, was in modes.items():
            m.training = was
    return len(bns)
