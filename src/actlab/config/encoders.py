"""The `encoder` group: one schema per image backbone (actlab.policy.encoders builds them), the same
dataclasses in a run's config and inside the policy's own config (`config.json`), so each default is stated
here once. Adding an encoder: its schema here (`@option_schema("encoder", name)`), its builder module and one
line in `actlab.policy.encoders.BACKBONES`, and `conf/encoder/<name>.yaml`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import MISSING

from actlab.config.options import SCHEMAS, SHAPES_WEIGHTS, option_schema, plain, typed
from actlab.errors import ActlabError

FUSE_MODES = ("none", "mean", "concat_mlp", "gated")
NORMS = ("frozen_batch_norm", "group_norm")
FEATURE_LAYERS = ("layer4", "layer3")
PRI3D_DEPTHS = (18, 34, 50, 101)

# Every key the single encoder schema of older actlab versions had, with its default there: their
# config.json files carry all of them, whatever the encoder.
LEGACY_KEYS = {
    "model_name": None,
    "depth": None,
    "replace_final_stride_with_dilation": False,
    "norm": "frozen_batch_norm",
    "feature_layer": "layer4",
}


@dataclass
class EncoderConfig:
    """The image backbone and how the cameras' features are fused: the keys every encoder has."""

    PRETRAINED: ClassVar[str] = ""  # the one `pretrained` value the encoder knows (besides null)

    name: str = field(default=MISSING, metadata=SHAPES_WEIGHTS)
    pretrained: str | None = None  # the weights to start from (each encoder names its own); null = random init
    weights: str | None = None  # local weights file; else the library's cache (torchvision, Hugging Face)
    freeze: bool = False  # no gradients reach the backbone; its parameters stay out of the optimiser
    # none (one token per feature cell per camera) | mean | concat_mlp | gated (one token for all cameras)
    fuse: str = field(default="none", metadata=SHAPES_WEIGHTS)

    def check(self) -> None:
        """The rules that need no weights; checked when the config is composed and when a backbone is built."""
        if self.name not in SCHEMAS["encoder"]:
            raise ActlabError(f"encoder.name={self.name!r} is not one of {sorted(SCHEMAS['encoder'])}")
        if not isinstance(self, SCHEMAS["encoder"][self.name]):
            raise ActlabError(
                f"encoder.name={self.name} does not fit the keys of {type(self).__name__}; choose encoder={self.name}"
            )
        if self.fuse not in FUSE_MODES:
            raise ActlabError(f"encoder.fuse={self.fuse!r} is not one of {list(FUSE_MODES)}")
        if self.pretrained not in (None, self.PRETRAINED):
            raise ActlabError(f"encoder.pretrained={self.pretrained!r}; expected {self.PRETRAINED!r} or null")


@dataclass
class ResNetEncoderConfig(EncoderConfig):
    """The keys of the torchvision ResNet trunks."""

    # frozen_batch_norm (LeRobot's, for pretrained weights) | group_norm (a trunk trained from scratch)
    norm: str = field(default="frozen_batch_norm", metadata=SHAPES_WEIGHTS)
    # layer4 (stride 32, LeRobot's) | layer3 (stride 16: 2x the tokens per side, 1/4 of the parameters)
    feature_layer: str = field(default="layer4", metadata=SHAPES_WEIGHTS)
    # layer4 at stride 16 instead of 32 (bottleneck trunks only: depth 50 or more)
    replace_final_stride_with_dilation: bool = field(default=False, metadata=SHAPES_WEIGHTS)

    def depth_of_trunk(self) -> int:
        raise NotImplementedError

    def check(self) -> None:
        super().check()
        if self.norm not in NORMS:
            raise ActlabError(f"encoder.norm={self.norm!r} is not one of {list(NORMS)}")
        if self.norm == "group_norm" and self.pretrained:
            raise ActlabError(
                f"encoder.norm=group_norm is for a trunk trained from scratch; with encoder.pretrained="
                f"{self.pretrained} use encoder.norm=frozen_batch_norm (or set encoder.pretrained=null)"
            )
        depth = self.depth_of_trunk()
        if self.replace_final_stride_with_dilation and depth < 50:
            raise ActlabError(
                f"encoder.replace_final_stride_with_dilation=true needs a ResNet of depth 50 or more (torchvision "
                f"cannot dilate the basic blocks of resnet{depth}); set it to false"
            )
        if self.feature_layer not in FEATURE_LAYERS:
            raise ActlabError(f"encoder.feature_layer={self.feature_layer!r} is not one of {list(FEATURE_LAYERS)}")
        if self.feature_layer == "layer3" and self.replace_final_stride_with_dilation:
            raise ActlabError(
                "encoder.replace_final_stride_with_dilation=true dilates layer4, which encoder.feature_layer=layer3 "
                "leaves out; set one of them back"
            )


