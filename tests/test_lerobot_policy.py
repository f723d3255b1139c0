"""Policies move between actlab and LeRobot: `actlab-export` writes LeRobot's own pretrained folder (checked by
LeRobot reloading it), and `ACTPolicy.from_pretrained` reads LeRobot's folders of both layouts; either way
the actions are LeRobot's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from actlab.errors import ActlabError
from actlab.export.lerobot import check_exportable, export_policy, main, push_to_hub, random_observations
from actlab.policy import ACTPolicy, ACTPolicyConfig, PolicyFeature
from actlab.policy.lerobot_folder import identity_stats
from tests.conftest import FAST, REPO, compose_train, write_lerobot_dataset

EXPORTED_FILES = {
    "config.json",
    "model.safetensors",
    "policy_preprocessor.json",
    "policy_preprocessor_step_3_normalizer_processor.safetensors",
    "policy_postprocessor.json",
    "policy_postprocessor_step_0_unnormalizer_processor.safetensors",
}
TINY_LEROBOT = dict(
    chunk_size=6,
    n_action_steps=3,
    dim_model=32,
    n_heads=4,
    dim_feedforward=64,
    n_encoder_layers=1,
    n_vae_encoder_layers=1,
    latent_dim=4,
)


# ----------------------------------------------------------------------------------- helpers
def train_checkpoint(tmp: Path, root: Path, *overrides: str) -> Path:
    """A tiny actlab policy trained for two steps (tests/test_train.py's recipe); its final checkpoint."""
    from actlab.training.train import train

    cfg = compose_train(
        [
            f"dataset.root={root}",
            "model=tiny",
            "encoder.pretrained=null",
            "dataset.batch_size=2",
            "trainer.max_steps=2",
            "checkpoint.save_freq=2",
            *FAST,
            *overrides,
        ],
        tmp,
    )
    train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "final"


def lerobot_actions(policy, pre, post, observations) -> list[torch.Tensor]:
    policy.reset()
    return [post(policy.select_action(pre(dict(obs)))) for obs in observations]


def actlab_actions(policy: ACTPolicy, observations) -> list[torch.Tensor]:
    policy.reset()
    return [policy.select_action(obs) for obs in observations]


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def load_lerobot(folder: Path):
    """LeRobot's policy (strict) and processors from a pretrained folder, as lerobot-record loads them."""
    from lerobot.policies.act.modeling_act import ACTPolicy as LeRobotACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    policy = LeRobotACTPolicy.from_pretrained(folder, strict=True)
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(folder))
    return policy, pre, post


@pytest.fixture(scope="module")
def camera_dataset(tmp_path_factory) -> Path:
    return write_lerobot_dataset(tmp_path_factory.mktemp("data") / "front", episodes=2, frames=8, cameras=("front",))


@pytest.fixture(scope="module")
def camera_checkpoint(tmp_path_factory, camera_dataset) -> Path:
    return train_checkpoint(tmp_path_factory.mktemp("camera"), camera_dataset)


@pytest.fixture(scope="module")
def camera_export(tmp_path_factory, camera_checkpoint) -> Path:
    out = tmp_path_factory.mktemp("export") / "lerobot_act"
    assert export_policy(camera_checkpoint, out) <= 1e-4
    return out


# ----------------------------------------------------------------------------------- export
@pytest.mark.slow
def test_export_writes_lerobot_files_that_lerobot_reloads_with_the_same_actions(camera_checkpoint, camera_export):
    assert {p.name for p in camera_export.iterdir()} == EXPORTED_FILES
    config = json.loads((camera_export / "config.json").read_text())
    assert config["type"] == "act" and config["pretrained_backbone_weights"] is None
    assert config["chunk_size"] == 20 and config["n_action_steps"] == 10 and config["dim_model"] == 128
    ours = ACTPolicy.from_pretrained(camera_checkpoint)
    observations = random_observations(ours, steps=12, batch=2, seed=3)  # past the refill of the queue
    theirs = lerobot_actions(*load_lerobot(camera_export), observations)
    assert max_diff(actlab_actions(ours, observations), theirs) <= 1e-4


