"""The inference runtime: how a trained ACT predicts, kept apart from the network (actlab.policy.act).

`InferenceRuntime` runs a plain `ACT` from normalised inputs to a normalised action chunk, with copies of its
expensive parts made for inference only:

- a ResNet backbone (frozen BatchNorm) runs from a copy with every BatchNorm folded into the convolution
  before it, in the runtime's dtype, and in channels-last memory layout where oneDNN's kernels are faster;
- with `precision="bf16"` the transformer encoder runs from a bfloat16 copy, so its weights are cast once
  per weight update instead of on every call. A backbone with no BatchNorm to fold (CLIP) runs itself
  under bf16 autocast. The decoder and the action head stay float32: they are cheap (chunk_size queries)
  and decide the actions' last digits (bf16 there alone costs ~1e-2 in normalised units).

A copy is rebuilt on first use after its source's parameters or buffers changed (optimiser steps and
`load_state_dict` bump their version counters), so evaluation during training sees the current weights.
The runtime is a plain object, not an nn.Module: its copies are never saved, trained or counted as weights.
The policy, the server and the control loop all predict through it (via `ACTPolicy`), so a behaviour
measured in one is the behaviour of all.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial
from itertools import chain

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.ops.misc import FrozenBatchNorm2d

from actlab.config.schema import PolicyRuntimeConfig
from actlab.errors import ActlabError
from actlab.policy.act import ACT

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}  # policy.precision (auto resolves to one of them)


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 on a CUDA device with bf16 or a CPU with native bf16 instructions, else fp32. An
    explicit bf16 on a CPU that emulates it warns once (actlab.devices)."""
    from actlab.devices import bf16_is_native, check_bf16

    PolicyRuntimeConfig(precision=precision).check()
    if precision == "auto":
        return "bf16" if bf16_is_native(device.type) else "fp32"
    if precision == "bf16":
        check_bf16("policy.precision=bf16", device.type)
    return precision


# Channels-last is faster on CPU for bf16 at any size and for fp32 above this many pixels per image
# (measured: 4x480x640 fp32 -18 %, bf16 -32 %; 2x96x96 fp32 +25 %).
CHANNELS_LAST_MIN_PIXELS = 128 * 128


def fold_frozen_batchnorm(module: nn.Module) -> int:
    """Folds every FrozenBatchNorm2d that follows a convolution in torchvision's ResNet layout (`convN`/`bnN`
    pairs and `downsample = [conv, bn]`) into that convolution and replaces it with an identity; returns how
    many were folded. For inference copies: the folded weights are no longer the trained parameters."""
    folded = 0
    for parent in list(module.modules()):
        for i in range(1, 4):
            conv, bn = getattr(parent, f"conv{i}", None), getattr(parent, f"bn{i}", None)
            if _foldable(conv, bn):
                _fold(conv, bn)
                setattr(parent, f"bn{i}", nn.Identity())
                folded += 1
        if isinstance(parent, nn.Sequential) and len(parent) == 2 and _foldable(parent[0], parent[1]):
            _fold(parent[0], parent[1])
            parent[1] = nn.Identity()
            folded += 1
    return folded


def _foldable(conv: object, bn: object) -> bool:
    return isinstance(conv, nn.Conv2d) and isinstance(bn, FrozenBatchNorm2d)


def _fold(conv: nn.Conv2d, bn: FrozenBatchNorm2d) -> None:
    conv.weight, conv.bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )


def weights_version(module: nn.Module) -> tuple[tuple[int, int], ...]:
    """Identity and version counter of every parameter and buffer: changes with any in-place update or
    replacement of one (FrozenBatchNorm2d's statistics and affine terms are buffers)."""
    return tuple((id(t), t._version) for t in chain(module.parameters(), module.buffers()))


class CopyCache:
    """Inference copies of `source`, one per key, each rebuilt by `build(source, *key)` when `source`'s
    weights have changed since it was built."""

    def __init__(self, source: nn.Module, build: Callable[..., nn.Module]):
        self.source = source
        self.build = build
        self.copies: dict[tuple, tuple[tuple, nn.Module]] = {}  # key -> (weights version, copy)

    def get(self, *key: object) -> nn.Module:
        version = weights_version(self.source)
        cached = self.copies.get(key)
        if cached is None or cached[0] != version:
            cached = self.copies[key] = (version, self.build(self.source, *key))
        return cached[1]


