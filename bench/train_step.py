"""Seconds per training step of `model=baseline` (2 cameras 96x96, batch 8, chunk 100): actlab vs LeRobot.

actlab: a real `train(cfg)` run (Lightning, loggers, callbacks), `train/update_s` from its metrics.csv.
LeRobot: `ACTPolicy` from lerobot 0.4.4 with the same architecture, one update as `lerobot-train` does it
(forward, backward, gradient clipping at 10, AdamW step), on batches from `LeRobotDataset` after its
pre-processor. Both start from random backbone weights (no download). Same dataset, same process.
"""

from __future__ import annotations

import csv
import statistics
import tempfile
from pathlib import Path

import torch

from bench.common import median_seconds, table, write_image_dataset

STEPS = 12  # optimisation steps per actlab run; the first 2 are warm-up
DATA_DIR = Path(tempfile.gettempdir()) / "actlab-bench"


def actlab_run_metrics(root: Path, precision: str) -> dict[str, float]:
    """Medians of train/update_s and train/dataloading_s over a short real run (first 2 steps dropped)."""
    from actlab.config.compose import compose_train
    from actlab.training.train import train

    out = Path(tempfile.mkdtemp(prefix="actlab-bench-run-"))
    cfg = compose_train(
        [
            "model=baseline",
            f"dataset.root={root}",
            "encoder.pretrained=null",
            f"trainer.max_steps={STEPS}",
            "trainer.log_every_n_steps=1",
            "trainer.val_check_interval=100000",
            "dataset.val_split=0",
            "checkpoint.save_freq=0",
            "trainer.enable_progress_bar=false",
            "logger=csv",
            "hardware=cpu",
            f"trainer.precision={precision}",
        ],
        output_dir=out,
        data_dir=DATA_DIR,
    )
    train(cfg)
    with open(out / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/update_s")][2:]
    return {k: statistics.median(float(r[f"train/{k}"]) for r in rows) for k in ("update_s", "dataloading_s")}


def lerobot_update_s(root: Path) -> float:
    from lerobot.configs.types import FeatureType
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
    from lerobot.datasets.utils import dataset_to_policy_features
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.act.processor_act import make_act_pre_post_processors

    meta = LeRobotDatasetMetadata(f"bench/{root.name}", root=root)
    features = dataset_to_policy_features(meta.features)
    cfg = ACTConfig(
        input_features={k: f for k, f in features.items() if f.type is not FeatureType.ACTION},
        output_features={k: f for k, f in features.items() if f.type is FeatureType.ACTION},
        pretrained_backbone_weights=None,
        device="cpu",
    )
    policy = ACTPolicy(cfg).train()
    pre, _ = make_act_pre_post_processors(cfg, meta.stats)
    dataset = LeRobotDataset(
        f"bench/{root.name}",
        root=root,
        video_backend="pyav",
        delta_timestamps={"action": [i / meta.fps for i in cfg.action_delta_indices]},
    )
    batch = pre(next(iter(torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True))))
    optimizer = torch.optim.AdamW(
        policy.get_optim_params(), lr=cfg.optimizer_lr, weight_decay=cfg.optimizer_weight_decay
    )

    def update() -> None:
        loss, _ = policy.forward(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
        optimizer.step()
        optimizer.zero_grad()

    return median_seconds(update, repeats=STEPS - 2)


def main() -> None:
    root = write_image_dataset(DATA_DIR / "two_cam_96x96", cameras=("left", "right"), hw=(96, 96))
    lerobot = lerobot_update_s(root)
    rows = [["lerobot 0.4.4 ACTPolicy (fp32)", f"{lerobot:.3f}", "1.00"]]
    for precision in ("32-true", "bf16-mixed"):
        ours = actlab_run_metrics(root, precision)["update_s"]
        rows.append([f"actlab train.py (trainer.precision={precision})", f"{ours:.3f}", f"{lerobot / ours:.2f}"])
    table(
        f"Training step, model=baseline, 2 cameras 96x96, batch 8, chunk 100, {torch.get_num_threads()} threads",
        ["", "s/step (median)", "speed-up vs lerobot"],
        rows,
    )


if __name__ == "__main__":
    main()