@pytest.mark.slow
def test_lerobots_make_policy_loads_the_export(camera_checkpoint, camera_export, camera_dataset):
    """The path lerobot-train / lerobot-record / lerobot-eval take with --policy.path=OUT."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    cfg = PreTrainedConfig.from_pretrained(camera_export)
    cfg.pretrained_path = camera_export
    meta = LeRobotDatasetMetadata(f"test/{camera_dataset.name}", root=camera_dataset)
    policy = make_policy(cfg, ds_meta=meta)
    pre, post = make_pre_post_processors(cfg, pretrained_path=str(camera_export))
    ours = ACTPolicy.from_pretrained(camera_checkpoint)
    observations = random_observations(ours, steps=3, batch=2, seed=4)
    assert max_diff(actlab_actions(ours, observations), lerobot_actions(policy, pre, post, observations)) <= 1e-4


@pytest.mark.slow
def test_round_trip_actlab_lerobot_actlab_gives_identical_actions(camera_checkpoint, camera_export):
    original = ACTPolicy.from_pretrained(camera_checkpoint)
    imported = ACTPolicy.from_pretrained(camera_export)
    assert imported.config.input_features == original.config.input_features
    observations = random_observations(original, steps=3, batch=2, seed=5)
    for obs in observations:
        assert torch.equal(imported.predict_action_chunk(obs), original.predict_action_chunk(obs))


@pytest.mark.slow
def test_state_only_policy_exports(tmp_path):
    root = write_lerobot_dataset(tmp_path / "state", episodes=2, frames=8)
    checkpoint = train_checkpoint(tmp_path, root)
    assert export_policy(checkpoint, tmp_path / "out") <= 1e-4
    ours = ACTPolicy.from_pretrained(checkpoint)
    assert not ours.config.image_features
    observations = random_observations(ours, steps=11, batch=3, seed=6)
    theirs = lerobot_actions(*load_lerobot(tmp_path / "out"), observations)
    assert max_diff(actlab_actions(ours, observations), theirs) <= 1e-4


@pytest.mark.slow
def test_temporal_ensembling_policy_exports_and_ensembles_like_lerobot(tmp_path, camera_dataset):
    checkpoint = train_checkpoint(
        tmp_path, camera_dataset, "model.temporal_ensemble_coeff=0.01", "model.n_action_steps=1"
    )
    export_policy(checkpoint, tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["temporal_ensemble_coeff"] == 0.01 and config["n_action_steps"] == 1
    ours = ACTPolicy.from_pretrained(checkpoint)
    observations = random_observations(ours, steps=6, batch=2, seed=7)
    theirs = lerobot_actions(*load_lerobot(tmp_path / "out"), observations)
    assert max_diff(actlab_actions(ours, observations), theirs) <= 1e-4


@pytest.mark.slow
def test_cli_exports_and_pushes_to_the_hub(tmp_path, camera_checkpoint, monkeypatch, capsys):
    import huggingface_hub

    calls = []

    def create_repo(self, repo_id, **kw):
        calls.append(("create_repo", repo_id, kw))
        return f"https://hf.co/{repo_id}"

    def upload_folder(self, **kw):
        calls.append(("upload_folder", kw["repo_id"], kw))

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    out = tmp_path / "out"
    main([str(camera_checkpoint), str(out), "--push-to-hub", "someone/act-test"])
    assert [(name, repo) for name, repo, _ in calls] == [
        ("create_repo", "someone/act-test"),
        ("upload_folder", "someone/act-test"),
    ]
    assert calls[0][2]["exist_ok"] and Path(calls[1][2]["folder_path"]) == out
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"wrote {out}: {', '.join(sorted(EXPORTED_FILES))}"
    assert "max |action difference| vs actlab" in lines[1] and lines[2] == "pushed to https://hf.co/someone/act-test"


def test_push_to_hub_offline_is_one_line_and_keeps_the_folder(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import OfflineModeIsEnabled

    def offline(self, **kw):
        raise OfflineModeIsEnabled("Cannot reach https://huggingface.co: offline mode is enabled.")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", offline)
    (tmp_path / "out").mkdir()
    with pytest.raises(ActlabError) as e:
        push_to_hub(tmp_path / "out", "someone/act-test")
    assert str(e.value) == (
        "pushing to the Hugging Face Hub as someone/act-test failed (OfflineModeIsEnabled: Cannot reach "
        f"https://huggingface.co: offline mode is enabled.); {tmp_path / 'out'} is complete locally"
    )


# ----------------------------------------------------------------------------------- refusals
def tiny_config(cameras=("top",), state=True, env=True, encoder=None, **overrides) -> ACTPolicyConfig:
    inputs = {}
    if state:
        inputs["observation.state"] = PolicyFeature("STATE", (6,))
    if env:
        inputs["observation.environment_state"] = PolicyFeature("ENV", (5,))
    inputs.update({f"observation.images.{c}": PolicyFeature("VISUAL", (3, 32, 32)) for c in cameras})
    return ACTPolicyConfig(
        input_features=inputs,
        output_features={"action": PolicyFeature("ACTION", (4,))},
        encoder=encoder or {"name": "resnet18", "pretrained": None},
        **{**TINY_LEROBOT, **overrides},
    )


@pytest.mark.parametrize(
    "config,message",
    [
        (
            lambda: tiny_config(encoder={"name": "clip", "pretrained": None, "fuse": "mean"}),
            "cannot export encoder.name='clip': LeRobot's ACT is exported with its resnet18 backbone only; "
            "train with encoder=resnet18",
        ),
        (
            lambda: tiny_config(encoder={"name": "pri3d", "pretrained": None, "depth": 18}),
            "cannot export encoder.name='pri3d': LeRobot's ACT is exported with its resnet18 backbone only; "
            "train with encoder=resnet18",
        ),
        (
            lambda: tiny_config(encoder={"name": "resnet18", "pretrained": None, "norm": "group_norm"}),
            "cannot export encoder.norm='group_norm': LeRobot's ACT backbone uses frozen batch norm; train with "
            "encoder.norm=frozen_batch_norm",
        ),
        (
            lambda: tiny_config(encoder={"name": "resnet18", "pretrained": None, "feature_layer": "layer3"}),
            "cannot export encoder.feature_layer='layer3': LeRobot's ACT backbone ends at layer4; train with "
            "encoder.feature_layer=layer4",
        ),
        (
            lambda: tiny_config(encoder={"name": "resnet18", "pretrained": None, "fuse": "gated"}),
            "cannot export encoder.fuse='gated': LeRobot's ACT gives every camera one token per feature-map cell; "
            "train with encoder.fuse=none",
        ),
        (
            lambda: tiny_config(n_obs_steps=2),
            "cannot export model.n_obs_steps=2: LeRobot's ACT reads the current observation only; train with "
            "model.n_obs_steps=1",
        ),
        (
            lambda: tiny_config(loss="l2"),
            "cannot export model.loss='l2': LeRobot's ACT trains with the L1 loss only; train with model.loss=l1",
        ),
        (
            lambda: tiny_config(state=False),
            "cannot export a policy without observation.state: LeRobot's ACT reads it on every call; train on a "
            "dataset with a robot state",
        ),
        (
            lambda: tiny_config(cameras=(), env=False),
            "cannot export a policy that reads only observation.state: LeRobot's ACT needs a camera or "
            "observation.environment_state as well",
        ),
    ],
    ids=["clip", "pri3d", "group_norm", "layer3", "fuse", "n_obs_steps", "l2", "no_state", "state_only"],
)
def test_what_lerobot_cannot_represent_is_refused_with_one_line(config, message):
    with pytest.raises(ActlabError) as e:
        check_exportable(config())
    assert str(e.value) == message


def test_refused_export_and_existing_out_write_nothing(tmp_path):
    config = tiny_config(loss="l2")
    stats = {k: identity_stats(f) for k, f in {**config.input_features, **config.output_features}.items()}
    ACTPolicy(config, stats).save_pretrained(tmp_path / "l2")
    with pytest.raises(ActlabError, match="cannot export model.loss='l2'"):
        export_policy(tmp_path / "l2", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l2"]

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ActlabError) as e:
        export_policy(tmp_path / "l2", tmp_path / "out")
    assert str(e.value) == f"{tmp_path / 'out'} already exists; choose a new folder"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_cli_refusal_is_one_line_with_exit_status_2(tmp_path):
    config = tiny_config(n_obs_steps=2)
    stats = {k: identity_stats(f) for k, f in {**config.input_features, **config.output_features}.items()}
    ACTPolicy(config, stats).save_pretrained(tmp_path / "history")
    result = subprocess.run(
        [sys.executable, "-m", "actlab.export.lerobot", str(tmp_path / "history"), str(tmp_path / "out")],
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: cannot export model.n_obs_steps=2: LeRobot's ACT reads the current observation only; train with "
        "model.n_obs_steps=1\n"
    )
    assert "Traceback" not in result.stdout + result.stderr and not (tmp_path / "out").exists()


def test_actlab_policy_does_not_import_lerobot():
    code = "import sys, actlab.policy; print(sorted(m for m in sys.modules if m.startswith('lerobot')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.strip() == "[]"


# ----------------------------------------------------------------------------------- import
def lerobot_features(cameras=("top", "wrist")):
    from actlab.lerobot_io.features import to_lerobot_features

    return to_lerobot_features(tiny_config(cameras=cameras).input_features), to_lerobot_features(
        {"action": PolicyFeature("ACTION", (4,))}
    )


def dataset_stats(rng: np.random.Generator, constant_state_dim: float = 0.7) -> dict[str, dict[str, torch.Tensor]]:
    """Every statistic LeRobot computes, per feature; dimension 0 of the state is constant (min == max)."""

    def of(shape):
        mean = rng.uniform(-1, 1, shape)
        low, high = mean - rng.uniform(0.5, 2, shape), mean + rng.uniform(0.5, 2, shape)
        values = {
            "mean": mean,
            "std": rng.uniform(0.2, 2, shape),
            "min": low,
            "max": high,
            "q01": low + 0.1,
            "q99": high - 0.1,
        }
        return {k: torch.tensor(v, dtype=torch.float32) for k, v in values.items()}

    stats = {
        "observation.state": of((6,)),
        "observation.environment_state": of((5,)),
        "observation.images.top": of((3, 1, 1)),
        "observation.images.wrist": of((3, 1, 1)),
        "action": of((4,)),
    }
    stats["observation.state"]["min"][0] = stats["observation.state"]["max"][0] = constant_state_dim
    return stats


def lerobot_policy(normalization_mapping: dict[str, str], seed: int = 0):
    """LeRobot's own ACTPolicy (random weights) and processors with statistics, built by LeRobot's code."""
    from lerobot.configs.types import NormalizationMode
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy as LeRobotACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    torch.manual_seed(seed)
    inputs, outputs = lerobot_features()
    config = ACTConfig(
        input_features=inputs,
        output_features=outputs,
        pretrained_backbone_weights=None,
        device="cpu",
        normalization_mapping={k: NormalizationMode[v] for k, v in normalization_mapping.items()},
        **TINY_LEROBOT,
    )
    # Features LeRobot leaves raw (e.g. ENV in its default mapping) come without statistics.
    features = {**inputs, **outputs}
    stats = dataset_stats(np.random.default_rng(seed))
    stats = {k: v for k, v in stats.items() if features[k].type.value in normalization_mapping}
    policy = LeRobotACTPolicy(config).eval()
    pre, post = make_pre_post_processors(config, dataset_stats=stats)
    return policy, pre, post, stats


def raw_observations(steps: int, batch: int = 2, constant_state_dim: float = 0.7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    inputs = tiny_config(cameras=("top", "wrist")).input_features
    observations = []
    for _ in range(steps):
        obs = {k: torch.rand(batch, *f.shape, generator=g) for k, f in inputs.items()}  # images in [0, 1]
        for key in ("observation.state", "observation.environment_state"):
            obs[key] = obs[key] * 4 - 2
        obs["observation.state"][:, 0] = constant_state_dim
        observations.append(obs)
    return observations


DEFAULT_MAPPING = {"VISUAL": "MEAN_STD", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"}  # LeRobot's: ENV raw
MIXED_MAPPING = {"VISUAL": "MEAN_STD", "STATE": "MIN_MAX", "ENV": "QUANTILES", "ACTION": "MIN_MAX"}


@pytest.mark.parametrize("mapping", [DEFAULT_MAPPING, MIXED_MAPPING], ids=["lerobot_default", "min_max_quantiles"])
def test_lerobot_04_folder_imports_with_lerobots_actions(tmp_path, mapping):
    policy, pre, post, _ = lerobot_policy(mapping)
    for part in (policy, pre, post):
        part.save_pretrained(tmp_path)
    for name in ("policy_preprocessor.json", "policy_postprocessor.json"):  # as saved on a GPU machine
        text = (tmp_path / name).read_text().replace('"device": "cpu"', '"device": "cuda"')
        (tmp_path / name).write_text(text)
    ours = ACTPolicy.from_pretrained(tmp_path)
    assert ours.config.chunk_size == 6 and ours.config.encoder.name == "resnet18"
    observations = raw_observations(steps=7)
    assert max_diff(actlab_actions(ours, observations), lerobot_actions(policy, pre, post, observations)) <= 1e-5


def write_old_layout(folder: Path, policy, stats, mapping: dict[str, str]) -> None:
    """The lerobot <= 0.3 layout: config.json (LeRobot's draccus writer) and a model.safetensors holding the
    normalisation buffers beside `model.*`, named as LeRobot's Normalize modules named them."""
    folder.mkdir()
    policy.config._save_pretrained(folder)
    names = {"MEAN_STD": ("mean", "std"), "MIN_MAX": ("min", "max")}
    tensors = {k: v.contiguous() for k, v in policy.state_dict().items()}
    for prefix, features in (
        ("normalize_inputs", policy.config.input_features),
        ("normalize_targets", policy.config.output_features),
        ("unnormalize_outputs", policy.config.output_features),
    ):
        for key, feature in features.items():
            mode = mapping.get(feature.type.value)
            for name in names.get(mode, ()):
                tensors[f"{prefix}.buffer_{key.replace('.', '_')}.{name}"] = stats[key][name].clone()
    save_file(tensors, folder / "model.safetensors")


def test_old_lerobot_layout_imports_with_lerobots_actions(tmp_path):
    mapping = {"VISUAL": "MEAN_STD", "STATE": "MIN_MAX", "ACTION": "MEAN_STD"}  # ENV: identity, no buffers
    policy, pre, post, stats = lerobot_policy(mapping, seed=1)
    write_old_layout(tmp_path / "old", policy, stats, mapping)
    ours = ACTPolicy.from_pretrained(tmp_path / "old")
    observations = raw_observations(steps=7, seed=1)
    assert max_diff(actlab_actions(ours, observations), lerobot_actions(policy, pre, post, observations)) <= 1e-5


def corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "damage,message",
    [
        (
            lambda f: (f / "policy_preprocessor.json").unlink(),
            "{f}/policy_preprocessor.json is missing: a LeRobot ACT folder has policy_preprocessor.json and "
            "policy_postprocessor.json (lerobot 0.4), or normalisation buffers in model.safetensors (lerobot <= 0.3)",
        ),
        (
            lambda f: corrupt(f / "policy_postprocessor_step_0_unnormalizer_processor.safetensors"),
            "{f}/policy_postprocessor.json: LeRobot cannot load it (",
        ),
        (lambda f: corrupt(f / "model.safetensors"), "{f}/model.safetensors: cannot be read ("),
        (lambda f: (f / "model.safetensors").unlink(), "{f}/model.safetensors is missing"),
        (
            lambda f: edit_config(f, vision_backbone="resnet34"),
            "{f}/config.json: vision_backbone='resnet34'; actlab reads LeRobot's ACT with resnet18 only",
        ),
        (
            lambda f: edit_config(f, feedforward_activation="silu"),
            "{f}/config.json: feedforward_activation='silu' is not one of ['gelu', 'glu', 'relu']",
        ),
        (
            lambda f: edit_config(f, type="diffusion"),
            "{f}/config.json: a LeRobot 'diffusion' policy; actlab reads LeRobot's ACT ('type': 'act') only",
        ),
        (
            lambda f: edit_config(f, dim_model=48),
            "{f}/model.safetensors: 'model.vae_encoder_pos_enc' has shape [1, 8, 32] but the policy in config.json "
            "expects [1, 8, 48]; the weights and config.json come from different models",
        ),
    ],
    ids=[
        "no_preprocessor",
        "damaged_stats",
        "damaged_weights",
        "no_weights",
        "backbone",
        "activation",
        "type",
        "shape",
    ],
)
def test_damaged_lerobot_folder_is_one_line_naming_the_file(tmp_path, damage, message):
    policy, pre, post, _ = lerobot_policy(DEFAULT_MAPPING)
    for part in (policy, pre, post):
        part.save_pretrained(tmp_path)
    damage(tmp_path)
    with pytest.raises(ActlabError) as e:
        ACTPolicy.from_pretrained(tmp_path)
    assert str(e.value).startswith(message.format(f=tmp_path)) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "key,change,message",
    [
        ("normalize_inputs.buffer_observation_state.max", None, "has no 'max', which MIN_MAX normalisation needs"),
        (
            "normalize_inputs.buffer_observation_images_top.mean",
            torch.inf,  # LeRobot's value before statistics are set
            "has a 'mean' that is not finite (a LeRobot policy saved without dataset statistics?)",
        ),
    ],
    ids=["missing", "infinite"],
)
def test_old_layout_buffers_its_modes_need_are_checked(tmp_path, key, change, message):
    mapping = {"VISUAL": "MEAN_STD", "STATE": "MIN_MAX", "ACTION": "MEAN_STD"}
    policy, _, _, stats = lerobot_policy(mapping)
    write_old_layout(tmp_path / "old", policy, stats, mapping)
    weights = load_file(tmp_path / "old" / "model.safetensors")
    if change is None:
        del weights[key]
    else:
        weights[key].fill_(change)
    save_file(weights, tmp_path / "old" / "model.safetensors")
    with pytest.raises(ActlabError) as e:
        ACTPolicy.from_pretrained(tmp_path / "old")
    buffer = key.rsplit(".", 1)[0]
    assert str(e.value) == f"{tmp_path / 'old' / 'model.safetensors'}: '{buffer}' {message}"


