"""Faster fp32 training of ResNet trunks on a CPU: a faster weight gradient for the convolutions of the last
stages, and channels-last activations.

Small maps: at 64x64 or 96x96 inputs, layer4 of a ResNet runs on 2x2 or 3x3 feature maps. There, oneDNN's
kernel for the gradient of a convolution's weight is 4-5x slower than one matrix product over the im2col
columns (measured on 2 AVX2 cores, fp32: 512 channels on 64 maps of 2x2, 108 ms against 23 ms; on 16 maps
of 3x3, 40 ms against 9 ms), while oneDNN stays ahead from 4x4 maps on (16 ms against 30 ms for 256
channels on 64 maps of 4x4). `CpuTrainConv2d` takes the matrix product where the output map has at most
`SMALL_MAP` cells, and is a plain `nn.Conv2d` everywhere else: in evaluation, without gradients, on a GPU,
under autocast (but for one-wide maps, below), with groups or a bias. Its forward and input gradient stay
oneDNN's; the parameters, their names and the state dict are nn.Conv2d's, so checkpoints and LeRobot's
weights move unchanged.

Channels last: `ResNetFeatures` makes its input channels-last when `fp32_cpu_training`, so oneDNN runs its
NHWC kernels; with the small-map gradient that is a few percent faster (on its own it is not). The weights
keep their layout, so checkpoints do not change.

One-wide maps under bf16 autocast: on CPUs with native bf16 (AVX-512 BF16), oneDNN's bf16 kernel for the
weight gradient of a strided convolution whose output is one cell wide returns wrong values, at times 1e30
or NaN (seen with torch 2.10 and 2.13 on AMD Zen 4: 3x3 stride-2 convolutions on 1-wide maps, 16 to
28 of 30 random draws wrong on 1-wide inputs; fp32, stride 1 and 2-wide inputs were right). Layer4 of a
trunk meets it on images 16 pixels wide or less. `CpuTrainConv2d` computes every strided convolution with a
1-wide output in fp32 (layer4's on images up to 32 pixels wide); 1-wide maps cost little in any precision.
PyTorch issue 169688 and pull request 188426 are the same class of kernel, in the forward of conv3d.

`python -m bench cpu_kernels` measures each, side by side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SMALL_MAP = 9  # output cells (H x W) up to which the weight gradient is one matrix product


class _SmallMapConv2d(torch.autograd.Function):
    """conv2d without bias; the weight gradient is grad_output (Cout, N*L) @ im2col(x) (N*L, Cin*kh*kw)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, stride, padding, dilation) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding, dilation)
        return F.conv2d(x, weight, None, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_input = torch.ops.aten.convolution_backward(
                grad, x, weight, None, list(stride), list(padding), list(dilation), False, [0, 0], 1,
                [True, False, False],
            )[0]  # fmt: skip
        if ctx.needs_input_grad[1]:
            out_channels, in_channels, kh, kw = weight.shape
            columns = F.unfold(x, (kh, kw), dilation, padding, stride)  # (N, Cin*kh*kw, L)
            columns = columns.transpose(1, 2).reshape(-1, in_channels * kh * kw)  # rows n*L + l
            grad_weight = (grad.transpose(0, 1).reshape(out_channels, -1) @ columns).view_as(weight)
        return grad_input, grad_weight, None, None, None


def fp32_cpu_training(x: Tensor) -> bool:
    """Whether `x` is on its way through an fp32 training step on a CPU (gradients on, no autocast)."""
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and x.dtype == torch.float32
        and torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
    )


class CpuTrainConv2d(nn.Conv2d):
    """nn.Conv2d whose weight gradient, in fp32 training on a CPU, is one matrix product on small maps."""

    def forward(self, x: Tensor) -> Tensor:
        if self._small_map_training(x):
            return _SmallMapConv2d.apply(x, self.weight, self.stride, self.padding, self.dilation)
        if self._one_wide_bf16_training(x):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)

    def _one_wide_bf16_training(self, x: Tensor) -> bool:
        """Whether oneDNN's bf16 weight gradient would be wrong here: bf16 autocast training on a CPU, a
        strided convolution, an output one cell wide (the module docstring)."""
        if not (
            x.device.type == "cpu"
            and x.dim() == 4
            and torch.is_grad_enabled()
            and self.weight.requires_grad
            and self.weight.dtype == torch.float32
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and self.stride[1] > 1
            and isinstance(self.padding, tuple)
        ):
            return False
        return self._output_size(x)[1] == 1

    def _small_map_training(self, x: Tensor) -> bool:
        if not (
            fp32_cpu_training(x)
            and self.weight.dtype == torch.float32
            and self.weight.requires_grad
            and self.bias is None
            and self.groups == 1
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)  # not 'same' / 'valid'
        ):
            return False
        height, width = self._output_size(x)
        return height * width <= SMALL_MAP

    def _output_size(self, x: Tensor) -> tuple[int, int]:
        geometry = zip(x.shape[2:], self.kernel_size, self.stride, self.padding, self.dilation, strict=True)
        height, width = ((size + 2 * p - d * (k - 1) - 1) // s + 1 for size, k, s, p, d in geometry)
        return height, width


def use_small_map_convs(module: nn.Module) -> nn.Module:
    """Makes every plain nn.Conv2d in `module` a CpuTrainConv2d, in place (same parameters); returns it."""
    for m in module.modules():
        if type(m) is nn.Conv2d:
            m.__class__ = CpuTrainConv2d
    return module
