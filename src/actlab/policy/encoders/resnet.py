"""torchvision ResNets with frozen BatchNorm: `resnet18` (LeRobot's ACT backbone) and `pri3d`.

The module keeps torchvision's parameter names under `model.backbone`, as LeRobot does, so resnet18
weights move between the two unchanged. Pri3D (Hou et al., 2021) pretrains a ResNet on 3-D scenes; its
checkpoints hold `{'model': state_dict}` with the trunk under `backbone.encoder.<torchvision key>`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torchvision
from torch import Tensor
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops.misc import FrozenBatchNorm2d

from actlab.errors import ActlabError
from actlab.policy.encoders.files import read_weights_file

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

# torchvision's file names for the ImageNet weights (IMAGENET1K_V1), as found in its hub cache.
IMAGENET_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
}
PRI3D_PREFIX = "backbone.encoder."
PRI3D_DEPTHS = (18, 34, 50, 101)


class ResNetFeatures(IntermediateLayerGetter):
    """ResNet trunk up to layer4: `forward` gives the layer4 feature map, `embed` its spatial mean."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x)["feature_map"]

    def embed(self, x: Tensor) -> Tensor:
        return self.forward(x).mean(dim=(2, 3))


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
    return read_weights_file(path)


def resnet_trunk(arch: str, dilation: bool = False) -> torchvision.models.ResNet:
    return getattr(torchvision.models, arch)(
        weights=None, replace_stride_with_dilation=[False, False, dilation], norm_layer=FrozenBatchNorm2d
    )


def features(net: torchvision.models.ResNet, image_stats: tuple | None) -> ResNetFeatures:
    backbone = ResNetFeatures(net, return_layers={"layer4": "feature_map"})
    backbone.out_channels = backbone.embed_dim = net.fc.in_features
    backbone.image_stats = image_stats
    return backbone


def build_resnet18(cfg: dict[str, Any], load_weights: bool) -> ResNetFeatures:
    """LeRobot's ACT backbone. ImageNet weights expect ImageNet-normalised inputs (LeRobot's
    `use_imagenet_stats`); a randomly initialised one uses the dataset's image statistics."""
    net = resnet_trunk("resnet18", bool(cfg.get("replace_final_stride_with_dilation")))
    pretrained = cfg.get("pretrained")
    if pretrained not in (None, "imagenet"):
        raise ActlabError(f"encoder.pretrained={pretrained!r}; expected 'imagenet' or null")
    if load_weights and pretrained:
        net.load_state_dict(load_imagenet_state_dict("resnet18", cfg.get("weights")))
    return features(net, IMAGENET_STATS if pretrained else None)


def build_pri3d(cfg: dict[str, Any], load_weights: bool) -> ResNetFeatures:
    depth = cfg.get("depth") or 50
    if depth not in PRI3D_DEPTHS:
        raise ActlabError(f"encoder.depth={depth}; expected one of {list(PRI3D_DEPTHS)}")
    net = resnet_trunk(f"resnet{depth}", bool(cfg.get("replace_final_stride_with_dilation")))
    pretrained = cfg.get("pretrained")
    if pretrained not in (None, "pri3d"):
        raise ActlabError(f"encoder.pretrained={pretrained!r}; expected 'pri3d' (with encoder.weights) or null")
    if load_weights and pretrained:
        load_pri3d_checkpoint(net, cfg.get("weights"), depth)
    return features(net, IMAGENET_STATS)


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
