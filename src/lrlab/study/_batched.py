"""Batched formulations: K copies of one architecture, each with its own weights, as one computation.

The fleet engine (:mod:`lrlab.study.fleet`) keeps the weights of K trials stacked, one tensor of
shape ``(K, *shape)`` per parameter of the model, and needs a forward pass for all K at once:

* ``forward(params, x)``: ``x`` of shape ``(K, b, *in)`` (each trial its own minibatch) gives
  logits ``(K, b, classes)``;
* ``forward_shared(params, x)``: ``x`` of shape ``(n, *in)`` (one evaluation set for all) gives
  ``(K, n, classes)``.

Three formulations:

``mnist1d_cnn``
    The MNIST-1D ``ConvBase`` (3 x Conv1d stride 2 padding 1 + ReLU, then Linear). Each conv is
    an explicit im2col + one ``baddbmm`` over the K trials in a channel-first, batch-innermost
    layout ``(K, C, L, B)``, inside a custom autograd function whose backward computes the weight,
    bias and input gradients with three ``bmm`` and a strided col2im (torch's generic ``unfold``
    backward is several times slower on these shapes). conv1 writes its output positions
    residue-major modulo 4 and conv2 modulo 2, so conv2 and conv3 read each tap's input as one
    matrix block and need neither im2col nor col2im (:class:`_TapConvReLU`); the linear head takes the
    last conv's output as it lies and gives class-major logits (:class:`_LinearT`). Measured on
    a 2-core CPU with one thread: ~0.85 ms per trial-step for K = 8..36 with im2col everywhere
    against ~1.3 ms with ``unfold`` and autograd and ~1.5 ms for ``F.conv1d(groups=K)``; see
    ``docs/performance.md`` for the current figures.
``mnist1d_mlp``
    The MNIST-1D ``MLPBase`` (40-100-100-10 with a residual) as three ``baddbmm``.
generic
    Any module through ``torch.func.stack_module_state``-style stacking, ``functional_call``
    and ``torch.vmap``. Buffers are stacked per trial too and a training forward updates each
    trial's in place (BatchNorm running statistics and ``num_batches_tracked``, then used by that
    trial's evaluation). ``nn.Dropout``/``Dropout1d/2d/3d`` modules are replaced by
    :class:`TrialDropout`, whose masks are drawn before the step from each trial's own
    generator (:func:`dropout_generator`) and handed to vmap as batched inputs; one trial trained
    alone (:func:`lrlab.study.fleet.train_one`) draws the same masks from the same generator, so
    the two agree. :func:`vmap_support` says why a model cannot use it (random numbers drawn
    outside dropout modules, or an operation vmap rejects); the fleet engine then trains those
    trials one at a time.

*Composition independence.* A trial's float32 numbers in the hand-batched formulations do not
depend on which other trials share its fleet or on its row: every matrix product is a batched
``bmm``/``baddbmm`` whose K items each start at a 64-byte boundary, inputs and output
(:func:`aligned`, :func:`aligned_empty`). Without that, MKL's sgemm picks different kernels for
differently aligned output matrices, and a trial's result changed in the last bit with its row
in the fleet (measured: 18 of 24 rows of the conv1 weight gradient differ from the same product
computed alone; all agree once the outputs are aligned). Element-wise operations, the per-row
reductions and the optimizers' ``foreach`` kernels were checked to be row-independent already.
The generic ``vmap`` formulation leaves its products to torch and gives no such guarantee.

Every formulation is checked against the real module on a probe batch before it is used
(:func:`check_formulation`), so a mismatch between a task's ``fleet_model`` and its model is an
error rather than silently different training.

>>> import torch
>>> from lrlab.study.tasks import ConvBase
>>> torch.manual_seed(0); models = [ConvBase().double() for _ in range(3)]  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> f = formulation("mnist1d_cnn", models[0])
>>> params = stack_params(models)
>>> x = torch.randn(5, 40, dtype=torch.float64)
>>> out = f.forward_shared(params, x)
>>> out.shape, bool(torch.allclose(out[1], models[1](x), rtol=1e-12, atol=1e-12))
(torch.Size([3, 5, 10]), True)
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Formulation",
    "MaskSource",
    "TrialDropout",
    "aligned",
    "aligned_empty",
    "check_formulation",
    "draw_mask",
    "dropout_generator",
    "formulation",
    "stack_buffers",
    "stack_params",
    "use_trial_dropout",
    "vmap_features",
    "vmap_support",
]


@dataclass
class Formulation:
    """A batched forward for K models of one architecture.

    Attributes:
        kind: ``"mnist1d_cnn"``, ``"mnist1d_mlp"`` or ``"vmap"``.
        names: parameter names, in the order of the stacked ``params`` lists.
        buffer_names: names of the buffers passed to the generic formulation (stacked per trial;
            a training forward updates them in place, e.g. BatchNorm running statistics).
        forward: ``(params, x (K, b, *in), buffers, masks) -> (K, b, classes)`` in training mode;
            ``masks``: one ``(K, *shape)`` tensor per dropout mask the forward draws (see
            ``mask_sites``), each trial's row drawn from that trial's generator.
        forward_shared: ``(params, x (n, *in), buffers) -> (K, n, classes)`` in eval mode.
        mask_sites: ``None`` if the model has no dropout modules, else ``(params, buffers,
            x (b, *in)) -> [(shape, p), ...]``: the masks one trial's training forward on a batch
            shaped like ``x`` draws, in the order it draws them.
    """

    kind: str
    names: list[str]
    buffer_names: list[str]
    _forward: Callable[..., Tensor]
    _forward_shared: Callable[..., Tensor]
    mask_sites: Callable[[list[Tensor], list[Tensor], Tensor], list[tuple[tuple[int, ...], float]]] | None = None

    def forward(self, params: list[Tensor], x: Tensor, buffers: list[Tensor] | None = None,
                masks: list[Tensor] | None = None) -> Tensor:
        return self._forward(params, buffers or [], x, masks or [])

    def forward_shared(self, params: list[Tensor], x: Tensor, buffers: list[Tensor] | None = None) -> Tensor:
        return self._forward_shared(params, buffers or [], x)


def stack_params(models: list[nn.Module]) -> list[Tensor]:
    """Each parameter of ``models`` stacked over the models: ``(K, *shape)``, detached copies."""
    names = [n for n, _ in models[0].named_parameters()]
    per = [dict(m.named_parameters()) for m in models]
    return [torch.stack([p[n].detach() for p in per]).clone() for n in names]


def stack_buffers(models: list[nn.Module]) -> list[Tensor]:
    """Each buffer of ``models`` stacked over the models (for the generic formulation)."""
    names = [n for n, _ in models[0].named_buffers()]
    per = [dict(m.named_buffers()) for m in models]
    return [torch.stack([b[n].detach() for b in per]).clone() for n in names]


# ---- aligned batched products ----------------------------------------------------------------

_ALIGN_BYTES = 64


def aligned_empty(k: int, *shape: int, like: Tensor) -> Tensor:
    """An uninitialised ``(k, *shape)`` tensor (``like``'s dtype and device) whose k items are
    contiguous and each start at a 64-byte boundary (items padded to a multiple of 64 bytes).

    >>> t = aligned_empty(3, 5, 7, like=torch.zeros(1))
    >>> t.shape, t.stride(0) % 16, [t[i].data_ptr() % 64 for i in range(3)]
    (torch.Size([3, 5, 7]), 0, [0, 0, 0])
    """
    esize = like.element_size()
    per = max(1, _ALIGN_BYTES // esize)
    n = 1
    for d in shape:
        n *= d
    stride = -(-n // per) * per
    buf = like.new_empty(k * stride + per)
    off = (-buf.data_ptr() % _ALIGN_BYTES) // esize
    return buf[off:off + k * stride].view(k, stride)[:, :n].view(k, *shape)


def _aligns(t: Tensor) -> bool:
    """Whether products on ``t``'s device use the aligned layout: on the CPU, where MKL's kernel
    choice depends on alignment; elsewhere (CUDA) buffers are allocated plainly. Every branch of
    the formulations goes through this one test, so the CPU test suite can run the other
    branches too (``tests/study/test_fleet.py`` patches it)."""
    return t.device.type == "cpu"


def _is_aligned(t: Tensor) -> bool:
    if not t[0].is_contiguous():
        return False
    return t.data_ptr() % _ALIGN_BYTES == 0 and (t.shape[0] == 1 or t.stride(0) * t.element_size() % _ALIGN_BYTES == 0)


def aligned(t: Tensor) -> Tensor:
    """``t`` (``(k, ...)``) itself if each of its items is contiguous and starts at a 64-byte
    boundary, else such a copy: the layout every batched product here reads and writes, so each
    item's product is the one a lone trial would compute."""
    if not _aligns(t) or _is_aligned(t):
        return t
    out = aligned_empty(t.shape[0], *t.shape[1:], like=t)
    out.copy_(t)
    return out


def _bmm(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``bias + a @ b`` over the batch, every item's product on aligned operands and output.

    ``a`` (k, m, n), ``b`` (k, n, p) (either may be a transposed view of an aligned tensor);
    ``bias`` broadcastable to (k, m, p).
    """
    a, b = _aligned_operand(a), _aligned_operand(b)
    out = aligned_empty(a.shape[0], a.shape[1], b.shape[2], like=a) if _aligns(a) else None
    if bias is None:
        return torch.bmm(a, b, out=out) if out is not None else torch.bmm(a, b)
    return torch.baddbmm(bias, a, b, out=out) if out is not None else torch.baddbmm(bias, a, b)


def _aligned_operand(t: Tensor) -> Tensor:
    """``t`` aligned; a transposed view stays a transposed view (of an aligned copy), so the
    product sees the same layout whether or not a copy was needed."""
    if not _aligns(t):
        return t
    if not t[0].is_contiguous() and t.dim() == 3 and t.transpose(1, 2)[0].is_contiguous():
        return aligned(t.transpose(1, 2)).transpose(1, 2)
    return aligned(t)


class _Linear(torch.autograd.Function):
    """``h @ W^T + b`` for K models: ``h`` (K, B, in), ``W`` (K, out, in), ``b`` (K, out);
    every product through :func:`_bmm` (aligned), so a trial's numbers do not depend on its row."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, w: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        h, w = _aligned_operand(h), _aligned_operand(w)
        ctx.save_for_backward(h, w)
        return _bmm(h, w.transpose(1, 2), b.unsqueeze(1))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        h, w = ctx.saved_tensors
        g = aligned(grad)
        gh = _bmm(g, w) if ctx.needs_input_grad[0] else None
        gw = _bmm(g.transpose(1, 2), h)
        return gh, gw, g.sum(1)


def linear(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Batched ``torch.nn.functional.linear`` for K models (see :class:`_Linear`)."""
    out: Tensor = _Linear.apply(h, w, b)
    return out


class _LinearT(torch.autograd.Function):
    """The same layer with the batch innermost: ``W @ hT + b`` for K models, ``hT`` (K, in, B),
    ``W`` (K, out, in), ``b`` (K, out) -> (K, out, B).

    The CNN's last conv output ``(K, C, L, B)`` is already ``hT`` (``(K, C*L, B)``, torch's
    flatten order), so no transposing copy is needed either way, and the ``(out, B)`` products
    with 10 outputs run ~1.6x faster than ``(B, out)`` ones (4.7 against 7.7 us per trial, 100
    samples). Every product through :func:`_bmm` (aligned).
    """

    @staticmethod
    def forward(ctx: Any, ht: Tensor, w: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        ht, w = _aligned_operand(ht), _aligned_operand(w)
        ctx.save_for_backward(ht, w)
        return _bmm(w, ht, b.unsqueeze(2))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        ht, w = ctx.saved_tensors
        g = aligned(grad)
        ght = _bmm(w.transpose(1, 2), g) if ctx.needs_input_grad[0] else None
        gw = _bmm(g, ht.transpose(1, 2))
        return ght, gw, g.sum(2)


# ---- MNIST-1D CNN ---------------------------------------------------------------------------


def _tap_range(j: int, length: int, out_len: int, stride: int, pad: int) -> tuple[int, int, int]:
    """Output positions ``lo..hi-1`` whose tap ``j`` reads input ``stride*l + j - pad`` inside
    ``0..length-1``, and that first input position."""
    lo = max(0, -(-(pad - j) // stride))  # ceil((pad - j) / stride), at least 0
    hi = min(out_len, (length - 1 + pad - j) // stride + 1)
    return lo, max(lo, hi), stride * lo + j - pad


def _residue_blocks(length: int, split: int) -> list[tuple[int, int, int]]:
    """``(r, start, count)`` per residue ``r`` of positions ``0..length-1`` stored residue-major for
    a conv of stride ``split``: positions ``r, r + split, ...`` at ``start..start+count-1``
    (``split=1``: the natural order, one block)."""
    blocks, start = [], 0
    for r in range(split):
        count = max(0, -(-(length - r) // split))
        blocks.append((r, start, count))
        start += count
    return blocks


def _im2col_blocks(length: int, out_len: int, k: int, stride: int, pad: int,
                   out_split: int) -> list[tuple[int, int, int, int, int, int]]:
    """The strided copies of an im2col whose output positions are stored residue-major by
    ``out_split``: ``(tap, start, count, n_lo, n_hi, first input position)``; block entries
    ``n_lo..n_hi-1`` read input positions ``first, first + stride*out_split, ...``, the others
    read the zero padding."""
    out = []
    for j in range(k):
        lo, hi, _ = _tap_range(j, length, out_len, stride, pad)
        for r, start, count in _residue_blocks(out_len, out_split):
            n_lo = min(count, max(0, -(-(lo - r) // out_split)))
            n_hi = max(n_lo, min(count, -(-(hi - r) // out_split)))
            out.append((j, start, count, n_lo, n_hi, stride * (r + out_split * n_lo) + j - pad))
    return out


@functools.lru_cache(maxsize=64)
def _im2col_index(length: int, out_len: int, k: int, stride: int, pad: int, out_split: int,
                  device: torch.device) -> Tensor:
    """For each im2col column (tap ``j``, then output position in the order stored: residue-major
    by ``out_split``) the input position it reads, or ``length`` for the zero padding (the
    caller appends a zero position): one ``index_select`` builds the columns (~6x faster than a
    strided copy per tap and residue, which cost ~0.2 ms of Python and dispatch per call)."""
    order = [r + out_split * i for r, _, count in _residue_blocks(out_len, out_split) for i in range(count)]
    pos = [stride * q + j - pad for j in range(k) for q in order]
    return torch.tensor([p if 0 <= p < length else length for p in pos], dtype=torch.long, device=device)


class _ConvReLU(torch.autograd.Function):
    """``relu(conv1d(x, W, b, stride, padding))`` for K models at once, batch-innermost layout.

    ``x``: ``(K, C, L, B)``; ``W``: ``(K, Cout, C, k)``; ``b``: ``(K, Cout)``; returns
    ``(K, Cout, Lout, B)`` with ``Lout = (L + 2 pad - k) // stride + 1``. With the batch
    innermost, every im2col tap and every col2im accumulation moves whole rows of B contiguous
    values (with positions innermost they moved rows of ~Lout values, and the copies cost more
    than the products). With ``out_split > 1`` the output positions are stored residue-major
    (see :class:`_TapConvReLU`, the next layer, which reads them that way): the im2col columns
    are simply copied in that order.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor, stride: int, pad: int,  # type: ignore[override]
                out_split: int = 1) -> Tensor:
        k_, c, length, bsz = x.shape
        k = w.shape[-1]
        out_len = (length + 2 * pad - k) // stride + 1
        cols = aligned_empty(k_, c, k, out_len, bsz, like=x) if _aligns(x) else x.new_empty(k_, c, k, out_len, bsz)
        # one gather from x with a zero position appended (the padding), in the columns' order
        xz = x.new_empty(k_, c, length + 1, bsz)
        xz[:, :, :length] = x
        xz[:, :, length] = 0.0
        torch.index_select(xz, 2, _im2col_index(length, out_len, k, stride, pad, out_split, x.device),
                           out=cols.view(k_, c, k * out_len, bsz))
        cols2 = cols.view(k_, c * k, out_len * bsz)
        out = _bmm(w.reshape(k_, -1, c * k), cols2, b.unsqueeze(2)).relu_()
        ctx.save_for_backward(cols2, w, out)
        ctx.geometry = (k_, c, bsz, length, k, out_len, stride, pad, out_split)
        return out.view(k_, -1, out_len, bsz)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        cols2, w, out = ctx.saved_tensors
        k_, c, bsz, length, k, out_len, stride, pad, out_split = ctx.geometry
        g = _relu_grad(grad.reshape(k_, -1, out_len * bsz), out)
        gw = _bmm(g, cols2.transpose(1, 2)).reshape(w.shape)
        gb = g.sum(2)
        gx = None
        if ctx.needs_input_grad[0]:
            wt = w.reshape(k_, -1, c * k).transpose(1, 2)
            wt = aligned_empty(*wt.shape, like=wt).copy_(wt) if _aligns(wt) else wt.contiguous()
            gcols = _bmm(wt, g).view(k_, c, k, out_len, bsz)
            gx = g.new_zeros(k_, c, length, bsz)
            step = stride * out_split
            for j, start, _, n_lo, n_hi, first in _im2col_blocks(length, out_len, k, stride, pad, out_split):
                if n_hi > n_lo:
                    gx[:, :, first:first + step * (n_hi - n_lo - 1) + 1:step] += gcols[:, :, j, start + n_lo:start + n_hi]
        return gx, gw, gb, None, None, None


def _relu_grad(grad: Tensor, out: Tensor) -> Tensor:
    """relu's backward (``grad`` where ``out > 0``) written straight into an aligned buffer: one
    pass, no mask tensor, no copy."""
    if not _aligns(grad):
        return torch.ops.aten.threshold_backward(grad, out, 0)
    g = aligned_empty(*grad.shape, like=grad)
    return torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=g)


