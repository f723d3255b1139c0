"""Feature descriptions in LeRobot's vocabulary: dataset specs for LeRobot's writer, and policy features
(`lerobot.configs.types.PolicyFeature`) for LeRobot's ACTConfig."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from actlab.config.policy import ACTArchitecture
from actlab.errors import ActlabError
from actlab.features import PolicyFeature

# ACT hyper-parameters with the same name and meaning in actlab and LeRobot (LeRobot's ACT has no `loss`).
SHARED_FIELDS = tuple(f.name for f in fields(ACTArchitecture) if f.name != "loss")


def lerobot_feature_specs(features: dict[str, PolicyFeature], video: bool = True) -> dict[str, dict]:
    """LeRobot writer feature specs (`LeRobotDataset.create(features=...)`) for actlab features; cameras
    as mp4 videos or png images, channels last."""
    specs = {}
    for key, feature in features.items():
        if feature.type == "VISUAL":
            channels, height, width = feature.shape
            specs[key] = {
                "dtype": "video" if video else "image",
                "shape": (height, width, channels),
                "names": ["height", "width", "channels"],
            }
        else:
            specs[key] = {"dtype": "float32", "shape": tuple(feature.shape), "names": None}
    return specs


def to_lerobot_features(features: dict[str, PolicyFeature]) -> dict[str, Any]:
    """actlab features as LeRobot policy features (same keys, types and shapes)."""
    from lerobot.configs.types import FeatureType
    from lerobot.configs.types import PolicyFeature as LeRobotFeature

    return {key: LeRobotFeature(FeatureType[f.type], tuple(f.shape)) for key, f in features.items()}


def from_lerobot_features(features: dict[str, Any], source: str) -> dict[str, PolicyFeature]:
    """LeRobot policy features (objects or their JSON form) as actlab features."""
    out = {}
    for key, feature in features.items():
        kind = feature["type"] if isinstance(feature, dict) else feature.type
        kind = getattr(kind, "value", kind)
        shape = feature["shape"] if isinstance(feature, dict) else feature.shape
        if kind not in ("STATE", "ENV", "VISUAL", "ACTION"):
            raise ActlabError(f"{source}: feature '{key}' has type {kind}, which actlab's ACT does not read")
        out[key] = PolicyFeature(kind, tuple(int(s) for s in shape))
    return out
