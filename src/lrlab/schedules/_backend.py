"""Array backends: the handful of math ops a schedule formula needs, for each kind of step value.

One schedule definition is written once against an ``ops`` namespace (``ops.cos``, ``ops.where``,
...). :func:`ops_for` picks the namespace from the type of the step, so the same formula runs on a
Python number (the fast path, plain :mod:`math`), a NumPy array, a torch tensor, a JAX array (also
a tracer inside ``jax.jit``: no Python branching on values happens in the array backends) and Keras
3 tensors through ``keras.ops``.

Formulas must be *domain safe on both branches* of ``where``: every backend evaluates both sides
(the Python one too, since its arguments are computed before the call), so clamp an argument before
a ``sqrt``/``log``/fractional ``pow`` even on the branch that is not selected.

No framework is imported here at module load; torch/jax/keras are imported only when a step of that
type is seen.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["Ops", "is_python_number", "ops_for"]


class Ops:
    """The operations a schedule formula may use. Subclasses bind them to one backend."""

    name = "abstract"
    pi = math.pi

    def asfloat(self, x: Any) -> Any:  # the step, converted to this backend's float type
        raise NotImplementedError

    # Every method below takes backend values or Python floats and returns a backend value.
    def where(self, cond, a, b):
        raise NotImplementedError

    def floor(self, x):
        raise NotImplementedError

    def ceil(self, x):
        raise NotImplementedError

    def cos(self, x):
        raise NotImplementedError

    def exp(self, x):
        raise NotImplementedError

    def log(self, x):
        raise NotImplementedError

    def sqrt(self, x):
        raise NotImplementedError

    def tanh(self, x):
        raise NotImplementedError

    def pow(self, x, y):
        raise NotImplementedError

    def minimum(self, a, b):
        raise NotImplementedError

    def maximum(self, a, b):
        raise NotImplementedError

    def clip(self, x, lo, hi):
        return self.minimum(self.maximum(x, lo), hi)

    def lt(self, a, b):
        return a < b

    def le(self, a, b):
        return a <= b

    def logical_and(self, a, b):
        raise NotImplementedError

    def full_like(self, t, value):
        """A value shaped like the step ``t`` (for constants that must broadcast)."""
        return value + 0.0 * t

    def lookup(self, table, index):
        """``table[index]``: a 1-D float64 NumPy ``table`` indexed by a float backend value of
        whole numbers in ``[0, len(table))`` (a constant table, so it works under ``jax.jit``)."""
        raise NotImplementedError


class _PythonOps(Ops):
    """Plain floats through :mod:`math`: the fast path for a training loop's scalar step."""

    name = "python"

    def asfloat(self, x):
        return float(x)

    def where(self, cond, a, b):
        return a if cond else b

    floor = staticmethod(lambda x: float(math.floor(x)))
    ceil = staticmethod(lambda x: float(math.ceil(x)))
    cos = staticmethod(math.cos)
    exp = staticmethod(math.exp)
    log = staticmethod(math.log)
    sqrt = staticmethod(math.sqrt)
    tanh = staticmethod(math.tanh)

    def pow(self, x, y):
        return math.pow(x, y)

    minimum = staticmethod(min)
    maximum = staticmethod(max)

    def logical_and(self, a, b):
        return a and b

    def full_like(self, t, value):
        return float(value)

    def lookup(self, table, index):
        return float(table[int(index)])


class _NumpyOps(Ops):
    name = "numpy"

    def asfloat(self, x):
        x = np.asarray(x)
        return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)

    where = staticmethod(np.where)
    floor = staticmethod(np.floor)
    ceil = staticmethod(np.ceil)
    cos = staticmethod(np.cos)
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    sqrt = staticmethod(np.sqrt)
    tanh = staticmethod(np.tanh)
    pow = staticmethod(np.power)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    logical_and = staticmethod(np.logical_and)

    def lookup(self, table, index):
        return np.asarray(table)[np.asarray(index).astype(np.int64)]


class _TorchOps(Ops):
    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def asfloat(self, x):
        # Integer step tensors become float64: lr values are scalars, exactness is cheap.
        return x if x.is_floating_point() else x.to(self.torch.float64)

    def _t(self, like, v):
        torch = self.torch
        return v if isinstance(v, torch.Tensor) else torch.as_tensor(v, dtype=like.dtype, device=like.device)

    def where(self, cond, a, b):
        torch = self.torch
        ref = next((v for v in (a, b, cond) if isinstance(v, torch.Tensor) and v.is_floating_point()), None)
        if ref is None:
            ref = cond if isinstance(cond, torch.Tensor) else torch.as_tensor(0.0, dtype=torch.float64)
            ref = ref.to(torch.get_default_dtype()) if not ref.is_floating_point() else ref
        return torch.where(cond, self._t(ref, a), self._t(ref, b))

    def floor(self, x):
        return self.torch.floor(x)

    def ceil(self, x):
        return self.torch.ceil(x)

    def cos(self, x):
        return self.torch.cos(x)

    def exp(self, x):
        return self.torch.exp(x)

    def log(self, x):
        return self.torch.log(x)

    def sqrt(self, x):
        return self.torch.sqrt(x)

    def tanh(self, x):
        return self.torch.tanh(x)

    def pow(self, x, y):
        torch = self.torch
        if not isinstance(x, torch.Tensor):
            if not isinstance(y, torch.Tensor):
                return math.pow(x, y)
            x = self._t(y, x)
        return torch.pow(x, y)

    def minimum(self, a, b):
        torch = self.torch
        if not isinstance(a, torch.Tensor):
            a, b = b, a
        if not isinstance(a, torch.Tensor):
            return min(a, b)
        return torch.clamp(a, max=b) if not isinstance(b, torch.Tensor) else torch.minimum(a, b)

    def maximum(self, a, b):
        torch = self.torch
        if not isinstance(a, torch.Tensor):
            a, b = b, a
        if not isinstance(a, torch.Tensor):
            return max(a, b)
        return torch.clamp(a, min=b) if not isinstance(b, torch.Tensor) else torch.maximum(a, b)

    def logical_and(self, a, b):
        return self.torch.logical_and(self._bool(a), self._bool(b))

    def _bool(self, v):
        return v if isinstance(v, self.torch.Tensor) else self.torch.as_tensor(bool(v))

    def lookup(self, table, index):
        torch = self.torch
        values = torch.as_tensor(table, dtype=index.dtype, device=index.device)
        return values[index.to(torch.long)]


