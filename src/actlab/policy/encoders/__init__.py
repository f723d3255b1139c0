"""Image encoders for ACT, one builder per `encoder.name`, all feeding the same transformer.

A backbone is an `nn.Module` that maps (N, 3, H, W) normalised images to a (N, C, h, w) feature map
(one transformer token per cell after ACT's 1x1 projection) and, through `embed`, to one (N, E) vector
per image (what the camera-fusion modes combine). It also says how its inputs are normalised:

    out_channels   C of the feature map
    embed_dim      E of `embed`
    image_stats    (mean, std) per RGB channel the weights expect, or None for the dataset's statistics

`build_backbone(cfg)` freezes it when `encoder.freeze` is set: no parameter requires a gradient, so the
optimiser never sees them and ACT runs the backbone under `no_grad`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from actlab.errors import ActlabError
from actlab.policy.encoders.clip import build_clip
from actlab.policy.encoders.resnet import (
    build_pri3d,
    build_resnet18,
    check_dilation,
    check_feature_layer,
    check_norm,
)

FUSE_MODES = ("none", "mean", "concat_mlp", "gated")

BACKBONES: dict[str, Callable[[dict[str, Any], bool], nn.Module]] = {
    "resnet18": build_resnet18,
    "clip": build_clip,
    "pri3d": build_pri3d,
}


def check_encoder(cfg: dict[str, Any]) -> None:
    """The rules that need no weights; checked when the config is composed."""
    name = cfg.get("name")
    if name not in BACKBONES:
        raise ActlabError(f"encoder.name={name!r} is not one of {sorted(BACKBONES)}")
    fuse = cfg.get("fuse") or "none"
    if fuse not in FUSE_MODES:
        raise ActlabError(f"encoder.fuse={fuse!r} is not one of {list(FUSE_MODES)}")
    if name in ("resnet18", "pri3d"):
        check_norm(cfg)
        check_dilation(cfg, 18 if name == "resnet18" else cfg.get("depth") or 50)
        check_feature_layer(cfg)


def build_backbone(cfg: dict[str, Any], load_weights: bool = True) -> nn.Module:
    """The backbone named by `cfg["name"]`; pretrained weights are loaded only when `load_weights`
    (a checkpoint being restored brings its own)."""
    check_encoder(cfg)
    backbone = BACKBONES[cfg["name"]](cfg, load_weights)
    backbone.frozen = bool(cfg.get("freeze"))
    if backbone.frozen:
        backbone.requires_grad_(False)
    return backbone
