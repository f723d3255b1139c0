"""torchvision ResNets: `resnet18` (LeRobot's ACT backbone) and `pri3d`.

Normalisation (`encoder.norm`): `frozen_batch_norm` (LeRobot's and DETR's choice, right for pretrained
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

from actlab.errors import ActlabError, reason
from actlab.policy.encoders.files import OFFLINE, hub_offline, missing_weights, read_weights_file

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

PRI3D_PREFIX = "backbone.encoder."
PRI3D_DEPTHS = (18, 34, 50, 101)


class ResNetFeatures(IntermediateLayerGetter):
    """ResNet trunk up to its feature layer (layer4, or layer3): `forward` gives that feature map, `embed`
    its spatial mean. Layers after the feature layer are not built into the module (nor its state dict)."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
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


NORMS = ("frozen_batch_norm", "group_norm")


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(channels // 16, channels)


def resnet_trunk(arch: str, dilation: bool = False, norm: str = "frozen_batch_norm") -> torchvision.models.ResNet:
    return getattr(torchvision.models, arch)(
        weights=None,
        replace_stride_with_dilation=[False, False, dilation],
        norm_layer=group_norm if norm == "group_norm" else FrozenBatchNorm2d,
    )


def check_dilation(cfg: dict[str, Any], depth: int) -> bool:
    """`encoder.replace_final_stride_with_dilation`: torchvision dilates bottleneck blocks only (depth >= 50)."""
    dilation = bool(cfg.get("replace_final_stride_with_dilation"))
    if dilation and depth < 50:
        raise ActlabError(
            f"encoder.replace_final_stride_with_dilation=true needs a ResNet of depth 50 or more (torchvision "
            f"cannot dilate the basic blocks of resnet{depth}); set it to false"
        )
    return dilation


def check_norm(cfg: dict[str, Any]) -> str:
    """`encoder.norm`; group norm only for a trunk trained from scratch (pretrained weights carry batch-norm
    statistics that group norm would throw away)."""
    norm = cfg.get("norm") or "frozen_batch_norm"
    if norm not in NORMS:
        raise ActlabError(f"encoder.norm={norm!r} is not one of {list(NORMS)}")
    if norm == "group_norm" and cfg.get("pretrained"):
        raise ActlabError(
            f"encoder.norm=group_norm is for a trunk trained from scratch; with encoder.pretrained="
            f"{cfg.get('pretrained')} use encoder.norm=frozen_batch_norm (or set encoder.pretrained=null)"
        )
    return norm


FEATURE_LAYERS = ("layer4", "layer3")


def check_feature_layer(cfg: dict[str, Any]) -> str:
    """`encoder.feature_layer`: layer4 (stride 32, LeRobot's) or layer3 (stride 16: a 64x64 image gives 4x4
    tokens instead of 2x2, from a quarter of the trunk's parameters)."""
    layer = cfg.get("feature_layer") or "layer4"
    if layer not in FEATURE_LAYERS:
        raise ActlabError(f"encoder.feature_layer={layer!r} is not one of {list(FEATURE_LAYERS)}")
    if layer == "layer3" and cfg.get("replace_final_stride_with_dilation"):
        raise ActlabError(
            "encoder.replace_final_stride_with_dilation=true dilates layer4, which encoder.feature_layer=layer3 "
            "leaves out; set one of them back"
        )
    return layer


def features(net: torchvision.models.ResNet, image_stats: tuple | None, layer: str = "layer4") -> ResNetFeatures:
    backbone = ResNetFeatures(net, return_layers={layer: "feature_map"})
    channels = net.fc.in_features  # layer4's; every stage halves the channels of the next
    backbone.out_channels = backbone.embed_dim = channels if layer == "layer4" else channels // 2
    backbone.image_stats = image_stats
    return backbone


def build_resnet18(cfg: dict[str, Any], load_weights: bool) -> ResNetFeatures:
    """LeRobot's ACT backbone. ImageNet weights expect ImageNet-normalised inputs (LeRobot's
    `use_imagenet_stats`); a randomly initialised one uses the dataset's image statistics."""
    net = resnet_trunk("resnet18", check_dilation(cfg, 18), check_norm(cfg))
    pretrained = cfg.get("pretrained")
    if pretrained not in (None, "imagenet"):
        raise ActlabError(f"encoder.pretrained={pretrained!r}; expected 'imagenet' or null")
    if load_weights and pretrained:
        load_trunk(net, load_imagenet_state_dict("resnet18", cfg.get("weights")), cfg.get("weights"), "resnet18")
    return features(net, IMAGENET_STATS if pretrained else None, check_feature_layer(cfg))


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


def build_pri3d(cfg: dict[str, Any], load_weights: bool) -> ResNetFeatures:
    depth = cfg.get("depth") or 50
    if depth not in PRI3D_DEPTHS:
        raise ActlabError(f"encoder.depth={depth}; expected one of {list(PRI3D_DEPTHS)}")
    net = resnet_trunk(f"resnet{depth}", check_dilation(cfg, depth), check_norm(cfg))
    pretrained = cfg.get("pretrained")
    if pretrained not in (None, "pri3d"):
        raise ActlabError(f"encoder.pretrained={pretrained!r}; expected 'pri3d' (with encoder.weights) or null")
    if load_weights and pretrained:
        load_pri3d_checkpoint(net, cfg.get("weights"), depth)
    return features(net, IMAGENET_STATS, check_feature_layer(cfg))


def load_pri3d_checkpoint(net: torchvision.models.ResNet, weights: str | None, depth: int) -> None:
    """Loads the `backbone.encoder.*` trunk of a Pri3D checkpoint strictly (the classifier `fc` aside);
    decoder and 3-D heads are dropped."""
    if not weights:
        raise ActlabError(
            "encoder.pretrained=pri3d needs encoder.weights=/path/to/pri3d_checkpoint.pth "
            "(a {'model': state_dict} file), or encoder.pretrained=null for random init"
        )
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
