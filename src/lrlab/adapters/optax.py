"""optax adapter: lrlab schedules as optax learning rates, a jit-compatible plateau transform, lr readout.

* lrlab schedules are already valid optax schedules: ``optax.sgd(schedule)`` calls
  ``schedule(count)`` with a JAX integer array, and the formula runs in ``jax.numpy`` (under
  ``jit`` too). :func:`to_optax` makes that explicit and always answers with a JAX array.
  The first update uses ``schedule(0)``; plateau nodes count as 1 there (see below).
* :func:`reduce_on_plateau` is a ``GradientTransformationExtraArgs`` that multiplies the updates
  by a :class:`~lrlab.plateau` node's multiplier, fed by a ``value=`` extra argument exactly like
  ``optax.contrib.reduce_on_plateau``, with the node's counting rules (``preset='torch'``,
  ``'keras'`` or ``'optax'``: the rules of :class:`~lrlab.PlateauController`, rewritten in
  ``jax.numpy`` so the whole update stays inside ``jit``: no host round trip per step, and the
  controller state is part of the optimizer state, so it checkpoints with it).
* :func:`current_lr` reads the learning rate out of an optimizer state.

Why in ``jax.numpy`` rather than on the host: an optax state must be a pure pytree updated inside
the user's jitted step; a host-side controller would need a callback and a device sync at every
update. The price is a second implementation of the rules, which the tests hold to
:class:`~lrlab.PlateauController` and to ``optax.contrib.reduce_on_plateau`` value by value.

>>> import jax.numpy as jnp, optax
>>> from lrlab.schedules import constant, warmup
>>> s = warmup(constant(0.1), steps=2)
>>> opt = optax.sgd(to_optax(s))
>>> params = jnp.zeros(2)
>>> state = opt.init(params)
>>> lrs = []
>>> for _ in range(3):
...     updates, state = opt.update(jnp.ones(2), state)
...     lrs.append(round(float(-updates[0]), 6))
>>> lrs, round(current_lr(state, s), 6)
([0.0, 0.05, 0.1], 0.1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrlab.schedules._core import Schedule, as_schedule
from lrlab.schedules._plateau import plateau

__all__ = ["PlateauState", "current_lr", "reduce_on_plateau", "to_optax"]


def _as_schedule(schedule: Any, what: str) -> Schedule:
    return as_schedule(schedule, what, configs=False)


def to_optax(schedule: Schedule) -> Callable[[Any], jax.Array]:
    """An optax schedule ``count -> lr``: ``schedule(count)`` evaluated with ``jax.numpy``.

    ``count`` is optax's update counter (``0`` for the first update), an integer array or a
    tracer under ``jit``. The value is in JAX's default float type (float32 unless x64 is
    enabled). Plateau nodes are evaluated at 1: pair the optimizer with :func:`reduce_on_plateau`
    to apply their multiplier.

    >>> import jax.numpy as jnp
    >>> from lrlab.schedules import constant
    >>> f = to_optax(constant(1.0, steps=2) >> constant(0.5))
    >>> [float(f(jnp.int32(c))) for c in range(4)]
    [1.0, 1.0, 0.5, 0.5]
    """
    s = _as_schedule(schedule, "to_optax: schedule")

    def lr(count: Any) -> jax.Array:
        return jnp.asarray(s(count, None, backend="jax"))

    lr.schedule = s  # type: ignore[attr-defined]
    lr.__name__ = f"lrlab:{s}"
    lr.__qualname__ = lr.__name__
    return lr


class PlateauState(NamedTuple):
    """State of :func:`reduce_on_plateau` (a pytree of scalars; checkpoint it with the optimizer).

    ``scale`` is the multiplier applied to the updates; ``best``, ``num_bad``,
    ``cooldown_counter`` and ``num_reductions`` mirror :class:`~lrlab.PlateauController`
    (``best`` is ``±inf`` before the first value); ``step`` counts updates (for ``min_lr``);
    ``acc_count``/``acc_value`` hold the running average of the ``accumulation_size`` window.
    """

    scale: jax.Array
    best: jax.Array
    num_bad: jax.Array
    cooldown_counter: jax.Array
    num_reductions: jax.Array
    step: jax.Array
    acc_count: jax.Array
    acc_value: jax.Array


def _raise_nonfinite(value: Any, finite: Any, key: str) -> None:
    # Under vmap the cond below becomes a select and this runs for every value: check again here.
    if bool(np.all(finite)):
        return
    raise ValueError(
        f"plateau {key!r}: the value passed to update() is not finite ({value}); fix the run, or build "
        "the node with on_nan='skip' to ignore such values"
    )


def reduce_on_plateau(node: plateau | None = None, *, schedule: Schedule | None = None,
                      accumulation_size: int = 1) -> optax.GradientTransformationExtraArgs:
    """Scale updates by a :class:`~lrlab.plateau` multiplier driven by ``update(..., value=metric)``.

    Each ``update`` call adds ``value`` to a running mean; every ``accumulation_size`` calls the
    mean is observed once with the node's rules (:class:`~lrlab.PlateauController`), and the
    resulting multiplier scales *this* call's updates (optax's convention: the value passed with
    update ``k`` can already change update ``k``). With ``accumulation_size=1`` and
    ``preset='optax'`` this is ``optax.contrib.reduce_on_plateau(factor, patience, rtol=threshold
    (or atol=threshold for threshold_mode='abs'), cooldown, min_scale)``, value for value.

    Args:
        node: the plateau node (``lrlab.plateau(...)``); default ``plateau()``.
        schedule: the lr schedule these updates are scaled by (the one given to the optimizer).
            Needed only for the node's ``min_lr`` and the torch ``eps`` rule, which are in lr units:
            the lr compared is ``schedule(step)`` (``step``: updates so far) with plateau nodes at 1. Without it the
            multiplier is taken as the lr (``lr = 1``), and ``min_lr > 0`` is refused.
        accumulation_size: number of ``update`` calls averaged into one observation (use the
            number of steps per epoch when ``value`` is the minibatch loss).

    A non-finite ``value`` is skipped when ``node.on_nan == 'skip'`` (it does not count towards the
    ``accumulation_size`` window); otherwise the update raises
    (inside ``jit`` as a ``JaxRuntimeError`` carrying the ``ValueError`` message: compiled code
    cannot raise Python exceptions, so the check runs in a ``jax.debug.callback`` that is only
    executed on a non-finite value; under ``vmap`` it runs at every update).

    >>> import jax.numpy as jnp
    >>> from lrlab.schedules import plateau
    >>> tx = reduce_on_plateau(plateau(patience=0, factor=0.5, preset="keras"))
    >>> state = tx.init(jnp.zeros(1))
    >>> out = []
    >>> for v in [1.0, 1.0, 0.5, 0.5]:
    ...     u, state = tx.update(jnp.ones(1), state, value=v)
    ...     out.append(float(u[0]))
    >>> out
    [1.0, 0.5, 0.5, 0.25]
    """
    node = plateau() if node is None else node
    if not isinstance(node, plateau):
        raise ValueError(f"reduce_on_plateau: node must be an lrlab plateau node, got node={node!r}")
    if schedule is not None:
        schedule = _as_schedule(schedule, "reduce_on_plateau: schedule")
    elif node.min_lr > 0:
        raise ValueError(
            f"reduce_on_plateau: the node's min_lr={node.min_lr!r} is in lr units; pass the lr "
            "schedule (schedule=...) or use min_scale"
        )
    if isinstance(accumulation_size, bool) or not isinstance(accumulation_size, int) or accumulation_size < 1:
        raise ValueError(f"reduce_on_plateau: accumulation_size must be an integer >= 1, got accumulation_size={accumulation_size!r}")

    maximize = node.mode == "max"
    rel = node.effective_threshold_mode == "rel"
    thr = float(node.threshold)
    factor, patience, cooldown = float(node.factor), int(node.patience), int(node.cooldown)
    min_scale, min_lr, eps = float(node.min_scale), float(node.min_lr), float(node.eps)
    i32 = jnp.int32

    def init_fn(params: Any) -> PlateauState:
        # As optax.contrib.reduce_on_plateau: the metric's state (best value, running mean) in the
        # params' highest float dtype, the multiplier in their lowest (float64 under jax x64 with
        # float64 params, so the comparison is made in float64 too); default float without params.
        floats = [x.dtype for x in jax.tree.leaves(params)
                  if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)]
        high = max(floats, key=lambda d: jnp.finfo(d).bits) if floats else jnp.result_type(float)
        low = min(floats, key=lambda d: jnp.finfo(d).bits) if floats else jnp.result_type(float)
        return PlateauState(
            scale=jnp.ones([], low),
            best=jnp.asarray(-jnp.inf if maximize else jnp.inf, high),
            num_bad=jnp.zeros([], i32),
            cooldown_counter=jnp.zeros([], i32),
            num_reductions=jnp.zeros([], i32),
            step=jnp.zeros([], i32),
            acc_count=jnp.zeros([], i32),
            acc_value=jnp.zeros([], high),
        )

    f32 = jnp.float32

    def improved(a: jax.Array, best: jax.Array) -> jax.Array:
        # The same comparisons as PlateauController._improved: float32 for the keras preset (Keras'
        # default floatx), the state's dtype for optax's (the params' dtype, as optax keeps it).
        if node.preset == "keras":
            if rel:
                bound = best * (1.0 - thr) if not maximize else best * (1.0 + thr)
                return a.astype(f32) > bound.astype(f32) if maximize else a.astype(f32) < bound.astype(f32)
            if maximize:
                return (a - thr).astype(f32) > best.astype(f32)
            return (a + thr).astype(f32) < best.astype(f32)
        if node.preset == "optax":  # in the dtype optax keeps its best value in: the params'
            rtol, atol = (thr, 0.0) if rel else (0.0, thr)
            a_, b_ = a.astype(best.dtype), best
            if maximize:
                return a_ > (1.0 + rtol) * b_ + atol
            return a_ < (1.0 - rtol) * b_ - atol
        if maximize:
            return a > best * (1.0 + thr) if rel else a > best + thr
        return a < best * (1.0 - thr) if rel else a < best - thr

    def reduced(scale: jax.Array, lr: jax.Array | float) -> jax.Array:
        floor = jnp.asarray(min_scale, scale.dtype)
        if min_lr > 0:
            floor = jnp.where(lr > 0, jnp.maximum(floor, min_lr / jnp.where(lr > 0, lr, 1.0)), floor)
        return jnp.minimum(scale, jnp.maximum(scale * factor, floor))

    def observe(st: PlateauState, a: jax.Array, lr: jax.Array | float) -> PlateauState:
        imp = improved(a, st.best)
        best = jnp.where(imp, a.astype(st.best.dtype), st.best)
        scale, num_bad, cd, nred = st.scale, st.num_bad, st.cooldown_counter, st.num_reductions
        if node.preset == "torch":  # torch ReduceLROnPlateau.step / _reduce_lr
            num_bad = jnp.where(imp, 0, num_bad + 1)
            in_cd = cd > 0
            cd = jnp.where(in_cd, cd - 1, cd)
            num_bad = jnp.where(in_cd, 0, num_bad)
            fire = num_bad > patience
            new = reduced(scale, lr)
            apply = fire & ((scale - new) * lr > eps)
            nred = nred + (apply & (new < scale)).astype(i32)
            scale = jnp.where(apply, new, scale)
            cd = jnp.where(fire, cooldown, cd)
            num_bad = jnp.where(fire, 0, num_bad)
        elif node.preset == "keras":  # keras ReduceLROnPlateau.on_epoch_end
            in_cd = cd > 0
            cd = jnp.where(in_cd, cd - 1, cd)
            num_bad = jnp.where(in_cd, 0, num_bad)
            counting = ~imp & (cd == 0)
            num_bad = jnp.where(imp, 0, jnp.where(counting, num_bad + 1, num_bad))
            new = reduced(scale, lr)
            apply = counting & (num_bad >= patience) & (new < scale)
            nred = nred + apply.astype(i32)
            scale = jnp.where(apply, new, scale)
            cd = jnp.where(apply, cooldown, cd)
            num_bad = jnp.where(apply, 0, num_bad)
        else:  # optax contrib.reduce_on_plateau _update_scale
            count = jnp.where(imp, 0, num_bad + 1)
            in_cd = cd > 0
            fire = ~in_cd & (count == patience)
            new = reduced(scale, lr)
            nred = nred + (fire & (new < scale)).astype(i32)
            scale = jnp.where(fire, new, scale)
            num_bad = jnp.where(in_cd | fire, 0, count)
            cd = jnp.where(in_cd, cd - 1, jnp.where(fire, cooldown, cd))
        return st._replace(scale=scale, best=best, num_bad=num_bad.astype(i32), cooldown_counter=cd.astype(i32),
                           num_reductions=nred)

    def update_fn(updates: Any, state: PlateauState, params: Any = None, *, value: Any, **extra: Any):
        del params, extra
        v = jnp.asarray(value, state.acc_value.dtype)
        finite = jnp.isfinite(v)
        if node.on_nan != "skip":
            jax.lax.cond(finite, lambda x, f: None,
                         lambda x, f: jax.debug.callback(_raise_nonfinite, x, f, node.key), v, finite)
        # optax's running mean, over the finite values only
        n = jnp.where(finite, state.acc_count + 1, state.acc_count)
        avg = jnp.where(finite, (state.acc_count * state.acc_value + jnp.where(finite, v, 0.0)) / jnp.maximum(n, 1),
                        state.acc_value)
        st = state._replace(acc_count=n.astype(i32), acc_value=avg.astype(state.acc_value.dtype))
        if schedule is not None:
            lr = jnp.asarray(schedule(state.step, None, backend="jax"), st.scale.dtype)
        else:
            lr = jnp.asarray(1.0, st.scale.dtype)
        ready = finite & (n == accumulation_size)
        observed = observe(st, avg, lr)
        observed = observed._replace(acc_count=jnp.zeros([], i32), acc_value=jnp.zeros([], st.acc_value.dtype))
        st = jax.tree.map(lambda new, old: jnp.where(ready, new, old), observed, st)
        st = st._replace(step=optax.safe_increment(state.step))
        updates = jax.tree.map(lambda g: jnp.asarray(st.scale, g.dtype) * g, updates)
        return updates, st

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ---- reading the lr back ----------------------------------------------------------------------
def _walk(tree: Any):
    yield tree
    if isinstance(tree, tuple | list):
        for x in tree:
            yield from _walk(x)
    elif isinstance(tree, dict):
        for x in tree.values():
            yield from _walk(x)


def current_lr(opt_state: Any, schedule: Schedule | None = None) -> float:
    """The learning rate found in an optax optimizer state, times any :func:`reduce_on_plateau` scale.

    * With ``schedule``: ``schedule(count) · Π scale``, where ``count`` is the update counter of
      the first ``ScaleByScheduleState`` (what ``optax.sgd(schedule)`` & co. hold) or
      ``inject_hyperparams`` state in the tree: the lr the **next** update will apply (before it
      observes a new ``value``).
    * Without: the ``learning_rate`` that ``optax.inject_hyperparams`` stored: optax evaluates the
      schedule when it applies it, so this is the lr of the **most recent** update (the first
      update's before any), times the plateau scale that update used.

    Raises ``ValueError`` when the state holds neither.
    """
    count = None
    injected = None
    scale = 1.0
    for node in _walk(opt_state):
        if isinstance(node, PlateauState):
            scale *= float(node.scale)
        elif isinstance(node, optax.ScaleByScheduleState) and count is None:
            count = int(node.count)
        elif (isinstance(node, optax.InjectStatefulHyperparamsState | optax.InjectHyperparamsState)
              and "learning_rate" in node.hyperparams and injected is None):
            injected = float(node.hyperparams["learning_rate"])
            if count is None:
                count = int(node.count)
    if schedule is not None:
        s = _as_schedule(schedule, "current_lr: schedule")
        if count is None:
            raise ValueError(
                "current_lr: no update counter in this optimizer state (no ScaleByScheduleState or "
                "inject_hyperparams state); was the optimizer built with a schedule?"
            )
        return float(s(count)) * scale
    if injected is None:
        raise ValueError(
            "current_lr: this optimizer state stores no learning rate; build the optimizer with "
            "optax.inject_hyperparams(optax.sgd)(learning_rate=...), or pass the schedule: "
            "current_lr(state, schedule)"
        )
    return injected * scale