def _false_runs(flags: list[bool], lo: int, hi: int) -> list[tuple[int, int]]:
    """The maximal runs ``(a, e)`` of ``False`` in ``flags[lo:hi]``."""
    runs, a = [], None
    for i in range(lo, hi):
        if not flags[i] and a is None:
            a = i
        elif flags[i] and a is not None:
            runs.append((a, i))
            a = None
    if a is not None:
        runs.append((a, hi))
    return runs


class _TapConvReLU(torch.autograd.Function):
    """:class:`_ConvReLU` for an input stored *residue-major*: the positions ``r, r + m, r + 2m,
    ...`` of each residue ``r`` modulo ``m = stride * out_split`` one after another (the previous
    layer writes its output that way). Then each tap, for each residue of the output positions
    modulo ``out_split``, reads a contiguous run of stored positions: its input is a plain
    ``(C, n*B)`` matrix block and the conv is one product per (tap, output residue),
    accumulated, with no im2col copy; the backward's input gradient likewise is one product per
    block written or accumulated in place, with no im2col-sized ``gcols`` and no col2im
    (measured in isolation, forward and backward per trial-step: the 25-channel stride-2 conv2
    340 -> 265 us, conv3 165 -> 133 us). The output positions are stored residue-major modulo
    ``out_split`` (1: the natural order); the input gradient is returned in the input's order.

    ``x``: ``(K, C, L, B)`` (residue-major positions); ``W``: ``(K, Cout, C, k)``; ``b``:
    ``(K, Cout)``; returns ``(K, Cout, Lout, B)``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor, stride: int, pad: int,  # type: ignore[override]
                out_split: int = 1) -> Tensor:
        k_, c, length, bsz = x.shape
        k = w.shape[-1]
        out_len = (length + 2 * pad - k) // stride + 1
        m = stride * out_split
        starts = {r: start for r, start, _ in _residue_blocks(length, m)}
        blocks = []  # (tap, first stored output position, count, first stored input position)
        for j in range(k):
            lo, hi, _ = _tap_range(j, length, out_len, stride, pad)
            for q, start, count in _residue_blocks(out_len, out_split):
                n_lo = min(count, max(0, -(-(lo - q) // out_split)))
                n_hi = max(n_lo, min(count, -(-(hi - q) // out_split)))
                if n_hi > n_lo:
                    first = stride * (q + out_split * n_lo) + j - pad
                    blocks.append((j, start + n_lo, n_hi - n_lo, starts[first % m] + first // m))
        xf = x.reshape(k_, c, length * bsz)
        wj = {j: aligned(w[..., j].contiguous()) for j in {blk[0] for blk in blocks}}  # (K, Cout, C)
        out = aligned_empty(k_, w.shape[1], out_len * bsz, like=x) if _aligns(x) \
            else x.new_empty(k_, w.shape[1], out_len * bsz)
        out.copy_(b.unsqueeze(2).expand_as(out))
        for j, o0, n, i0 in blocks:
            out[:, :, o0 * bsz:(o0 + n) * bsz].baddbmm_(wj[j], xf[:, :, i0 * bsz:(i0 + n) * bsz])
        out.relu_()
        ctx.save_for_backward(x, w, out)
        ctx.geometry = (blocks, out_len)
        return out.view(k_, -1, out_len, bsz)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, w, out = ctx.saved_tensors
        blocks, out_len = ctx.geometry
        k_, c, length, bsz = x.shape
        cout, k = w.shape[1], w.shape[-1]
        xf = x.reshape(k_, c, length * bsz)
        g = _relu_grad(grad.reshape(k_, -1, out_len * bsz), out)
        gw = aligned_empty(k_, cout, k, c, like=w) if _aligns(w) else w.new_empty(k_, cout, k, c)
        for j in range(k):
            if all(blk[0] != j for blk in blocks):
                gw[:, :, j] = 0.0
        gx = None
        if ctx.needs_input_grad[0]:
            gx = aligned_empty(k_, c, length * bsz, like=x) if _aligns(x) else x.new_empty(k_, c, length * bsz)
        wt: dict[int, Tensor] = {}
        tap_done: set[int] = set()
        covered = [False] * length  # stored input positions of gx written so far
        for j, o0, n, i0 in blocks:
            gj = g[:, :, o0 * bsz:(o0 + n) * bsz]
            xj = xf[:, :, i0 * bsz:(i0 + n) * bsz].transpose(1, 2)
            if j in tap_done:
                gw[:, :, j].baddbmm_(gj, xj)
            else:
                torch.bmm(gj, xj, out=gw[:, :, j])
                tap_done.add(j)
            if gx is None:
                continue
            if j not in wt:
                wt[j] = aligned(w[..., j].transpose(1, 2).contiguous())  # (K, C, Cout)
            if not any(covered[i0:i0 + n]):
                torch.bmm(wt[j], gj, out=gx[:, :, i0 * bsz:(i0 + n) * bsz])
            else:
                for a, e in _false_runs(covered, i0, i0 + n):  # positions only this block reaches
                    gx[:, :, a * bsz:e * bsz] = 0.0
                gx[:, :, i0 * bsz:(i0 + n) * bsz].baddbmm_(wt[j], gj)
            covered[i0:i0 + n] = [True] * n
        if gx is not None:
            for a, e in _false_runs(covered, 0, length):  # positions no tap reaches get 0
                gx[:, :, a * bsz:e * bsz] = 0.0
            gx = gx.view(k_, c, length, bsz)
        return gx, gw.permute(0, 1, 3, 2), g.sum(2), None, None, None


def _cnn_layers(model: nn.Module) -> list[nn.Conv1d]:
    from lrlab.study.tasks import ConvBase

    if not isinstance(model, ConvBase):
        raise ValueError(f"fleet_model 'mnist1d_cnn' needs lrlab.study.tasks.ConvBase, got {type(model).__name__}")
    convs = [model.conv1, model.conv2, model.conv3]
    for i, cv in enumerate(convs, 1):
        if cv.dilation != (1,) or cv.groups != 1 or cv.padding_mode != "zeros" or cv.bias is None or isinstance(cv.padding, str):
            raise ValueError(f"fleet_model 'mnist1d_cnn': conv{i} must be a plain Conv1d (dilation 1, groups 1, zero padding, bias)")
    return convs


def _cnn(model: nn.Module) -> Formulation:
    convs = _cnn_layers(model)
    geom = [(cv.stride[0], cv.padding[0]) for cv in convs]
    names = [n for n, _ in model.named_parameters()]
    expected = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight", "conv3.bias",
                "linear.weight", "linear.bias"]
    if names != expected:
        raise ValueError(f"fleet_model 'mnist1d_cnn': unexpected parameters {names}")

    def run(params: list[Tensor], h: Tensor) -> Tensor:  # h: (K, 1, L, B), the batch innermost
        k_, bsz = h.shape[0], h.shape[-1]
        # positions stored residue-major, so that conv2 and conv3 read each tap's input as one block
        h = _ConvReLU.apply(h, params[0], params[1], *geom[0], geom[1][0] * geom[2][0])
        h = _TapConvReLU.apply(h, params[2], params[3], *geom[1], geom[2][0])
        h = _TapConvReLU.apply(h, params[4], params[5], *geom[2])
        # (K, C, L, B) is (K, C*L, B): torch's flatten(1) order (channel, position), batch innermost
        logits_t: Tensor = _LinearT.apply(h.reshape(k_, -1, bsz), params[6], params[7])
        return logits_t.transpose(1, 2)  # (K, B, classes), a view of the class-major product

    def train(params: list[Tensor], buffers: list[Tensor], x: Tensor, masks: list[Tensor]) -> Tensor:  # x: (K, B, ...)
        k_, bsz = x.shape[0], x.shape[1]
        return run(params, x.reshape(k_, bsz, -1).transpose(1, 2).contiguous().unsqueeze(1))

    def shared(params: list[Tensor], buffers: list[Tensor], x: Tensor) -> Tensor:  # x: (n, ...), one copy
        xt = x.reshape(x.shape[0], -1).t().contiguous()
        return run(params, xt.unsqueeze(0).unsqueeze(0).expand(params[0].shape[0], 1, -1, -1))

    return Formulation("mnist1d_cnn", names, [], train, shared)


# ---- MNIST-1D MLP ---------------------------------------------------------------------------


def _mlp(model: nn.Module) -> Formulation:
    from lrlab.study.tasks import MLPBase

    if not isinstance(model, MLPBase):
        raise ValueError(f"fleet_model 'mnist1d_mlp' needs lrlab.study.tasks.MLPBase, got {type(model).__name__}")
    names = [n for n, _ in model.named_parameters()]
    if names != ["linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias", "linear3.weight", "linear3.bias"]:
        raise ValueError(f"fleet_model 'mnist1d_mlp': unexpected parameters {names}")

    def run(p: list[Tensor], x: Tensor) -> Tensor:  # x: (K, B, in)
        h = linear(x, p[0], p[1]).relu()
        h = h + linear(h, p[2], p[3]).relu()
        return linear(h, p[4], p[5])

    def shared(p: list[Tensor], buffers: list[Tensor], x: Tensor) -> Tensor:
        return run(p, x.unsqueeze(0).expand(p[0].shape[0], -1, -1))

    return Formulation("mnist1d_mlp", names, [], lambda p, b, x, m: run(p, x), shared)


# ---- dropout from each trial's own random stream --------------------------------------------------

_DROPOUT_SEED_OFFSET = 1 << 62  # a trial's dropout seed: far from its data-order seeds (seed * 100003 + epoch)

# the dropout modules replaced by :class:`TrialDropout`: the number of trailing dimensions a mask
# is broadcast over (0: element-wise) and the input ranks that shape applies to
_DROPOUT_KINDS: dict[type, tuple[int, tuple[int, ...]]] = {
    nn.Dropout: (0, ()), nn.Dropout1d: (1, (2, 3)), nn.Dropout2d: (2, (4,)), nn.Dropout3d: (3, (4, 5)),
}


def dropout_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """The ``torch.Generator`` trial ``seed`` draws its dropout masks from (in every training path).

    >>> a, b = dropout_generator(3), dropout_generator(3)
    >>> bool(torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b)))
    True
    """
    return torch.Generator(device=device).manual_seed(_DROPOUT_SEED_OFFSET + seed)


def draw_mask(generator: torch.Generator, shape: tuple[int, ...], p: float, dtype: torch.dtype,
              device: str | torch.device) -> Tensor:
    """A scaled dropout mask: each entry ``1 / (1 - p)`` with probability ``1 - p``, else 0
    (``p >= 1``: all zeros, nothing drawn)."""
    if p >= 1:
        return torch.zeros(shape, dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device).bernoulli_(1 - p, generator=generator).div_(1 - p)


class MaskSource:
    """Where the :class:`TrialDropout` modules of one model get their masks, in call order.

    ``mode``: ``"generator"`` draws each mask from ``generator`` (one trial trained alone);
    ``"feed"`` takes the next of ``masks`` (the fleet, where vmap hands each trial its slice of
    masks drawn beforehand from that trial's generator); ``"record"`` draws nothing, appends
    ``(shape, p)`` to ``sites`` and leaves the input as it is (to learn which masks a forward
    pass needs).
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.mode = "generator" if generator is not None else "record"
        self.generator = generator
        self.masks: list[Tensor] = []
        self.sites: list[tuple[tuple[int, ...], float]] = []
        self.fallbacks: list[str] = []  # calls that went to torch's own dropout (global random numbers)
        self._next = 0

    def feed(self, masks: list[Tensor]) -> None:
        self.mode, self.masks, self._next = "feed", list(masks), 0

    def used(self) -> int:
        """How many masks the forward pass took since :meth:`feed`."""
        return self._next

    def record(self) -> None:
        self.mode, self.sites = "record", []

    def apply(self, x: Tensor, shape: tuple[int, ...], p: float) -> Tensor:
        if self.mode == "record":
            self.sites.append((shape, p))
            return x
        if self.mode == "feed":
            if self._next >= len(self.masks):
                raise RuntimeError("the forward pass used more dropout masks than its probe pass did")
            mask = self.masks[self._next]
            self._next += 1
            return x * mask
        assert self.generator is not None
        return x * draw_mask(self.generator, shape, p, x.dtype, x.device)


class TrialDropout(nn.Module):
    """``nn.Dropout`` (or ``Dropout1d/2d/3d``) whose masks come from a :class:`MaskSource`
    instead of torch's global random stream, so each trial of a fleet draws from its own generator
    and the same numbers as when it is trained alone. In eval mode, or with ``p = 0``, the
    identity; an input rank the original module treats specially (e.g. ``Dropout2d`` on 3-d
    input) goes to torch's own function (global random numbers: a fleet then refuses the model).
    """

    def __init__(self, original: nn.Module, source: MaskSource) -> None:
        super().__init__()
        self.p = float(original.p)  # type: ignore[arg-type]
        self.trailing, self.ranks = _DROPOUT_KINDS[type(original)]
        self.fallback = {0: F.dropout, 1: F.dropout1d, 2: F.dropout2d, 3: F.dropout3d}[self.trailing]
        self.kind = type(original).__name__
        self.source = source
        self.train(original.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, mask={'element-wise' if not self.trailing else f'per channel ({self.trailing}-d)'}"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if not self.trailing:
            return self.source.apply(x, tuple(x.shape), self.p)
        if x.dim() not in self.ranks:
            what = f"nn.{self.kind} on a {x.dim()}-d input"
            if what not in self.source.fallbacks:  # once: this runs at every training step
                self.source.fallbacks.append(what)
            return self.fallback(x, self.p, True)
        lead = 2 if x.dim() == self.ranks[-1] else 1
        return self.source.apply(x, tuple(x.shape[:lead]) + (1,) * self.trailing, self.p)


def vmap_features(model: nn.Module) -> list[str]:
    """What the generic formulation does beyond stacking weights for ``model``, in words (for the
    study's "how each group trains" line)."""
    out = []
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in model.modules()):
        out.append("per-trial BatchNorm statistics")
    if any(type(m) in _DROPOUT_KINDS for m in model.modules()):
        out.append("per-trial dropout streams")
    return out


def use_trial_dropout(model: nn.Module, generator: torch.Generator | None = None) -> MaskSource | None:
    """Replace ``model``'s ``nn.Dropout``/``Dropout1d/2d/3d`` modules (exactly those types) in place
    by :class:`TrialDropout` modules sharing one :class:`MaskSource` (drawing from ``generator``,
    or recording when it is ``None``); ``None`` (and nothing changed) if it has none."""
    found = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if type(child) in _DROPOUT_KINDS]
    if not found:
        return None
    source = MaskSource(generator)
    for parent, name, child in found:
        setattr(parent, name, TrialDropout(child, source))
    return source


