"""The ONNX Runtime backend of `policy.runtime=onnx`: an ACTPolicy's action chunks computed by ONNX Runtime
from the `policy.onnx` that `actlab-export CKPT OUT format=onnx` wrote, and nothing else. The observation
checks and history, the action queue, n_action_steps, temporal ensembling and background refill stay the
policy's own (actlab.policy.selection): `ACTPolicy.use_chunk_backend(OnnxChunks(...))` swaps only what
`predict_action_chunk` runs.

The graph's inputs (`graph_inputs(config)`, in that order; policy.json lists them with a batch of one):

    observation.state               float32 (B, D)             (B, T, D) with n_obs_steps = T > 1
    observation.environment_state   float32 (B, E)             (B, T, E)
    observation.images.<camera>     uint8   (B, H, W, 3)       (B, T, H, W, 3): the camera's own RGB layout
    observation_is_pad              bool    (B, T)             only with n_obs_steps > 1

and its output `action` float32 (B, chunk_size, action_dim) in action units. Float images in [0, 1] (what
`actlab-serve` accepts as C x H x W) are rounded to the bytes the graph takes: exact for images that were
bytes, within 1/510 otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from actlab.config.policy import ACTPolicyConfig
from actlab.errors import ActlabError, reason
from actlab.features import ACTION, OBSERVATION_IS_PAD

ONNX_FILE = "policy.onnx"
SPEC_FILE = "policy.json"
SPEC_FORMAT = "actlab-onnx-policy"
OUTPUT = ACTION
AGREEMENT = 1e-3  # largest |action difference| accepted at load, on the CPU execution provider
AGREEMENT_ACCELERATED = 1e-2  # on CUDA / TensorRT (their kernels round differently)


@dataclass(frozen=True)
class GraphInput:
    name: str
    dtype: str  # numpy's name: float32, uint8, bool
    shape: tuple[int, ...]  # without the batch axis
    layout: str  # the axes' meaning, e.g. "BHWC"


def graph_inputs(config: ACTPolicyConfig) -> list[GraphInput]:
    """The graph's inputs in order (see the module docstring)."""
    history = config.n_obs_steps > 1
    steps = (config.n_obs_steps,) if history else ()
    time = "T" if history else ""
    inputs = []
    for key, feature in config.input_features.items():
        if feature.type == "VISUAL":
            channels, height, width = feature.shape
            inputs.append(GraphInput(key, "uint8", (*steps, height, width, channels), f"B{time}HWC"))
        else:
            inputs.append(GraphInput(key, "float32", (*steps, *feature.shape), f"B{time}D"))
    if history:
        inputs.append(GraphInput(OBSERVATION_IS_PAD, "bool", steps, "BT"))
    return inputs


def read_spec(folder: Path) -> dict[str, Any]:
    """policy.json of an ONNX export folder, or one line saying what is wrong with the folder."""
    path = folder / SPEC_FILE
    if not folder.is_dir():
        raise ActlabError(f"policy.onnx={folder}: no such folder; expected one written by actlab-export format=onnx")
    if not path.is_file() or not (folder / ONNX_FILE).is_file():
        raise ActlabError(
            f"policy.onnx={folder} lacks {SPEC_FILE} or {ONNX_FILE}; expected a folder written by actlab-export "
            "format=onnx"
        )
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ActlabError(f"policy.onnx={folder}: {SPEC_FILE} cannot be read as JSON ({reason(e)})") from None
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise ActlabError(
            f"policy.onnx={folder}: {SPEC_FILE} is not an actlab ONNX policy description (format: {SPEC_FORMAT!r})"
        )
    return spec


def check_same_policy(spec: dict[str, Any], config: ACTPolicyConfig, folder: Path) -> None:
    """The export's inputs and chunk are those of the checkpoint's policy."""
    try:
        theirs = [(i["name"], i["dtype"], list(i["shape"][1:])) for i in spec["inputs"]]
        output = list(spec["outputs"][0]["shape"][1:])
    except (KeyError, TypeError, IndexError) as e:
        raise ActlabError(f"{folder / SPEC_FILE}: inputs or outputs unreadable ({reason(e)})") from None
    ours = [(i.name, i.dtype, list(i.shape)) for i in graph_inputs(config)]
    expected = [config.chunk_size, config.action_feature.shape[0]]
    if theirs != ours or output != expected:
        raise ActlabError(
            f"policy.onnx={folder} was exported from another policy: it takes {theirs} and gives {output}; the "
            f"checkpoint's policy takes {ours} and gives {expected}"
        )


