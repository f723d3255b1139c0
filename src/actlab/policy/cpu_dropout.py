"""Dropout for training on a CPU: a cheaper keep mask, and dropout fused with the operations around it.

PyTorch's CPU dropout draws its mask with `bernoulli_`, about 6 ns per element from a generator (mt19937)
that runs on one core, and every elementwise step of a transformer layer is its own pass over memory. In a
training step of ACT most of the elementwise work is in the feed-forward blocks' (tokens, dim_feedforward)
activations: ReLU, dropout's mask and its scale, forward and backward.

- `keep_mask` draws 16 bits per element from numpy's SFC64 generator, seeded by one draw of PyTorch's (so
  `torch.manual_seed` fixes it): 2.3x faster than PyTorch's own 64-bit draws (1.1 against 2.5 ms for
  652,800 words, the mask of an 8x102x3200 activation).
- `relu_dropout_feedforward` is a block `linear2(dropout(relu(linear1(h))))` in one autograd function: two
  passes over the activations forward (one in fp32 with oneDNN, which applies the ReLU in its product) and
  one backward instead of five and three, with the scale folded into the matrix products. In fp32 three of
  its six products run through oneDNN's kernel (`torch.ops.mkldnn._linear_pointwise`, PyTorch's own, where
  the build has it), which was 8-30 % faster than MKL's at ACT's shapes; the other three stay MKL's.
- Elsewhere (attention weights, residual branches) dropout multiplies by an fp32 tensor of scales
  (`dropout_scales`: 1/(1-p) or 0), one pass each way, and the residual sum after it is one `addcmul`
  (`add_dropout`): 0.7 % of an fp32 step of `model=baseline` (2 cores of an AMD EPYC Zen 4, held to AVX2).

The arithmetic is the same as the unfused layers'; only which elements are dropped differs, as it does
between any two draws. `python -m bench train_step` measures the training step; `python -m bench
cpu_kernels` the ResNet's part.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> Tensor:
    """A CPU bool mask of `shape`, True with probability 1 - p (p rounded to a multiple of 1/65536), from 16
    random bits per element: numpy's SFC64 stream seeded by one 63-bit draw of PyTorch's default generator,
    compared by numpy (6x faster than PyTorch's comparison of int16). Under torch.compile the bits are
    PyTorch's (a traced graph cannot call numpy's generator)."""
    n = math.prod(shape)
    threshold = round(p * 65536) - 32768
    if torch.compiler.is_compiling():
        bits = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)
        return bits.view(torch.int16)[:n].view(shape) >= threshold
    seed = int(torch.randint(2**63 - 1, ()))
    bits = np.random.SFC64(seed).random_raw((n + 3) // 4).view(np.int16)[:n]
    return torch.from_numpy(bits >= threshold).view(shape)


def keep_bytes(shape: torch.Size | tuple[int, ...], p: float) -> Tensor:
    """`keep_mask` as uint8 ones and zeros. Masks are applied by multiplying with these: on a CPU PyTorch's
    `where` and its bool-to-float conversion run an order of magnitude slower than a multiplication or a
    uint8-to-float conversion (1.7 against 0.12 ms for a 2.56M-element `where` against `mul_`, held to AVX2)."""
    mask = keep_mask(shape, p)
    return mask.to(torch.uint8) if torch.compiler.is_compiling() else mask.view(torch.uint8)  # inductor: no view


def dropout_scales(shape: torch.Size | tuple[int, ...], p: float) -> Tensor:
    """An fp32 tensor of `shape`: 1/(1-p) where `keep_mask` keeps, 0 elsewhere. Multiplying by it is dropout
    in one pass, and its gradient is one more."""
    return keep_bytes(shape, p).float().mul_(1.0 / (1.0 - p))


def cpu_dropout(x: Tensor, p: float) -> Tensor:
    """Inverted dropout (zero with probability p, scale the rest by 1/(1-p)), like F.dropout, with
    `keep_mask`: several times faster than `bernoulli_` on a CPU."""
    if x.dtype == torch.float32:
        return x * dropout_scales(x.shape, p)
    # The scale is a Python float: in bf16 the tensor 1/0.9 would round to 1.109, a 0.16 % bias per layer.
    return (x * (1.0 / (1.0 - p))).mul_(keep_bytes(x.shape, p))


def dropout(x: Tensor, p: float) -> Tensor:
    """Training-mode dropout: `cpu_dropout` on a CPU, F.dropout on other devices."""
    return cpu_dropout(x, p) if x.device.type == "cpu" else F.dropout(x, p)


def add_dropout(x: Tensor, y: Tensor, p: float) -> Tensor:
    """`x + dropout(y, p)`, the residual connection after dropout; one pass (`addcmul`) on a CPU where both are
    fp32. Under bf16 autocast y is bf16: it is dropped in bf16 and then added, as in the general path."""
    if x.device.type == "cpu" and x.dtype == y.dtype == torch.float32:
        return torch.addcmul(x, y, dropout_scales(y.shape, p))
    return x + dropout(y, p)


def attention_with_dropout(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, p: float) -> Tensor:
    """scaled_dot_product_attention with dropout on the attention weights, as its CPU path computes it (one
    kernel per step), with `keep_mask`."""
    scores = q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return cpu_dropout(scores.softmax(-1), p) @ v


def relu_dropout_feedforward(h: Tensor, p: float, linear1: nn.Linear, linear2: nn.Linear) -> Tensor:
    """`linear2(dropout(relu(linear1(h))))` in training on a CPU, fused: one mask drawn with `keep_mask`."""
    keep = keep_bytes((*h.shape[:-1], linear1.out_features), p)
    w1, b1, w2, b2 = linear1.weight, linear1.bias, linear2.weight, linear2.bias
    return _ReluDropoutFeedForward.apply(h, keep, w1, b1, w2, b2, 1.0 / (1.0 - p))


@functools.cache
def _onednn_linear():
    """PyTorch's oneDNN linear (`x @ w.T + b`, optionally with ReLU applied in the product) where this build
    has it and it gives F.linear's values; None otherwise."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        x = torch.linspace(-1, 1, 12).view(3, 4)
        w, b = torch.linspace(-2, 1, 20).view(5, 4), torch.linspace(0, 1, 5)
        if torch.backends.mkldnn.is_available():
            return op if torch.allclose(op(x, w, b, "relu", [], ""), F.linear(x, w, b).relu()) else None
    except (AttributeError, RuntimeError, NotImplementedError):
        pass
    return None


