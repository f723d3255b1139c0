"""torchvision ResNets: `resnet18` (LeRobot's ACT backbone) and `pri3d`.

The keys and their rules are the schemas' (actlab.config.encoders). Normalisation (`encoder.norm`):
`frozen_batch_norm` (LeRobot's and DETR's choice, right for pretrained
weights, but at random init it is the identity, so the trunk has no normalisation at all) or `group_norm`
(16 channels per group, as robomimic and Diffusion Policy use for trunks trained from scratch).

The module keeps torchvision's parameter names under `model.backbone`, as LeRobot does, so resnet18
weights move between the two unchanged. Pri3D (Hou et al., 2021) pretrains a ResNet on 3-D scenes; its
checkpoints hold `{'model': state_dict}` with the trunk under `backbone.encoder.<torchvision key>`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops.misc import FrozenBatchNorm2d

from actlab.config.encoders import PRI3D_NEEDS_WEIGHTS, Pri3dEncoderConfig, ResNet18EncoderConfig
from actlab.errors import ActlabError, reason
from actlab.policy.encoders.cpu_training import fp32_cpu_training, use_small_map_convs
from actlab.policy.encoders.files import OFFLINE, hub_offline, missing_weights, read_weights_file

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

PRI3D_PREFIX = "backbone.encoder."


class ResNetFeatures(IntermediateLayerGetter):
    """ResNet trunk up to its feature layer (layer4, or layer3): `forward` gives that feature map, `embed`
    its spatial mean. Layers after the feature layer are not built into the module (nor its state dict)."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if fp32_cpu_training(x):
            x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's NHWC kernels (cpu_training)
        return super().forward(x)["feature_map"]

    def embed(self, x: Tensor) -> Tensor:
        return self.forward(x).mean(dim=(2, 3))


