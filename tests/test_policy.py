"""The policy is LeRobot's ACT (weights interchange, same actions), saves/loads as a folder, selects actions
through a queue or a temporal ensemble, and masks padded steps out of its loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actlab.errors import ActlabError
from actlab.policy import ACTPolicy, ACTPolicyConfig, PolicyFeature
from actlab.policy.selection import TemporalEnsembler

SMALL = dict(
    chunk_size=10,
    n_action_steps=10,
    dim_model=64,
    n_heads=4,
    dim_feedforward=128,
    n_encoder_layers=2,
    n_vae_encoder_layers=2,
    latent_dim=8,
)


def features(cameras=("top", "wrist"), hw=(64, 80), state=6, env=5, action=4):
    inputs = {}
    if state:
        inputs["observation.state"] = PolicyFeature("STATE", (state,))
    if env:
        inputs["observation.environment_state"] = PolicyFeature("ENV", (env,))
    for cam in cameras:
        inputs[f"observation.images.{cam}"] = PolicyFeature("VISUAL", (3, *hw))
    return inputs, {"action": PolicyFeature("ACTION", (action,))}


def random_stats(feats, rng):
    shape = lambda f: (3, 1, 1) if f.type == "VISUAL" else f.shape  # noqa: E731
    return {k: {"mean": rng.uniform(0, 1, shape(f)), "std": rng.uniform(0.5, 1.5, shape(f))} for k, f in feats.items()}


def random_obs(inputs, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(batch, *f.shape, generator=g) for k, f in inputs.items()}


def make_policy(cameras=("top", "wrist"), **overrides):
    inputs, outputs = features(cameras)
    cfg = ACTPolicyConfig(
        input_features=inputs,
        output_features=outputs,
        encoder={"name": "resnet18", "pretrained": None},
        **{**SMALL, **overrides},
    )
    return ACTPolicy(cfg, random_stats({**inputs, **outputs}, np.random.default_rng(0)))


def lerobot_twin(policy: ACTPolicy):
    """LeRobot's ACTPolicy with the same config and weights, and its processors with the same stats."""
    from actlab.export.lerobot import to_lerobot

    return to_lerobot(policy)