def open_session(path: Path, providers: list[str]) -> Any:
    """An ONNX Runtime session of `path` on `providers` (each must be available in this onnxruntime)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise ActlabError(
            f"policy.onnx_providers: {missing} not available in this onnxruntime {ort.__version__} (it has "
            f"{available}); CUDA and TensorRT need the onnxruntime-gpu package"
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), options, providers=list(providers))
    except Exception as e:  # noqa: BLE001 - ONNX Runtime's own exception types
        raise ActlabError(f"ONNX Runtime cannot load {path} ({reason(e)})") from None


class OnnxChunks:
    """`backend(observation) -> chunk`: what `predict_action_chunk` computes, by ONNX Runtime. `observation`
    is laid out as the policy takes it (checked by `ACTPolicy.check_observation`); the chunk is (B,
    chunk_size, action_dim) float32 on the CPU."""

    def __init__(self, folder: str | Path, config: ACTPolicyConfig, providers: list[str]):
        self.folder = Path(folder).expanduser()
        spec = read_spec(self.folder)
        check_same_policy(spec, config, self.folder)
        self.inputs = graph_inputs(config)
        self.session = open_session(self.folder / ONNX_FILE, providers)
        self.providers = self.session.get_providers()

    def __call__(self, observation: dict[str, Tensor]) -> Tensor:
        feed = {spec.name: graph_value(spec, observation[spec.name]) for spec in self.inputs}
        return torch.from_numpy(self.session.run([OUTPUT], feed)[0])


def graph_value(spec: GraphInput, value: Tensor) -> np.ndarray:
    """An input as the graph takes it: images as channel-last bytes, the rest as their dtype."""
    if spec.dtype == "uint8":
        if value.dtype != torch.uint8:
            value = (value.float() * 255).round().clamp(0, 255).to(torch.uint8)
        value = value.movedim(-3, -1)
    elif spec.dtype == "bool":
        value = value.bool()
    else:
        value = value.float()
    return np.ascontiguousarray(value.detach().cpu().numpy())


def check_agreement(policy: Any, backend: OnnxChunks) -> float:
    """The largest |ONNX Runtime - PyTorch fp32| action difference on one random observation of `policy`
    (an ACTPolicy on the CPU); above AGREEMENT (action units) the export is not this checkpoint's: one line.
    (The export's own check compared 120 observations at 1e-4 on the CPU; this one catches a folder of
    another checkpoint with the same shapes.)"""
    rng = np.random.default_rng(0)
    steps = (policy.config.n_obs_steps,) if policy.config.n_obs_steps > 1 else ()
    observation = {}
    for key, feature in policy.config.input_features.items():
        if feature.type == "VISUAL":
            observation[key] = torch.from_numpy(rng.integers(0, 256, (1, *steps, *feature.shape), dtype=np.uint8))
        else:
            mean, std = (t.detach().cpu() for t in policy.normalizer.mean_std(key))
            noise = torch.from_numpy(rng.standard_normal((1, *steps, *feature.shape)).astype(np.float32))
            observation[key] = mean + std * noise
    if steps:
        observation[OBSERVATION_IS_PAD] = torch.zeros(1, *steps, dtype=torch.bool)
    previous = policy.chunk_backend
    try:
        policy.use_chunk_backend(None)
        theirs = policy.predict_action_chunk(observation).double()
    finally:
        policy.use_chunk_backend(previous)
    diff = float((backend(policy.check_observation(observation, bool(steps))).double() - theirs).abs().max())
    limit = AGREEMENT if backend.providers == ["CPUExecutionProvider"] else AGREEMENT_ACCELERATED
    if not diff <= limit:
        raise ActlabError(
            f"policy.onnx={backend.folder} does not compute this checkpoint's chunks: ONNX Runtime "
            f"({', '.join(backend.providers)}) differs from PyTorch fp32 by {diff:.2e} in action units (limit "
            f"{limit:.0e}); export this checkpoint (actlab-export CKPT OUT format=onnx) or leave policy.onnx out"
        )
    return diff
