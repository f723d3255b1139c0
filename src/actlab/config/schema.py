"""Structured-config schemas: one dataclass per config group, registered in Hydra's ConfigStore.

`conf/train.yaml` lists `train_schema` first in its defaults, so every group option is merged onto
these typed nodes: a misspelt key or a value of the wrong type fails at compose time with Hydra's own
message. Key names follow LeRobot's ACTConfig (model) and Lightning's Trainer (trainer).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from actlab.config.policy import ACTArchitecture


@dataclass
class OptimizerConfig:
    lr: float = 1e-5
    lr_backbone: float = 1e-5
    weight_decay: float = 1e-4


@dataclass
class SchedulerConfig:
    name: str = "constant"  # constant | cosine (after a linear warm-up)
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.0  # cosine only: final lr = lr * min_lr_ratio


@dataclass
class ModelConfig(ACTArchitecture):
    """The ACT architecture (LeRobot's ACTConfig names) plus its optimiser preset."""

    name: str = MISSING
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


@dataclass
class EncoderConfig:
    """The image backbone (actlab.policy.encoders). Keys an encoder does not use are ignored by it."""

    name: str = "resnet18"  # resnet18 | clip | pri3d
    pretrained: str | None = "imagenet"  # resnet18: imagenet; clip: openai; pri3d: pri3d; null = random init
    weights: str | None = None  # local weights file; else the library's cache (torchvision, Hugging Face)
    freeze: bool = False  # no gradients reach the backbone; its parameters stay out of the optimiser
    fuse: str = "none"  # none (one token per feature cell per camera) | mean | concat_mlp | gated
    model_name: str | None = None  # clip: open_clip model (default ViT-B-32)
    depth: int | None = None  # pri3d: ResNet depth, 50 (default) or 18/34/101
    replace_final_stride_with_dilation: bool = False  # resnets: layer4 at stride 16 instead of 32
    norm: str = "frozen_batch_norm"  # resnets: frozen_batch_norm (LeRobot's) | group_norm (random init only)
    feature_layer: str = "layer4"  # resnets: layer4 (stride 32, LeRobot's) | layer3 (stride 16, the trunk's first 3/4)


@dataclass
class DemoCollectionConfig:
    """Scripted demonstrations written into a LeRobot dataset when the dataset folder is missing."""

    episodes: int = 50
    seed: int = 0
    max_steps: int = 200
    action_noise: float = 0.0  # std of Gaussian noise on executed actions (recorded actions stay clean)
    video: bool = True  # cameras stored as mp4 (LeRobot default) or png images
    workers: int = 1  # simulator processes recording episodes (1 = in this process); same dataset for any count


@dataclass
class AugmentConfig:
    """Training-split image augmentation (off by default)."""

    enabled: bool = False
    crop_scale: list[float] = field(default_factory=lambda: [0.85, 1.0])  # crop area fraction, resized back
    shift: int = 0  # random shift (DrQ): pad by this many edge pixels, crop back to the image size
    brightness: float = 0.2  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02  # shift drawn from [-h, h] (fraction of the hue circle)


DEFAULT_CAMERA_MAP = {"image_left": "left", "image_right": "right"}  # (npy) the bimanual layout's camera keys


@dataclass
class DatasetConfig:
    name: str = MISSING
    format: str = "lerobot"
    root: str | None = None
    repo_id: str | None = None
    cameras: list[str] | None = None  # camera names to use; null = every camera in the data
    batch_size: int = 8
    num_workers: int = 0
    val_split: float = 0.1
    collect: DemoCollectionConfig | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # npy format (LeRobot layouts carry these in meta/info.json)
    fps: float = 30.0
    allow_pickle: bool = False  # observations.npy of Python objects needs pickle, which can run code
    # observation key -> camera name; null = DEFAULT_CAMERA_MAP. Untyped and null by default so that an
    # override `dataset.camera_map={top_rgb: top}` replaces the map: Hydra merges a map into a typed one
    # (refusing new keys) and OmegaConf fails to merge into a null typed one. The npy reader checks it.
    camera_map: Any = None
    state_key: str = "state"


@dataclass
class EnvConfig:
    name: str = MISSING
    type: str = "none"  # none | robosuite | aloha
    task: str | None = None
    robot: str = "Panda"
    control_freq: int = 20
    cameras: list[str] = field(default_factory=list)
    image_size: list[int] = field(default_factory=lambda: [96, 96])  # height, width
    state_keys: list[str] = field(default_factory=list)
    env_state_keys: list[str] = field(default_factory=list)
    reward_shaping: bool = True
    eval_freq: int = 0  # 0 = no evaluation during training
    eval_episodes: int = 10
    final_eval_episodes: int = 10
    eval_workers: int = 1  # simulator processes for the training run's evaluations (1 = in the training process)
    max_steps: int = 400
    seed: int = 100_000  # evaluation episode i uses seed + i (demonstrations use other seeds)
    video_episodes: int = 0  # in-training evaluations record MP4s of their first N episodes (logged too)
    video_camera: str | None = None  # the camera videos are rendered from (any camera, policy's or not)
    video_size: list[int] = field(default_factory=lambda: [240, 320])  # height, width of video frames


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"  # the hardware group sets auto: bf16-mixed where the device runs bf16 natively
    max_steps: int = 100_000
    gradient_clip_val: float = 10.0
    log_every_n_steps: int = 100
    val_check_interval: int = 1000
    limit_val_batches: Any = 50
    enable_progress_bar: bool = True
    deterministic: bool = False
    compile: bool = False  # torch.compile the training forward and backward (a few minutes of compiling first)


@dataclass
class PolicyRuntimeConfig:
    """How the trained policy runs when it acts (evaluation rollouts, deployment)."""

    precision: str = "fp32"  # fp32 | bf16 (autocast of matmuls and convolutions) | auto (bf16 where native)
    compile: bool = False  # torch.compile the network (first call compiles; needs a C++ compiler on CPU)


@dataclass
class CheckpointConfig:
    save_freq: int = 10_000


@dataclass
class PathsConfig:
    data_dir: str = MISSING
    cache_dir: str = MISSING
    output_dir: str = MISSING


@dataclass
class TrainConfig:
    task_name: str = "train"
    seed: int = 1000
    resume: str | None = None
    init_from: str | None = None  # a policy folder (actlab checkpoint or LeRobot ACT) whose weights start training
    optimized_metric: str | None = None
    paths: PathsConfig = field(default_factory=PathsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    policy: PolicyRuntimeConfig = field(default_factory=PolicyRuntimeConfig)
    logger: dict[str, Any] = field(default_factory=dict)
    # Lightning callbacks added to actlab's own, by name, each instantiated from its _target_
    callbacks: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalOptions:
    """How `actlab-eval` evaluates (the policy and its settings come from `checkpoint`)."""

    mode: str = "auto"  # auto (the simulator when env.type is set, else the dataset) | sim | dataset
    episodes: list[int] | None = None  # dataset mode: episodes to replay; null = the run's held-out episodes
    videos: int = 2  # sim mode: MP4s of the first N episodes, rendered from env.video_camera
    video: bool = False  # dataset mode: an MP4 per episode, the cameras beside a live plot of the actions
    plots: bool = True  # dataset mode: a PNG per episode, predicted vs recorded actions
    num_workers: int = 1  # sim mode: simulator processes (1 = in this process), one batched policy
    device: str = "auto"  # auto (cuda when there is one) | cpu | cuda


@dataclass
class CheckpointRunConfig:
    """What the commands that use a trained policy share: a checkpoint and its training run's settings
    (registered as `checkpoint_run`, actlab.config.checkpoint), overridden from the command line."""

    checkpoint: str = MISSING
    task_name: str = MISSING
    seed: int = 1000  # with dataset.val_split, picks the held-out episodes, as in training
    paths: PathsConfig = field(default_factory=PathsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyRuntimeConfig = field(default_factory=PolicyRuntimeConfig)


@dataclass
class EvalConfig(CheckpointRunConfig):
    """`conf/eval.yaml` (actlab-eval)."""

    eval: EvalOptions = field(default_factory=EvalOptions)


@dataclass
class ServeOptions:
    """How `actlab-serve` serves the checkpoint's policy (openpi's websocket + msgpack-numpy protocol)."""

    host: str = "127.0.0.1"  # loopback only; another address without an api_key warns
    port: int = 8000  # 0 = any free port
    api_key: str | None = None  # or $ACTLAB_API_KEY: clients send `Authorization: Api-Key <key>`
    max_message_mb: float = 64.0  # larger frames close the connection
    # feature name -> the request's (dotted) key, or a list of keys concatenated; untyped and null by
    # default so that `serve.key_map={...}` replaces it (see DatasetConfig.camera_map)
    key_map: Any = None
    actions_key: str = "actions"  # the reply's key for the action chunk (seed 004's client: action)
    device: str = "auto"  # auto (cuda when there is one) | cpu | cuda


@dataclass
class ServeConfig(CheckpointRunConfig):
    """`conf/serve.yaml` (actlab-serve)."""

    serve: ServeOptions = field(default_factory=ServeOptions)


@dataclass
class ControlOptions:
    """The fixed-rate control loop of `actlab-deploy` (actlab.deploy.loop)."""

    frequency: float = 10.0  # Hz
    refill_threshold: float = 0.0  # 0: select_action (wait for a chunk when the queue is empty); >0: refill in
    # the background when fewer than threshold * n_action_steps planned actions remain
    merge: str = "latest"  # overlapping chunks (threshold > 0): latest | average | ensemble
    ensemble_coeff: float = 0.01  # merge=ensemble: weights exp(-coeff * i), i = 0 for the oldest chunk
    clip: bool = True  # clip actions to the training data's range ...
    clip_margin: float = 0.05  # ... widened by this fraction of its width on each side
    max_latency: float = 0.5  # s without a fresh action before the watchdog acts
    on_timeout: str = "hold"  # hold (repeat the last action) | stop
    dry_run: bool = False  # compute actions but never send them
    episodes: int = 1  # episodes to run (a robot without `done` runs until max_steps or Ctrl-C)
    max_steps: int | None = None  # ticks per episode; null = until the robot is done
    device: str = "auto"  # the in-process policy's device: auto | cpu | cuda


@dataclass
class DeployPolicyConfig(PolicyRuntimeConfig):
    server: str | None = None  # ws://host:port of actlab-serve: the policy runs there, not in this process
    api_key: str | None = None  # the server's serve.api_key


@dataclass
class DeployConfig(CheckpointRunConfig):
    """`conf/deploy.yaml` (actlab-deploy)."""

    checkpoint: str | None = None  # the policy (and, with robot=sim, its env); optional with policy.server
    policy: DeployPolicyConfig = field(default_factory=DeployPolicyConfig)
    robot: Any = None  # the adapter: conf/robot/<name>.yaml, instantiated from its _target_
    control: ControlOptions = field(default_factory=ControlOptions)


def run_dir(resume: str | None, fresh: str) -> str:
    """Resolver behind `hydra.run.dir`: `resume=<run dir>` continues in that directory when it holds a
    checkpoint; otherwise the run starts in a fresh one (and `train` reports the bad resume path)."""
    if resume and has_last_checkpoint(Path(resume)):
        return str(resume)
    return fresh


def has_last_checkpoint(run: Path) -> bool:
    """`checkpoints/last` is there, or can be recovered (moved aside by a save that a kill interrupted on a
    system without atomic folder exchange; `actlab.io.remove_stale` renames it back)."""
    checkpoints = run / "checkpoints"
    return (checkpoints / "last" / "training_state.pt").is_file() or any(
        checkpoints.glob(".last.old-*/training_state.pt")
    )


def optimization_direction(metric: str | None) -> str:
    """Resolver behind the sweeper's direction: success rates and rewards up, losses down."""
    return "maximize" if metric and str(metric).startswith("eval/") and "length" not in str(metric) else "minimize"


def register_configs() -> None:
    """The schema in Hydra's ConfigStore and actlab's resolvers in OmegaConf (idempotent)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    # conf/hydra/launcher/joblib.yaml sets the plugin's options; Hydra validates it against the plugin's schema
    # of the same name, as intended, and warns that this will change in a version it never released.
    warnings.filterwarnings("ignore", message=r"(?s).*'hydra/launcher/joblib' is validated against ConfigStore")
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    ConfigStore.instance().store(name="eval_schema", node=EvalConfig)
    ConfigStore.instance().store(name="serve_schema", node=ServeConfig)
    ConfigStore.instance().store(name="deploy_schema", node=DeployConfig)
    OmegaConf.register_new_resolver("actlab.run_dir", run_dir, replace=True)
    OmegaConf.register_new_resolver("actlab.direction", optimization_direction, replace=True)
