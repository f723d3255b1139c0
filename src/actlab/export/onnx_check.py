"""The parity check of an ONNX export: observations laid out as `policy.onnx` takes them (random ones, and
frames of the run's dataset when it can be found), and the largest difference between ONNX Runtime's chunk
and the checkpoint's PyTorch fp32 chunk (`ACTPolicy.predict_action_chunk`) on them."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import torch

from actlab.config.checkpoint import checkpoint_run_config
from actlab.errors import ActlabError, reason
from actlab.export.onnx_graph import OUTPUT, GraphInput, graph_inputs
from actlab.features import OBSERVATION_IS_PAD
from actlab.policy.policy import ACTPolicy

Observation = dict[str, np.ndarray]  # graph input name -> array, batch first


def random_observations(policy: ACTPolicy, count: int, batch: int, seed: int = 0) -> list[Observation]:
    """`count` observations in batches of `batch`: images of uniform random bytes, vectors around the
    dataset's statistics (mean + std * N(0, 1)), and with history a random number of padded first steps
    (the current step is never padded)."""
    rng = np.random.default_rng(seed)
    observations = []
    for start in range(0, count, batch):
        size = min(batch, count - start)
        observation = {}
        for spec in graph_inputs(policy.config):
            shape = (size, *spec.shape)
            if spec.dtype == "uint8":
                observation[spec.name] = rng.integers(0, 256, shape, dtype=np.uint8)
            elif spec.name == OBSERVATION_IS_PAD:
                padded = rng.integers(0, spec.shape[0], (size, 1))
                observation[spec.name] = np.arange(spec.shape[0])[None] < padded
            else:
                mean, std = (t.detach().cpu().numpy() for t in policy.normalizer.mean_std(spec.name))
                observation[spec.name] = (mean + std * rng.standard_normal(shape)).astype(np.float32)
        observations.append(observation)
    return observations


def dataset_observations(checkpoint: str | Path, policy: ACTPolicy, count: int) -> tuple[list[Observation], str]:
    """Up to `count` frames, evenly spaced, of the dataset the checkpoint's run trained on (batches of one),
    and where they come from; no frames, and why, when the checkpoint names no dataset that can be read
    here. Nothing is downloaded and no demonstrations are collected for the check."""
    folder = Path(checkpoint)
    if not (folder / "hyperparameters.json").is_file():
        return [], f"{folder} has no hyperparameters.json to find its training dataset"
    try:
        run = checkpoint_run_config(folder)
        data, paths = run["dataset"], run.get("paths", {})
        root = data.root
        if not root and getattr(data, "collect", None) is not None and paths.get("data_dir"):
            from actlab.sim.collect import demonstrations_dirname

            root = str(Path(paths["data_dir"]) / demonstrations_dirname(run["env"], data.collect))
        if data.name == "none" or not root:
            return [], f"the run's dataset ({data.name}) has no local folder"
        missing = [r for r in (root if isinstance(root, list) else [root]) if not Path(r).expanduser().exists()]
        if missing:
            return [], f"the run's dataset {missing[0]} is not on this machine"
        from actlab.data.formats import load_store

        first = root[0] if isinstance(root, list) else root  # a list root: the datasets trained on as one
        cache_dir = os.environ.get("ACTLAB_CACHE_DIR") or paths.get("cache_dir") or str(Path(first) / ".cache")
        store = load_store(dataclasses.replace(data, root=root), Path(cache_dir))
    except (ActlabError, OSError, ValueError, TypeError, KeyError) as e:
        return [], f"the run's dataset could not be read ({e if isinstance(e, ActlabError) else reason(e)})"
    for key, feature in policy.config.input_features.items():
        if key not in store.features or tuple(store.features[key].shape) != tuple(feature.shape):
            return [], f"the run's dataset {root} has no '{key}' of shape {list(feature.shape)}"
    frames = np.unique(np.linspace(0, store.num_frames - 1, count).round().astype(np.int64))
    starts = np.repeat(store.episode_starts, store.episode_lengths)[frames]
    steps = policy.config.n_obs_steps
    observations = []
    for frame, start in zip(frames, starts, strict=True):
        observation = {}
        if steps > 1:
            history = frame + np.arange(1 - steps, 1)
            observation[OBSERVATION_IS_PAD] = (history < start)[None]
            index = np.maximum(history, start)
        else:
            index = np.array([frame])
        for key in policy.config.input_features:
            values = np.asarray(store.arrays[key][index])
            observation[key] = values[None] if steps > 1 else values
            if values.dtype != np.uint8:
                observation[key] = observation[key].astype(np.float32)
        observations.append(observation)
    return observations, f"{len(observations)} frames of {root}"


def to_torch(observation: Observation, inputs: list[GraphInput]) -> dict[str, torch.Tensor]:
    """The observation as `predict_action_chunk` takes it: images (..., 3, H, W) uint8."""
    out = {}
    for spec in inputs:
        value = torch.from_numpy(np.ascontiguousarray(observation[spec.name]))
        out[spec.name] = value.movedim(-1, -3) if spec.dtype == "uint8" else value
    return out


def max_difference(policy: ACTPolicy, session, observations: list[Observation]) -> float:
    """Max |ONNX Runtime chunk - PyTorch fp32 chunk| (action units) over `observations`; NaN when any
    difference is not finite."""
    inputs = graph_inputs(policy.config)
    worst = 0.0
    for observation in observations:
        try:
            ours = session.run([OUTPUT], observation)[0]
        except Exception as e:  # noqa: BLE001 - ONNX Runtime's own exception types
            raise ActlabError(f"ONNX Runtime cannot run the exported graph ({reason(e)}); nothing was written") from e
        theirs = policy.predict_action_chunk(to_torch(observation, inputs)).cpu().numpy()
        if ours.shape != theirs.shape:
            raise ActlabError(f"ONNX Runtime's chunk has shape {list(ours.shape)}; PyTorch's {list(theirs.shape)}")
        diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
        if not np.isfinite(diff).all():
            return math.nan
        worst = max(worst, float(diff.max()))
    return worst