# ---- generic: torch.func.vmap -----------------------------------------------------------------


def vmap_support(model: nn.Module, probe: Tensor) -> str | None:
    """``None`` if K copies of ``model`` can be trained with ``vmap``; else the reason why not.

    Supported: buffers that ``forward`` updates (BatchNorm running statistics: each trial's are
    stacked and updated in place by its own batch statistics, as when it trains alone) and
    ``nn.Dropout``/``Dropout1d/2d/3d`` modules (replaced by :class:`TrialDropout`: each trial's
    masks come from its own generator, :func:`dropout_generator`). Refused: a ``forward`` that
    draws other random numbers (``F.dropout`` or ``torch.rand`` called inline: they come from
    torch's one global stream, which the trials of a fleet cannot each have), one that
    ``torch.vmap`` rejects (data-dependent control flow, ``.item()``, BatchNorm with
    ``momentum=None``, unsupported in-place operations), or one whose vmapped output or buffer
    updates differ from the model's own on a probe batch.
    """
    m = copy.deepcopy(model).train()
    source = use_trial_dropout(m)
    rng = torch.get_rng_state()
    try:
        with torch.no_grad():
            m(probe)
    except Exception as e:  # the model itself cannot run the probe
        torch.set_rng_state(rng)
        return f"the model failed on a probe batch ({type(e).__name__}: {e})"
    if not torch.equal(rng, torch.get_rng_state()):
        torch.set_rng_state(rng)
        if source is not None and source.fallbacks:
            return (f"its {source.fallbacks[0]} draws from torch's global random stream (an input rank "
                    "lrlab's per-trial dropout does not handle)")
        return ("its forward draws random numbers outside nn.Dropout modules (e.g. F.dropout or torch.rand "
                "called inline), from torch's global stream that the trials of a fleet cannot each have")
    g = torch.Generator(device=probe.device).manual_seed(0)
    masks = [draw_mask(g, shape, p, probe.dtype, probe.device) for shape, p in (source.sites if source else [])]
    ref_model = copy.deepcopy(model).train()
    ref_source = use_trial_dropout(ref_model)
    if ref_source is not None:
        ref_source.feed(masks)
    with torch.no_grad():
        ref = ref_model(probe)
    f = _vmap(model)
    params = stack_params([model, model])
    buffers = stack_buffers([model, model])
    try:
        with torch.no_grad():
            out = f.forward(params, probe.unsqueeze(0).expand(2, *probe.shape), buffers,
                            [torch.stack([mk, mk]) for mk in masks])
    except Exception as e:
        return f"torch.vmap cannot batch it ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    if out.shape[1:] != ref.shape or not torch.allclose(out[0], ref, rtol=1e-4, atol=1e-5):
        return "the vmapped forward does not reproduce the model's output"
    for (name, b), stacked in zip(ref_model.named_buffers(), buffers):
        if not torch.allclose(stacked[0].double(), b.double(), rtol=1e-4, atol=1e-5):
            return f"the vmapped forward does not update buffer {name!r} as the model does"
    return None