def _onednn_if_fp32(*tensors: Tensor):
    """The oneDNN linear for an fp32 product outside autocast, else None (autocast chooses the kernel). Not
    under torch.compile: inductor lowers this op only with frozen (constant) weights."""
    if torch.is_autocast_enabled("cpu") or torch.compiler.is_compiling():
        return None
    return _onednn_linear() if all(t.dtype == torch.float32 for t in tensors) else None


def _matmul(a: Tensor, b: Tensor, onednn) -> Tensor:
    """a @ b, through oneDNN's linear (which multiplies by its weight's transpose) when `onednn` is given."""
    return torch.mm(a, b) if onednn is None else onednn(a, b.t(), None, "none", [], "")


class _ReluDropoutFeedForward(torch.autograd.Function):
    """Forward: pre = h @ W1^T + b1; kept = relu(pre) where kept, else 0; y = scale * kept @ W2^T + b2.
    Backward: the gradient reaches pre where kept > 0 (one `threshold_backward`); the scale is applied to
    the (tokens, out_features) gradient, the smaller side. Under autocast the products run in its dtype, as
    nn.Linear's would. In fp32 the first product (with its ReLU), the hidden gradient and linear2's weight
    gradient run through oneDNN when it is there: the three whose oneDNN kernel was faster than MKL's on AMD
    Zen 4, with AVX-512 and held to AVX2, at ACT's shapes (816 or 800 tokens, 512 by 3200)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, h, keep, w1, b1, w2, b2, scale: float) -> Tensor:
        rows = h.reshape(-1, h.shape[-1])
        keep = keep.view(-1, w1.shape[0])
        onednn = _onednn_if_fp32(rows, w1)
        if onednn is None:
            kept = F.linear(rows, w1, b1).clamp_min_(0.0).mul_(keep)
        else:
            kept = onednn(rows, w1, b1, "relu", [], "").mul_(keep)
        out = torch.addmm(b2, kept, w2.t(), alpha=scale) if b2 is not None else torch.mm(kept, w2.t()).mul_(scale)
        ctx.save_for_backward(rows, kept, w1, w2)
        ctx.scale, ctx.h_shape, ctx.has_bias = scale, h.shape, (b1 is not None, b2 is not None)
        return out.view(*h.shape[:-1], w2.shape[0])

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: Tensor):
        rows, kept, w1, w2 = ctx.saved_tensors
        grad = grad.reshape(-1, grad.shape[-1])
        scaled = grad * ctx.scale
        onednn = _onednn_if_fp32(scaled, kept)
        grad_pre = torch.ops.aten.threshold_backward(_matmul(scaled, w2.to(scaled.dtype), onednn), kept, 0.0)
        grad_h = torch.mm(grad_pre, w1.to(grad_pre.dtype)).view(ctx.h_shape) if ctx.needs_input_grad[0] else None
        grad_w1 = torch.mm(grad_pre.t(), rows.to(grad_pre.dtype)) if ctx.needs_input_grad[2] else None
        grad_w2 = _matmul(scaled.t(), kept.to(scaled.dtype), onednn) if ctx.needs_input_grad[4] else None
        grad_b1 = grad_pre.sum(0) if ctx.has_bias[0] and ctx.needs_input_grad[3] else None
        grad_b2 = grad.sum(0) if ctx.has_bias[1] and ctx.needs_input_grad[5] else None
        return grad_h, None, grad_w1, grad_b1, grad_w2, grad_b2, None
