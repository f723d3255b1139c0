"""`actlab-convert` / `python -m actlab.data.convert`: any dataset actlab reads -> a LeRobot v3.0 dataset,
written with LeRobot's own writer, so the data can go to the hub or to `lerobot-train`.

    actlab-convert dataset=npy dataset.root=/data/bimanual output=/data/bimanual_lerobot
    actlab-convert dataset=parquet dataset.root=real_data/lift output=/data/lift_v30 video=false

The dataset group is the training one (same keys: dataset.camera_map, dataset.allow_pickle, ...). The
output is published only when complete (`actlab.lerobot_io.writer`); an existing output is refused.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from omegaconf import MISSING, DictConfig, OmegaConf
from tqdm import tqdm

from actlab.config.command import hydra_command
from actlab.config.compose import CONFIG_DIR
from actlab.config.schema import DatasetConfig, register_configs
from actlab.config.strict import check_known_keys
from actlab.data.formats import load_store
from actlab.data.store import EpisodeStore
from actlab.errors import ActlabError
from actlab.lerobot_io.writer import lerobot_writer

log = logging.getLogger("actlab")


@dataclass
class ConvertConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    output: str = MISSING
    repo_id: str | None = None  # default: local/<output folder name>
    task: str | None = None  # the task string of every frame; default: the dataset's name
    video: bool = True  # cameras as mp4 (LeRobot's default) or png images (lossless)
    cache_dir: str = MISSING


def write_lerobot(store: EpisodeStore, output: Path, repo_id: str, task: str, video: bool) -> Path:
    """Writes `store` as a LeRobot v3.0 dataset at `output` with LeRobot's writer."""
    if output.exists():
        raise ActlabError(f"output={output} already exists; choose a new folder")
    bounds = list(zip(store.episode_starts, store.episode_ends, strict=True))
    with lerobot_writer(output, store.features, store.fps, video, repo_id) as write_episode:
        for start, end in tqdm(bounds, desc="episodes"):
            write_episode(({k: store.arrays[k][t] for k in store.features} for t in range(start, end)), task)
    return output


def convert(cfg: DictConfig) -> Path:
    data: DatasetConfig = OmegaConf.to_object(cfg.dataset)
    output = Path(cfg.output).expanduser()
    store = load_store(data, Path(cfg.cache_dir))
    repo_id = cfg.repo_id or f"local/{output.name}"
    write_lerobot(store, output, repo_id, cfg.task or data.name, cfg.video)
    log.info(f"Wrote {store.num_episodes} episodes, {store.num_frames} frames to {output} (LeRobot v3.0)")
    return output


register_configs()
hydra.core.config_store.ConfigStore.instance().store(name="convert_schema", node=ConvertConfig)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="convert")
def hydra_main(cfg: DictConfig) -> None:
    try:
        check_known_keys(cfg)
        if OmegaConf.is_missing(cfg, "output"):
            raise ActlabError(
                "output= is required: actlab-convert dataset=<format> dataset.root=SOURCE output=NEW_FOLDER"
            )
        convert(cfg)
    except ActlabError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    with hydra_command():
        hydra_main()


if __name__ == "__main__":
    main()
