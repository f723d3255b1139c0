"""Structured-config schemas of the commands' configs, registered in Hydra's ConfigStore.

`conf/train.yaml` lists `train_schema` first in its defaults, so every group option is merged onto
these typed nodes: a misspelt key or a value of the wrong type fails at compose time with Hydra's own
message. The `encoder`, `dataset` and `env` groups have one schema per option (actlab.config.encoders,
.datasets, .envs): the fields below hold their base classes and each option's yaml brings its own
subclass. Key names follow LeRobot's ACTConfig (model) and Lightning's Trainer (trainer).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from actlab.config.datasets import DatasetConfig
from actlab.config.encoders import EncoderConfig
from actlab.config.envs import EnvConfig
from actlab.config.options import store_option_schemas
from actlab.config.policy import ACTArchitecture
from actlab.config.ranges import COUNT, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, SEED, UNIT, between
from actlab.config.resolvers import optimization_direction, run_dir
from actlab.errors import ActlabError


@dataclass
class OptimizerConfig:
    lr: float = field(default=1e-5, metadata=POSITIVE)
    lr_backbone: float = field(default=1e-5, metadata=NON_NEGATIVE)  # 0: the backbone is not trained
    weight_decay: float = field(default=1e-4, metadata=NON_NEGATIVE)


@dataclass
class SchedulerConfig:
    name: str = "constant"  # constant | cosine (after a linear warm-up)
    warmup_steps: int = field(default=1000, metadata=NON_NEGATIVE_INT)
    min_lr_ratio: float = field(default=0.0, metadata=UNIT)  # cosine only: final lr = lr * min_lr_ratio


@dataclass
class ModelConfig(ACTArchitecture):
    """The ACT architecture (LeRobot's ACTConfig names) plus its optimiser preset."""

    name: str = MISSING
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


ACTLAB_ONLY = {"actlab_only": True}  # field metadata: a trainer key that is not an argument of Lightning's Trainer


@dataclass
class TrainerConfig:
    """Lightning's Trainer arguments (actlab.training.trainer passes every field not marked ACTLAB_ONLY)."""

    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = field(default=1, metadata=COUNT)
    precision: str = "32-true"  # the hardware group sets auto: bf16-mixed where the device runs bf16 natively
    max_steps: int = field(default=100_000, metadata=NON_NEGATIVE_INT)  # 0: the initial weights saved as final/
    gradient_clip_val: float = field(default=10.0, metadata=NON_NEGATIVE)  # 0: no clipping
    log_every_n_steps: int = field(default=100, metadata=COUNT)
    val_check_interval: int = field(default=1000, metadata=COUNT)
    limit_val_batches: Any = 50
    enable_progress_bar: bool = True
    deterministic: bool = False
    # torch.compile the training forward and backward (a few minutes of compiling first)
    compile: bool = field(default=False, metadata=ACTLAB_ONLY)

    def check(self) -> None:
        if str(self.precision) not in TRAINER_PRECISIONS:
            raise ActlabError(f"trainer.precision={self.precision!r} is not one of {list(TRAINER_PRECISIONS)}")


# trainer.precision: actlab's `auto` and what Lightning 2's Trainer accepts (tests/test_config.py compares them),
# checked when the config is composed instead of once Lightning has been imported.
TRAINER_PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
TRAINER_PRECISIONS += ("transformer-engine", "transformer-engine-float16", "32", "16", "64", "bf16")


POLICY_PRECISIONS = ("auto", "fp32", "bf16")  # policy.precision (actlab.policy.runtime)


@dataclass
class PolicyRuntimeConfig:
    """How the trained policy runs when it acts (evaluation rollouts, deployment)."""

    precision: str = "fp32"  # fp32 | bf16 (autocast of matmuls and convolutions) | auto (bf16 where native)
    compile: bool = False  # torch.compile the network (first call compiles; needs a C++ compiler on CPU)

    def check(self) -> None:
        if self.precision not in POLICY_PRECISIONS:
            raise ActlabError(f"policy.precision={self.precision!r} is not one of {list(POLICY_PRECISIONS)}")


POLICY_RUNTIMES = ("torch", "onnx")  # policy.runtime (actlab.policy.onnx_backend)


@dataclass
class ActingPolicyConfig(PolicyRuntimeConfig):
    """`policy` of the commands that act with a trained policy (actlab-eval, -serve, -deploy): also which
    runtime computes its action chunks. The action selection (queue, n_action_steps, temporal ensembling,
    background refill) is the same for both; precision and compile are the torch runtime's."""

    runtime: str = "torch"  # torch | onnx (chunks from ONNX Runtime running the exported policy.onnx)
    # runtime=onnx: a folder written by `actlab-export CKPT OUT format=onnx`; null = exported (and checked)
    # into the run directory's onnx/
    onnx: str | None = None
    # runtime=onnx: ONNX Runtime's execution providers, in order of preference
    onnx_providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])

    def check(self) -> None:
        super().check()
        if self.runtime not in POLICY_RUNTIMES:
            raise ActlabError(f"policy.runtime={self.runtime!r} is not one of {list(POLICY_RUNTIMES)}")
        if self.onnx and self.runtime != "onnx":
            raise ActlabError(f"policy.onnx={self.onnx} is read by policy.runtime=onnx only; add policy.runtime=onnx")
        providers = self.onnx_providers
        if not providers or not all(isinstance(p, str) and p.endswith("ExecutionProvider") for p in providers):
            raise ActlabError(
                f"policy.onnx_providers={list(providers)}; expected a list of ONNX Runtime execution providers, "
                "e.g. [CPUExecutionProvider] or [CUDAExecutionProvider,CPUExecutionProvider]"
            )


