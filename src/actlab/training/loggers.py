"""Logger variants and what Lightning's loggers lack:

- ResumableCSVLogger: Lightning's CSVLogger, except that a resumed run appends to its metrics.csv
  (Lightning's deletes an existing file when a logger opens the same folder).
- make_loggers / close_loggers: the `logger` group's loggers, and wandb's run ended with the job (Lightning
  leaves it open).
- log_videos: rollout videos to the loggers that show videos (wandb: the MP4s; TensorBoard: animated
  GIFs in its image tab, the summary its own `add_video` writes, without needing moviepy).
"""

from __future__ import annotations

import csv
from pathlib import Path

from hydra.utils import instantiate
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class ResumableCSVLogger(CSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def log_videos(loggers: list[Logger], tag: str, paths: list[str], step: int, fps: float) -> None:
    """Each video file under `tag/<file name>` in the loggers that can show it (the others skip it)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_video(tag, videos=paths, step=step, format=["mp4"] * len(paths))
        elif isinstance(logger, TensorBoardLogger):
            from tensorboard.compat.proto.summary_pb2 import Summary

            from actlab.sim.video import gif_bytes, read_frames

            for path in paths:
                gif, height, width = gif_bytes(read_frames(path), fps)
                image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
                summary = Summary(value=[Summary.Value(tag=f"{tag}/{Path(path).stem}", image=image)])
                # _get_file_writer reopens the event file that Lightning closes when fit ends (final videos).
                logger.experiment._get_file_writer().add_summary(summary, step)


def make_loggers(cfg: DictConfig) -> list[Logger]:
    return [instantiate(conf) for conf in (cfg.logger or {}).values() if conf is not None]


def close_loggers(loggers: list[Logger]) -> None:
    """Flushes every logger and ends the wandb run (Lightning leaves it open): its summary is written now,
    and the next job of a multirun, in the same process, starts a run of its own."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()