def load_imagenet_state_dict(arch: str, weights: str | None) -> dict[str, Tensor]:
    """ImageNet weights (torchvision's IMAGENET1K_V1) from `weights`, or through torchvision's own loader:
    from its cache under $TORCH_HOME, downloaded there first (hash-checked, with a progress bar) when
    missing, unless HF_HUB_OFFLINE is set. A failure is one line naming the file, the URL and the ways out."""
    if weights:
        return read_weights_file(weights)
    enum = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(enum.url).path)
    what = f"encoder.pretrained=imagenet: {arch} weights"
    if not cached.is_file() and hub_offline():
        raise ActlabError(missing_weights(what, f"at {cached}", enum.url, OFFLINE, copy_to=cached))
    try:
        return enum.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except Exception as e:  # noqa: BLE001 - network, hash and file errors all end the same way
        if cached.is_file():
            raise ActlabError(f"{what}: {cached} cannot be read ({reason(e)}); delete it to fetch it again") from None
        why = f"downloading failed ({reason(e)})"
        raise ActlabError(missing_weights(what, f"at {cached}", enum.url, why, copy_to=cached)) from None


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(channels // 16, channels)


def resnet_trunk(arch: str, dilation: bool = False, norm: str = "frozen_batch_norm") -> torchvision.models.ResNet:
    """torchvision's ResNet, its convolutions with a faster weight gradient on small maps on a CPU."""
    net = getattr(torchvision.models, arch)(
        weights=None,
        replace_stride_with_dilation=[False, False, dilation],
        norm_layer=group_norm if norm == "group_norm" else FrozenBatchNorm2d,
    )
    return use_small_map_convs(net)


def features(net: torchvision.models.ResNet, image_stats: tuple | None, layer: str = "layer4") -> ResNetFeatures:
    backbone = ResNetFeatures(net, return_layers={layer: "feature_map"})
    channels = net.fc.in_features  # layer4's; every stage halves the channels of the next
    backbone.out_channels = backbone.embed_dim = channels if layer == "layer4" else channels // 2
    backbone.image_stats = image_stats
    return backbone


def build_resnet18(cfg: ResNet18EncoderConfig, load_weights: bool) -> ResNetFeatures:
    """LeRobot's ACT backbone. ImageNet weights expect ImageNet-normalised inputs (LeRobot's
    `use_imagenet_stats`); a randomly initialised one uses the dataset's image statistics."""
    net = resnet_trunk("resnet18", cfg.replace_final_stride_with_dilation, cfg.norm)
    if load_weights and cfg.pretrained:
        load_trunk(net, load_imagenet_state_dict("resnet18", cfg.weights), cfg.weights, "resnet18")
    return features(net, IMAGENET_STATS if cfg.pretrained else None, cfg.feature_layer)


def load_trunk(net: torchvision.models.ResNet, state: Any, source: str | None, arch: str) -> None:
    """A torchvision state dict, strictly; one line for a file of another architecture."""
    if not isinstance(state, dict):
        raise ActlabError(f"encoder.weights={source}: expected a state dict of {arch} weights")
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    unexpected = [k for k in state if k not in expected and not k.endswith("num_batches_tracked")]
    if missing or wrong or unexpected:
        k = (wrong or missing or unexpected)[0]
        detail = (
            f"'{k}' has shape {list(state[k].shape)}, {arch} expects {list(expected[k].shape)}"
            if wrong
            else f"{len(missing)} {arch} keys missing and {len(unexpected)} unexpected (e.g. '{k}')"
        )
        raise ActlabError(f"encoder.weights={source or 'torchvision ImageNet file'}: not {arch} weights: {detail}")
    net.load_state_dict(state)


def build_pri3d(cfg: Pri3dEncoderConfig, load_weights: bool) -> ResNetFeatures:
    net = resnet_trunk(f"resnet{cfg.depth}", cfg.replace_final_stride_with_dilation, cfg.norm)
    if load_weights and cfg.pretrained:
        load_pri3d_checkpoint(net, cfg.weights, cfg.depth)
    return features(net, IMAGENET_STATS, cfg.feature_layer)


def load_pri3d_checkpoint(net: torchvision.models.ResNet, weights: str | None, depth: int) -> None:
    """Loads the `backbone.encoder.*` trunk of a Pri3D checkpoint strictly (the classifier `fc` aside);
    decoder and 3-D heads are dropped."""
    if not weights:
        raise ActlabError(PRI3D_NEEDS_WEIGHTS)
    checkpoint = read_weights_file(weights)
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ActlabError(f"encoder.weights={weights}: expected a {{'model': state_dict}} checkpoint")
    trunk = {k.removeprefix(PRI3D_PREFIX): v for k, v in state.items() if k.startswith(PRI3D_PREFIX)}
    trunk = {k: v for k, v in trunk.items() if not k.endswith("num_batches_tracked")}
    if not trunk:
        raise ActlabError(f"encoder.weights={weights}: no '{PRI3D_PREFIX}*' keys; is this a Pri3D checkpoint?")
    expected = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    missing = sorted(set(expected) - set(trunk))
    if missing:
        raise ActlabError(
            f"encoder.weights={weights}: {len(missing)} resnet{depth} keys missing (e.g. "
            f"{PRI3D_PREFIX}{missing[0]}); is encoder.depth={depth} right?"
        )
    unexpected = sorted(k for k in set(trunk) - set(expected) if not k.startswith("fc."))
    if unexpected:
        raise ActlabError(
            f"encoder.weights={weights}: {len(unexpected)} keys that resnet{depth} does not have (e.g. "
            f"{PRI3D_PREFIX}{unexpected[0]}); is encoder.depth={depth} right?"
        )
    for key, value in expected.items():
        if trunk[key].shape != value.shape:
            raise ActlabError(
                f"encoder.weights={weights}: {PRI3D_PREFIX}{key} has shape {tuple(trunk[key].shape)}, "
                f"resnet{depth} expects {tuple(value.shape)}; is encoder.depth={depth} right?"
            )
    net.load_state_dict({k: trunk[k] for k in expected}, strict=False)
