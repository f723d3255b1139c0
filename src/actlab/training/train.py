"""`train(cfg)`: data -> policy -> Lightning Trainer -> checkpoints -> final evaluation.

Returns the final metrics; the CLI hands `cfg.optimized_metric` of them to Hydra sweepers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from actlab.config.compose import check_config
from actlab.config.schema import DatasetConfig
from actlab.data.datamodule import ACTDataModule
from actlab.data.store import EpisodeStore
from actlab.errors import ActlabError
from actlab.policy import ACTPolicy, ACTPolicyConfig
from actlab.policy.config import ACTArchitecture
from actlab.sim.envs import make_env
from actlab.sim.rollout import check_compatible, evaluate_policy
from actlab.training.callbacks import (
    RNGState,
    RolloutEvaluation,
    RunCheckpoints,
    StepProgressBar,
    TrainingMetrics,
    format_eval,
)
from actlab.training.checkpoint_io import FolderCheckpointIO, load_run_config
from actlab.training.module import ACTLightningModule

log = logging.getLogger("actlab")

POLICY_KEYS = [f.name for f in fields(ACTArchitecture)]  # the model group's keys the policy keeps


def build_policy_config(cfg: DictConfig, store: EpisodeStore) -> ACTPolicyConfig:
    """The policy's config: the model group's architecture, the encoder, and the data's features."""
    model = cfg.model
    features = store.features
    return ACTPolicyConfig(
        input_features={k: f for k, f in features.items() if f.type != "ACTION"},
        output_features={k: f for k, f in features.items() if f.type == "ACTION"},
        encoder=OmegaConf.to_container(cfg.encoder, resolve=True),
        **{k: model[k] for k in POLICY_KEYS},
    )


def dataset_config(cfg: DictConfig) -> DatasetConfig:
    """The dataset group as a typed object, with `root` pointing at scripted demonstrations when the
    preset collects them (dataset=lift) and no root was given."""
    data: DatasetConfig = OmegaConf.to_object(cfg.dataset)
    if data.collect is not None and not data.root:
        from actlab.sim.collect import ensure_demonstrations

        data.root = str(ensure_demonstrations(cfg.env, data.collect, Path(cfg.paths.data_dir)))
    return data


def resume_checkpoint(cfg: DictConfig) -> Path | None:
    if not cfg.resume:
        return None
    last = Path(cfg.resume) / "checkpoints" / "last"
    if not (last / "training_state.pt").is_file():
        raise ActlabError(
            f"resume={cfg.resume}: no checkpoint at {last}; expected a run directory with checkpoints/last"
        )
    saved = load_run_config(last).get("model", {})
    current = OmegaConf.to_container(cfg.model, resolve=True)
    changed = [k for k in POLICY_KEYS if k in saved and saved[k] != current[k]]
    if changed:
        k = changed[0]
        raise ActlabError(
            f"resume={cfg.resume}: model.{k} is {current[k]} but the checkpoint has {saved[k]}; "
            "pass the same model settings as the run being resumed"
        )
    return last


def make_loggers(cfg: DictConfig) -> list:
    return [instantiate(conf) for conf in (cfg.logger or {}).values() if conf is not None]


def trainer_kwargs(cfg: DictConfig, has_validation: bool = True) -> dict[str, Any]:
    t = cfg.trainer
    return dict(
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
        max_steps=t.max_steps,
        max_epochs=-1,
        gradient_clip_val=t.gradient_clip_val,
        log_every_n_steps=t.log_every_n_steps,
        val_check_interval=t.val_check_interval,
        check_val_every_n_epoch=None,
        limit_val_batches=t.limit_val_batches if has_validation else 0,
        num_sanity_val_steps=0,
        enable_progress_bar=t.enable_progress_bar,
        deterministic=t.deterministic,
        enable_checkpointing=False,
        enable_model_summary=False,
    )


