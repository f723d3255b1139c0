"""Dataset replay: the policy acts open-loop on recorded episodes, frame by frame, exactly as it would be
deployed (`select_action`: the chunk queue of `n_action_steps`, or temporal ensembling), and its actions
are compared with the recorded ones.

Per action dimension (named as the dataset names them) and overall: mean absolute error and root mean
square error over every replayed frame, in the dataset's action units; the same per episode. A PNG per
episode plots predicted vs recorded actions; optionally an MP4 per episode shows the cameras beside a
plot that grows with the episode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from actlab.data.store import EpisodeStore
from actlab.errors import ActlabError
from actlab.eval.plots import LivePlot, grid, save_action_plot
from actlab.features import ACTION, check_provides, to_policy_batch
from actlab.policy import ACTPolicy
from actlab.sim.video import VideoWriter, overlay

VIDEO_HEIGHT = 240  # camera row of replay videos


@dataclass
class Replay:
    episode: int
    predicted: np.ndarray  # (T, A)
    recorded: np.ndarray  # (T, A)


def check_dataset_matches(policy: ACTPolicy, store: EpisodeStore) -> None:
    """The dataset provides what the policy reads, and the action it outputs, with the same shapes."""
    check_provides(
        {**policy.config.input_features, **policy.config.output_features},
        store.features,
        f"dataset {store.name}",
        "pass the dataset the policy was trained on (dataset.root=..., dataset.cameras=...)",
    )


def observation(policy: ACTPolicy, store: EpisodeStore, frame: int) -> dict[str, torch.Tensor]:
    """Frame `frame` of the dataset as a batch of one, as a robot or simulator would give it."""
    features = policy.config.input_features
    device = next(policy.parameters()).device
    return to_policy_batch({key: store.arrays[key][frame] for key in features}, features, device)


@torch.inference_mode()
def replay_episode(policy: ACTPolicy, store: EpisodeStore, episode: int) -> Replay:
    start, end = int(store.episode_starts[episode]), int(store.episode_ends[episode])
    policy.reset()
    predicted = [
        policy.select_action(observation(policy, store, t))[0].float().cpu().numpy() for t in range(start, end)
    ]
    policy.reset()
    return Replay(episode, np.stack(predicted), np.asarray(store.arrays[ACTION][start:end], dtype=np.float32))


def errors(predicted: np.ndarray, recorded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(MAE, RMSE) per action dimension over the frames."""
    diff = predicted.astype(np.float64) - recorded.astype(np.float64)
    return np.abs(diff).mean(axis=0), np.sqrt(np.square(diff).mean(axis=0))


def dataset_metrics(replays: list[Replay], names: list[str]) -> dict:
    """Overall, per-dimension and per-episode MAE and RMSE (action units)."""
    predicted = np.concatenate([r.predicted for r in replays])
    recorded = np.concatenate([r.recorded for r in replays])
    mae, rmse = errors(predicted, recorded)
    diff = predicted.astype(np.float64) - recorded.astype(np.float64)
    return {
        "episodes": [r.episode for r in replays],
        "frames": len(recorded),
        "mae": float(np.abs(diff).mean()),
        "rmse": float(np.sqrt(np.square(diff).mean())),
        "per_dimension": {n: {"mae": float(a), "rmse": float(b)} for n, a, b in zip(names, mae, rmse, strict=True)},
        "per_episode": [
            {
                "episode": r.episode,
                "frames": len(r.recorded),
                "mae": float(errors(r.predicted, r.recorded)[0].mean()),
                "rmse": float(np.sqrt(np.square(r.predicted.astype(np.float64) - r.recorded).mean())),
            }
            for r in replays
        ],
    }


def replay_episodes(
    policy: ACTPolicy,
    store: EpisodeStore,
    episodes: list[int],
    out_dir: Path,
    plots: bool = True,
    video: bool = False,
) -> dict:
    """Replays `episodes` and writes `dataset_metrics.json`'s content (returned), `plots/episode_<i>.png`
    and, with `video`, `videos/episode_<i>.mp4` under `out_dir`."""
    check_dataset_matches(policy, store)
    bad = [e for e in episodes if not 0 <= e < store.num_episodes]
    if bad:
        raise ActlabError(f"eval.episodes: {bad} not in the dataset's episodes 0..{store.num_episodes - 1}")
    names = store.dimension_names(ACTION)
    replays = []
    for episode in tqdm(episodes, desc="episodes", unit="episode"):
        replay = replay_episode(policy, store, episode)
        replays.append(replay)
        mae, rmse = errors(replay.predicted, replay.recorded)
        title = f"{store.name} episode {episode}: MAE {mae.mean():.4g}, RMSE {np.sqrt(np.mean(rmse**2)):.4g}"
        if plots:
            save_action_plot(
                out_dir / "plots" / f"episode_{episode:03d}.png", replay.predicted, replay.recorded, names, title
            )
        if video:
            write_replay_video(out_dir / "videos" / f"episode_{episode:03d}.mp4", store, replay, names, title)
    return dataset_metrics(replays, names)


def write_replay_video(path: Path, store: EpisodeStore, replay: Replay, names: list[str], title: str) -> Path:
    """The episode's cameras side by side (at VIDEO_HEIGHT rows) above a plot of the actions up to now."""
    start = int(store.episode_starts[replay.episode])
    cameras = store.camera_keys
    widths = [round(store.features[c].shape[2] * VIDEO_HEIGHT / store.features[c].shape[1]) for c in cameras]
    width = max(640, sum(widths))
    plot = LivePlot(replay.predicted, replay.recorded, names, title, width, 120 * grid(len(names))[0] + 60)
    with VideoWriter(path, store.fps) as writer:
        for t in range(len(replay.recorded)):
            panels = [
                np.asarray(Image.fromarray(np.asarray(store.arrays[c][start + t])).resize((w, VIDEO_HEIGHT)))
                for c, w in zip(cameras, widths, strict=True)
            ]
            row = np.zeros((VIDEO_HEIGHT, width, 3), np.uint8)
            if panels:
                row[:, : sum(widths)] = np.concatenate(panels, axis=1)
                row = overlay(row, [f"frame {t}"])
            chart = plot.frame(t)
            writer.write(np.concatenate([row, chart[:, :width]], axis=0) if panels else chart)
    return path
