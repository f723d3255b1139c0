"""`actlab-export CHECKPOINT OUT [--push-to-hub REPO_ID]` / `python -m actlab.export.lerobot`: an actlab
policy as a LeRobot ACT pretrained folder, for lerobot-record, lerobot-eval or fine-tuning with lerobot-train
(`--policy.path=OUT`).

The folder is written with LeRobot's own classes (ACTConfig, ACTPolicy, make_pre_post_processors and their
save_pretrained), so its files are exactly what LeRobot writes. Before OUT is published, LeRobot reloads it
strictly and its select_action is compared with actlab's on random observations; a weight or statistic that
is not finite, a difference above 1e-4 (action units) or not finite, an OUT that cannot be written, or any
other failure leaves nothing at OUT.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from actlab.config.encoders import ResNet18EncoderConfig
from actlab.config.policy import ACTPolicyConfig
from actlab.errors import ActlabError, reason
from actlab.features import OBS_ENV_STATE, OBS_STATE
from actlab.io import atomic_dir, remove_stale
from actlab.lerobot_io.features import SHARED_FIELDS, to_lerobot_features
from actlab.policy.policy import ACTPolicy

# actlab normalises the environment state too; LeRobot's default mapping leaves it raw.
NORMALIZED_TYPES = ("VISUAL", "STATE", "ENV", "ACTION")
TOLERANCE = 1e-4  # largest accepted |action difference| between actlab and the reloaded LeRobot policy


def check_exportable(config: ACTPolicyConfig) -> None:
    """Refuses, with one line naming the setting, what LeRobot's ACT cannot represent."""
    encoder = config.encoder
    if not isinstance(encoder, ResNet18EncoderConfig):
        raise ActlabError(
            f"cannot export encoder.name={encoder.name!r}: LeRobot's ACT is exported with its resnet18 backbone "
            "only; train with encoder=resnet18"
        )
    if encoder.norm != "frozen_batch_norm":
        raise ActlabError(
            f"cannot export encoder.norm={encoder.norm!r}: LeRobot's ACT backbone uses frozen batch norm; "
            "train with encoder.norm=frozen_batch_norm"
        )
    if encoder.feature_layer != "layer4":
        raise ActlabError(
            f"cannot export encoder.feature_layer={encoder.feature_layer!r}: LeRobot's ACT backbone ends at layer4; "
            "train with encoder.feature_layer=layer4"
        )
    if encoder.fuse != "none":
        raise ActlabError(
            f"cannot export encoder.fuse={encoder.fuse!r}: LeRobot's ACT gives every camera one token per "
            "feature-map cell; train with encoder.fuse=none"
        )
    if config.n_obs_steps != 1:
        raise ActlabError(
            f"cannot export model.n_obs_steps={config.n_obs_steps}: LeRobot's ACT reads the current observation "
            "only; train with model.n_obs_steps=1"
        )
    if config.loss != "l1":
        raise ActlabError(
            f"cannot export model.loss={config.loss!r}: LeRobot's ACT trains with the L1 loss only; train with "
            "model.loss=l1"
        )
    if OBS_STATE not in config.input_features:
        raise ActlabError(
            f"cannot export a policy without {OBS_STATE}: LeRobot's ACT reads it on every call; train on a "
            "dataset with a robot state"
        )
    if not config.image_features and OBS_ENV_STATE not in config.input_features:
        raise ActlabError(
            f"cannot export a policy that reads only {OBS_STATE}: LeRobot's ACT needs a camera or "
            f"{OBS_ENV_STATE} as well"
        )


def lerobot_config(config: ACTPolicyConfig) -> Any:
    """LeRobot's ACTConfig for an actlab policy config (the caller has checked it is exportable).

    No backbone weights are named: the exported weights carry them, and LeRobot would otherwise download
    ImageNet weights only to overwrite them."""
    from lerobot.configs.types import NormalizationMode
    from lerobot.policies.act.configuration_act import ACTConfig

    return ACTConfig(
        input_features=to_lerobot_features(config.input_features),
        output_features=to_lerobot_features(config.output_features),
        **{name: getattr(config, name) for name in SHARED_FIELDS},
        vision_backbone="resnet18",
        pretrained_backbone_weights=None,
        replace_final_stride_with_dilation=config.encoder.replace_final_stride_with_dilation,
        device="cpu",
        normalization_mapping={kind: NormalizationMode.MEAN_STD for kind in NORMALIZED_TYPES},
    )


def normalizer_stats(policy: ACTPolicy) -> dict[str, dict[str, Tensor]]:
    """The mean/std actlab's Normalizer uses for every feature (images per channel, (3, 1, 1)): the dataset's
    statistics, or the backbone's own image statistics where it brought them."""
    stats = {}
    for key in policy.normalizer.features:
        mean, std = policy.normalizer.mean_std(key)
        stats[key] = {"mean": mean.detach().cpu().clone(), "std": std.detach().cpu().clone()}
    return stats


def to_lerobot(policy: ACTPolicy) -> tuple[Any, Any, Any]:
    """LeRobot's ACTPolicy (eval mode) with `policy`'s architecture and weights, and LeRobot's pre- and
    post-processors with its normalisation statistics: `post(lerobot_policy.select_action(pre(obs)))` is
    `policy.select_action(obs)` up to float rounding."""
    check_exportable(policy.config)
    from lerobot.policies.act.modeling_act import ACTPolicy as LeRobotACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    config = lerobot_config(policy.config)
    lerobot_policy = LeRobotACTPolicy(config)
    lerobot_policy.load_state_dict(
        {k: v for k, v in policy.state_dict().items() if k.startswith("model.")}, strict=True
    )
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=normalizer_stats(policy))
    return lerobot_policy.eval(), preprocessor, postprocessor


