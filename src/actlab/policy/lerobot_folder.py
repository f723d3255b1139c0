"""A LeRobot ACT pretrained folder read as actlab's policy config, statistics and weights (what
`ACTPolicy.from_pretrained` builds its policy from).

Two layouts:
- lerobot 0.4: config.json, model.safetensors (`model.*` only) and the processors, policy_preprocessor.json /
  policy_postprocessor.json with their normaliser state files; only LeRobot's own ACT steps are accepted and
  only the (un)normaliser is built, with LeRobot's class (actlab.lerobot_io.processors).
- lerobot <= 0.3 (e.g. lerobot/act_aloha_sim_transfer_cube_human): no processors; model.safetensors also
  holds the statistics as `normalize_inputs.buffer_<key with . as _>.<stat>` and
  `unnormalize_outputs.buffer_action.<stat>` (and `normalize_targets.*`, the same action statistics).

actlab normalises every feature as (x - mean) / (std + EPS); each of LeRobot's modes (MEAN_STD, MIN_MAX,
QUANTILES, QUANTILE10, IDENTITY) is an affine map of that form and is converted to it exactly. Inputs take
the statistics of LeRobot's normaliser, the action those of its unnormaliser (the step that decides the
actions); LeRobot unnormalises MEAN_STD without its eps, actlab with it (so that the same statistics
normalise training targets), a difference of 1e-8 times the normalised action.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from actlab.config.policy import ACTIVATIONS, ACTPolicyConfig
from actlab.errors import ActlabError, reason
from actlab.features import PolicyFeature
from actlab.io import read_json
from actlab.lerobot_io.features import SHARED_FIELDS, from_lerobot_features
from actlab.lerobot_io.processors import load_normalizer_step
from actlab.policy.files import CONFIG_NAME, WEIGHTS_NAME, read_weights
from actlab.policy.normalize import EPS

PREPROCESSOR = "policy_preprocessor.json"
POSTPROCESSOR = "policy_postprocessor.json"
OLD_PREFIXES = ("normalize_inputs.", "normalize_targets.", "unnormalize_outputs.")
OLD_EPS = 1e-8  # lerobot <= 0.3 divided by (std + 1e-8) and (max - min + 1e-8)
# Modes that map [low, high] onto [-1, 1], with the statistics that give low and high.
RANGE_MODES = {"MIN_MAX": ("min", "max"), "QUANTILES": ("q01", "q99"), "QUANTILE10": ("q10", "q90")}
MODES = ("IDENTITY", "MEAN_STD", *RANGE_MODES)
Stats = dict[str, np.ndarray]


def is_lerobot_policy(directory: str | Path) -> bool:
    """Whether config.json names a policy `type`, as LeRobot's do (actlab's config has no such key); an
    unreadable config.json is left to actlab's own reader and its error."""
    try:
        return "type" in read_json(Path(directory) / CONFIG_NAME)
    except ActlabError:
        return False


def read_lerobot_policy(directory: str | Path) -> tuple[ACTPolicyConfig, dict[str, Stats], dict[str, Any]]:
    """The LeRobot ACT policy in `directory`: actlab's config for it, the statistics that make actlab's
    normalisation give LeRobot's actions for the same raw observations, and its `model.*` weights."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    data = read_json(config_path)
    config = policy_config(data, config_path)
    weights = read_weights(weights_path)
    if (directory / PREPROCESSOR).is_file() or not any(k.startswith(OLD_PREFIXES) for k in weights):
        stats = processor_stats(directory, config)
    else:
        stats = buffer_stats(weights, data.get("normalization_mapping") or {}, config, weights_path)
    return config, stats, {k: v for k, v in weights.items() if not k.startswith(OLD_PREFIXES)}


def policy_config(data: dict[str, Any], source: Path) -> ACTPolicyConfig:
    """actlab's config for LeRobot's ACT config.json: the same architecture names; keys actlab has no use
    for (optimizer_*, device, use_amp, pretrained_backbone_weights, ...) are ignored."""
    kind = data.get("type")
    if kind != "act":
        raise ActlabError(f"{source}: a LeRobot {kind!r} policy; actlab reads LeRobot's ACT ('type': 'act') only")
    backbone = data.get("vision_backbone", "resnet18")
    if backbone != "resnet18":
        raise ActlabError(f"{source}: vision_backbone={backbone!r}; actlab reads LeRobot's ACT with resnet18 only")
    activation = data.get("feedforward_activation", "relu")
    if activation not in ACTIVATIONS:
        raise ActlabError(f"{source}: feedforward_activation={activation!r} is not one of {sorted(ACTIVATIONS)}")
    for key in ("input_features", "output_features"):
        if not isinstance(data.get(key), dict):
            raise ActlabError(f"{source}: no '{key}'; expected the config.json of a LeRobot ACT policy")
    try:
        return ACTPolicyConfig(
            input_features=from_lerobot_features(data["input_features"], str(source)),
            output_features=from_lerobot_features(data["output_features"], str(source)),
            encoder={
                "name": "resnet18",
                "pretrained": None,  # the weights come from model.safetensors
                "replace_final_stride_with_dilation": bool(data.get("replace_final_stride_with_dilation", False)),
            },
            **{name: data[name] for name in SHARED_FIELDS if name in data},
        )
    except ActlabError as e:
        raise ActlabError(f"{source}: {e}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise ActlabError(f"{source}: not a LeRobot ACT config ({reason(e)})") from None


def processor_stats(directory: Path, config: ACTPolicyConfig) -> dict[str, Stats]:
    """Statistics of the lerobot 0.4 layout: inputs from the preprocessor's normaliser step, the action from
    the postprocessor's unnormaliser step (actlab.lerobot_io.processors: no other step is built, and a folder
    naming anything but LeRobot's own ACT steps is refused before it is imported)."""
    normalizer = processor_step(directory, PREPROCESSOR, "normalizer_processor")
    unnormalizer = processor_step(directory, POSTPROCESSOR, "unnormalizer_processor")
    stats = {
        key: step_stats(normalizer, key, f, True, directory / PREPROCESSOR) for key, f in config.input_features.items()
    }
    for key, feature in config.output_features.items():
        stats[key] = step_stats(unnormalizer, key, feature, False, directory / POSTPROCESSOR)
    return stats


