"""The policy's own configuration: what it reads, what it outputs, and its architecture.

Saved as `config.json` beside `model.safetensors`, so a checkpoint folder alone rebuilds the policy.
Field names follow LeRobot's ACTConfig; the encoder is the `encoder` group's schema (actlab.config.encoders).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from actlab.config.encoders import EncoderConfig, ResNet18EncoderConfig, encoder_config
from actlab.config.options import AT_INFERENCE, SHAPES_WEIGHTS, keys_with
from actlab.config.ranges import FRACTION, MAX_SIZE, NON_NEGATIVE, SIZE, between, check_ranges
from actlab.errors import ActlabError
from actlab.features import ACTION, OBS_ENV_STATE, OBS_STATE, PolicyFeature, as_feature
from actlab.io import read_json

LOSSES = ("l1", "l2")
ACTIVATIONS = ("relu", "gelu", "glu")  # model.feedforward_activation (actlab.policy.transformer maps them to functions)


@dataclass
class ACTArchitecture:
    """The ACT hyper-parameters, shared by the `model` config group and the policy's own config. Each key says
    what it is to a trained policy: SHAPES_WEIGHTS (its weights fit only the value they were trained with),
    AT_INFERENCE (may change when it acts), or neither (the training recipe, or behaviour fixed by training)."""

    n_obs_steps: int = field(default=1, metadata=SHAPES_WEIGHTS | SIZE)
    chunk_size: int = field(default=100, metadata=SHAPES_WEIGHTS | SIZE)
    n_action_steps: int = field(default=100, metadata=AT_INFERENCE | between(1, "chunk_size", integer=True))
    dim_model: int = field(default=512, metadata=SHAPES_WEIGHTS | SIZE)
    n_heads: int = field(default=8, metadata=SHAPES_WEIGHTS | SIZE)
    dim_feedforward: int = field(default=3200, metadata=SHAPES_WEIGHTS | SIZE)
    feedforward_activation: str = "relu"
    n_encoder_layers: int = field(default=4, metadata=SHAPES_WEIGHTS | SIZE)
    n_decoder_layers: int = field(default=1, metadata=SHAPES_WEIGHTS | SIZE)
    pre_norm: bool = field(default=False, metadata=SHAPES_WEIGHTS)
    use_vae: bool = field(default=True, metadata=SHAPES_WEIGHTS)
    latent_dim: int = field(default=32, metadata=SHAPES_WEIGHTS | SIZE)
    n_vae_encoder_layers: int = field(default=4, metadata=SHAPES_WEIGHTS | SIZE)
    dropout: float = field(default=0.1, metadata=FRACTION)
    kl_weight: float = field(default=10.0, metadata=NON_NEGATIVE)
    temporal_ensemble_coeff: float | None = field(default=None, metadata=AT_INFERENCE | NON_NEGATIVE)
    loss: str = "l1"  # action reconstruction loss: l1 | l2 (seed 002's action_loss)


ARCHITECTURE_KEYS = tuple(f.name for f in fields(ACTArchitecture))  # the model group's keys the policy keeps
WEIGHT_KEYS = keys_with(ACTArchitecture, SHAPES_WEIGHTS)  # init_from needs them equal
INFERENCE_KEYS = keys_with(ACTArchitecture, AT_INFERENCE)  # the model keys a trained policy may change


def default_encoder() -> EncoderConfig:
    return ResNet18EncoderConfig(pretrained=None)


@dataclass
class ACTPolicyConfig(ACTArchitecture):
    input_features: dict[str, PolicyFeature] = field(default_factory=dict)
    output_features: dict[str, PolicyFeature] = field(default_factory=dict)
    encoder: EncoderConfig = field(default_factory=default_encoder)  # a dict (config.json) becomes its schema
    # What deployment needs to know of the training data (optional: older and imported folders lack it).
    fps: float | None = None  # the rate the demonstrations were recorded at
    action_names: list[str] | None = None  # one per action dimension
    state_names: list[str] | None = None  # one per observation.state dimension (a robot's are matched by name)
    action_range: dict[str, list[float]] | None = None  # {"min": [...], "max": [...]} seen in the data

    def __post_init__(self) -> None:
        self.input_features = {k: as_feature(v) for k, v in self.input_features.items()}
        self.output_features = {k: as_feature(v) for k, v in self.output_features.items()}
        if self.encoder is None:
            raise ActlabError("encoder is null; expected the image encoder's settings (e.g. {'name': 'resnet18'})")
        self.encoder = encoder_config(self.encoder)
        self.validate()

    def validate(self) -> None:
        check_architecture(self)
        for key, feature in {**self.input_features, **self.output_features}.items():
            if not feature.shape or not all(0 < s <= MAX_SIZE for s in feature.shape):
                raise ActlabError(f"feature {key!r} has shape {list(feature.shape)}; expected sizes in [1, {MAX_SIZE}]")
        if self.image_features and self.dim_model % 4:
            raise ActlabError(f"model.dim_model={self.dim_model} must be a multiple of 4 with cameras")
        if ACTION not in self.output_features:
            raise ActlabError("the policy needs an 'action' output feature")
        if not self.image_features and not ({OBS_STATE, OBS_ENV_STATE} & set(self.input_features)):
            raise ActlabError("ACT needs a camera, observation.state or observation.environment_state input")
        check_action_range(self.action_range, self.action_feature.shape[0])

    @property
    def robot_state_feature(self) -> PolicyFeature | None:
        return self.input_features.get(OBS_STATE)

    @property
    def env_state_feature(self) -> PolicyFeature | None:
        return self.input_features.get(OBS_ENV_STATE)

    @property
    def image_features(self) -> dict[str, PolicyFeature]:
        return {k: f for k, f in self.input_features.items() if f.type == "VISUAL"}

    @property
    def action_feature(self) -> PolicyFeature:
        return self.output_features[ACTION]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ACTPolicyConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ActlabError(f"policy config has unknown keys {sorted(unknown)}")
        return cls(**data)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> ACTPolicyConfig:
        """config.json of a policy folder; anything else is one line naming the file."""
        data = read_json(path, " (an actlab policy config)")
        try:
            return cls.from_dict(data)
        except ActlabError as e:
            raise ActlabError(f"{path}: {e}") from None
        except (TypeError, KeyError, ValueError, AttributeError) as e:
            raise ActlabError(f"{path}: not an actlab policy config ({type(e).__name__}: {e})") from None


def check_architecture(arch: Any) -> None:
    """The rules that need no data (`arch` has ACTArchitecture's fields: the `model` config node or a
    policy config); checked when the config is composed, before a dataset is loaded and when a policy's
    config.json is loaded. The ranges are the fields' own (actlab.config.ranges), checked first."""
    check_ranges(arch, "model.")
    if arch.feedforward_activation not in ACTIVATIONS:
        raise ActlabError(
            f"model.feedforward_activation={arch.feedforward_activation!r} is not one of {list(ACTIVATIONS)}"
        )
    if arch.dim_model % arch.n_heads:
        raise ActlabError(f"model.dim_model={arch.dim_model} is not divisible by model.n_heads={arch.n_heads}")
    if arch.temporal_ensemble_coeff is not None and arch.n_action_steps != 1:
        raise ActlabError(
            "model.temporal_ensemble_coeff needs model.n_action_steps=1 (the policy is queried every "
            f"step); got n_action_steps={arch.n_action_steps}"
        )
    if arch.loss not in LOSSES:
        raise ActlabError(f"model.loss={arch.loss!r} is not one of {list(LOSSES)}")


def check_action_range(action_range: Any, dim: int) -> None:
    """`action_range` (null, or {"min": [...], "max": [...]}, each of the action's length) holds finite numbers."""
    if action_range is None:
        return
    if not isinstance(action_range, dict) or set(action_range) != {"min", "max"}:
        raise ActlabError(f"action_range={action_range!r}; expected {{'min': [...], 'max': [...]}} or null")
    for side in ("min", "max"):
        values = action_range[side]
        if not isinstance(values, list) or len(values) != dim:
            raise ActlabError(f"action_range.{side}={values!r}; expected a list of {dim} numbers (the action's length)")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise ActlabError(f"action_range.{side}={values}; expected finite numbers")
