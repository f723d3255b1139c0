"""Dropout for training on a CPU: a cheaper keep mask, and dropout fused with the operations around it.

PyTorch's CPU dropout draws its mask with `bernoulli_`, about 6 ns per element, and every elementwise step
of a transformer layer is its own pass over memory. In a training step of ACT most of the elementwise work
is in the feed-forward blocks' (tokens, dim_feedforward) activations: ReLU, dropout's mask and its scale,
forward and backward. `relu_dropout_linear` does that block's middle in two passes forward and one backward
instead of five and three, with the scale folded into the matrix products. The arithmetic is the same as
`linear2(dropout(relu(h)))`; only which elements are dropped differs, as it does between any two draws.

`python -m bench train_step` measures the training step; `python -m bench cpu_kernels` the ResNet's part.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn


def keep_mask(x: Tensor, p: float) -> Tensor:
    """A bool mask shaped like `x`, True with probability 1 - p (p rounded to a multiple of 1/65536), from
    16 random bits per element: four per 64-bit draw of PyTorch's generator, seeded by `torch.manual_seed`."""
    n = x.numel()
    bits = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    return bits.view(torch.int16)[:n].view(x.shape) >= round(p * 65536) - 32768


def cpu_dropout(x: Tensor, p: float) -> Tensor:
    """Inverted dropout (zero with probability p, scale the rest by 1/(1-p)), like F.dropout, with
    `keep_mask`: three times faster than `bernoulli_` on a CPU."""
    # The scale is a Python float: in bf16 the tensor 1/0.9 would round to 1.109, a 0.16 % bias per layer.
    return torch.where(keep_mask(x, p), x * (1.0 / (1.0 - p)), 0.0)


def dropout(x: Tensor, p: float) -> Tensor:
    """Training-mode dropout: `cpu_dropout` on a CPU, F.dropout on other devices."""
    return cpu_dropout(x, p) if x.device.type == "cpu" else F.dropout(x, p)


def attention_with_dropout(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, p: float) -> Tensor:
    """scaled_dot_product_attention with dropout on the attention weights, as its CPU path computes it (one
    kernel per step), with `keep_mask`."""
    scores = q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return cpu_dropout(scores.softmax(-1), p) @ v


def relu_dropout_linear(h: Tensor, p: float, linear: nn.Linear) -> Tensor:
    """`linear(dropout(relu(h)))` in training, fused: one mask drawn with `keep_mask`."""
    return _ReluDropoutLinear.apply(h, keep_mask(h, p), linear.weight, linear.bias, 1.0 / (1.0 - p))


class _ReluDropoutLinear(torch.autograd.Function):
    """Forward: a = relu(h) where kept, else 0 (one `where`, one in-place clamp); y = scale * a @ W^T + b in
    one matrix product. Backward: the gradient reaches h where a > 0 (one `threshold_backward`), the scale
    is applied to the (tokens, out_features) gradient, the smaller side. Under autocast the products run in
    its dtype, as nn.Linear's would."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, h: Tensor, keep: Tensor, weight: Tensor, bias: Tensor | None, scale: float) -> Tensor:
        kept = torch.where(keep, h, 0.0).clamp_min_(0.0)
        ctx.save_for_backward(kept, weight)
        ctx.scale, ctx.has_bias = scale, bias is not None
        rows = kept.reshape(-1, kept.shape[-1])
        if bias is None:
            out = torch.mm(rows, weight.t()).mul_(scale)
        else:
            out = torch.addmm(bias, rows, weight.t(), alpha=scale)
        return out.view(*h.shape[:-1], weight.shape[0])

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: Tensor):
        kept, weight = ctx.saved_tensors
        grad = grad.reshape(-1, grad.shape[-1])
        scaled = grad * ctx.scale
        grad_h = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_kept = torch.mm(scaled, weight.to(scaled.dtype)).view(kept.shape)
            grad_h = torch.ops.aten.threshold_backward(grad_kept, kept, 0.0)
        if ctx.needs_input_grad[2]:
            grad_weight = torch.mm(scaled.t(), kept.reshape(-1, kept.shape[-1]).to(scaled.dtype))
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = grad.sum(0)
        return grad_h, None, grad_weight, grad_bias, None