def _vmap(model: nn.Module) -> Formulation:
    from torch.func import functional_call

    base = copy.deepcopy(model)
    names = [n for n, _ in base.named_parameters()]
    bnames = [n for n, _ in base.named_buffers()]
    source = use_trial_dropout(base)

    def state(params: Any, buffers: Any) -> dict[str, Tensor]:
        return {**dict(zip(names, params)), **dict(zip(bnames, buffers))}

    def call(train: bool) -> Callable[..., Tensor]:
        def f(params: tuple[Tensor, ...], buffers: tuple[Tensor, ...], masks: tuple[Tensor, ...], x: Tensor) -> Tensor:
            if source is None:
                return functional_call(base, state(params, buffers), (x,))
            source.feed(list(masks))
            out = functional_call(base, state(params, buffers), (x,))
            used = source.used()
            source.feed([])  # hold no batched tensors past the call
            if used != len(masks):
                raise RuntimeError(f"the forward pass used {used} dropout masks, its probe pass {len(masks)}")
            return out

        def run(params: list[Tensor], buffers: list[Tensor], x: Tensor, masks: list[Tensor], shared: bool) -> Tensor:
            base.train(train)
            return torch.vmap(f, in_dims=(0, 0, 0, None if shared else 0))(tuple(params), tuple(buffers),
                                                                           tuple(masks), x)

        return run

    def mask_sites(params: list[Tensor], buffers: list[Tensor], x: Tensor) -> list[tuple[tuple[int, ...], float]]:
        """The dropout masks (shape, p) one trial's training forward on ``x`` (b, *in) draws, in order."""
        if source is None:
            return []
        source.record()
        base.train(True)
        with torch.no_grad():  # row 0's weights, copies of its buffers (BatchNorm would update them)
            functional_call(base, state([p[0] for p in params], [b[0].clone() for b in buffers]), (x,))
        return list(source.sites)

    train_call, eval_call = call(True), call(False)
    return Formulation(
        "vmap", names, bnames,
        lambda p, b, x, m: train_call(p, b, x, m, False),
        lambda p, b, x: eval_call(p, b, x, [], True),
        mask_sites if source is not None else None,
    )


