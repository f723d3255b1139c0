"""Seconds per training step of `model=baseline` (2 cameras 96x96, batch 8, chunk 100), actlab against
LeRobot, and their loss curves over the same first steps, side by side in one run.

LeRobot: `ACTPolicy` from lerobot 0.4.4, one update as `lerobot-train` does it (forward, backward, gradient
clipping at 10, AdamW at a constant lr), on exactly the batches actlab's loader draws for the same seed,
after LeRobot's own pre-processor. actlab: real `train(cfg)` runs (Lightning, loggers, callbacks) that
start from LeRobot's initial weights (`init_from`), with the same optimiser settings and no warm-up; the
step time is `train/update_s` from metrics.csv. Both start from random backbone weights (no download).
Each row also gives the step's work (GFLOP of one forward and backward, counted by bench.roofline) and the
share of the CPU's fp32 FMA peak it runs at. A machine's speed drifts by several percent over minutes (a
shared or throttled CPU), so the two take turns: LeRobot updates 10 times after every 10 of the fp32 run's
updates (its loss curve) and 5 times after every 20 of the other runs', and each row's speed-up is against
LeRobot's median over that same run (`LeRobotBetweenSteps`).

bf16 rows run only on a CPU (or GPU) with native bf16: an AVX2-only CPU emulates it, 4-32x slower.
About 16 minutes on a 2-core CPU with native bf16 (about 10 without it), most of it in the 200-step curves.
"""

from __future__ import annotations

import csv
import statistics
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from bench.common import table, write_image_dataset
from bench.roofline import gflop, peak, percent_of_peak

STEPS = 200  # optimisation steps per run: the loss curves; step times are medians after WARMUP
WARMUP = 5
WINDOW = 50  # the loss curves are compared as means over consecutive windows of this many steps
SEED = 1000
DATA_DIR = Path(tempfile.gettempdir()) / "actlab-bench"
SAME_SETTINGS = [  # lerobot-train's ACT optimiser: AdamW, lr 1e-5 (backbone too), constant
    "model=baseline",
    "encoder.pretrained=null",
    "model.scheduler.name=constant",
    "model.scheduler.warmup_steps=0",
    "dataset.val_split=0",
    f"seed={SEED}",
]


def compose(root: Path, overrides: list[str], out: Path):
    from actlab.config.compose import compose_train

    return compose_train([*SAME_SETTINGS, f"dataset.root={root}", *overrides], output_dir=out, data_dir=DATA_DIR)


def actlab_batches(root: Path, steps: int) -> list[dict[str, torch.Tensor]]:
    """The first `steps` training batches of an actlab run with the bench's seed (its step-indexed stream)."""
    from actlab.data.datamodule import ACTDataModule
    from actlab.sim.collect import dataset_config

    cfg = compose(root, [], Path(tempfile.mkdtemp(prefix="actlab-bench-run-")))
    dm = ACTDataModule(dataset_config(cfg), cfg.paths.cache_dir, cfg.model.chunk_size, cfg.seed)
    dm.prepare()
    batches = []
    for batch in dm.train_dataloader():
        batches.append(batch)
        if len(batches) == steps:
            return batches
    return batches


