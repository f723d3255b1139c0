"""Every option of every config group composes; typos and wrong types fail at compose time."""

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from actlab.config.compose import CONFIG_DIR
from actlab.errors import ActlabError
from tests.conftest import compose_train

GROUPS = {p.name: sorted(f.stem for f in p.glob("*.yaml")) for p in Path(CONFIG_DIR).iterdir() if p.is_dir()}


def test_groups_have_the_documented_options():
    for group, options in {
        "model": ["baseline", "custom", "large", "tiny"],
        "dataset": ["g1", "lerobot", "lift"],
        "encoder": ["clip", "pri3d", "resnet18"],
        "env": ["lift", "none"],
        "hardware": ["auto", "cpu", "ddp_cpu", "gpu", "multi_gpu"],
        "hparams_search": ["optuna"],
        "logger": ["csv", "none", "tensorboard", "wandb"],
        "experiment": ["quickstart", "quickstart_image"],
    }.items():
        assert set(options) <= set(GROUPS[group]), group


DEPLOY_GROUPS = ("robot",)  # groups of conf/deploy.yaml only
GLOBAL_OVERLAYS = ("experiment", "hardware", "hparams_search", "logger")  # options that set keys elsewhere


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_option_composes_and_resolves(group, option, tmp_path):
    if group in DEPLOY_GROUPS:
        from actlab.config.compose import compose_eval

        cfg = compose_eval([f"{group}={option}", "env=lift"], tmp_path, "deploy")
        assert OmegaConf.to_container(cfg, resolve=True)[group]["_target_"]
        return
    # Pri3D weights come only from a file, which a new run's config must name (test_pri3d_needs_its_weights_file)
    weights = [f"encoder.weights={tmp_path / 'pri3d.pth'}"] if (group, option) == ("encoder", "pri3d") else []
    (tmp_path / "pri3d.pth").touch()
    cfg = compose_train([f"{group}={option}", *weights], tmp_path)
    OmegaConf.to_container(cfg, resolve=True)
    if group not in GLOBAL_OVERLAYS:
        assert cfg[group].name == option


@pytest.mark.parametrize(
    "model,steps,batch,lr,lr_backbone,warmup,dim,heads,enc,latent,chunk",
    [
        ("baseline", 100_000, 8, 1e-5, 1e-5, 1000, 512, 8, 4, 32, 100),
        ("large", 200_000, 8, 5e-6, 1e-6, 2000, 1024, 16, 6, 64, 100),
        ("custom", 150_000, 16, 3e-5, 3e-5, 1000, 768, 8, 5, 32, 50),
    ],
)
def test_model_presets_reproduce_the_g1_guide(
    tmp_path, model, steps, batch, lr, lr_backbone, warmup, dim, heads, enc, latent, chunk
):
    cfg = compose_train([f"model={model}"], tmp_path)
    m = cfg.model
    assert (cfg.trainer.max_steps, cfg.dataset.batch_size) == (steps, batch)
    assert (m.optimizer.lr, m.optimizer.lr_backbone, m.scheduler.warmup_steps) == (lr, lr_backbone, warmup)
    assert (m.dim_model, m.n_heads, m.n_encoder_layers, m.n_decoder_layers, m.latent_dim) == (
        dim,
        heads,
        enc,
        1,
        latent,
    )
    assert (m.chunk_size, m.n_action_steps, m.use_vae, m.kl_weight) == (chunk, chunk, True, 10.0)
    assert (m.optimizer.weight_decay, m.dim_feedforward, cfg.trainer.gradient_clip_val) == (1e-4, 3200, 10.0)


def test_command_line_overrides_beat_presets(tmp_path):
    cfg = compose_train(["model=large", "dataset=g1", "trainer.max_steps=5", "dataset.batch_size=2"], tmp_path)
    assert (cfg.trainer.max_steps, cfg.dataset.batch_size, cfg.model.dim_model) == (5, 2, 1024)


def test_quickstart_overlay(tmp_path):
    cfg = compose_train(["experiment=quickstart"], tmp_path)
    assert (cfg.model.name, cfg.dataset.name, cfg.env.name, cfg.trainer.accelerator) == ("tiny", "lift", "lift", "cpu")
    assert cfg.env.final_eval_episodes == 50


@pytest.mark.parametrize("key", ["model.dim_modle", "trainer.max_step", "dataset.rooot", "env.evalfreq"])
def test_typo_on_the_command_line_fails_at_compose_time(tmp_path, key):
    with pytest.raises(ConfigCompositionException, match="Could not override"):
        compose_train([f"{key}=1"], tmp_path)