class FoldedBackbone(nn.Module):
    """An inference copy of a ResNet backbone with the backbone's interface: (N, 3, H, W) images to its
    float32 feature map, or to its embedding when `embed` (camera fusion)."""

    def __init__(self, backbone: nn.Module, device: torch.device, channels_last: bool, dtype: torch.dtype, embed: bool):
        super().__init__()
        trunk = copy.deepcopy(backbone).eval().requires_grad_(False)
        fold_frozen_batchnorm(trunk)
        trunk = trunk.to(device=device, dtype=dtype)
        self.trunk = trunk.to(memory_format=torch.channels_last) if channels_last else trunk
        self.channels_last = channels_last
        self.dtype = dtype
        self.embed = embed

    def forward(self, images: Tensor) -> Tensor:
        x = images.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return (self.trunk.embed(x) if self.embed else self.trunk(x)).float()


def cast_copy(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """A frozen copy of `module` in `dtype` on `device`."""
    return copy.deepcopy(module).eval().requires_grad_(False).to(device=device, dtype=dtype)


class InferenceRuntime:
    """Predicts with a plain ACT (in eval mode) through its inference copies, in `precision` ("fp32" or "bf16"),
    through torch.compile when `compile`. See the module docstring."""

    def __init__(self, model: ACT, precision: str = "fp32", compile: bool = False):
        if precision not in PRECISIONS:
            raise ActlabError(f"policy.precision={precision!r} is not one of {list(PRECISIONS)}")
        self.model = model
        self.precision = precision
        self.compile = compile
        self.dtype = PRECISIONS[precision]
        backbone = getattr(model, "backbone", None)
        foldable = backbone is not None and any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules())
        build_backbone = partial(FoldedBackbone, dtype=self.dtype, embed=model.fuse != "none")
        self.backbone_copies = CopyCache(backbone, build_backbone) if foldable else None
        bf16 = self.dtype == torch.bfloat16
        self.encoder_copies = CopyCache(model.encoder, partial(cast_copy, dtype=self.dtype)) if bf16 else None
        # Unbound functions, compiled once: a deep copy of the runtime (with its policy) runs its own model.
        encode, decode = InferenceRuntime._encode, ACT.decode
        self._encode = torch.compile(encode) if compile else encode
        self._decode = torch.compile(decode) if compile else decode

    @torch.inference_mode()
    def predict(self, inputs: dict[str, Tensor], images: list[Tensor]) -> Tensor:
        """The normalised (B, chunk_size, action_dim) chunk for normalised inputs laid out as `ACT` takes them:
        vectors by key (and `observation_is_pad` with history), images one tensor per camera."""
        device = self.model.action_head.weight.device
        backbone, encoder = self._backbone(device, images), self._encoder(device)
        # The runtime's precision alone decides the dtypes, whatever autocast region the caller is in.
        with torch.autocast(device.type, enabled=False):
            memory, pos, mask = self._encode(self, backbone, encoder, inputs, images)
            return self._decode(self.model, memory, pos, mask)

    def _backbone(self, device: torch.device, images: list[Tensor]) -> nn.Module | None:
        """The backbone copy for these images, or None where the model's own backbone runs."""
        if self.backbone_copies is None:
            return None
        pixels = max(img.shape[-2] * img.shape[-1] for img in images)
        channels_last = self.dtype == torch.bfloat16 or pixels > CHANNELS_LAST_MIN_PIXELS
        return self.backbone_copies.get(device, channels_last)

    def _encoder(self, device: torch.device) -> nn.Module:
        return self.model.encoder if self.encoder_copies is None else self.encoder_copies.get(device)

    def _encode(
        self, backbone: nn.Module | None, encoder: nn.Module, inputs: dict[str, Tensor], images: list[Tensor]
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """The encoder's float32 memory, its positions and key-padding mask."""
        model = self.model
        # A backbone without a copy (no BatchNorm to fold) runs itself, in bf16 autocast for bf16 precision.
        autocast = backbone is None and self.dtype == torch.bfloat16
        with torch.autocast(model.action_head.weight.device.type, dtype=torch.bfloat16, enabled=autocast):
            features = model.image_features(images, backbone)
        latent, _, _ = model.latent(inputs, images)
        tokens, pos, mask = model.encoder_inputs(inputs, [f.float() for f in features], latent)
        memory = encoder(tokens.to(self.dtype), pos.to(self.dtype), mask)
        return memory.float(), pos, mask
