"""Composing conf/train.yaml outside a Hydra app (notebooks, tests, benchmarks)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from actlab.config.schema import register_configs
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


def check_config(cfg: DictConfig) -> None:
    """Rules across keys that a schema cannot express (e.g. temporal ensembling needs n_action_steps=1);
    `train.py` applies them as soon as Hydra has composed the config, before any data is read."""
    from actlab.policy.config import check_architecture
    from actlab.policy.encoders import check_encoder
    from actlab.policy.policy import PRECISIONS

    check_architecture(cfg.model)
    check_encoder(cfg.encoder)
    if cfg.policy.precision not in PRECISIONS:
        raise ActlabError(f"policy.precision={cfg.policy.precision!r} is not one of {list(PRECISIONS)}")
