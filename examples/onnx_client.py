"""Acting with an exported policy (`actlab-export CKPT OUT format=onnx`) from policy.json alone: onnxruntime
and numpy, no actlab, no torch. Usage: python onnx_client.py OUT [ticks]"""

import json
import sys

import numpy as np
import onnxruntime as ort

folder, ticks = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10
spec = json.load(open(f"{folder}/policy.json"))
session = ort.InferenceSession(f"{folder}/{spec['model']}", providers=["CPUExecutionProvider"])
output = spec["outputs"][0]["name"]


def observe() -> dict:
    """Your robot's observation, one array per input as policy.json lists it (images uint8 H x W x 3)."""
    return {i["name"]: np.zeros(i["shape"], i["dtype"]) for i in spec["inputs"]}


queue = []
for tick in range(ticks):  # at spec["fps"] Hz
    if not queue:  # a new chunk when the last one's first n_action_steps actions are spent
        chunk = session.run([output], observe())[0][0]  # (chunk_size, action_dim), in action units
        queue = list(chunk[: spec["n_action_steps"]])
    action = queue.pop(0)  # send it to the robot
    print(f"tick {tick}: " + " ".join(f"{v:.4f}" for v in action))
