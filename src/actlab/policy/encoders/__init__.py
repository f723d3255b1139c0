"""Image encoders for ACT, one builder per `encoder.name`, all feeding the same transformer.

A backbone is an `nn.Module` that maps (N, 3, H, W) normalised images to a (N, C, h, w) feature map
(one transformer token per cell after ACT's 1x1 projection) and, through `embed`, to one (N, E) vector
per image (what the camera-fusion modes combine). It also says how its inputs are normalised:

    out_channels   C of the feature map
    embed_dim      E of `embed`
    image_stats    (mean, std) per RGB channel the weights expect, or None for the dataset's statistics

Each builder takes its encoder's typed config (actlab.config.encoders, where the keys, their defaults and
their rules live). `build_backbone(cfg)` freezes it when `encoder.freeze` is set: no parameter requires a
gradient, so the optimiser never sees them and ACT runs the backbone under `no_grad`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from actlab.config.encoders import EncoderConfig, encoder_config
from actlab.policy.encoders.clip import build_clip
from actlab.policy.encoders.resnet import build_pri3d, build_resnet18

# encoder.name -> builder(typed config, load_weights); each name has its schema in actlab.config.encoders
BACKBONES: dict[str, Callable[[Any, bool], nn.Module]] = {
    "resnet18": build_resnet18,
    "clip": build_clip,
    "pri3d": build_pri3d,
}


def build_backbone(cfg: EncoderConfig | Mapping[str, Any], load_weights: bool = True) -> nn.Module:
    """The backbone named by `cfg.name` (a typed encoder config, or a dict of one); pretrained weights are
    loaded only when `load_weights` (a checkpoint being restored brings its own)."""
    cfg = encoder_config(cfg)
    cfg.check()
    backbone = BACKBONES[cfg.name](cfg, load_weights)
    backbone.frozen = bool(cfg.freeze)
    if backbone.frozen:
        backbone.requires_grad_(False)
    return backbone