# ----------------------------------------------------------------------------------- fine-tuning (init_from)
def model_weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in ACTPolicy.from_pretrained(folder).state_dict().items() if k.startswith("model.")}


@pytest.mark.slow
@pytest.mark.parametrize("source", ["actlab", "lerobot"])
def test_init_from_starts_training_from_the_folders_weights_with_this_datas_stats(
    tmp_path, camera_checkpoint, camera_export, source
):
    other_data = write_lerobot_dataset(tmp_path / "other", episodes=3, frames=10, cameras=("front",), seed=7)
    folder = camera_checkpoint if source == "actlab" else camera_export
    final = train_checkpoint(tmp_path, other_data, f"init_from={folder}", "trainer.max_steps=0")
    ours, theirs = model_weights(final), model_weights(camera_checkpoint)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    mean, _ = ACTPolicy.from_pretrained(final).normalizer.mean_std("action")
    from actlab.config.datasets import LeRobotDatasetConfig
    from actlab.data.formats import load_store

    stats = load_store(LeRobotDatasetConfig(name="x", root=str(other_data)), tmp_path / "cache").stats["action"]
    np.testing.assert_allclose(mean.numpy(), stats["mean"], rtol=1e-6)  # the new dataset's statistics


@pytest.mark.slow
def test_init_from_of_another_architecture_or_data_is_one_line(tmp_path, camera_checkpoint, camera_dataset):
    with pytest.raises(ActlabError, match=r"^init_from=.*: model.dim_model is 64 but that policy has 128; pass its"):
        train_checkpoint(tmp_path / "a", camera_dataset, f"init_from={camera_checkpoint}", "model.dim_model=64")
    state_only = write_lerobot_dataset(tmp_path / "state", episodes=2, frames=6)
    with pytest.raises(
        ActlabError,
        match=r"^init_from=.*: 'observation.images.front' is absent in this run's data but VISUAL \[3, 32, 32\]",
    ):
        train_checkpoint(tmp_path / "b", state_only, f"init_from={camera_checkpoint}")
    with pytest.raises(ActlabError, match=r"^resume= continues a run with its own weights; init_from= starts a new"):
        train_checkpoint(tmp_path / "c", camera_dataset, f"init_from={camera_checkpoint}", f"resume={tmp_path}")


@pytest.mark.slow
def test_actlab_eval_replays_a_lerobot_folder_on_a_dataset(tmp_path, camera_export, camera_dataset):
    from actlab.config.compose import compose_eval
    from actlab.eval.cli import evaluate

    overrides = [
        f"checkpoint={camera_export}",
        "dataset=lerobot",
        f"dataset.root={camera_dataset}",
        "eval.episodes=[1]",
    ]
    metrics = evaluate(compose_eval(overrides, tmp_path / "eval"))
    assert metrics["episodes"] == [1] and metrics["frames"] == 8 and np.isfinite(metrics["mae"])
    with pytest.raises(ActlabError, match=r"has no training run settings to take the dataset from; pass one"):
        evaluate(compose_eval([f"checkpoint={camera_export}"], tmp_path / "eval2"))