@pytest.mark.parametrize("cameras", [("top",), ("top", "wrist", "side")])
def test_weights_load_into_lerobot_and_actions_agree(cameras):
    torch.manual_seed(0)
    policy = make_policy(cameras)
    twin, pre, post = lerobot_twin(policy)
    obs = random_obs(policy.config.input_features, batch=3)
    ours = policy.predict_action_chunk(obs)
    theirs = post(twin.predict_action_chunk(pre(dict(obs))))
    assert ours.shape == (3, 10, 4)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_training_pass_agrees_with_lerobot():
    """The training losses (VAE posterior sampled with the same noise) are LeRobot's: the VAE encoder's
    last layer computes only its [cls] token, which is all either network reads."""
    torch.manual_seed(0)
    policy = make_policy(("top", "wrist"), dropout=0.0).train()
    twin, pre, _ = lerobot_twin(policy)
    twin.train()
    g = torch.Generator().manual_seed(3)
    batch = {
        **random_obs(policy.config.input_features, batch=3),
        "action": torch.rand(3, 10, 4, generator=g),
        "action_is_pad": torch.zeros(3, 10, dtype=torch.bool),
    }
    torch.manual_seed(5)
    ours = policy(batch)
    torch.manual_seed(5)
    loss, theirs = twin.forward(pre(dict(batch)))
    assert theirs["kld_loss"] > 0
    torch.testing.assert_close(ours["l1_loss"].item(), theirs["l1_loss"], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours["kld_loss"].item(), theirs["kld_loss"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours["loss"], loss, atol=1e-4, rtol=1e-5)


def test_state_dict_is_lerobots_model_keys_and_the_normaliser():
    """The weight names are LeRobot's, and the inference runtime's copies never enter the state dict."""
    from lerobot.policies.act.modeling_act import ACTPolicy as LeRobotACTPolicy

    from actlab.export.lerobot import lerobot_config

    policy = make_policy(("top", "wrist"))
    policy.configure_inference("bf16").predict_action_chunk(random_obs(policy.config.input_features, batch=1))
    keys = set(policy.state_dict())
    lerobot_keys = {k for k in LeRobotACTPolicy(lerobot_config(policy.config)).state_dict() if k.startswith("model.")}
    assert {k for k in keys if k.startswith("model.")} == lerobot_keys
    assert {k.split(".")[0] for k in keys} == {"model", "normalizer"}
    assert len(keys) == len(lerobot_keys) + 2 * 5  # mean and std of 2 vectors, 2 cameras and the action


def test_state_only_policy_agrees_with_lerobot():
    torch.manual_seed(1)
    inputs, outputs = features(cameras=())
    policy = ACTPolicy(
        ACTPolicyConfig(input_features=inputs, output_features=outputs, **SMALL),
        random_stats({**inputs, **outputs}, np.random.default_rng(1)),
    )
    twin, pre, post = lerobot_twin(policy)
    obs = random_obs(inputs, batch=4, seed=1)
    torch.testing.assert_close(
        policy.predict_action_chunk(obs), post(twin.predict_action_chunk(pre(dict(obs)))), atol=1e-5, rtol=0
    )


def test_temporal_ensemble_matches_lerobot():
    from lerobot.policies.act.modeling_act import ACTTemporalEnsembler

    ours, theirs = TemporalEnsembler(0.01, 8), ACTTemporalEnsembler(0.01, 8)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        chunk = torch.randn(2, 8, 3, generator=g)
        torch.testing.assert_close(ours.update(chunk), theirs.update(chunk.clone()), atol=1e-6, rtol=0)


def test_select_action_with_temporal_ensembling_queries_every_step():
    policy = make_policy(("top",), n_action_steps=1, temporal_ensemble_coeff=0.01)
    obs = random_obs(policy.config.input_features, batch=1)
    calls = []
    policy.model.decoder.register_forward_hook(lambda *a: calls.append(1))
    for _ in range(3):
        assert policy.select_action(obs).shape == (1, 4)
    assert len(calls) == 3


def test_select_action_pops_the_queue_then_replans():
    policy = make_policy(("top",), n_action_steps=4)
    obs = random_obs(policy.config.input_features, batch=2)
    chunk = policy.predict_action_chunk(obs)
    actions = [policy.select_action(obs) for _ in range(5)]
    for i in range(4):
        torch.testing.assert_close(actions[i], chunk[:, i])
    torch.testing.assert_close(actions[4], chunk[:, 0])  # a new chunk from the same observation
    policy.reset()
    assert len(policy.selector.actions) == 0


def test_save_and_load_give_identical_actions(tmp_path):
    policy = make_policy()
    obs = random_obs(policy.config.input_features, batch=2)
    before = policy.predict_action_chunk(obs)
    policy.save_pretrained(tmp_path / "policy")
    assert sorted(p.name for p in (tmp_path / "policy").iterdir()) == ["config.json", "model.safetensors"]
    loaded = ACTPolicy.from_pretrained(tmp_path / "policy")
    assert torch.equal(loaded.predict_action_chunk(obs), before)


def test_uint8_images_equal_unit_float_images():
    policy = make_policy(("top",))
    obs = random_obs(policy.config.input_features, batch=2)
    as_uint8 = dict(obs)
    as_uint8["observation.images.top"] = (obs["observation.images.top"] * 255).round().to(torch.uint8)
    obs["observation.images.top"] = as_uint8["observation.images.top"].float() / 255
    torch.testing.assert_close(policy.predict_action_chunk(as_uint8), policy.predict_action_chunk(obs))


def test_l1_loss_is_the_mean_over_valid_steps_only():
    policy = make_policy(("top",), use_vae=False)
    policy.eval()
    obs = random_obs(policy.config.input_features, batch=2)
    target = torch.randn(2, 10, 4)
    pad = torch.zeros(2, 10, dtype=torch.bool)
    pad[0, 6:] = True
    pad[1, 3:] = True
    loss = policy({**obs, "action": target, "action_is_pad": pad})["l1_loss"]
    pred = policy.normalizer.normalize("action", policy.predict_action_chunk(obs))
    err = (pred - policy.normalizer.normalize("action", target)).abs()
    expected = (err[0, :6].sum() + err[1, :3].sum()) / (9 * 4)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(dim_model=66, n_heads=4), "dim_model=66 is not divisible by model.n_heads=4"),
        (dict(chunk_size=5, n_action_steps=10), "n_action_steps=10 exceeds model.chunk_size=5"),
        (dict(n_action_steps=5, temporal_ensemble_coeff=0.01), "temporal_ensemble_coeff needs model.n_action_steps=1"),
    ],
)
def test_invalid_architectures_fail_with_one_line(overrides, message):
    with pytest.raises(ActlabError, match=message):
        make_policy(("top",), **overrides)