class LeRobotSteps:
    """LeRobot's `ACTPolicy` (its initial weights saved to `init_dir`, the folder the actlab runs start from)
    and its optimiser, updated one batch at a time as `lerobot-train` does it; each update's seconds and loss
    (in actlab's convention: LeRobot's L1 is divided by padded steps as well, here by valid ones, as actlab's
    is) are recorded in `times` and `losses`."""

    def __init__(self, root: Path, init_dir: Path, batches: list[dict[str, torch.Tensor]]):
        from lerobot.configs.types import FeatureType
        from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
        from lerobot.datasets.utils import dataset_to_policy_features
        from lerobot.policies.act.configuration_act import ACTConfig
        from lerobot.policies.act.modeling_act import ACTPolicy
        from lerobot.policies.act.processor_act import make_act_pre_post_processors

        meta = LeRobotDatasetMetadata(f"bench/{root.name}", root=root)
        features = dataset_to_policy_features(meta.features)
        self.cfg = ACTConfig(
            input_features={k: f for k, f in features.items() if f.type is not FeatureType.ACTION},
            output_features={k: f for k, f in features.items() if f.type is FeatureType.ACTION},
            pretrained_backbone_weights=None,
            device="cpu",
        )
        torch.manual_seed(SEED)
        self.policy = ACTPolicy(self.cfg).train()
        pre, post = make_act_pre_post_processors(self.cfg, meta.stats)
        for part in (self.policy, pre, post):
            part.save_pretrained(init_dir)
        self.optimizer = torch.optim.AdamW(
            self.policy.get_optim_params(), lr=self.cfg.optimizer_lr, weight_decay=self.cfg.optimizer_weight_decay
        )
        self.batches = [
            pre({k: v.float() / 255 if v.dtype == torch.uint8 else v for k, v in b.items()}) for b in batches
        ]
        self.times: list[float] = []
        self.losses: list[float] = []
        self.taken = 0

    def step(self) -> None:
        """One update, on the next batch (from the first again after the last)."""
        batch = self.batches[self.taken % len(self.batches)]
        start = time.perf_counter()
        loss, info = self.policy.forward(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), 10.0)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.times.append(time.perf_counter() - start)
        pad = batch["action_is_pad"]
        self.losses.append(info["l1_loss"] * pad.numel() / (~pad).sum().item() + self.cfg.kl_weight * info["kld_loss"])
        self.taken += 1

    def work(self) -> float:
        """GFLOP of one forward and backward."""
        return gflop(lambda: self.policy.forward(self.batches[0])[0].backward())


_LEROBOT: LeRobotSteps | None = None  # what LeRobotBetweenSteps steps (set by main; a Hydra target takes no objects)


class LeRobotBetweenSteps(Callback):
    """After every `every`-th update of an actlab run, `turn` updates of LeRobot's (`_LEROBOT`). A machine's
    speed drifts by several percent over minutes (a shared or throttled CPU), so the two are timed over the
    same minutes, taking turns. A turn is several updates: the first update after the other model's runs
    with cold caches (LeRobot's single updates between actlab's took 12 % longer than in a row), and the
    medians leave those out. LeRobot's updates are outside actlab's `train/update_s` (this callback runs
    after the one that measures it) and run on a copy of the global RNG state: the actlab run draws what it
    would alone."""

    def __init__(self, every: int = 10, turn: int = 10):
        self.every, self.turn = every, turn

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            with torch.random.fork_rng(devices=[]):
                for _ in range(self.turn):
                    _LEROBOT.step()


def actlab_work(init_dir: Path, batch: dict[str, torch.Tensor]) -> float:
    """GFLOP of one forward and backward of actlab's policy of the run's architecture (its weights from the
    LeRobot folder the runs start from), in fp32."""
    from actlab.policy import ACTPolicy

    policy = ACTPolicy.from_pretrained(init_dir).train()
    return gflop(lambda: policy(batch)["loss"].backward())


