"""Image encoders (resnet18, clip, pri3d) with every camera-fusion mode, their weight files, freezing, and the
model variants around them: observation history, l2 loss, several decoder layers, bf16 inference, and the
inference runtime's copies of the backbone and encoder."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d

from actlab.errors import ActlabError
from actlab.features import OBSERVATION_IS_PAD
from actlab.policy import ACTPolicy, ACTPolicyConfig
from actlab.policy.encoders import build_backbone
from actlab.policy.encoders.clip import CLIP_STATS
from actlab.policy.encoders.resnet import IMAGENET_STATS
from actlab.policy.runtime import FoldedBackbone, fold_frozen_batchnorm
from actlab.training.module import ACTLightningModule
from actlab.training.train import train
from tests.conftest import FAST, compose_train
from tests.test_policy import SMALL, features, random_obs, random_stats

ENCODERS = {
    "resnet18": {"name": "resnet18", "pretrained": None},
    "clip": {"name": "clip", "pretrained": None},
    "pri3d": {"name": "pri3d", "pretrained": None, "depth": 18},
}
FUSE_MODES = ["none", "mean", "concat_mlp", "gated"]


def make_policy(encoder: dict, cameras=("top", "wrist"), hw=(32, 40), **overrides) -> ACTPolicy:
    inputs, outputs = features(cameras, hw=hw)
    cfg = ACTPolicyConfig(input_features=inputs, output_features=outputs, encoder=encoder, **{**SMALL, **overrides})
    return ACTPolicy(cfg, random_stats({**inputs, **outputs}, np.random.default_rng(0)))


def training_batch(policy: ACTPolicy, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    c = policy.config
    obs = random_obs(c.input_features, batch, seed)
    if c.n_obs_steps > 1:
        obs = {k: v.unsqueeze(1).repeat_interleave(c.n_obs_steps, 1) for k, v in obs.items()}
        obs[OBSERVATION_IS_PAD] = torch.zeros(batch, c.n_obs_steps, dtype=torch.bool)
    g = torch.Generator().manual_seed(seed)
    obs["action"] = torch.randn(batch, c.chunk_size, c.action_feature.shape[0], generator=g)
    obs["action_is_pad"] = torch.zeros(batch, c.chunk_size, dtype=torch.bool)
    return obs


# ------------------------------------------------------------------------------------------ training runs
@pytest.mark.parametrize("fuse", FUSE_MODES)
@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_each_encoder_and_fuse_mode_trains_two_steps(tmp_path, video_dataset, encoder, fuse):
    extra = ["encoder.depth=18"] if encoder == "pri3d" else []
    cfg = compose_train(
        [
            f"dataset.root={video_dataset}",
            "model=tiny",
            f"encoder={encoder}",
            "encoder.pretrained=null",
            f"encoder.fuse={fuse}",
            "dataset.batch_size=2",
            "trainer.max_steps=2",
            "checkpoint.save_freq=0",
            *FAST,
            *extra,
        ],
        tmp_path,
    )
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    final = Path(cfg.paths.output_dir) / "checkpoints" / "final"
    saved = json.loads((final / "config.json").read_text())
    assert (saved["encoder"]["name"], saved["encoder"]["fuse"]) == (encoder, fuse)
    policy = ACTPolicy.from_pretrained(final)
    assert policy.model.fuse == fuse


# ------------------------------------------------------------------------------------------ save / load
@pytest.mark.parametrize("fuse", ["none", "gated"])
@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_save_load_round_trip_gives_identical_actions(tmp_path, encoder, fuse):
    policy = make_policy({**ENCODERS[encoder], "fuse": fuse}).eval()
    obs = random_obs(policy.config.input_features, 2)
    policy.save_pretrained(tmp_path / "policy")
    loaded = ACTPolicy.from_pretrained(tmp_path / "policy")
    assert torch.equal(policy.predict_action_chunk(obs), loaded.predict_action_chunk(obs))


def test_encoders_bring_their_input_normalisation():
    assert make_policy(ENCODERS["clip"]).model.backbone.image_stats == CLIP_STATS
    assert make_policy(ENCODERS["pri3d"]).model.backbone.image_stats == IMAGENET_STATS
    assert make_policy(ENCODERS["resnet18"]).model.backbone.image_stats is None  # random init: dataset stats
    policy = make_policy(ENCODERS["clip"])
    mean = policy.normalizer.stats["observation__images__top"].mean.flatten().tolist()
    assert mean == pytest.approx(CLIP_STATS[0])


def test_parameter_counts_per_encoder():
    counts = {
        name: sum(p.numel() for p in build_backbone({**cfg, "depth": 50} if name == "pri3d" else cfg).parameters())
        for name, cfg in ENCODERS.items()
    }
    # torchvision trunks without fc (frozen BatchNorm statistics are buffers), open_clip's ViT-B/32 tower
    assert counts == {"resnet18": 11_166_912, "pri3d": 23_454_912, "clip": 87_849_216}


# ------------------------------------------------------------------------------------------ freezing
def one_optimizer_step(policy: ACTPolicy) -> dict[str, torch.Tensor]:
    module = ACTLightningModule(policy, _optim(), _sched(), max_steps=10)
    optimizer = module.configure_optimizers()["optimizer"]
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    policy.train()
    policy(training_batch(policy))["loss"].backward()
    optimizer.step()
    return before


def _optim():
    from actlab.config.schema import OptimizerConfig

    return OptimizerConfig(lr=1e-3, lr_backbone=1e-3)


def _sched():
    from actlab.config.schema import SchedulerConfig

    return SchedulerConfig(warmup_steps=0)


@pytest.mark.parametrize("encoder", ["clip", "pri3d"])
def test_unfrozen_backbone_and_fusion_head_really_train(encoder):
    policy = make_policy({**ENCODERS[encoder], "fuse": "gated", "freeze": False}, cameras=("top",))
    before = one_optimizer_step(policy)
    changed = {n for n, p in policy.named_parameters() if not torch.equal(p, before[n])}
    backbone = {n for n, _ in policy.named_parameters() if n.startswith("model.backbone.")}
    assert len(changed & backbone) > 0.9 * len(backbone)  # gradients reached (almost) every backbone tensor
    assert "model.encoder_img_fusion.proj.weight" in changed


@pytest.mark.parametrize("encoder", ["clip", "pri3d"])
def test_frozen_backbone_is_left_out_of_the_optimiser_and_unchanged(encoder):
    policy = make_policy({**ENCODERS[encoder], "fuse": "mean", "freeze": True}, cameras=("top",))
    module = ACTLightningModule(policy, _optim(), _sched(), max_steps=10)
    optimized = {id(p) for g in module.configure_optimizers()["optimizer"].param_groups for p in g["params"]}
    before = one_optimizer_step(policy)
    for name, p in policy.named_parameters():
        if name.startswith("model.backbone."):
            assert id(p) not in optimized and p.grad is None and torch.equal(p, before[name]), name
    assert not torch.equal(policy.model.encoder_img_fusion.proj.weight, before["model.encoder_img_fusion.proj.weight"])


# ------------------------------------------------------------------------------------------ normalisation
def test_group_norm_trunk_normalises_trains_and_round_trips(tmp_path):
    policy = make_policy({"name": "resnet18", "pretrained": None, "norm": "group_norm"}, cameras=("top",))
    trunk = list(policy.model.backbone.modules())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in trunk)
    norms = [m for m in trunk if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 20 and all(m.num_channels == 16 * m.num_groups for m in norms)  # resnet18's 20 norms
    before = one_optimizer_step(policy)
    changed = {n for n, p in policy.named_parameters() if not torch.equal(p, before[n])}
    assert "model.backbone.bn1.weight" in changed and "model.backbone.layer4.1.bn2.bias" in changed
    policy.eval().save_pretrained(tmp_path / "policy")
    loaded = ACTPolicy.from_pretrained(tmp_path / "policy")
    assert loaded.config.encoder.norm == "group_norm"
    obs = random_obs(policy.config.input_features, 2)
    assert torch.equal(policy.predict_action_chunk(obs), loaded.predict_action_chunk(obs))


@pytest.mark.parametrize(
    "encoder,message",
    [
        ({"name": "resnet18", "pretrained": None, "norm": "batch"}, r"^encoder.norm='batch' is not one of"),
        (
            {"name": "resnet18", "pretrained": "imagenet", "norm": "group_norm"},
            r"^encoder.norm=group_norm is for a trunk trained from scratch; with encoder.pretrained=imagenet use "
            r"encoder.norm=frozen_batch_norm \(or set encoder.pretrained=null\)$",
        ),
    ],
)
def test_bad_norm_fails_with_one_line(encoder, message):
    with pytest.raises(ActlabError, match=message):
        build_backbone(encoder, load_weights=False)


def test_dilating_a_basic_block_resnet_fails_with_one_line(tmp_path):
    with pytest.raises(
        ActlabError, match=r"^encoder.replace_final_stride_with_dilation=true needs a ResNet of depth 50"
    ):
        compose_train(["encoder.replace_final_stride_with_dilation=true"], tmp_path)
    dilated = build_backbone({"name": "pri3d", "pretrained": None, "replace_final_stride_with_dilation": True}, False)
    assert dilated(torch.zeros(1, 3, 64, 64)).shape[-2:] == (4, 4)  # stride 16 instead of 32


def test_a_layer3_trunk_gives_stride_16_tokens_trains_and_round_trips(tmp_path):
    encoder = {"name": "resnet18", "pretrained": None, "norm": "group_norm", "feature_layer": "layer3"}
    backbone = build_backbone(encoder, load_weights=False)
    assert backbone(torch.zeros(1, 3, 64, 64)).shape == (1, 256, 4, 4) and backbone.out_channels == 256
    assert not any(name.startswith("layer4.") for name in backbone.state_dict())  # not built, not saved
    policy = make_policy(encoder, cameras=("top",))
    before = one_optimizer_step(policy)
    assert not torch.equal(policy.model.backbone.layer3[1].conv2.weight, before["model.backbone.layer3.1.conv2.weight"])
    policy.eval().save_pretrained(tmp_path / "policy")
    loaded = ACTPolicy.from_pretrained(tmp_path / "policy")
    obs = random_obs(policy.config.input_features, 2)
    assert torch.equal(policy.predict_action_chunk(obs), loaded.predict_action_chunk(obs))
    pri3d = build_backbone({"name": "pri3d", "pretrained": None, "feature_layer": "layer3"}, load_weights=False)
    assert pri3d(torch.zeros(1, 3, 64, 64)).shape == (1, 1024, 4, 4) and pri3d.out_channels == 1024


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["encoder.feature_layer=layer2"], r"^encoder.feature_layer='layer2' is not one of \['layer4', 'layer3'\]$"),
        (
            ["encoder=pri3d", "encoder.pretrained=null", "encoder.feature_layer=layer3",
             "encoder.replace_final_stride_with_dilation=true"],
            r"^encoder.replace_final_stride_with_dilation=true dilates layer4, which encoder.feature_layer=layer3",
        ),
    ],
)  # fmt: skip
def test_a_bad_feature_layer_fails_with_one_line_when_composed(tmp_path, overrides, message):
    with pytest.raises(ActlabError, match=message):
        compose_train(overrides, tmp_path)


def test_group_norm_is_checked_when_the_config_is_composed(tmp_path):
    with pytest.raises(ActlabError, match="encoder.norm=group_norm is for a trunk trained from scratch"):
        compose_train(["encoder.norm=group_norm", "encoder.pretrained=imagenet"], tmp_path)


# ------------------------------------------------------------------------------------------ weight files
def fake_pri3d_checkpoint(path: Path, depth: int = 18) -> torchvision.models.ResNet:
    """A checkpoint as Pri3D writes it: the trunk under backbone.encoder., plus decoder and 3-D head keys."""
    reference = getattr(torchvision.models, f"resnet{depth}")()
    state = {f"backbone.encoder.{k}": v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    state["backbone.decoder.conv.weight"] = torch.randn(8, 4, 3, 3)
    state["head3d.proj.weight"] = torch.randn(4, 4)
    torch.save({"model": state, "epoch": 7}, path)
    return reference


def test_pri3d_checkpoint_loads_its_encoder_trunk(tmp_path):
    reference = fake_pri3d_checkpoint(tmp_path / "pri3d.pth")
    backbone = build_backbone(
        {"name": "pri3d", "pretrained": "pri3d", "weights": str(tmp_path / "pri3d.pth"), "depth": 18}
    )
    assert torch.equal(backbone.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)
    assert torch.equal(backbone.bn1.running_mean, reference.bn1.running_mean)
    assert backbone.out_channels == 512


@pytest.mark.parametrize(
    "tamper,message",
    [
        (
            lambda s: s.update({"backbone.encoder.conv1.weight": torch.zeros(64, 3, 5, 5)}),
            r"backbone.encoder.conv1.weight has shape \(64, 3, 5, 5\), resnet18 expects \(64, 3, 7, 7\)",
        ),
        (
            lambda s: s.pop("backbone.encoder.layer4.1.bn2.running_var"),
            r"1 resnet18 keys missing \(e.g. backbone.encoder.layer4.1.bn2.running_var\)",
        ),
        (
            lambda s: s.update({"backbone.encoder.layer5.0.weight": torch.zeros(1)}),
            r"keys that resnet18 does not have \(e.g. backbone.encoder.layer5.0.weight\)",
        ),
    ],
)
def test_bad_pri3d_checkpoint_fails_with_one_line(tmp_path, tamper, message):
    fake_pri3d_checkpoint(tmp_path / "pri3d.pth")
    checkpoint = torch.load(tmp_path / "pri3d.pth", weights_only=True)
    tamper(checkpoint["model"])
    torch.save(checkpoint, tmp_path / "pri3d.pth")
    with pytest.raises(ActlabError, match=message) as e:
        build_backbone({"name": "pri3d", "pretrained": "pri3d", "weights": str(tmp_path / "pri3d.pth"), "depth": 18})
    assert "\n" not in str(e.value)


def test_pri3d_of_another_depth_or_without_a_file_fails_with_one_line(tmp_path):
    fake_pri3d_checkpoint(tmp_path / "pri3d.pth", depth=18)
    with pytest.raises(ActlabError, match=r"resnet50 keys missing .* is encoder.depth=50 right\?"):
        build_backbone({"name": "pri3d", "pretrained": "pri3d", "weights": str(tmp_path / "pri3d.pth"), "depth": 50})
    with pytest.raises(ActlabError, match=r"needs encoder.weights=/path/to/pri3d_checkpoint.pth"):
        build_backbone({"name": "pri3d", "pretrained": "pri3d"})


def test_clip_feature_map_is_the_patch_grid_at_224():
    backbone = build_backbone(ENCODERS["clip"])
    assert backbone(torch.rand(2, 3, 96, 96)).shape == (2, 768, 7, 7)
    assert backbone.embed(torch.rand(2, 3, 96, 96)).shape == (2, 512)


# ------------------------------------------------------------------------------------------ model variants
def test_observation_history_uses_every_unpadded_step():
    policy = make_policy(ENCODERS["resnet18"], n_obs_steps=3).eval()
    obs = training_batch(policy)
    base = policy.predict_action_chunk(obs)
    older = dict(obs)
    older["observation.state"] = obs["observation.state"].clone()
    older["observation.state"][:, 0] += 1.0
    assert not torch.allclose(policy.predict_action_chunk(older), base)  # the oldest step matters...
    padded = {**obs, OBSERVATION_IS_PAD: torch.tensor([[True, False, False]] * 2)}
    padded_older = {**older, OBSERVATION_IS_PAD: padded[OBSERVATION_IS_PAD]}
    torch.testing.assert_close(policy.predict_action_chunk(padded), policy.predict_action_chunk(padded_older))
    # ...unless it is padding, which attention ignores


def test_select_action_keeps_the_episode_history():
    policy = make_policy(ENCODERS["resnet18"], n_obs_steps=3, n_action_steps=1).eval()
    frames = [random_obs(policy.config.input_features, 1, seed=i) for i in range(4)]
    stacked = lambda fs: {k: torch.stack([f[k] for f in fs], 1) for k in fs[0]}  # noqa: E731
    policy.reset()
    first = policy.select_action(frames[0])
    expected = policy.predict_action_chunk(
        {**stacked([frames[0]] * 3), OBSERVATION_IS_PAD: torch.tensor([[True, True, False]])}
    )[:, 0]
    torch.testing.assert_close(first, expected)
    for f in frames[1:]:
        last = policy.select_action(f)
    full = policy.predict_action_chunk({**stacked(frames[1:]), OBSERVATION_IS_PAD: torch.zeros(1, 3, dtype=torch.bool)})
    torch.testing.assert_close(last, full[:, 0])


def test_n_obs_steps_3_trains_end_to_end(tmp_path, png_dataset):
    cfg = compose_train(
        [
            f"dataset.root={png_dataset}",
            "model=tiny",
            "model.n_obs_steps=3",
            "encoder.pretrained=null",
            "dataset.batch_size=2",
            "trainer.max_steps=2",
            "checkpoint.save_freq=0",
            *FAST,
        ],
        tmp_path,
    )
    train(cfg)
    policy = ACTPolicy.from_pretrained(Path(cfg.paths.output_dir) / "checkpoints" / "final")
    assert policy.config.n_obs_steps == 3 and policy.model.encoder_obs_step_embed.weight.shape[0] == 3
    obs = random_obs(policy.config.input_features, 1)
    obs["observation.images.front"] = (obs["observation.images.front"] * 255).to(torch.uint8)
    assert policy.select_action(obs).shape == (1, 5)


def test_l2_loss_is_the_masked_mean_squared_error():
    policy = make_policy(ENCODERS["resnet18"], loss="l2", use_vae=False).eval()
    batch = training_batch(policy)
    batch["action_is_pad"][:, 6:] = True
    losses = policy(batch)
    pred = policy.normalizer.normalize("action", policy.predict_action_chunk(batch))
    target = policy.normalizer.normalize("action", batch["action"])
    expected = ((pred - target)[:, :6] ** 2).mean()
    torch.testing.assert_close(losses["l2_loss"], expected, rtol=1e-4, atol=1e-5)
    assert "l1_loss" not in losses


def test_l2_loss_is_logged_under_its_name(tmp_path, state_dataset):
    cfg = compose_train(
        [
            f"dataset.root={state_dataset}",
            "model=tiny",
            "model.loss=l2",
            "trainer.max_steps=2",
            "dataset.batch_size=2",
            "checkpoint.save_freq=0",
            *FAST,
        ],
        tmp_path,
    )
    metrics = train(cfg)
    assert "train/l2_loss" in metrics and "train/l1_loss" not in metrics


def test_every_decoder_layer_is_used():
    policy = make_policy(ENCODERS["resnet18"], n_decoder_layers=3).eval()
    obs = random_obs(policy.config.input_features, 2)
    base = policy.predict_action_chunk(obs)
    with torch.no_grad():
        policy.model.decoder.layers[2].linear2.weight.mul_(2)
    assert not torch.allclose(policy.predict_action_chunk(obs), base)


def test_bf16_inference_stays_close_to_fp32():
    policy = make_policy(ENCODERS["resnet18"]).eval()
    obs = random_obs(policy.config.input_features, 2)
    fp32 = policy.predict_action_chunk(obs)
    bf16 = policy.configure_inference("bf16").predict_action_chunk(obs)
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)
    scale = policy.normalizer.stats["action"].std
    assert ((bf16 - fp32) / scale).abs().max() < 5e-2


# ------------------------------------------------------------------------------------------ inference runtime
def backbone_with_statistics(cfg: dict) -> torch.nn.Module:
    """A backbone whose frozen BatchNorms have non-trivial statistics and affine terms."""
    backbone = build_backbone(cfg).eval()
    with torch.no_grad():
        for m in backbone.modules():
            if isinstance(m, FrozenBatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.running_mean.normal_()
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
    return backbone


def assert_close_at_scale(actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    """Equal within `tol` of the largest |expected| (deep random ResNets reach outputs in the hundreds)."""
    scale = expected.abs().max()
    torch.testing.assert_close(actual / scale, expected / scale, rtol=0, atol=tol)


@pytest.mark.parametrize("depth,n_batchnorms", [(18, 20), (50, 53)])
def test_batchnorm_folding_keeps_the_backbone_function(depth, n_batchnorms):
    backbone = backbone_with_statistics({"name": "pri3d", "pretrained": None, "depth": depth})
    folded = copy.deepcopy(backbone)
    assert fold_frozen_batchnorm(folded) == n_batchnorms  # every conv's, downsamples included
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in folded.modules())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert_close_at_scale(folded(x), backbone(x), 1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("embed", [False, True])
def test_folded_backbone_copy_matches_the_backbone(channels_last, embed):
    backbone = backbone_with_statistics(ENCODERS["resnet18"])
    folded = FoldedBackbone(backbone, torch.device("cpu"), channels_last, torch.float32, embed)
    x = torch.rand(3, 3, 48, 56)
    with torch.no_grad():
        assert_close_at_scale(folded(x), backbone.embed(x) if embed else backbone(x), 1e-5)
    assert all(not p.requires_grad for p in folded.parameters())
    assert all(p.requires_grad for p in backbone.parameters())  # the original is untouched


def test_runtime_copies_follow_weight_updates():
    policy = make_policy(ENCODERS["resnet18"]).eval()
    obs = random_obs(policy.config.input_features, 1)
    before = policy.predict_action_chunk(obs)
    with torch.no_grad():
        policy.model.backbone.layer4[1].conv2.weight.mul_(3.0)  # as an optimiser step would, in place
    after = policy.predict_action_chunk(obs)
    assert not torch.allclose(after, before)
    with torch.no_grad():  # the plain network, without the runtime's copies
        reference = policy.model(*policy._normalized_inputs(obs))[0]
    torch.testing.assert_close(policy.normalizer.unnormalize("action", reference), after, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        policy.model.backbone.layer4[1].bn2.running_var.mul_(4.0)  # a buffer, not a parameter
    assert not torch.allclose(policy.predict_action_chunk(obs), after)


def test_bf16_copies_follow_loaded_weights():
    policy, other = make_policy(ENCODERS["resnet18"]), make_policy(ENCODERS["resnet18"])
    obs = random_obs(policy.config.input_features, 2)
    before = policy.configure_inference("bf16").predict_action_chunk(obs)
    with torch.no_grad():
        policy.model.encoder.layers[0].linear1.weight.mul_(2.0)
    assert not torch.allclose(policy.predict_action_chunk(obs), before)
    policy.load_state_dict(other.state_dict())
    assert torch.equal(policy.predict_action_chunk(obs), other.configure_inference("bf16").predict_action_chunk(obs))


def test_precision_alone_decides_the_dtypes():
    policy = make_policy(ENCODERS["resnet18"]).eval()
    obs = random_obs(policy.config.input_features, 2)
    fp32 = policy.predict_action_chunk(obs)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # e.g. a caller inside mixed-precision training
        assert torch.equal(policy.predict_action_chunk(obs), fp32)
    runtime = policy.configure_inference("bf16").runtime
    assert policy.configure_inference("bf16").runtime is runtime  # same settings: the copies are kept


@pytest.mark.slow
def test_compiled_policy_gives_the_same_actions():
    policy = make_policy(ENCODERS["resnet18"], cameras=("top",)).eval()
    obs = random_obs(policy.config.input_features, 1)
    eager = policy.predict_action_chunk(obs)
    compiled = policy.configure_inference("fp32", compile=True).predict_action_chunk(obs)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        policy.model.backbone.layer4[1].conv2.weight.mul_(3.0)
    updated = policy.predict_action_chunk(obs)  # compiled, through a rebuilt copy
    assert not torch.allclose(updated, compiled)
    torch.testing.assert_close(
        updated, policy.configure_inference("fp32").predict_action_chunk(obs), rtol=1e-4, atol=1e-4
    )
