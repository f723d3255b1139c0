"""Composing conf/train.yaml outside a Hydra app (notebooks, tests, benchmarks)."""

from __future__ import annotations

import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from actlab.config.encoders import check_weights_to_load
from actlab.config.options import check_node
from actlab.config.policy import check_architecture
from actlab.config.ranges import check_ranges
from actlab.config.schema import register_configs
from actlab.config.strict import check_known_keys
from actlab.errors import ActlabError

CONFIG_DIR = str(Path(__file__).resolve().parents[3] / "conf")


def compose_train(overrides: list[str], output_dir: str | Path, data_dir: str | Path | None = None) -> DictConfig:
    """The config `python train.py OVERRIDES` would run, writing its artifacts to `output_dir`."""
    register_configs()
    GlobalHydra.instance().clear()
    paths = [f"paths.output_dir={output_dir}"] + ([f"paths.data_dir={data_dir}"] if data_dir else [])
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*paths, *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    check_config(cfg)
    return cfg


def compose_eval(overrides: list[str], output_dir: str | Path, config_name: str = "eval") -> DictConfig:
    """The config `actlab-eval OVERRIDES` would run (with `checkpoint=...` among the overrides); or that of
    another command that takes a checkpoint (`config_name="serve"`, `"deploy"`)."""
    from actlab.config.checkpoint import checkpoint_argument, register_checkpoint

    register_configs()
    register_checkpoint(checkpoint_argument(overrides))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=[f"paths.output_dir={output_dir}", *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    check_command_config(cfg)
    return cfg


def check_command_config(cfg: DictConfig) -> None:
    """What a command that acts with a trained policy (actlab-eval, -serve, -deploy) checks as soon as Hydra
    has composed its config: no key that no schema reads, the ranges of every numeric key and the choices of
    `policy`."""
    check_known_keys(cfg)
    check_ranges(cfg)
    check_node(cfg.policy)


def check_config(cfg: DictConfig) -> None:
    """The ranges and choices of every group (each schema's `check()`) and the rules across keys that a
    schema cannot express (e.g. temporal ensembling needs n_action_steps=1); `train.py` applies them as soon
    as Hydra has composed the config, before any data is read. First that no key is one no schema reads
    (actlab.config.strict), then the ranges of every numeric key."""
    check_known_keys(cfg)
    check_ranges(cfg)
    check_architecture(cfg.model)
    for group in ("encoder", "policy", "dataset", "env", "trainer"):
        check_node(cfg[group])
    check_optimized_metric(cfg)
    if not (cfg.resume or cfg.get("init_from")):  # a new run: its backbone starts from the pretrained weights
        check_weights_to_load(OmegaConf.to_object(cfg.encoder))
    if cfg.resume and cfg.get("init_from"):
        raise ActlabError("resume= continues a run with its own weights; init_from= starts a new one: pass one of them")


def check_hardware(trainer: DictConfig) -> None:
    """A GPU run on a machine without one stops before it starts, not in Lightning's accelerator set-up.
    (Not part of `check_config`: a GPU config composes anywhere, e.g. to be submitted elsewhere.)"""
    import torch

    if str(trainer.accelerator) in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ActlabError(
            f"trainer.accelerator={trainer.accelerator} (hardware=gpu) but no CUDA GPU is visible here "
            "(torch.cuda.is_available() is False); use hardware=cpu, or hardware=auto to take a GPU when there is one"
        )
    on_cpu = str(trainer.accelerator) == "cpu" or not torch.cuda.is_available()
    check_compiler("trainer.compile" if trainer.get("compile") and on_cpu else None)


def check_compiler(setting: str | None) -> None:
    """torch.compile on a CPU builds C++ kernels: without a compiler it would fail at the first step."""
    import shutil

    if setting and not any(shutil.which(cc) for cc in (os.environ.get("CXX") or "g++", "c++", "clang++")):
        raise ActlabError(
            f"{setting}=true compiles C++ kernels for the CPU but no C++ compiler (g++, clang++ or $CXX) is on "
            f"PATH; install one (e.g. apt install g++) or set {setting}=false"
        )


def loggable_metrics(cfg: DictConfig) -> list[str]:
    """The metrics a run with this config logs (and so can hand to a sweeper as `optimized_metric`)."""
    names = ["train/loss", f"train/{cfg.model.loss}_loss", "train/grad_norm", "lr", "val/loss"]
    names += [f"train/{k}" for k in ("update_s", "dataloading_s", "samples", "epochs", "episodes")]
    if cfg.model.use_vae:
        names.append("train/kld_loss")
    if cfg.env.type != "none" and (cfg.env.eval_freq > 0 or cfg.env.final_eval_episodes > 0):
        names += [f"eval/{k}" for k in ("success_rate", "avg_reward", "avg_length")]
    return names


def check_optimized_metric(cfg: DictConfig) -> None:
    metric = cfg.optimized_metric
    steps = cfg.trainer.max_steps
    if metric == "val/loss" and cfg.trainer.val_check_interval > steps:
        raise ActlabError(
            f"optimized_metric=val/loss but trainer.val_check_interval={cfg.trainer.val_check_interval} > "
            f"trainer.max_steps={steps}: no validation would run; lower trainer.val_check_interval"
        )
    if metric and metric.startswith("eval/") and cfg.env.final_eval_episodes == 0 and cfg.env.eval_freq > steps:
        raise ActlabError(
            f"optimized_metric={metric} but env.eval_freq={cfg.env.eval_freq} > trainer.max_steps={steps} and "
            "env.final_eval_episodes=0: no evaluation would run"
        )
    if metric and metric not in loggable_metrics(cfg):
        hint = " (eval/* needs an env with env.eval_freq>0 or env.final_eval_episodes>0)" if "eval/" in metric else ""
        logged = loggable_metrics(cfg)
        raise ActlabError(f"optimized_metric={metric} is not a metric this run logs{hint}; it logs {logged}")