def actlab_run(root: Path, init_dir: Path, overrides: list[str], turns: tuple[int, int]) -> tuple[float, list[float]]:
    """Median train/update_s after the warm-up steps and train/loss per step of a real run, with `turns[1]`
    LeRobot updates after every `turns[0]` of its own."""
    from actlab.training.train import train

    out = Path(tempfile.mkdtemp(prefix="actlab-bench-run-"))
    settings = [
        f"init_from={init_dir}",
        f"trainer.max_steps={STEPS}",
        "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=100000",
        "checkpoint.save_freq=0",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        "hardware=cpu",
        f"+callbacks.lerobot._target_={__name__}.LeRobotBetweenSteps",
        f"+callbacks.lerobot.every={turns[0]}",
        f"+callbacks.lerobot.turn={turns[1]}",
    ]
    train(compose(root, [*settings, *overrides], out))
    with open(out / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/update_s")]
    update_s = statistics.median(float(r["train/update_s"]) for r in rows[WARMUP:])
    return update_s, [float(r["train/loss"]) for r in rows]


def window_means(losses: list[float]) -> list[float]:
    return [statistics.fmean(losses[i : i + WINDOW]) for i in range(0, len(losses), WINDOW)]


def main() -> None:
    global _LEROBOT
    from actlab.devices import cpu_has_native_bf16, describe_cpu

    # Long episodes: few windows reach past an episode's end, where LeRobot's L1 differs from actlab's.
    root = write_image_dataset(DATA_DIR / "two_cam_96x96_long", cameras=("left", "right"), episodes=2, frames=1000)
    init_dir = Path(tempfile.mkdtemp(prefix="actlab-bench-init-"))
    batches = actlab_batches(root, STEPS)
    _LEROBOT = lerobot = LeRobotSteps(root, init_dir, batches)
    lerobot_work = lerobot.work()
    work = actlab_work(init_dir, batches[0])
    peak_gflops, peak_line = peak()

    # The fp32 run takes turns with LeRobot's first STEPS updates, 10 by 10 (its loss curve); the others
    # with 5 every 20 of theirs, enough for a median.
    cases = [("fp32", ["trainer.precision=32-true"], (10, 10))]
    if cpu_has_native_bf16():
        cases.append(("bf16-mixed", ["trainer.precision=bf16-mixed"], (20, 5)))
    cases.append(("auto, torch.compile", ["trainer.precision=auto", "trainer.compile=true"], (20, 5)))
    timing, curves, reference = [], [], None
    for name, overrides, turns in cases:
        start = lerobot.taken
        seconds, losses = actlab_run(root, init_dir, overrides, turns)
        lerobot_s = statistics.median(lerobot.times[start + turns[1] :])  # after its first turn (the warm-up)
        if reference is None:  # LeRobot's first STEPS updates: its curve
            reference = window_means(lerobot.losses[:STEPS])
            curves.append(["lerobot 0.4.4 (fp32)", *[f"{m:.4f}" for m in reference], ""])
        in_fp32 = name == "fp32" or (name.startswith("auto") and not cpu_has_native_bf16())
        share = percent_of_peak(work, seconds, peak_gflops) if in_fp32 else "-"  # a bf16 step: not fp32's peak
        lerobot_share = percent_of_peak(lerobot_work, lerobot_s, peak_gflops)
        timing.append(
            [
                "  lerobot 0.4.4 ACTPolicy (fp32), turn by turn",
                f"{lerobot_s:.3f}",
                "1.00",
                f"{lerobot_work:.1f}",
                lerobot_share,
            ]
        )
        timing.append(
            [f"actlab train.py ({name})", f"{seconds:.3f}", f"{lerobot_s / seconds:.2f}", f"{work:.1f}", share]
        )
        means = window_means(losses)
        worst = max(abs(m / r - 1) for m, r in zip(means, reference, strict=True))
        curves.append([f"actlab ({name})", *[f"{m:.4f}" for m in means], f"{100 * worst:.1f} %"])

    steps = f"{STEPS} steps after {WARMUP} warm-up"
    table(
        f"Training step, model=baseline, 2 cameras 96x96, batch 8, chunk 100 ({describe_cpu()}), median of {steps}"
        f"; {peak_line}",
        ["", "s/step", "speed-up vs lerobot", "GFLOP/step", "of fp32 peak"],
        timing,
    )
    windows = [f"steps {i + 1}-{min(i + WINDOW, STEPS)}" for i in range(0, STEPS, WINDOW)]
    table(
        "Loss (L1 over valid steps + 10 KLD), mean per window; same data order, initial weights and optimiser",
        ["", *windows, "largest diff vs lerobot"],
        curves,
    )
    if not cpu_has_native_bf16():
        print("bf16-mixed not run: this CPU has no native bf16 (avx512_bf16 / amx_bf16); it would be emulated")


if __name__ == "__main__":
    main()
