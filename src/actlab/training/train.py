"""`train(cfg)`: data -> policy -> Lightning Trainer -> checkpoints -> final evaluation.

Returns the final metrics; the CLI hands `cfg.optimized_metric` of them to Hydra sweepers.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from actlab.config.compose import check_config, check_hardware
from actlab.config.policy import ACTArchitecture
from actlab.data.datamodule import ACTDataModule
from actlab.data.store import EpisodeStore
from actlab.devices import bf16_is_native, check_bf16
from actlab.errors import ActlabError
from actlab.features import ACTION, PolicyFeature
from actlab.io import remove_stale
from actlab.policy import ACTPolicy, ACTPolicyConfig
from actlab.policy.policy import CONFIG_NAME, check_weights
from actlab.sim.collect import dataset_config
from actlab.sim.envs import SimEnv, make_env
from actlab.sim.runner import SimRunner, check_compatible
from actlab.training.callbacks import (
    RNGState,
    RolloutEvaluation,
    RunCheckpoints,
    StepProgressBar,
    TrainingMetrics,
    evaluation_metrics,
    format_eval,
)
from actlab.training.checkpoint_io import FolderCheckpointIO, load_run_config
from actlab.training.ddp import distributed_job
from actlab.training.loggers import log_videos
from actlab.training.module import ACTLightningModule

log = logging.getLogger("actlab")

POLICY_KEYS = [f.name for f in fields(ACTArchitecture)]  # the model group's keys the policy keeps
RESUME_DATASET_KEYS = ["format", "root", "repo_id", "cameras", "val_split"]  # what decides the batch stream


def build_policy_config(cfg: DictConfig, store: EpisodeStore) -> ACTPolicyConfig:
    """The policy's config: the model group's architecture, the encoder, the data's features, and what
    deployment needs to know of the data (its rate, the action's names and range)."""
    model = cfg.model
    features = store.features
    action = store.stats[ACTION]
    return ACTPolicyConfig(
        input_features={k: f for k, f in features.items() if f.type != "ACTION"},
        output_features={k: f for k, f in features.items() if f.type == "ACTION"},
        encoder=OmegaConf.to_container(cfg.encoder, resolve=True),
        **{k: model[k] for k in POLICY_KEYS},
        fps=float(store.fps),
        action_names=store.dimension_names(ACTION),
        action_range={"min": action["min"].tolist(), "max": action["max"].tolist()},
    )


def resume_checkpoint(cfg: DictConfig) -> Path | None:
    """`checkpoints/last` of the `resume` run, after checking that this run continues it: same model
    settings and same data (a resumed run replays the batches the original would have seen)."""
    if not cfg.resume:
        return None
    last = Path(cfg.resume) / "checkpoints" / "last"
    if not (last / "training_state.pt").is_file():
        raise ActlabError(
            f"resume={cfg.resume}: no checkpoint at {last}; expected a run directory with checkpoints/last"
        )
    saved = load_run_config(last)
    current = OmegaConf.to_container(cfg, resolve=True)
    for group, keys in (("model", POLICY_KEYS), ("dataset", RESUME_DATASET_KEYS)):
        old, new = saved.get(group, {}), current[group]
        changed = [k for k in keys if k in old and old[k] != new[k]]
        if changed:
            k = changed[0]
            raise ActlabError(
                f"resume={cfg.resume}: {group}.{k} is {new[k]} but the run being resumed had {old[k]}; "
                "pass the same settings as that run (resume continues it)"
            )
    return last


def check_resumed_policy(last: Path, config: ACTPolicyConfig) -> None:
    """The checkpoint's own config.json must describe the policy this run builds: the same features (the
    same data) and architecture, so its weights load one for one."""
    saved = ACTPolicyConfig.load(last / CONFIG_NAME)
    difference = feature_difference(config, saved)
    if difference:
        key, new, old = difference
        raise ActlabError(
            f"resume={last.parents[1]}: '{key}' is {new} in this run's data but {old} in {last / CONFIG_NAME}; "
            "resume needs the data the run trained on"
        )
    changed = [k for k in [*POLICY_KEYS, "encoder"] if getattr(saved, k) != getattr(config, k)]
    if changed:
        k = changed[0]
        raise ActlabError(
            f"resume={last.parents[1]}: {last / CONFIG_NAME} has {k}={getattr(saved, k)} but this run builds "
            f"{k}={getattr(config, k)}; the checkpoint does not belong to this run"
        )


# Model keys that shape the weights (the others, e.g. n_action_steps, dropout, kl_weight, may change).
STRUCTURE_KEYS = [
    "n_obs_steps", "chunk_size", "dim_model", "n_heads", "dim_feedforward", "n_encoder_layers", "n_decoder_layers",
    "pre_norm", "use_vae", "latent_dim", "n_vae_encoder_layers",
]  # fmt: skip
ENCODER_KEYS = {
    "name": None,
    "fuse": "none",
    "model_name": None,
    "depth": None,
    "replace_final_stride_with_dilation": False,
}


def init_weights(policy: ACTPolicy, source: str) -> None:
    """`init_from`: fine-tuning starts from the weights of another policy folder (an actlab checkpoint or a
    LeRobot ACT folder) with the same features and architecture; normalisation statistics stay this
    dataset's (as lerobot-train does with --policy.path)."""
    other = ACTPolicy.from_pretrained(source)
    mine, theirs = policy.config, other.config
    difference = feature_difference(mine, theirs)
    if difference:
        key, new, old = difference
        raise ActlabError(
            f"init_from={source}: '{key}' is {new} in this run's data but {old} in that policy; fine-tuning "
            "needs data with the same features"
        )
    for key in STRUCTURE_KEYS:
        if getattr(mine, key) != getattr(theirs, key):
            raise ActlabError(
                f"init_from={source}: model.{key} is {getattr(mine, key)} but that policy has {getattr(theirs, key)}; "
                f"pass its architecture (model.{key}={getattr(theirs, key)})"
            )
    for key, default in ENCODER_KEYS.items():  # (a key a config leaves out has its default)
        a, b = mine.encoder.get(key) or default, theirs.encoder.get(key) or default
        if a != b:
            raise ActlabError(
                f"init_from={source}: encoder.{key} is {a} but that policy has {b}; pass its encoder settings"
            )
    weights = {k.removeprefix("model."): v for k, v in other.state_dict().items() if k.startswith("model.")}
    check_weights(policy.model.state_dict(), weights, Path(source))
    policy.model.load_state_dict(weights)
    log.info(f"Initialised the policy's weights from {source}")


def feature_difference(mine: ACTPolicyConfig, theirs: ACTPolicyConfig) -> tuple[str, str, str] | None:
    """The first feature (input or output) that differs between two policies, described in each."""
    a = {**mine.input_features, **mine.output_features}
    b = {**theirs.input_features, **theirs.output_features}
    for key in sorted({*a, *b}):
        if a.get(key) != b.get(key):
            return key, _feature(a.get(key)), _feature(b.get(key))
    return None


def _feature(feature: PolicyFeature | None) -> str:
    return "absent" if feature is None else f"{feature.type} {list(feature.shape)}"


def make_loggers(cfg: DictConfig) -> list:
    return [instantiate(conf) for conf in (cfg.logger or {}).values() if conf is not None]


def trainer_kwargs(cfg: DictConfig, has_validation: bool = True) -> dict[str, Any]:
    t = cfg.trainer
    return dict(
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=training_precision(t.precision, t.accelerator),
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
    """Trains and returns the final metrics. Bad input raises ActlabError before anything is written; the
    simulator and the loggers are closed however the run ends (Ctrl-C included)."""
    m = cfg.model
    check_config(cfg)
    check_hardware(cfg.trainer)
    # What a killed run left behind (a `last/` moved aside by an interrupted save is renamed back).
    remove_stale(Path(cfg.paths.output_dir) / "checkpoints")
    resume = resume_checkpoint(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    dm = ACTDataModule(dataset_config(cfg), cfg.paths.cache_dir, m.chunk_size, cfg.seed, m.n_obs_steps)
    store = dm.prepare()
    policy_config = build_policy_config(cfg, store)
    if resume is not None:
        check_resumed_policy(resume, policy_config)
    policy = ACTPolicy(policy_config, stats=store.stats, load_backbone_weights=resume is None and not cfg.init_from)
    if cfg.init_from:
        init_weights(policy, cfg.init_from)
    policy.configure_inference(cfg.policy.precision, cfg.policy.compile)  # for evaluation rollouts

    # Rollouts, videos and the final evaluation run on rank 0 only (other DDP processes build no simulator).
    env = make_env(cfg.env, video=cfg.env.video_episodes > 0) if rank_zero_only.rank == 0 else None
    loggers: list = []
    try:
        if env is not None:
            check_compatible(policy, env.features)
        loggers = make_loggers(cfg)
        with distributed_job(cfg):
            return fit_and_evaluate(cfg, dm, policy, env, loggers, resume)
    finally:
        if env is not None:
            env.close()
        close_loggers(loggers)


def fit_and_evaluate(
    cfg: DictConfig, dm: ACTDataModule, policy: ACTPolicy, env: SimEnv | None, loggers: list, resume: Path | None
) -> dict[str, float]:
    output_dir = Path(cfg.paths.output_dir)
    rollouts = cfg.env.type != "none" and cfg.env.eval_freq > 0  # the same decision on every rank
    monitor = ("eval/success_rate", "max") if rollouts else ("val/loss", "min")
    checkpoints = RunCheckpoints(output_dir / "checkpoints", cfg.checkpoint.save_freq, *monitor, cfg.env.eval_freq)
    metrics_callback = TrainingMetrics(len(dm.train_set), len(dm.train_episodes))
    callbacks = [metrics_callback]
    if env is not None and rollouts:
        e = cfg.env
        runner = SimRunner(e, e.eval_episodes, e.max_steps, e.seed, e.eval_workers, e.video_episodes, env)
        callbacks.append(RolloutEvaluation(runner, e.eval_freq, output_dir / "eval" / "videos"))
    callbacks += [checkpoints, RNGState()]
    if cfg.trainer.enable_progress_bar:
        callbacks.append(StepProgressBar())
    callbacks.append(metrics_callback.clock)
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]

    try:
        trainer = L.Trainer(
            **trainer_kwargs(cfg, has_validation=len(dm.val_set) > 0),
            callbacks=callbacks,
            logger=loggers or False,
            plugins=[FolderCheckpointIO()],
            default_root_dir=output_dir,
        )
    except (MisconfigurationException, ValueError) as e:  # e.g. an unknown trainer.precision
        raise ActlabError(f"trainer: {e}") from None
    run_config = OmegaConf.to_container(cfg, resolve=True)
    module = ACTLightningModule(policy, cfg.model.optimizer, cfg.model.scheduler, cfg.trainer.max_steps, run_config)
    if cfg.trainer.compile:
        # In place: the state dict keeps its names. Rollouts run the inference runtime (`policy.compile`).
        # The cached position table it traces through is a pure function of the feature map's size.
        warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
        policy.compile()
    describe(cfg, dm, policy, trainer)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=resume)
    except SystemExit:  # Lightning calls sys.exit after a Ctrl-C, once it has torn the trainer down
        if trainer.interrupted:
            log.info(f"Training interrupted at step {trainer.global_step}")
            raise KeyboardInterrupt from None  # what a Ctrl-C anywhere else raises (a notebook survives it)
        raise

    checkpoints.save(trainer, "last")  # first, as for every save: what a resume reads is never missing
    checkpoints.save(trainer, "final")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if env is not None and cfg.env.final_eval_episodes > 0:
        e = cfg.env
        video_dir = output_dir / "eval" / "videos" / "final"
        runner = SimRunner(e, e.final_eval_episodes, e.max_steps, e.seed, e.eval_workers, e.video_episodes, env)
        final = evaluation_metrics(runner.run(policy, video_dir))
        log.info(format_eval(final, "final policy", cfg.env.final_eval_episodes))
        if e.video_episodes:
            log_videos(
                trainer.loggers,
                "eval/final_videos",
                sorted(map(str, video_dir.glob("*.mp4"))),
                trainer.global_step,
                env.fps,
            )
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
    log.info(f"Checkpoints: {output_dir / 'checkpoints'}")
    return metrics


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value of `optimized_metric` that the CLI returns to Hydra sweepers (from rank 0, which ran the
    evaluation; the other DDP processes return None)."""
    if not cfg.optimized_metric or rank_zero_only.rank != 0:
        return None
    if cfg.optimized_metric not in metrics:
        raise ActlabError(
            f"optimized_metric={cfg.optimized_metric} was not logged by this run (e.g. val/loss needs held-out "
            f"episodes); it logged {sorted(metrics)}"
        )
    return metrics[cfg.optimized_metric]


def training_precision(precision: str, accelerator: str) -> str:
    """`trainer.precision=auto`: bf16-mixed on a GPU with bf16 or a CPU with native bf16 instructions,
    16-mixed on an older GPU, 32-true otherwise. An explicit bf16 on a CPU that emulates it warns once."""
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    device = "cuda" if on_gpu else "cpu"
    if precision == "auto":
        return "bf16-mixed" if bf16_is_native(device) else ("16-mixed" if on_gpu else "32-true")
    if str(precision).startswith("bf16"):
        check_bf16(f"trainer.precision={precision}", device)
    return precision


def close_loggers(loggers: list) -> None:
    """Flushes every logger and ends the wandb run (Lightning leaves it open): its summary is written now,
    and the next job of a multirun, in the same process, starts a run of its own."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()