def test_typo_in_a_user_config_file_fails_against_the_schema(tmp_path):
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "mine.yaml").write_text(
        "# @package _global_\nmodel:\n  name: mine\n  dim_modle: 3\n"
    )
    with pytest.raises(ConfigCompositionException, match="Key 'dim_modle' not in 'ModelConfig'"):
        compose_train([f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "model=mine"], tmp_path)


def test_wrong_type_fails_at_compose_time(tmp_path):
    with pytest.raises(ConfigCompositionException):
        compose_train(["model.dim_model=wide"], tmp_path)


def test_unknown_option_fails(tmp_path):
    with pytest.raises(ConfigCompositionException):
        compose_train(["model=huge"], tmp_path)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model.temporal_ensemble_coeff=0.01"], "temporal_ensemble_coeff needs model.n_action_steps=1"),
        (["model.loss=huber"], "model.loss='huber' is not one of"),
        (["encoder.fuse=sum"], "encoder.fuse='sum' is not one of"),
        (["encoder.name=vit"], "encoder.name='vit' is not one of"),
        (["policy.precision=fp16"], "policy.precision='fp16' is not one of"),
        (["trainer.precision=fp8"], "trainer.precision='fp8' is not one of"),
        (["model.n_obs_steps=0"], r"model.n_obs_steps=0: expected an integer in \[1, 131072\]"),
        (["env=lift", "env.eval_workers=0"], r"env.eval_workers=0: expected an integer >= 1"),
        (["dataset=lift", "dataset.collect.workers=-1"], r"dataset.collect.workers=-1: expected an integer >= 1"),
    ],
)
def test_invalid_combinations_fail_at_compose_time(tmp_path, overrides, message):
    with pytest.raises(ActlabError, match=message):
        compose_train(overrides, tmp_path)


def test_pri3d_needs_its_weights_file_when_a_new_run_composes(tmp_path):
    with pytest.raises(ActlabError, match="encoder.pretrained=pri3d needs encoder.weights="):
        compose_train(["encoder=pri3d"], tmp_path)
    with pytest.raises(ActlabError, match=f"encoder.weights={tmp_path}/none.pth: no such file"):
        compose_train(["encoder=pri3d", f"encoder.weights={tmp_path}/none.pth"], tmp_path)
    assert compose_train(["encoder=pri3d", "encoder.pretrained=null"], tmp_path).encoder.weights is None
    # a resumed or initialised run takes its weights from the checkpoint, not from encoder.weights
    assert compose_train(["encoder=pri3d", f"init_from={tmp_path}"], tmp_path).encoder.name == "pri3d"


def test_trainer_precisions_are_lightnings_and_auto():
    from typing import get_args

    from lightning.fabric.connector import _PRECISION_INPUT_INT, _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS

    from actlab.config.schema import TRAINER_PRECISIONS

    lightnings = get_args(_PRECISION_INPUT_STR) + get_args(_PRECISION_INPUT_INT) + get_args(_PRECISION_INPUT_STR_ALIAS)
    assert sorted(TRAINER_PRECISIONS) == sorted({"auto", *map(str, lightnings)})


def test_ensembling_composes_with_one_action_step(tmp_path):
    cfg = compose_train(["model.temporal_ensemble_coeff=0.01", "model.n_action_steps=1"], tmp_path)
    assert cfg.model.temporal_ensemble_coeff == 0.01


def test_clip_preset_follows_seed_002(tmp_path):
    e = compose_train(["encoder=clip"], tmp_path).encoder
    assert (e.model_name, e.pretrained, e.freeze, e.fuse) == ("ViT-B-32", "openai", True, "mean")


def compose_with_hydra(overrides: list[str]):
    """conf/train.yaml with its `hydra` node (sweeper, launcher), which compose_train drops."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from actlab.config.compose import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides, return_hydra_config=True)


@pytest.mark.parametrize("metric,direction", [("eval/success_rate", "maximize"), ("val/loss", "minimize")])
def test_optuna_direction_follows_the_optimized_metric(tmp_path, metric, direction):
    cfg = compose_with_hydra(["hparams_search=optuna", f"optimized_metric={metric}"])
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    assert sweeper["direction"] == direction
    assert set(sweeper["params"]) == {"model.optimizer.lr", "model.kl_weight", "model.chunk_size", "dataset.batch_size"}


@pytest.mark.parametrize("launcher", ["joblib", "slurm"])
def test_launchers_compose_with_one_task_per_device(launcher):
    cfg = compose_with_hydra([f"hydra/launcher={launcher}", "trainer.devices=4", "trainer.num_nodes=2"])
    conf = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    if launcher == "slurm":
        assert (conf["tasks_per_node"], conf["gpus_per_node"], conf["nodes"]) == (4, 4, 2)
        assert conf["_target_"].endswith("SlurmLauncher")
    else:
        assert conf["_target_"].endswith("JoblibLauncher") and conf["n_jobs"] == 2
