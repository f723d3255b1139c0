"""`actlab-export CHECKPOINT OUT format=onnx`: the policy as one ONNX graph, for ONNX Runtime, TensorRT or any
other ONNX runtime, with no Python or actlab needed to run it.

OUT holds `policy.onnx` (actlab.export.onnx_graph: raw observations in, the action chunk in action units out;
normalisation, backbone, transformer encoder and decoder inside, the VAE encoder left out) and `policy.json`
(what a runtime needs: inputs with their names, dtypes, shapes and layouts, the output, fps, chunk_size,
n_action_steps, temporal-ensembling coefficient, action names and range, opset, actlab version, the check).

The graph is written with PyTorch's exporter (`torch.onnx.export(dynamo=True)`, via torch.export; the batch
axis is dynamic) and checked with `onnx.checker`. Before OUT is published, ONNX Runtime (CPU) runs it on
100 random observations and 20 frames of the run's dataset (120 random ones when the dataset cannot be found
from the checkpoint's hyperparameters.json) and its chunks are compared with the checkpoint's PyTorch fp32
chunks (`predict_action_chunk`); a difference above 1e-4 (action units) or not finite, a failing exporter or
check, an OUT that cannot be written, or an existing OUT leaves nothing at OUT.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from actlab.errors import ActlabError, reason
from actlab.export.lerobot import check_finite
from actlab.export.onnx_check import dataset_observations, max_difference, random_observations
from actlab.export.onnx_graph import OUTPUT, ChunkGraph, GraphInput, graph_inputs
from actlab.io import atomic_dir, remove_stale
from actlab.policy.onnx_backend import ONNX_FILE, SPEC_FILE, SPEC_FORMAT
from actlab.policy.policy import ACTPolicy

OPSET = 18
TOLERANCE = 1e-4  # largest accepted |action difference| between ONNX Runtime and PyTorch fp32
RANDOM_OBSERVATIONS = 100
DATASET_OBSERVATIONS = 20
RANDOM_BATCH = 10  # random observations go through in batches (the dynamic batch axis); dataset frames one by one
MAX_WEIGHT_BYTES = 2**31 - 2**27  # one ONNX file is a protobuf message, which cannot reach 2 GiB
QUIET_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "torch.fx", "onnxscript")


@dataclass
class OnnxCheck:
    diff: float  # max |action difference|, action units
    random: int  # observations compared
    dataset: int
    dataset_source: str  # where the dataset observations came from, or why there are none


def check_onnx_exportable(policy: ACTPolicy, checkpoint: str | Path) -> None:
    """Refuses, with one line, what one ONNX file cannot hold."""
    size = sum(t.numel() * 4 for t in [*policy.parameters(), *policy.buffers()])
    if size > MAX_WEIGHT_BYTES:
        raise ActlabError(
            f"cannot export {checkpoint} to ONNX: its {size / 2**30:.1f} GiB of float32 weights exceed what one "
            "ONNX file holds (2 GiB); nothing was written"
        )


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporter's progress lines, warnings and log messages kept off the console."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def write_onnx(policy: ACTPolicy, path: Path, checkpoint: str | Path) -> None:
    """Exports the policy's chunk graph to `path` (one file) and checks it with onnx.checker."""
    import onnx

    graph = ChunkGraph(policy).eval()
    example = random_observations(policy, 2, 2, seed=1)[0]  # a batch of 2: a batch of 1 would be specialised
    args = tuple(torch.from_numpy(example[spec.name]) for spec in graph.inputs)
    batch = torch.export.Dim("batch", min=1)
    try:
        with torch.no_grad(), quiet_exporter():
            program = torch.onnx.export(
                graph,
                args,
                dynamo=True,
                opset_version=OPSET,
                input_names=[spec.name for spec in graph.inputs],
                output_names=[OUTPUT],
                dynamic_shapes=(tuple({0: batch} for _ in graph.inputs),),
                verbose=False,
            )
    except Exception as e:  # noqa: BLE001 - whatever the exporter trips on, it is one line
        raise ActlabError(
            f"cannot export {checkpoint} to ONNX: PyTorch's exporter failed ({reason(e.__cause__ or e)}); "
            "nothing was written"
        ) from None
    program.save(str(path), external_data=False)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ActlabError(f"the exported ONNX graph fails onnx.checker ({reason(e)}); nothing was written") from None


