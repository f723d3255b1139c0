"""Image backbones for ACT, one builder per `encoder.name`.

A backbone maps (B, 3, H, W) normalised images to a (B, C, h, w) feature map; ACT projects each cell to
one transformer token. The resnet backbone keeps torchvision's module names under `model.backbone`, as
LeRobot does, so weights move between the two unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops.misc import FrozenBatchNorm2d

from actlab.errors import ActlabError

# torchvision's file names for the ImageNet weights (IMAGENET1K_V1), as found in its hub cache.
IMAGENET_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
}


class ResNetFeatures(IntermediateLayerGetter):
    """ResNet trunk up to layer4, returning the layer4 feature map as a tensor."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x)["feature_map"]


def torchvision_cache_file(arch: str) -> Path:
    hub_dir = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub"
    return hub_dir / "checkpoints" / IMAGENET_FILES[arch]


def load_imagenet_state_dict(arch: str, weights: str | None) -> dict[str, Tensor]:
    """ImageNet weights from `weights` or torchvision's cache; never downloads."""
    path = Path(weights).expanduser() if weights else torchvision_cache_file(arch)
    if not path.is_file():
        url = f"https://download.pytorch.org/models/{IMAGENET_FILES[arch]}"
        raise ActlabError(
            f"encoder.pretrained=imagenet: no {arch} weights at {path}; download {url} to that path "
            "(or pass encoder.weights=/path/to/file.pth), or set encoder.pretrained=null for random init"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def build_resnet(cfg: dict[str, Any], load_weights: bool) -> tuple[nn.Module, int]:
    arch = cfg["name"]
    net = getattr(torchvision.models, arch)(
        weights=None,
        replace_stride_with_dilation=[False, False, bool(cfg.get("replace_final_stride_with_dilation"))],
        norm_layer=FrozenBatchNorm2d,
    )
    pretrained = cfg.get("pretrained")
    if load_weights and pretrained:
        if pretrained != "imagenet":
            raise ActlabError(f"encoder.pretrained={pretrained!r}; expected 'imagenet' or null")
        net.load_state_dict(load_imagenet_state_dict(arch, cfg.get("weights")))
    out_channels = net.fc.in_features
    backbone = ResNetFeatures(net, return_layers={"layer4": "feature_map"})
    if cfg.get("freeze"):
        backbone.requires_grad_(False)
    return backbone, out_channels


BACKBONES: dict[str, Callable[[dict[str, Any], bool], tuple[nn.Module, int]]] = {
    "resnet18": build_resnet,
}


def build_backbone(cfg: dict[str, Any], load_weights: bool = True) -> tuple[nn.Module, int]:
    name = cfg.get("name")
    if name not in BACKBONES:
        raise ActlabError(f"encoder.name={name!r} is not one of {sorted(BACKBONES)}")
    return BACKBONES[name](cfg, load_weights)