@dataclass
class CheckpointConfig:
    save_freq: int = field(default=10_000, metadata=NON_NEGATIVE_INT)  # 0: no step_<N>/ folders


@dataclass
class PathsConfig:
    data_dir: str = MISSING
    cache_dir: str = MISSING
    output_dir: str = MISSING


@dataclass
class TrainConfig:
    task_name: str = "train"
    seed: int = field(default=1000, metadata=SEED)
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
    # sim mode: MP4s of the first N episodes, rendered from env.video_camera
    videos: int = field(default=2, metadata=NON_NEGATIVE_INT)
    video: bool = False  # dataset mode: an MP4 per episode, the cameras beside a live plot of the actions
    plots: bool = True  # dataset mode: a PNG per episode, predicted vs recorded actions
    # sim mode: simulator processes (1 = in this process), one batched policy
    num_workers: int = field(default=1, metadata=COUNT)
    device: str = "auto"  # auto (cuda when there is one) | cpu | cuda


@dataclass
class CheckpointRunConfig:
    """What the commands that use a trained policy share: a checkpoint and its training run's settings
    (registered as `checkpoint_run`, actlab.config.checkpoint), overridden from the command line."""

    checkpoint: str = MISSING
    task_name: str = MISSING
    # with dataset.val_split, picks the held-out episodes, as in training
    seed: int = field(default=1000, metadata=SEED)
    paths: PathsConfig = field(default_factory=PathsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: ActingPolicyConfig = field(default_factory=ActingPolicyConfig)


@dataclass
class EvalConfig(CheckpointRunConfig):
    """`conf/eval.yaml` (actlab-eval)."""

    eval: EvalOptions = field(default_factory=EvalOptions)


@dataclass
class ServeOptions:
    """How `actlab-serve` serves the checkpoint's policy (openpi's websocket + msgpack-numpy protocol)."""

    host: str = "127.0.0.1"  # loopback only; another address without an api_key warns
    port: int = field(default=8000, metadata=between(0, 65535, integer=True))  # 0 = any free port
    # or serve.api_key_file, or $ACTLAB_API_KEY: clients send `Authorization: Api-Key <key>`. A key given on
    # the command line is taken off it before Hydra sees it: no file the run writes holds it.
    api_key: str | None = None
    api_key_file: str | None = None  # a file whose first line is the key
    max_message_mb: float = field(default=64.0, metadata=POSITIVE)  # larger frames close the connection
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

    frequency: float = field(default=10.0, metadata=POSITIVE)  # Hz
    # 0: select_action (wait for a chunk when the queue is empty); >0: refill in
    # the background when fewer than threshold * n_action_steps planned actions remain
    refill_threshold: float = field(default=0.0, metadata=UNIT)
    merge: str = "latest"  # overlapping chunks (threshold > 0): latest | average | ensemble
    # merge=ensemble: weights exp(-coeff * i), i = 0 for the oldest chunk
    ensemble_coeff: float = field(default=0.01, metadata=NON_NEGATIVE)
    clip: bool = True  # clip actions to the training data's range ...
    # ... widened by this fraction of its width on each side
    clip_margin: float = field(default=0.05, metadata=NON_NEGATIVE)
    max_latency: float = field(default=0.5, metadata=POSITIVE)  # s without a fresh action before the watchdog acts
    on_timeout: str = "hold"  # hold (repeat the last action) | stop
    # s a served policy's reply may take before the connection is dropped
    request_timeout: float = field(default=2.0, metadata=POSITIVE)
    reconnect: bool = True  # open a lost connection to the policy server again (the loop holds meanwhile)
    # s between reconnection attempts: from backoff_min, doubling ...
    backoff_min: float = field(default=0.1, metadata=POSITIVE)
    backoff_max: float = field(default=2.0, metadata=between("backoff_min", None))  # ... up to backoff_max
    dry_run: bool = False  # compute actions but never send them
    # episodes to run (a robot without `done` runs until max_steps or Ctrl-C)
    episodes: int = field(default=1, metadata=COUNT)
    max_steps: int | None = field(default=None, metadata=COUNT)  # ticks per episode; null = until the robot is done
    device: str = "auto"  # the in-process policy's device: auto | cpu | cuda
    # Recording (actlab.deploy.recording): the episodes as a LeRobot v3.0 dataset in this new folder
    record: str | None = None
    repo_id: str | None = None  # the recording's repo id (default local/<folder name>)
    task: str = "run the policy"  # the recording's task string
    push_to_hub: bool = False  # upload the recording to the hub as repo_id when the run ends
    record_video: bool = True  # camera frames as mp4 videos (LeRobot's default); false = PNG images
    display: bool = False  # show cameras, state, planned and sent actions live in rerun (actlab.deploy.display)
    display_to: str | None = None  # null: spawn a viewer; rerun+http://host:9876/proxy; or a .rrd file


@dataclass
class DeployPolicyConfig(ActingPolicyConfig):
    server: str | None = None  # ws://host:port of actlab-serve: the policy runs there, not in this process
    api_key: str | None = None  # the server's serve.api_key (or $ACTLAB_API_KEY; never written into the run)

    def check(self) -> None:
        super().check()
        if self.server and self.runtime != "torch":
            raise ActlabError(
                f"policy.runtime={self.runtime} runs the policy in this process but policy.server={self.server} "
                "runs it on the server; start the server with policy.runtime=onnx instead"
            )


@dataclass
class DeployConfig(CheckpointRunConfig):
    """`conf/deploy.yaml` (actlab-deploy)."""

    checkpoint: str | None = None  # the policy (and, with robot=sim, its env); optional with policy.server
    policy: DeployPolicyConfig = field(default_factory=DeployPolicyConfig)
    robot: Any = None  # the adapter: conf/robot/<name>.yaml, instantiated from its _target_
    control: ControlOptions = field(default_factory=ControlOptions)


def register_configs() -> None:
    """The schema in Hydra's ConfigStore and actlab's resolvers in OmegaConf (idempotent)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    # conf/hydra/launcher/joblib.yaml sets the plugin's options; Hydra validates it against the plugin's schema
    # of the same name, as intended, and warns that this will change in a version it never released.
    warnings.filterwarnings("ignore", message=r"(?s).*'hydra/launcher/joblib' is validated against ConfigStore")
    store_option_schemas()
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    ConfigStore.instance().store(name="eval_schema", node=EvalConfig)
    ConfigStore.instance().store(name="serve_schema", node=ServeConfig)
    ConfigStore.instance().store(name="deploy_schema", node=DeployConfig)
    OmegaConf.register_new_resolver("actlab.run_dir", run_dir, replace=True)
    OmegaConf.register_new_resolver("actlab.direction", optimization_direction, replace=True)