def onnx_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - ONNX Runtime's own exception types
        raise ActlabError(f"ONNX Runtime cannot load the exported graph ({reason(e)}); nothing was written") from None


def describe(spec: GraphInput) -> str:
    if spec.dtype == "uint8":
        return "RGB image as the camera gives it: uint8 0..255, height x width x channel"
    if spec.dtype == "bool":
        return "true for history steps before the episode's first frame (fill them with that frame)"
    return "raw values in the dataset's units (normalised inside the graph)"


def runtime_spec(policy: ACTPolicy, check: OnnxCheck) -> dict[str, Any]:
    """policy.json: what a runtime needs to feed policy.onnx and act on its chunks."""
    config = policy.config
    history = config.n_obs_steps > 1
    action_dim = config.action_feature.shape[0]
    return {
        "format": SPEC_FORMAT,
        "model": ONNX_FILE,
        "actlab_version": version("actlab"),
        "opset": OPSET,
        "batch": {"axis": 0, "dynamic": True, "note": "shapes show a batch of one; axis 0 may have any size"},
        "inputs": [
            {
                "name": spec.name,
                "dtype": spec.dtype,
                "shape": [1, *spec.shape],
                "layout": spec.layout,
                "description": describe(spec) + ("; steps oldest first, the last is now" if history else ""),
            }
            for spec in graph_inputs(config)
        ],
        "outputs": [
            {
                "name": OUTPUT,
                "dtype": "float32",
                "shape": [1, config.chunk_size, action_dim],
                "layout": "B, chunk step, action dimension",
                "description": "the action chunk in the dataset's units, its first action for now",
            }
        ],
        "fps": config.fps,
        "chunk_size": config.chunk_size,
        "n_action_steps": config.n_action_steps,
        "n_obs_steps": config.n_obs_steps,
        "temporal_ensemble_coeff": config.temporal_ensemble_coeff,
        "action_names": config.action_names,
        "action_range": config.action_range,
        "check": {
            "reference": "PyTorch fp32 predict_action_chunk",
            "runtime": "onnxruntime CPUExecutionProvider",
            "max_abs_action_difference": check.diff,
            "tolerance": TOLERANCE,
            "random_observations": check.random,
            "dataset_observations": check.dataset,
            "dataset": check.dataset_source,
        },
    }


def export_onnx(checkpoint: str | Path, out: str | Path) -> OnnxCheck:
    """Writes OUT (`policy.onnx`, `policy.json`) from the policy folder `checkpoint`, checked against PyTorch
    as the module docstring says; returns the check. Nothing is left at `out` when a step fails."""
    out = Path(out)
    if out.exists():
        raise ActlabError(f"{out} already exists; choose a new folder")
    policy = ACTPolicy.from_pretrained(checkpoint, precision="fp32")
    check_finite(policy, checkpoint)
    check_onnx_exportable(policy, checkpoint)
    frames, source = dataset_observations(checkpoint, policy, DATASET_OBSERVATIONS)
    random = RANDOM_OBSERVATIONS + DATASET_OBSERVATIONS - len(frames)
    observations = random_observations(policy, random, RANDOM_BATCH) + frames
    try:
        remove_stale(out.parent, out.name)
        with atomic_dir(out) as tmp:
            write_onnx(policy, tmp / ONNX_FILE, checkpoint)
            diff = max_difference(policy, onnx_session(tmp / ONNX_FILE), observations)
            if not diff <= TOLERANCE:  # also a NaN difference
                raise ActlabError(
                    f"ONNX Runtime's chunk differs from {checkpoint}'s PyTorch fp32 chunk by up to {diff:.2e} in "
                    f"action units (limit {TOLERANCE:.0e}); nothing was written"
                )
            check = OnnxCheck(diff, random, len(frames), source)
            spec = runtime_spec(policy, check)
            (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    except OSError as e:  # a read-only or virtual file system (/proc), a file where a folder should be, a full disk
        if isinstance(e, FileExistsError) and out.exists():
            raise ActlabError(f"{out} already exists; choose a new folder") from None
        raise ActlabError(f"cannot write {out} ({reason(e)}); nothing was written") from None
    return check
