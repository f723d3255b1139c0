"""`train(cfg)`: data -> policy -> Lightning Trainer -> checkpoints -> final evaluation.

Returns the final metrics; the CLI hands `cfg.optimized_metric` of them to Hydra sweepers.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from actlab.config.compose import check_config, check_hardware
from actlab.config.policy import ARCHITECTURE_KEYS
from actlab.config.schema import DatasetConfig
from actlab.data.datamodule import ACTDataModule
from actlab.data.store import EpisodeStore
from actlab.entry import lightning_sigterm
from actlab.errors import ActlabError
from actlab.features import ACTION, OBS_STATE
from actlab.io import remove_stale
from actlab.policy import ACTPolicy, ACTPolicyConfig
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
from actlab.training.ddp import distributed_job
from actlab.training.loggers import close_loggers, log_videos, make_loggers
from actlab.training.module import ACTLightningModule
from actlab.training.preemption import requeued_checkpoint
from actlab.training.resume import check_resumed_policy, init_weights, resume_checkpoint
from actlab.training.trainer import build_trainer

log = logging.getLogger("actlab")


def build_policy_config(cfg: DictConfig, store: EpisodeStore) -> ACTPolicyConfig:
    """The policy's config: the model group's architecture, the encoder, the data's features, and what
    deployment needs to know of the data (its rate, the action's names and range)."""
    model = cfg.model
    features = store.features
    action = store.stats[ACTION]
    return ACTPolicyConfig(
        input_features={k: f for k, f in features.items() if f.type != "ACTION"},
        output_features={k: f for k, f in features.items() if f.type == "ACTION"},
        encoder=OmegaConf.to_object(cfg.encoder),
        **{k: model[k] for k in ARCHITECTURE_KEYS},
        fps=float(store.fps),
        action_names=store.dimension_names(ACTION),
        state_names=store.names.get(OBS_STATE) if OBS_STATE in features else None,
        action_range={"min": action["min"].tolist(), "max": action["max"].tolist()},
    )


def dataset_roots(cfg: DictConfig, store: EpisodeStore) -> list[str]:
    """`Root: <folder>`, or a line per dataset of a list root (its size and sampling weight)."""
    parts = store.parts
    if len(parts) == 1:
        return [f"Root: {parts[0].root}"]
    weights = cfg.dataset.weights or [None] * len(parts)
    return [
        f"Root {i + 1}/{len(parts)}: {p.root} ({p.num_episodes} episodes, {p.num_frames:,} frames"
        + (f", weight {w:g})" if w is not None else ")")
        for i, (p, w) in enumerate(zip(parts, weights, strict=True))
    ]


def describe(cfg: DictConfig, dm: ACTDataModule, policy: ACTPolicy, trainer: L.Trainer) -> None:
    store = dm.store
    total = sum(p.numel() for p in policy.parameters())
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    lines = [
        "=" * 60,
        f"actlab: training ACT (model={cfg.model.name}, encoder={cfg.encoder.name})",
        "=" * 60,
        f"Dataset: {store.name}",
        *dataset_roots(cfg, store),
        f"  Episodes: {store.num_episodes} (train {len(dm.train_episodes)}, val {len(dm.val_episodes)})",
        f"  Frames: {store.num_frames:,}",
        f"  FPS: {store.fps:g}",
        "Input features:",
        *[f"  {k}: shape={tuple(f.shape)}" for k, f in policy.config.input_features.items()],
        "Output features:",
        *[f"  {k}: shape={tuple(f.shape)}" for k, f in policy.config.output_features.items()],
        f"Policy: {total:,} parameters ({trainable:,} trainable)",
        f"Device: {trainer.strategy.root_device} (precision {trainer.precision}"
        f"{' from trainer.precision=auto' if cfg.trainer.precision == 'auto' else ''}, "
        f"{trainer.world_size} process(es))",
        f"Steps: {cfg.trainer.max_steps:,} at batch {cfg.dataset.batch_size}, lr {cfg.model.optimizer.lr:g} "
        f"(backbone {cfg.model.optimizer.lr_backbone:g}), {cfg.model.scheduler.name} after "
        f"{cfg.model.scheduler.warmup_steps} warm-up steps",
        f"Output: {cfg.paths.output_dir}",
        "=" * 60,
    ]
    for line in lines:
        log.info(line)


def train(cfg: DictConfig, data: DatasetConfig | None = None, store: EpisodeStore | None = None) -> dict[str, float]:
    """Trains and returns the final metrics. Bad input raises ActlabError before anything is written; the
    simulator and the loggers are closed however the run ends (Ctrl-C included). `data` and `store`: the
    dataset's settings (`dataset_config(cfg)`) and its contents, when the caller has read them already (the
    command line does, before importing this module)."""
    m = cfg.model
    check_config(cfg)
    check_hardware(cfg.trainer)
    # What a killed run left behind (a `last/` moved aside by an interrupted save is renamed back).
    remove_stale(Path(cfg.paths.output_dir) / "checkpoints")
    resume = resume_checkpoint(cfg)
    if resume is None and (resume := requeued_checkpoint(cfg.paths.output_dir)) is not None:
        log.info(f"Requeued job: resuming from {resume}")
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    data = data or dataset_config(cfg)
    dm = ACTDataModule(data, cfg.paths.cache_dir, m.chunk_size, cfg.seed, m.n_obs_steps, store)
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

    trainer = build_trainer(cfg, callbacks, loggers, has_validation=len(dm.val_set) > 0)
    run_config = OmegaConf.to_container(cfg, resolve=True)
    module = ACTLightningModule(policy, cfg.model.optimizer, cfg.model.scheduler, cfg.trainer.max_steps, run_config)
    if cfg.trainer.compile:
        # In place: the state dict keeps its names. Rollouts run the inference runtime (`policy.compile`).
        # The cached position table it traces through is a pure function of the feature map's size.
        warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
        policy.compile()
    describe(cfg, dm, policy, trainer)
    try:
        with lightning_sigterm():
            trainer.fit(module, datamodule=dm, ckpt_path=resume)
    except SystemExit:  # Lightning calls sys.exit after a Ctrl-C, once it has torn the trainer down
        if checkpoints.requeue.requested:  # submitit requeued the job (its exit status says so)
            raise
        if trainer.interrupted:  # Ctrl-C, or SIGTERM (RunCheckpoints has saved last/ first)
            how = " by SIGTERM" if trainer.received_sigterm else ""
            log.info(f"Training interrupted{how} at step {trainer.global_step}")
            raise KeyboardInterrupt from None  # what a Ctrl-C anywhere else raises (a notebook survives it)
        raise

    checkpoints.save(trainer, "last")  # first, as for every save: what a resume reads is never missing
    checkpoints.save(trainer, "final")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if env is not None and cfg.env.final_eval_episodes > 0:
        metrics.update(final_evaluation(cfg, policy, env, trainer))
    log.info(f"Checkpoints: {output_dir / 'checkpoints'}")
    return metrics


def final_evaluation(cfg: DictConfig, policy: ACTPolicy, env: SimEnv, trainer: L.Trainer) -> dict[str, float]:
    """`env.final_eval_episodes` episodes of the final policy: logged, written to eval/final_metrics.json and
    returned as eval/* metrics."""
    e, output_dir = cfg.env, Path(cfg.paths.output_dir)
    video_dir = output_dir / "eval" / "videos" / "final"
    runner = SimRunner(e, e.final_eval_episodes, e.max_steps, e.seed, e.eval_workers, e.video_episodes, env)
    final = evaluation_metrics(runner.run(policy, video_dir))
    log.info(format_eval(final, "final policy", e.final_eval_episodes))
    if e.video_episodes:
        videos = sorted(map(str, video_dir.glob("*.mp4")))
        log_videos(trainer.loggers, "eval/final_videos", videos, trainer.global_step, env.fps)
    for logger in trainer.loggers:
        logger.log_metrics({f"eval/final_{k}": v for k, v in final.items()}, step=trainer.global_step)
        logger.save()
    (output_dir / "eval").mkdir(exist_ok=True)
    summary = {**final, "episodes": e.final_eval_episodes, "seed": e.seed, "step": trainer.global_step}
    (output_dir / "eval" / "final_metrics.json").write_text(json.dumps(summary, indent=2))
    return {f"eval/{k}": v for k, v in final.items()}


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