@option_schema("encoder", "resnet18")
@dataclass
class ResNet18EncoderConfig(ResNetEncoderConfig):
    """torchvision ResNet-18, LeRobot's ACT backbone; `pretrained: imagenet`."""

    PRETRAINED: ClassVar[str] = "imagenet"

    name: str = field(default="resnet18", metadata=SHAPES_WEIGHTS)
    pretrained: str | None = "imagenet"

    def depth_of_trunk(self) -> int:
        return 18


@option_schema("encoder", "pri3d")
@dataclass
class Pri3dEncoderConfig(ResNetEncoderConfig):
    """A torchvision ResNet with the trunk of a Pri3D checkpoint (`encoder.weights`); `pretrained: pri3d`."""

    PRETRAINED: ClassVar[str] = "pri3d"

    name: str = field(default="pri3d", metadata=SHAPES_WEIGHTS)
    pretrained: str | None = "pri3d"
    depth: int = field(default=50, metadata=SHAPES_WEIGHTS)  # ResNet depth: 18, 34, 50 or 101

    def depth_of_trunk(self) -> int:
        return self.depth

    def check(self) -> None:
        if self.depth not in PRI3D_DEPTHS:
            raise ActlabError(f"encoder.depth={self.depth}; expected one of {list(PRI3D_DEPTHS)}")
        super().check()


@option_schema("encoder", "clip")
@dataclass
class ClipEncoderConfig(EncoderConfig):
    """open_clip's vision transformer; `pretrained: openai`."""

    PRETRAINED: ClassVar[str] = "openai"

    name: str = field(default="clip", metadata=SHAPES_WEIGHTS)
    pretrained: str | None = "openai"
    freeze: bool = True
    fuse: str = field(default="mean", metadata=SHAPES_WEIGHTS)
    model_name: str = field(default="ViT-B-32", metadata=SHAPES_WEIGHTS)  # an open_clip vision transformer


PRI3D_NEEDS_WEIGHTS = (
    "encoder.pretrained=pri3d needs encoder.weights=/path/to/pri3d_checkpoint.pth (a {'model': state_dict} file), "
    "or encoder.pretrained=null for random init"
)


def check_weights_file(weights: str | Path) -> Path:
    """`encoder.weights` as a path to an existing file, or one line saying it is not there."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ActlabError(f"encoder.weights={weights}: no such file")
    return path


def check_weights_to_load(encoder: EncoderConfig) -> None:
    """What building the backbone with its pretrained weights needs from the config: Pri3D's weights come only
    from a file, and a file named by `encoder.weights` must be there. A new training run checks this when its
    config is composed, before anything heavy is imported; the backbone's builder checks it again."""
    if not encoder.pretrained:
        return
    if isinstance(encoder, Pri3dEncoderConfig) and not encoder.weights:
        raise ActlabError(PRI3D_NEEDS_WEIGHTS)
    if encoder.weights:
        check_weights_file(encoder.weights)


def encoder_config(data: EncoderConfig | Mapping[str, Any]) -> EncoderConfig:
    """The typed encoder config of `data` (a dict, a config node or one already typed), its schema chosen by
    `name`. A dict an older actlab wrote (every key of every encoder) loses the keys its encoder lacks when
    they hold their old default (or null); a real value there is refused with one line."""
    if isinstance(data, EncoderConfig):
        return data
    data = plain(data)
    name = data.get("name")
    if name not in SCHEMAS["encoder"]:
        raise ActlabError(f"encoder.name={name!r} is not one of {sorted(SCHEMAS['encoder'])}")
    return typed(SCHEMAS["encoder"][name], data, f"encoder={name}", LEGACY_KEYS)
