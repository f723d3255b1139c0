"""A dataset of a robot's shape made offline, to try a preset without the real data:

    python -m actlab.data.synthetic g1 data/g1_synthetic     # then: python train.py dataset=g1 dataset.root=...

writes a LeRobot v3.0 dataset (LeRobot's own writer) of random frames with the robot's features: for `g1`
the Unitree G1's four cameras (cam_left_high, cam_right_high, cam_left_wrist, cam_right_wrist, 480x640),
28-D state and action, 30 fps, as the `dataset=g1` preset reads them from meta/info.json. The numbers are
noise: a policy trained on them learns nothing, but every step of the pipeline runs as on the real data."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from actlab.errors import ActlabError
from actlab.features import ACTION, OBS_IMAGES, OBS_STATE, PolicyFeature


@dataclass(frozen=True)
class RobotShape:
    cameras: tuple[str, ...]
    image_hw: tuple[int, int]
    state_dim: int
    action_dim: int
    fps: int
    robot_type: str


SHAPES = {
    "g1": RobotShape(
        cameras=("cam_left_high", "cam_right_high", "cam_left_wrist", "cam_right_wrist"),
        image_hw=(480, 640),
        state_dim=28,
        action_dim=28,
        fps=30,
        robot_type="Unitree_G1_Dex3",
    ),
}


def write_synthetic(
    robot: str,
    root: str | Path,
    episodes: int = 2,
    frames: int = 30,
    image_hw: tuple[int, int] | None = None,
    video: bool = True,
    seed: int = 0,
) -> Path:
    """Writes `episodes` episodes of `frames` random frames of `robot`'s shape (images at `image_hw`, the
    robot's own size by default) at `root`, which must not exist yet."""
    if robot not in SHAPES:
        raise ActlabError(f"robot {robot!r}: no such shape; expected one of {', '.join(SHAPES)}")
    root = Path(root).expanduser()
    if root.exists():
        raise ActlabError(f"{root} already exists; give a new folder")
    if episodes < 1 or frames < 1:
        raise ActlabError(f"episodes={episodes}, frames={frames}: expected at least 1 of each")
    from actlab.lerobot_io.writer import lerobot_writer

    shape = SHAPES[robot]
    hw = image_hw or shape.image_hw
    features = {
        OBS_STATE: PolicyFeature("STATE", (shape.state_dim,)),
        ACTION: PolicyFeature("ACTION", (shape.action_dim,)),
    }
    features |= {f"{OBS_IMAGES}.{cam}": PolicyFeature("VISUAL", (3, *hw)) for cam in shape.cameras}
    rng = np.random.default_rng(seed)
    repo_id = f"synthetic/{root.name}"
    with lerobot_writer(root, features, shape.fps, video, repo_id=repo_id, robot_type=shape.robot_type) as write:
        for _ in range(episodes):
            write([random_frame(features, rng) for _ in range(frames)], "synthetic")
    return root


def random_frame(features: dict[str, PolicyFeature], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One frame of random values for `features`: camera frames H x W x 3 uint8, vectors standard normal."""
    values = {}
    for key, feature in features.items():
        if feature.type == "VISUAL":
            values[key] = rng.integers(0, 256, (*feature.shape[1:], 3), dtype=np.uint8)
        else:
            values[key] = rng.normal(size=feature.shape).astype(np.float32)
    return values


def size(text: str) -> tuple[int, int]:
    """`HxW` (e.g. 480x640) as (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HxW, e.g. 480x640") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive sizes")
    return h, w


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m actlab.data.synthetic", description=__doc__.split("\n\n")[0].strip()
    )
    parser.add_argument("robot", choices=sorted(SHAPES), help="the shape: cameras, state and action sizes, fps")
    parser.add_argument("out", type=Path, help="the dataset folder to write (must not exist)")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--frames", type=int, default=30, help="frames per episode")
    parser.add_argument("--image-size", type=size, default=None, help="HxW of every camera (default: the robot's)")
    parser.add_argument("--png", action="store_true", help="PNG images in the parquet files instead of MP4 videos")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        root = write_synthetic(
            args.robot, args.out, args.episodes, args.frames, args.image_size, not args.png, args.seed
        )
    except ActlabError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    shape = SHAPES[args.robot]
    hw = args.image_size or shape.image_hw
    print(
        f"{root}: {args.episodes} episodes x {args.frames} frames of random {args.robot} data ({len(shape.cameras)} "
        f"cameras {hw[0]}x{hw[1]}, state {shape.state_dim}, action {shape.action_dim}, {shape.fps} fps)"
    )


if __name__ == "__main__":
    main()
