"""Inference copies of parts of ACT: the ResNet backbone with frozen BatchNorm folded into the convolutions
and channels-last memory layout where oneDNN's CPU kernels are faster, and bfloat16 copies (backbone,
transformer encoder) so that bf16 inference does not re-cast the weights on every call.

A copy is rebuilt whenever the backbone's parameters change (optimiser steps and `load_state_dict` bump
their version counters), so evaluation during training always sees the current weights. Training and any
call that needs gradients use the backbone itself.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d


def fold_frozen_batchnorm(module: nn.Module) -> int:
    """Folds every FrozenBatchNorm2d that follows a convolution (`convN`/`bnN` pairs and
    `downsample = [conv, bn]`, torchvision's ResNet layout) into it; returns how many were folded."""
    folded = 0
    for parent in list(module.modules()):
        pairs = [(f"conv{i}", f"bn{i}") for i in range(1, 4)]
        for conv_name, bn_name in pairs:
            conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, FrozenBatchNorm2d):
                _fold(conv, bn)
                setattr(parent, bn_name, nn.Identity())
                folded += 1
        if isinstance(parent, nn.Sequential) and len(parent) == 2:
            if isinstance(parent[0], nn.Conv2d) and isinstance(parent[1], FrozenBatchNorm2d):
                _fold(parent[0], parent[1])
                parent[1] = nn.Identity()
                folded += 1
    return folded


def _fold(conv: nn.Conv2d, bn: FrozenBatchNorm2d) -> None:
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    bias = bn.bias - bn.running_mean * scale
    conv.weight = nn.Parameter(conv.weight * scale[:, None, None, None], requires_grad=False)
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    conv.bias = nn.Parameter(bias, requires_grad=False)


class InferenceCopy:
    """An inference copy of `module` in a given dtype (not an nn.Module attribute: never saved or trained).

    `image_backbone=True` also folds frozen BatchNorm and uses channels-last layout."""

    def __init__(self, module: nn.Module, image_backbone: bool = False):
        self.module = module
        self.image_backbone = image_backbone
        self.copies: dict[tuple, tuple[tuple, nn.Module]] = {}  # (dtype, device) -> (weights version, copy)

    def get(self, dtype: torch.dtype, device: torch.device, channels_last: bool = False) -> nn.Module:
        version = tuple((id(p), p._version) for p in self.module.parameters())
        cached = self.copies.get((dtype, device, channels_last))
        if cached is None or cached[0] != version:
            fast = copy.deepcopy(self.module).eval().requires_grad_(False)
            if self.image_backbone:
                fold_frozen_batchnorm(fast)
            fast = fast.to(device=device, dtype=dtype)
            if channels_last:
                fast = fast.to(memory_format=torch.channels_last)
            cached = self.copies[(dtype, device, channels_last)] = (version, fast)
        return cached[1]

    def run_backbone(self, fn_name: str, x: Tensor, dtype: torch.dtype) -> Tensor:
        """`forward` or `embed` of the backbone copy; float32 output. Channels-last layout where it is
        faster on this CPU (measured: bf16 at any size, fp32 above ~128x128 pixels; 4x480x640 fp32 -18 %,
        bf16 -32 %; 2x96x96 fp32 +25 %)."""
        channels_last = dtype == torch.bfloat16 or x.shape[-2] * x.shape[-1] > 128 * 128
        fast = self.get(dtype, x.device, channels_last)
        x = x.to(dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, enabled=False):
            return getattr(fast, fn_name)(x).float()