_ARRAY_OPS = ("where", "floor", "ceil", "cos", "exp", "log", "sqrt", "tanh", "pow", "minimum", "maximum", "logical_and")


def _bind(ops: Ops, namespace: Any) -> None:
    """Bind the array ops one to one onto a NumPy-like namespace (jax.numpy, keras.ops)."""
    for name in _ARRAY_OPS:
        setattr(ops, name, getattr(namespace, {"pow": "power"}.get(name, name)))


class _JaxOps(Ops):
    name = "jax"

    def __init__(self) -> None:
        import jax.numpy as jnp

        self.jnp = jnp
        _bind(self, jnp)

    def asfloat(self, x):
        jnp = self.jnp
        x = jnp.asarray(x)
        return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))

    def lookup(self, table, index):
        jnp = self.jnp
        return jnp.asarray(table, dtype=index.dtype)[index.astype(jnp.int32)]


class _KerasOps(Ops):
    name = "keras"

    def __init__(self) -> None:
        from keras import ops

        self.kops = ops
        _bind(self, ops)
        for name in ("minimum", "maximum", "floor", "ceil"):  # the float64-aware methods below
            delattr(self, name)

    def asfloat(self, x):
        import keras

        return self.kops.cast(x, keras.config.floatx())

    def lookup(self, table, index):
        kops = self.kops
        values = kops.convert_to_tensor(np.asarray(table), dtype=index.dtype)
        return kops.take(values, kops.cast(index, "int32"))

    # Keras' type promotion turns float64 into float32 on the torch and jax backends (its
    # result_type maps 64-bit dtypes to 32-bit), in minimum/maximum/floor/ceil/less. Under floatx
    # float64 these are written with the tensors' own operators and ``where``, which keep float64.
    @staticmethod
    def _f64() -> bool:
        import keras

        return keras.config.floatx() == "float64"

    def minimum(self, a, b):
        return self._pick(a, b, "min") if self._f64() else self.kops.minimum(a, b)

    def maximum(self, a, b):
        return self._pick(a, b, "max") if self._f64() else self.kops.maximum(a, b)

    def _pick(self, a, b, which: str):
        if is_python_number(a) and is_python_number(b):
            return min(a, b) if which == "min" else max(a, b)
        if is_python_number(b):
            a, b = b, a  # b is a tensor: its operators apply
        better = b < a if which == "min" else b > a
        return self.kops.where(better | (b != b), b, a)  # NaN propagates, as in minimum/maximum

    def floor(self, x):
        if not self._f64() or is_python_number(x):
            return self.kops.floor(x)
        kops = self.kops
        x = kops.cast(x, "float64")
        whole = (x >= 2.0**52) | (x <= -(2.0**52)) | (x != x)  # already integers (or NaN): keep
        safe = kops.where(whole, 0.0, x)
        t = kops.cast(kops.cast(safe, "int64"), "float64")  # truncation toward zero
        return kops.where(whole, x, kops.where(t > safe, t - 1.0, t))

    def ceil(self, x):
        if not self._f64() or is_python_number(x):
            return self.kops.ceil(x)
        return -self.floor(-x)

    def lt(self, a, b):
        return a < b if self._f64() and not (is_python_number(a) and is_python_number(b)) else self.kops.less(a, b)

    def le(self, a, b):
        return a <= b if self._f64() and not (is_python_number(a) and is_python_number(b)) else self.kops.less_equal(a, b)


_PY = _PythonOps()
_NP = _NumpyOps()
_CACHE: dict[str, Ops] = {}


def is_python_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _lazy(name: str) -> Ops:
    ops = _CACHE.get(name)
    if ops is None:
        ops = {"torch": _TorchOps, "jax": _JaxOps, "keras": _KerasOps}[name]()
        _CACHE[name] = ops
    return ops


def ops_for(step: Any, backend: str | None = None) -> Ops:
    """The ops namespace for ``step``; ``backend`` ('python', 'numpy', 'torch', 'jax', 'keras') forces one."""
    if backend is not None:
        if backend == "python":
            return _PY
        if backend == "numpy":
            return _NP
        if backend in ("torch", "jax", "keras"):
            return _lazy(backend)
        raise ValueError(f"unknown backend {backend!r}; expected python, numpy, torch, jax or keras")
    if is_python_number(step):
        return _PY
    if isinstance(step, np.ndarray):
        return _NP
    module = type(step).__module__
    if module.startswith("torch"):
        return _lazy("torch")
    if module.startswith(("jax", "jaxlib")):
        return _lazy("jax")
    if module.startswith(("tensorflow", "keras")):
        return _lazy("keras")
    if isinstance(step, (list, tuple)):
        return _NP
    raise TypeError(
        f"cannot evaluate a schedule at a step of type {type(step).__name__}; "
        "pass an int, a float, a NumPy array, a torch tensor, a JAX array or a Keras tensor"
    )
