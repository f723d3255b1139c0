"""Starting from earlier weights: `resume=<run dir>` continues a run (same model settings, same data, its own
weights and training state); `init_from=<policy folder>` starts a new run from another policy's weights
(same features and architecture, this dataset's statistics)."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from actlab.config.checkpoint_files import regular_file
from actlab.config.options import SHAPES_WEIGHTS, keys_with
from actlab.config.policy import ARCHITECTURE_KEYS, WEIGHT_KEYS, ACTPolicyConfig
from actlab.config.resolvers import check_resumable
from actlab.errors import ActlabError
from actlab.features import PolicyFeature
from actlab.policy import ACTPolicy
from actlab.policy.policy import CONFIG_NAME, check_weights

log = logging.getLogger("actlab")


def resume_checkpoint(cfg: DictConfig) -> Path | None:
    """`checkpoints/last` of the `resume` run, after checking that this run continues it (same model
    settings, same data: actlab.config.resolvers.check_resumable)."""
    if not cfg.resume:
        return None
    check_resumable(cfg.resume, cfg)
    log.info(f"Resuming the run in {cfg.resume} from its checkpoints/last/")
    return Path(cfg.resume) / "checkpoints" / "last"


def check_resumed_policy(last: Path, config: ACTPolicyConfig) -> None:
    """The checkpoint's own config.json must describe the policy this run builds: the same features (the
    same data) and architecture, so its weights load one for one."""
    saved = ACTPolicyConfig.load(regular_file(last / CONFIG_NAME))
    difference = feature_difference(config, saved)
    if difference:
        key, new, old = difference
        raise ActlabError(
            f"resume={last.parents[1]}: '{key}' is {new} in this run's data but {old} in {last / CONFIG_NAME}; "
            "resume needs the data the run trained on"
        )
    changed = [k for k in [*ARCHITECTURE_KEYS, "encoder"] if getattr(saved, k) != getattr(config, k)]
    if changed:
        k = changed[0]
        raise ActlabError(
            f"resume={last.parents[1]}: {last / CONFIG_NAME} has {k}={getattr(saved, k)} but this run builds "
            f"{k}={getattr(config, k)}; the checkpoint does not belong to this run"
        )


def init_weights(policy: ACTPolicy, source: str) -> None:
    """`init_from`: fine-tuning starts from the weights of another policy folder (an actlab checkpoint or a
    LeRobot ACT folder) with the same features and architecture; normalisation statistics stay this
    dataset's (as lerobot-train does with --policy.path)."""
    other = ACTPolicy.from_pretrained(source)
    mine, theirs = policy.config, other.config
    difference = feature_difference(mine, theirs)
    if difference:
        key, new, old = difference
        raise ActlabError(
            f"init_from={source}: '{key}' is {new} in this run's data but {old} in that policy; fine-tuning "
            "needs data with the same features"
        )
    for key in WEIGHT_KEYS:
        if getattr(mine, key) != getattr(theirs, key):
            raise ActlabError(
                f"init_from={source}: model.{key} is {getattr(mine, key)} but that policy has {getattr(theirs, key)}; "
                f"pass its architecture (model.{key}={getattr(theirs, key)})"
            )
    for key in encoder_weight_keys(mine, theirs):
        a, b = getattr(mine.encoder, key), getattr(theirs.encoder, key)
        if a != b:
            raise ActlabError(
                f"init_from={source}: encoder.{key} is {a} but that policy has {b}; pass its encoder settings"
            )
    weights = {k.removeprefix("model."): v for k, v in other.state_dict().items() if k.startswith("model.")}
    check_weights(policy.model.state_dict(), weights, Path(source))
    policy.model.load_state_dict(weights)
    log.info(f"Initialised the policy's weights from {source}")


def encoder_weight_keys(mine: ACTPolicyConfig, theirs: ACTPolicyConfig) -> tuple[str, ...]:
    """The encoder keys that shape the weights: `name` alone for two encoders of different kinds."""
    if type(mine.encoder) is not type(theirs.encoder):
        return ("name",)
    return keys_with(mine.encoder, SHAPES_WEIGHTS)


def feature_difference(mine: ACTPolicyConfig, theirs: ACTPolicyConfig) -> tuple[str, str, str] | None:
    """The first feature (input or output) that differs between two policies, described in each."""
    a = {**mine.input_features, **mine.output_features}
    b = {**theirs.input_features, **theirs.output_features}
    for key in sorted({*a, *b}):
        if a.get(key) != b.get(key):
            return key, _feature(a.get(key)), _feature(b.get(key))
    return None


def _feature(feature: PolicyFeature | None) -> str:
    return "absent" if feature is None else f"{feature.type} {list(feature.shape)}"