# ---- choosing and checking ------------------------------------------------------------------

_BUILDERS: dict[str, Callable[[nn.Module], Formulation]] = {"mnist1d_cnn": _cnn, "mnist1d_mlp": _mlp}


def formulation(kind: str | None, model: nn.Module) -> Formulation:
    """The batched formulation ``kind`` (``None`` or ``"vmap"``: generic) for ``model``'s architecture.

    Raises:
        ValueError: an unknown ``kind``, or a model that does not have the architecture ``kind``
            is written for.
    """
    if kind is None or kind == "vmap":
        return _vmap(model)
    if kind not in _BUILDERS:
        raise ValueError(f"unknown fleet_model {kind!r}: use one of {', '.join(_BUILDERS)} or None (generic vmap)")
    return _BUILDERS[kind](model)


def check_formulation(f: Formulation, models: list[nn.Module], probe: Tensor) -> None:
    """Raise ``ValueError`` unless ``f`` reproduces each model's output on ``probe`` (n, *in)."""
    params = stack_params(models)
    buffers = stack_buffers(models) if f.buffer_names else []
    with torch.no_grad():
        out = f.forward_shared(params, probe, buffers)
        for i, m in enumerate(models):
            was = m.training
            ref = m.eval()(probe)
            m.train(was)
            tol = 1e-10 if probe.dtype == torch.float64 else 1e-4
            if out.shape[1:] != ref.shape or not torch.allclose(out[i], ref, rtol=tol, atol=tol):
                raise ValueError(
                    f"the batched formulation {f.kind!r} does not reproduce model {i}'s output "
                    f"(max difference {float((out[i] - ref).abs().max()) if out.shape[1:] == ref.shape else 'shape'}); "
                    "set the task's fleet_model to None to use the generic path"
                )


def cross_entropy_per_sample(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of every sample: ``logits (K, b, C)``, ``y (K, b)`` (or ``(b,)``, shared) -> ``(K, b)``.

    The classes go in dimension 1 (``(K, C, b)``, a transposed view): torch's log-softmax over
    a short last dimension (10 classes) is ~8x slower on the CPU than over dimension 1, where it
    runs vectorised along the batch (forward and backward: 22 -> 5 us per trial-step for 18
    trials of 100 samples, measured). The same function of each sample's logits either way.
    """
    return F.cross_entropy(logits.transpose(1, 2), y.expand(logits.shape[0], -1), reduction="none")


def predictions(logits: Tensor) -> Tensor:
    """The predicted class of every sample, ``logits (K, b, C)`` -> ``(K, b)`` (the first maximum).

    Over a contiguous copy: the CNN's logits are a transposed view of a class-major product, and
    torch's argmax over a strided class dimension is ~7x slower than the copy and the argmax.
    """
    return logits.contiguous().argmax(-1)


def cross_entropy_per_trial(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of each trial's minibatch: ``logits (K, b, C)``, ``y (K, b)`` -> ``(K,)``."""
    return cross_entropy_per_sample(logits, y).mean(1)