def random_observations(policy: ACTPolicy, steps: int, batch: int, seed: int = 0) -> list[dict[str, Tensor]]:
    """Raw observations as a robot gives them: images in [0, 1], vectors around the dataset's statistics."""
    generator = torch.Generator().manual_seed(seed)
    observations = []
    for _ in range(steps):
        observation = {}
        for key, feature in policy.config.input_features.items():
            if feature.type == "VISUAL":
                observation[key] = torch.rand(batch, *feature.shape, generator=generator)
            else:
                mean, std = policy.normalizer.mean_std(key)
                observation[key] = mean + std * torch.randn(batch, *feature.shape, generator=generator)
        observations.append(observation)
    return observations


def compare_with_lerobot(policy: ACTPolicy, folder: Path, steps: int, batch: int = 2) -> float:
    """Max |action difference| (action units) between `policy` and the LeRobot policy in `folder`, loaded as
    LeRobot's tools load it, over `steps` select_action calls on random observations.

    LeRobot's from_pretrained is not strict by default: a key mismatch would silently keep random weights."""
    from lerobot.policies.act.modeling_act import ACTPolicy as LeRobotACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    with contextlib.redirect_stdout(io.StringIO()):  # LeRobot prints "Loading weights from local directory"
        lerobot_policy = LeRobotACTPolicy.from_pretrained(folder, strict=True)
    preprocessor, postprocessor = make_pre_post_processors(lerobot_policy.config, pretrained_path=str(folder))
    policy.reset()
    lerobot_policy.reset()
    diff = 0.0
    for observation in random_observations(policy, steps, batch):
        ours = policy.select_action(observation)
        theirs = postprocessor(lerobot_policy.select_action(preprocessor(dict(observation))))
        step = float((ours - theirs).abs().max())
        if math.isnan(step):  # max(diff, nan) would keep diff
            diff = step
            break
        diff = max(diff, step)
    policy.reset()
    return diff


def check_finite(policy: ACTPolicy, checkpoint: str | Path) -> None:
    """Refuses, naming the first one, a weight or normalisation statistic that is NaN or infinite."""
    for name, tensor in policy.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ActlabError(
                f"cannot export {checkpoint}: its tensor '{name}' is not finite (NaN or inf); nothing was written"
            )


def export_policy(checkpoint: str | Path, out: str | Path) -> float:
    """Writes the policy folder `checkpoint` (actlab's, or a LeRobot one) as a LeRobot ACT folder `out`, checked
    by reloading it with LeRobot; returns the max |action difference| found. Nothing is left at `out` when a
    step fails."""
    out = Path(out)
    if out.exists():
        raise ActlabError(f"{out} already exists; choose a new folder")
    policy = ACTPolicy.from_pretrained(checkpoint)
    check_finite(policy, checkpoint)
    lerobot_policy, preprocessor, postprocessor = to_lerobot(policy)
    # Past the queue's refill, and several ensembled steps with temporal ensembling.
    steps = max(policy.config.n_action_steps + 1, 4)
    try:
        remove_stale(out.parent, out.name)
        with atomic_dir(out) as tmp:
            for part in (lerobot_policy, preprocessor, postprocessor):
                part.save_pretrained(tmp)
            diff = compare_with_lerobot(policy, tmp, steps)
            if not diff <= TOLERANCE:  # also a NaN difference
                raise ActlabError(
                    f"LeRobot's reloaded policy differs from {checkpoint} by up to {diff:.2e} in action units "
                    f"(limit {TOLERANCE:.0e}); nothing was written"
                )
    except OSError as e:  # a read-only or virtual file system (/proc), a file where a folder should be, a full disk
        if isinstance(e, FileExistsError) and out.exists():
            raise ActlabError(f"{out} already exists; choose a new folder") from None
        raise ActlabError(f"cannot write {out} ({reason(e)}); nothing was written") from None
    return diff


def push_to_hub(folder: str | Path, repo_id: str) -> str:
    """Uploads `folder` to the Hugging Face model repository `repo_id` (created when missing); returns its URL."""
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        url = api.create_repo(repo_id=repo_id, repo_type="model", exist_ok=True)
        api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), repo_type="model", commit_message="Upload ACT policy (actlab)"
        )
    except Exception as e:  # noqa: BLE001 - offline, authentication, network and hub errors all end the same way
        raise ActlabError(
            f"pushing to the Hugging Face Hub as {repo_id} failed ({reason(e)}); {folder} is complete locally"
        ) from None
    return str(url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="actlab-export",
        description="Write an actlab policy as a LeRobot ACT folder (checked by reloading it with LeRobot).",
    )
    parser.add_argument("checkpoint", type=Path, help="policy folder (config.json + model.safetensors)")
    parser.add_argument("out", type=Path, help="new folder for the LeRobot policy")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload OUT to this Hugging Face model repo")
    args = parser.parse_args(argv)
    with one_line_errors():
        diff = export_policy(args.checkpoint, args.out)
        print(f"wrote {args.out}: {', '.join(sorted(p.name for p in args.out.iterdir()))}")
        print(
            f"checked: LeRobot reloads it strictly; select_action max |action difference| vs actlab {diff:.1e} "
            f"(action units, limit {TOLERANCE:.0e}); use it with --policy.path={args.out}"
        )
        push_if_asked(args.out, args.push_to_hub)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """The export commands' rule for bad input: one line on stderr, exit status 2."""
    try:
        yield
    except ActlabError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def push_if_asked(out: Path, repo_id: str | None) -> None:
    if repo_id:
        print(f"pushed to {push_to_hub(out, repo_id)}")


if __name__ == "__main__":
    main()
