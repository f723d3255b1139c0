"""`control.record=<folder>`: the episodes the control loop ran, as a LeRobot v3.0 dataset written with
LeRobot's writer at the control frequency (actlab.lerobot_io.writer).

Each frame holds the observation the policy saw at a tick (state by the training data's names, camera
frames as videos) and the action sent at that tick (what the robot says it sent, after its own clipping),
plus `next.success`: whether the task was solved after that action (the simulator's flag at every tick; on
a real robot the operator's label, on the episode's last frame). Ticks that sent nothing (before the first
action, or in a dry run) are not recorded. `meta/actlab.json` says which policy acted (checkpoint or
server, control settings) and each episode's result. The dataset appears when the run ends, however it
ends (done, Esc, Ctrl-C, a watchdog stop, a robot that fails): the episodes saved so far are kept, the
one in progress is saved too if it has frames. `control.push_to_hub=true` uploads it with LeRobot's
`push_to_hub` (to `control.repo_id`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from actlab.errors import ActlabError
from actlab.features import ACTION, OBS_STATE, PolicyFeature, as_feature
from actlab.lerobot_io.writer import DatasetWriter, lerobot_writer

log = logging.getLogger("actlab")

SUCCESS = "next.success"
SUCCESS_SPEC = {SUCCESS: {"dtype": "bool", "shape": (1,), "names": None}}


class EpisodeRecorder:
    """Frames are held one tick back, so the last one of an episode gets the episode's final label."""

    def __init__(self, writer: DatasetWriter, features: dict[str, PolicyFeature], task: str):
        self.writer, self.features, self.task = writer, features, task
        self.pending: dict[str, np.ndarray] | None = None
        self.results: list[dict[str, Any]] = []

    def add(self, observation: dict[str, np.ndarray], action: np.ndarray, success: bool | None) -> None:
        self._flush(None)
        frame = {k: np.asarray(observation[k]) for k in self.features if k != ACTION}
        frame[ACTION] = np.asarray(action, np.float32)
        frame[SUCCESS] = np.array([bool(success)])
        self.pending = frame

    def save_episode(self, result: dict[str, Any]) -> None:
        self._flush(result.get("success"))
        if self.writer.pending:
            self.writer.save_episode()
            self.results.append(result)

    def discard_episode(self) -> None:
        self.pending = None
        self.writer.clear_episode()

    def _flush(self, final: bool | None) -> None:
        if self.pending is not None:
            if final is not None:
                self.pending[SUCCESS] = np.array([bool(final)])
            self.writer.add_frame(self.pending, self.task)
            self.pending = None


@contextmanager
def recording(control, info: dict[str, Any], features: dict[str, PolicyFeature], fps: float, robot_type: str,
              source: dict[str, Any]) -> Iterator[EpisodeRecorder | None]:  # fmt: skip
    """Yields a recorder for `control.record` (None without one); the dataset is published when the block
    ends, with the episodes saved so far, whatever ends it."""
    if not control.record:
        yield None
        return
    root = Path(control.record)
    if root.exists():
        raise ActlabError(f"control.record={root} already exists; expected a new folder for the recording")
    names = {OBS_STATE: info.get("state_names"), ACTION: info.get("action_names")}
    repo_id = control.repo_id or f"local/{root.name}"
    recorder = None
    with lerobot_writer(root, features, fps, control.record_video, repo_id, robot_type, names, SUCCESS_SPEC,
                        image_writer_threads=4, keep_on_error=True) as writer:  # fmt: skip
        recorder = EpisodeRecorder(writer, features, control.task)
        try:
            yield recorder
        except BaseException:
            if recorder.pending is not None or writer.pending:  # the episode in progress ended with the run
                recorder.save_episode({"episode": len(recorder.results), "success": None, "ended": "error"})
            raise
        finally:
            summary = {**source, "task": control.task, "fps": fps, "episodes": recorder.results}
            (writer.dataset.root / "meta" / "actlab.json").write_text(json.dumps(summary, indent=2))
    log.info(f"Recorded {len(recorder.results)} episodes: {root}")
    if control.push_to_hub:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        LeRobotDataset(repo_id, root=root).push_to_hub()
        log.info(f"Pushed {root} to the hub as {repo_id}")


def recorded_features(info: dict[str, Any]) -> dict[str, PolicyFeature]:
    """The features a recording holds: the policy's inputs (images 3 x H x W) and its action."""
    return {k: as_feature(v) for k, v in {**info["input_features"], **info["output_features"]}.items()}