def processor_step(directory: Path, filename: str, name: str) -> Any:
    """The first `name` step of the processor pipeline `filename`, as LeRobot's class builds it."""
    path = directory / filename
    if not path.is_file():
        raise ActlabError(
            f"{path} is missing: a LeRobot ACT folder has {PREPROCESSOR} and {POSTPROCESSOR} (lerobot 0.4), or "
            f"normalisation buffers in {WEIGHTS_NAME} (lerobot <= 0.3)"
        )
    return load_normalizer_step(path, name)


def step_stats(step: Any, key: str, feature: PolicyFeature, is_input: bool, source: Path) -> Stats:
    """actlab's mean/std for `key` as a LeRobot 0.4 (un)normaliser step treats it: its mode for the feature's
    type, identity for a feature the step does not know, has no statistics for, or leaves out."""
    lerobot_feature = step.features.get(key)
    selected = step.normalize_observation_keys is None or not is_input or key in step.normalize_observation_keys
    if lerobot_feature is None or key not in step.stats or not selected:
        return identity_stats(feature)
    mode = step.norm_map.get(lerobot_feature.type)
    mode = mode.value if mode is not None else "IDENTITY"
    return mean_std(mode, step.stats[key], feature, float(step.eps), 0.0, is_input, f"{source}: '{key}'")


def buffer_stats(
    weights: Mapping[str, Any], modes: Mapping[str, str], config: ACTPolicyConfig, source: Path
) -> dict[str, Stats]:
    """Statistics of the lerobot <= 0.3 layout, from the normalisation buffers in model.safetensors."""
    stats = {}
    for prefix, features, range_eps, is_input in (
        ("normalize_inputs", config.input_features, OLD_EPS, True),
        ("unnormalize_outputs", config.output_features, 0.0, False),  # (t + 1) / 2 * (max - min) + min
    ):
        for key, feature in features.items():
            buffer = f"{prefix}.buffer_{key.replace('.', '_')}"
            values = {k.removeprefix(buffer + "."): v for k, v in weights.items() if k.startswith(buffer + ".")}
            what = f"{source}: '{buffer}'"
            mode = modes.get(feature.type, "IDENTITY")
            stats[key] = mean_std(mode, values, feature, OLD_EPS, range_eps, is_input, what)
    return stats


def mean_std(
    mode: str,
    stats: Mapping[str, Any],
    feature: PolicyFeature,
    eps: float,
    range_eps: float,
    is_input: bool,
    what: str,
) -> Stats:
    """actlab's (mean, std) for a feature LeRobot normalises with `mode`, `eps` and, for range modes, a
    range of (high - low + range_eps). actlab divides by std + EPS, so std = LeRobot's divisor - EPS."""
    if mode not in MODES:
        raise ActlabError(f"{what}: normalization mode {mode!r} is not one of {list(MODES)}")
    if mode == "IDENTITY":
        return identity_stats(feature)
    if mode == "MEAN_STD":
        mean, divisor = _stat(stats, "mean", mode, what), _stat(stats, "std", mode, what) + eps
    else:
        low, high = (_stat(stats, name, mode, what) for name in RANGE_MODES[mode])
        span = high - low + range_eps
        half = np.where(span == 0, eps, span) / 2  # lerobot 0.4 divides by eps where the range is empty
        if is_input:
            # LeRobot maps a constant input (high == low) to -1; so does mean = low + 1, std = 1, whereas
            # mean = low + eps / 2 rounds to low in float32 and would give 0.
            half = np.where(high == low, 1.0, half)
        mean, divisor = low + half, half
    return {"mean": mean, "std": divisor - EPS}


def _stat(stats: Mapping[str, Any], name: str, mode: str, what: str) -> np.ndarray:
    if name not in stats:
        raise ActlabError(f"{what} has no '{name}', which {mode} normalisation needs")
    value = np.asarray(stats[name], dtype=np.float64)
    if not np.isfinite(value).all():
        raise ActlabError(
            f"{what} has a '{name}' that is not finite (a LeRobot policy saved without dataset statistics?)"
        )
    return value


def identity_stats(feature: PolicyFeature) -> Stats:
    size = feature.shape[0] if feature.type == "VISUAL" else int(np.prod(feature.shape))  # images per channel
    return {"mean": np.zeros(size), "std": np.ones(size)}
