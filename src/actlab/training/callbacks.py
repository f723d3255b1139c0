"""Lightning callbacks: throughput metrics and the console line, a global-step progress bar, rollout
evaluation in the simulator, the run's checkpoint folders, and RNG state for exact resumption."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException
from tqdm import tqdm

from actlab.sim.runner import SimRunner
from actlab.training.loggers import log_videos
from actlab.training.preemption import Requeue

log = logging.getLogger("actlab")


class TrainingMetrics(Callback):
    """Logs LeRobot's throughput metrics and prints one console line every `log_every_n_steps`:

    train/update_s       seconds per optimisation step (forward, backward, optimiser)
    train/dataloading_s  seconds spent waiting for the batch
    train/samples        training windows seen so far (all devices)
    train/epochs         samples / frames in the training split
    train/episodes       epochs * episodes in the training split
    """

    def __init__(self, train_frames: int, train_episodes: int):
        self.train_frames = train_frames
        self.train_episodes = train_episodes
        self.clock = _IdleClock()  # register last: it marks where this step's other hooks end
        self._totals: dict[str, float] = {}
        self._count = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_start = time.perf_counter()
        idle = self.clock.stamp
        self._dataloading = self._batch_start - idle if idle is not None else 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        update_s = time.perf_counter() - self._batch_start
        metrics = trainer.callback_metrics
        action_loss = f"train/{pl_module.policy.loss_key}"
        for key in ("train/loss", action_loss, "train/kld_loss"):
            if key in metrics:
                self._totals[key] = self._totals.get(key, 0.0) + float(metrics[key])
        self._count += 1
        step = trainer.global_step
        samples = step * len(batch["action"]) * trainer.world_size
        epochs = samples / max(1, self.train_frames)
        values = {
            "train/update_s": update_s,
            "train/dataloading_s": self._dataloading,
            "train/samples": float(samples),
            "train/epochs": epochs,
            "train/episodes": epochs * self.train_episodes,
        }
        pl_module.log_dict(values, batch_size=len(batch["action"]))
        if step % trainer.log_every_n_steps == 0 or step == trainer.max_steps:
            mean = {k: v / self._count for k, v in self._totals.items()}
            line = (
                f"Step {step}/{trainer.max_steps} | Loss: {mean.get('train/loss', float('nan')):.4f} "
                f"| {pl_module.policy.config.loss.upper()}: {mean.get(action_loss, float('nan')):.4f}"
            )
            if "train/kld_loss" in mean:
                line += f" | KLD: {mean['train/kld_loss']:.4f}"
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            line += f" | LR: {lr:.2e} | update {update_s:.3f}s data {self._dataloading:.3f}s"
            _write(line)
            self._totals, self._count = {}, 0


class _IdleClock(Callback):
    """Time stamp after the last hook of a step (evaluation, checkpoints) and after validation, so
    the next batch's wait is pure data loading."""

    stamp: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.stamp = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self.stamp = time.perf_counter()