def describe(cfg: DictConfig, dm: ACTDataModule, policy: ACTPolicy, trainer: L.Trainer) -> None:
    store = dm.store
    total = sum(p.numel() for p in policy.parameters())
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    lines = [
        "=" * 60,
        f"actlab: training ACT (model={cfg.model.name}, encoder={cfg.encoder.name})",
        "=" * 60,
        f"Dataset: {store.name}",
        f"Root: {store.root}",
        f"  Episodes: {store.num_episodes} (train {len(dm.train_episodes)}, val {len(dm.val_episodes)})",
        f"  Frames: {store.num_frames:,}",
        f"  FPS: {store.fps:g}",
        "Input features:",
        *[f"  {k}: shape={tuple(f.shape)}" for k, f in policy.config.input_features.items()],
        "Output features:",
        *[f"  {k}: shape={tuple(f.shape)}" for k, f in policy.config.output_features.items()],
        f"Policy: {total:,} parameters ({trainable:,} trainable)",
        f"Device: {trainer.strategy.root_device} (precision {cfg.trainer.precision}, {trainer.world_size} process(es))",
        f"Steps: {cfg.trainer.max_steps:,} at batch {cfg.dataset.batch_size}, lr {cfg.model.optimizer.lr:g} "
        f"(backbone {cfg.model.optimizer.lr_backbone:g}), {cfg.model.scheduler.name} after "
        f"{cfg.model.scheduler.warmup_steps} warm-up steps",
        f"Output: {cfg.paths.output_dir}",
        "=" * 60,
    ]
    for line in lines:
        log.info(line)


def train(cfg: DictConfig) -> dict[str, float]:
    m = cfg.model
    check_config(cfg)
    resume = resume_checkpoint(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)

    dm = ACTDataModule(dataset_config(cfg), cfg.paths.cache_dir, m.chunk_size, cfg.seed, m.n_obs_steps)
    store = dm.prepare()
    policy = ACTPolicy(build_policy_config(cfg, store), stats=store.stats, load_backbone_weights=resume is None)
    policy.configure_inference(cfg.policy.precision, cfg.policy.compile)  # for evaluation rollouts

    env = make_env(cfg.env)
    if env is not None:
        check_compatible(policy, env)
    monitor = ("eval/success_rate", "max") if env is not None and cfg.env.eval_freq > 0 else ("val/loss", "min")
    checkpoints = RunCheckpoints(output_dir / "checkpoints", cfg.checkpoint.save_freq, *monitor, cfg.env.eval_freq)
    metrics_callback = TrainingMetrics(len(dm.train_set), len(dm.train_episodes))
    callbacks = [metrics_callback]
    if env is not None and cfg.env.eval_freq > 0:
        callbacks.append(
            RolloutEvaluation(env, cfg.env.eval_freq, cfg.env.eval_episodes, cfg.env.max_steps, cfg.env.seed)
        )
    callbacks += [checkpoints, RNGState()]
    if cfg.trainer.enable_progress_bar:
        callbacks.append(StepProgressBar())
    callbacks.append(metrics_callback.clock)

    trainer = L.Trainer(
        **trainer_kwargs(cfg, has_validation=len(dm.val_set) > 0),
        callbacks=callbacks,
        logger=make_loggers(cfg) or False,
        plugins=[FolderCheckpointIO()],
        default_root_dir=output_dir,
    )
    run_config = OmegaConf.to_container(cfg, resolve=True)
    module = ACTLightningModule(policy, m.optimizer, m.scheduler, cfg.trainer.max_steps, run_config)
    describe(cfg, dm, policy, trainer)
    trainer.fit(module, datamodule=dm, ckpt_path=resume)

    if trainer.interrupted:
        log.info("Training interrupted; resume with resume=" + str(output_dir))
        return {}
    checkpoints.save(trainer, "final")
    checkpoints.save(trainer, "last")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if env is not None and cfg.env.final_eval_episodes > 0:
        final = evaluate_policy(policy, env, cfg.env.final_eval_episodes, cfg.env.max_steps, cfg.env.seed)
        log.info(format_eval(final, "final policy", cfg.env.final_eval_episodes))
        metrics.update({f"eval/{k}": v for k, v in final.items()})
        for logger in trainer.loggers:
            logger.log_metrics({f"eval/final_{k}": v for k, v in final.items()}, step=trainer.global_step)
            logger.save()
        (output_dir / "eval").mkdir(exist_ok=True)
        (output_dir / "eval" / "final_metrics.json").write_text(
            json.dumps(
                {**final, "episodes": cfg.env.final_eval_episodes, "seed": cfg.env.seed, "step": trainer.global_step},
                indent=2,
            )
        )
    if env is not None:
        env.close()
    close_loggers(trainer)
    log.info(f"Checkpoints: {output_dir / 'checkpoints'}")
    return metrics


def close_loggers(trainer: L.Trainer) -> None:
    """Ends the wandb run (Lightning leaves it open): its summary is written now, and the next job of a
    multirun, in the same process, starts a run of its own."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()