class StepProgressBar(ProgressBar):
    """One bar over optimisation steps (Lightning's default bar restarts every epoch)."""

    def __init__(self):
        super().__init__()
        self._enabled = True
        self.bar: tqdm | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        if self._enabled and trainer.is_global_zero:
            # disable=None: only on a terminal; logs get the console lines instead.
            self.bar = tqdm(
                total=trainer.max_steps,
                initial=trainer.global_step,
                desc="training",
                unit="step",
                dynamic_ncols=True,
                disable=None,
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.bar is not None:
            self.bar.update(trainer.global_step - self.bar.n)
            loss = trainer.callback_metrics.get("train/loss")
            if loss is not None:
                self.bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class RolloutEvaluation(Callback):
    """Every `eval_freq` steps: roll the policy out in the simulator and log eval/* metrics; with
    `videos` > 0, the first episodes' MP4s go to `video_dir/step_<N>/` and to the loggers that show videos.
    (Lightning has no simulator-evaluation callback; this is that, on rank 0.)"""

    def __init__(self, runner: SimRunner, eval_freq: int, video_dir: Path | None = None):
        self.runner = runner
        self.eval_freq = eval_freq
        self.video_dir = video_dir

    def due(self, step: int) -> bool:
        return self.eval_freq > 0 and step > 0 and step % self.eval_freq == 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not self.due(step):
            return
        video_dir = self.video_dir / f"step_{step}" if self.runner.videos and self.video_dir else None
        metrics = evaluation_metrics(self.runner.run(pl_module.policy, video_dir))
        pl_module.log_dict({f"eval/{k}": v for k, v in metrics.items()}, batch_size=1)
        _write(format_eval(metrics, f"step {step}", self.runner.episodes))
        if video_dir is not None:
            paths = sorted(map(str, video_dir.glob("*.mp4")))
            log_videos(trainer.loggers, "eval/videos", paths, step, self.runner.env.fps)


def evaluation_metrics(summary: dict[str, float]) -> dict[str, float]:
    """The metrics a training run logs of a SimRunner's summary (and a sweeper may optimise)."""
    return {k: summary[k] for k in ("success_rate", "avg_reward", "avg_length")}


def format_eval(metrics: dict[str, float], when: str, episodes: int) -> str:
    return (
        f"Evaluation ({when}, {episodes} episodes): Success Rate: {100 * metrics['success_rate']:.1f}% | "
        f"Avg Reward: {metrics['avg_reward']:.3f} | Avg Length: {metrics['avg_length']:.1f}"
    )


class RunCheckpoints(Callback):
    """Writes `step_<N>/` and `last/` every `save_freq` steps, and `best/` whenever the monitored metric
    improves: eval/success_rate (higher) after each rollout evaluation, or val/loss (lower) after each
    validation when there is no simulator. On SIGTERM (what SLURM and Kubernetes send before a kill;
    Lightning's signal connector sets `trainer.received_sigterm`) it writes `last/` at the end of the step
    in progress and stops training (SIGTERMException, which fit_and_evaluate turns into an interruption).
    Under submitit, the time-limit/preemption signal does the same and then lets submitit requeue the job
    (training/preemption.py)."""

    def __init__(self, dirpath: Path, save_freq: int, monitor: str, mode: str, eval_freq: int = 0):
        self.dirpath = Path(dirpath)
        self.requeue = Requeue()
        self._stopped_at: int | None = None  # the step whose last/ a stop request saved
        self.save_freq = save_freq
        self.monitor = monitor
        self.mode = mode
        self.eval_freq = eval_freq
        self.best_score: float | None = None
        self.best_step: int | None = None

    def save(self, trainer: L.Trainer, name: str) -> Path:
        path = self.dirpath / name
        trainer.save_checkpoint(path, weights_only=False)
        return path

    def on_fit_start(self, trainer, pl_module) -> None:
        self.requeue.install()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self.requeue.uninstall()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.save_freq > 0 and step % self.save_freq == 0:
            # `last` first: a kill between the two saves must not leave a run without the folder it resumes from.
            self.save(trainer, "last")
            self.save(trainer, f"step_{step}")
        # Decided on every rank (saving needs them all): the signal may reach one rank only, or not yet.
        stop = trainer.received_sigterm or self.requeue.requested
        if trainer.strategy.reduce_boolean_decision(bool(stop), all=False):
            if not (self.save_freq > 0 and step % self.save_freq == 0):
                self.save(trainer, "last")
            self._stopped_at = step
            if self.requeue.requested:
                log.info(f"Saved checkpoints/last/ at step {step}; requeueing (the requeued job resumes from it)")
                self.requeue.requeue()  # exits on the job's first task
            else:
                log.info(f"SIGTERM: saved checkpoints/last/ at step {step}; stopping")
            raise SIGTERMException  # on every rank, before the next step
        if self.monitor.startswith("eval/") and self.eval_freq > 0 and step % self.eval_freq == 0:
            self._update_best(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # Lightning itself stops on SIGTERM between two batches or inside validation: save what it has.
        if isinstance(exception, SIGTERMException) and self._stopped_at is None:
            self._stopped_at = trainer.global_step
            self.save(trainer, "last")
            log.info(f"SIGTERM: saved checkpoints/last/ at step {trainer.global_step}; stopping")

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.monitor.startswith("val/") and not trainer.sanity_checking:
            self._update_best(trainer)

    def _update_best(self, trainer: L.Trainer) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        # Rank 0's value decides on every rank (only rank 0 runs rollouts; saving needs every rank).
        value = trainer.strategy.broadcast(None if value is None else float(value), src=0)
        if value is None:
            return
        better = self.best_score is None or (value > self.best_score if self.mode == "max" else value < self.best_score)
        if better:
            self.best_score, self.best_step = value, trainer.global_step
            self.save(trainer, "best")
            _write(f"Saved best checkpoint ({self.monitor} = {value:.4f} at step {trainer.global_step})")

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_step": self.best_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict.get("best_score")
        self.best_step = state_dict.get("best_step")


class RNGState(Callback):
    """Saves and restores the Python, numpy and torch generators with each checkpoint."""

    def state_dict(self) -> dict[str, Any]:
        version, mt_state, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "python": {"version": version, "state": list(mt_state), "gauss": gauss},
            "numpy": {
                "kind": kind,
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "pos": pos,
                "has_gauss": has_gauss,
                "cached": cached,
            },
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        py = state_dict["python"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
        npy = state_dict["numpy"]
        np.random.set_state(
            (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"])
        )
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def _write(line: str) -> None:
    log.info(line)
