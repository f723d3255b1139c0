"""A folder the user only meant to load runs no code: a LeRobot policy folder whose processor names anything
but LeRobot's own ACT steps is refused with one line before it is imported or built, by every command that
loads a policy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from actlab.errors import ActlabError
from actlab.policy import ACTPolicy
from tests.conftest import REPO
from tests.test_lerobot_policy import DEFAULT_MAPPING, lerobot_policy

PRE = "policy_preprocessor.json"
REFUSED = "refused: actlab loads only LeRobot's own ACT processor steps and imports nothing a folder names"
PAYLOAD = """\
from pathlib import Path

SENTINEL = Path({sentinel!r})
SENTINEL.write_text("imported")


class Payload:
    def __init__(self, *args, **kwargs):
        SENTINEL.write_text("built")
"""


# ----------------------------------------------------------------------------------- helpers
@pytest.fixture
def payload(tmp_path, monkeypatch) -> str:
    """A module `actlab_payload_<n>` on sys.path (and PYTHONPATH) whose import or class writes `sentinel`."""
    name = "actlab_payload_" + re.sub(r"\W", "_", tmp_path.name)
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / f"{name}.py").write_text(PAYLOAD.format(sentinel=str(tmp_path / "sentinel")))
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "modules"))
    return name


def lerobot_folder(folder: Path) -> Path:
    """A LeRobot ACT folder written by LeRobot's own classes (policy, pre- and post-processor)."""
    policy, pre, post, _ = lerobot_policy(DEFAULT_MAPPING)
    for part in (policy, pre, post):
        part.save_pretrained(folder)
    return folder


def tamper(folder: Path, change) -> dict:
    path = folder / PRE
    pipeline = json.loads(path.read_text())
    change(pipeline["steps"])
    path.write_text(json.dumps(pipeline))
    return pipeline


def assert_refused(error: ActlabError, folder: Path, message: str, tmp_path: Path, payload: str) -> None:
    assert str(error) == f"{folder / PRE}: {message}" and "\n" not in str(error)
    assert not (tmp_path / "sentinel").exists() and payload not in sys.modules


TAMPERED = [
    (
        lambda steps, p: steps.insert(0, {"class": f"{p}.Payload", "config": {}}),
        "step 0 names a class to import ('{p}.Payload'); " + REFUSED,
    ),
    (
        lambda steps, p: steps[3].update({"class": f"{p}.Payload"}),  # LeRobot prefers registry_name; we refuse
        "step 3 names a class to import ('{p}.Payload'); " + REFUSED,
    ),
    (
        lambda steps, p: steps.append({"registry_name": "payload_processor", "config": {}}),
        "step 4 has registry_name 'payload_processor', not one of rename_observations_processor, "
        "to_batch_processor, device_processor, normalizer_processor, unnormalizer_processor; " + REFUSED,
    ),
    (
        # LeRobot's own step, which downloads and runs code when built
        lambda steps, p: steps.append(
            {
                "registry_name": "action_tokenizer_processor",
                "config": {"action_tokenizer_name": "attacker/tokenizer", "trust_remote_code": True},
            }
        ),
        "step 4 has registry_name 'action_tokenizer_processor', not one of rename_observations_processor, "
        "to_batch_processor, device_processor, normalizer_processor, unnormalizer_processor; " + REFUSED,
    ),
    (
        lambda steps, p: steps.insert(1, f"{p}.Payload"),
        "step 1 is a JSON str, not a processor step; " + REFUSED,
    ),
    (
        lambda steps, p: steps[3].update({"state_file": "../stats.safetensors"}),
        "step 3 (normalizer_processor): state_file '../stats.safetensors' is not a file in {folder} (state files "
        "are read from the folder itself, never downloaded)",
    ),
]
TAMPERED_IDS = ["class", "class_beside_registry_name", "unknown_name", "lerobot_tokenizer", "not_a_dict", "state_file"]


# ----------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("change,message", TAMPERED, ids=TAMPERED_IDS)
def test_tampered_processor_is_refused_before_anything_is_imported(tmp_path, payload, change, message):
    folder = lerobot_folder(tmp_path / "policy")
    tamper(folder, lambda steps: change(steps, payload))
    with pytest.raises(ActlabError) as e:
        ACTPolicy.from_pretrained(folder)
    assert_refused(e.value, folder, message.format(p=payload, folder=folder), tmp_path, payload)


def test_step_registered_at_runtime_outside_lerobot_is_refused(tmp_path, payload):
    """A registry name that code outside LeRobot registered (a new name, or one of LeRobot's re-registered)."""
    from lerobot.processor import ProcessorStepRegistry

    class Payload:
        def __init__(self, *args, **kwargs):
            (tmp_path / "sentinel").write_text("built")

    folder = lerobot_folder(tmp_path / "policy")
    lerobots = ProcessorStepRegistry.get("device_processor")
    ProcessorStepRegistry.register("payload_processor")(Payload)
    ProcessorStepRegistry.unregister("device_processor")
    ProcessorStepRegistry.register("device_processor")(Payload)
    try:
        with pytest.raises(ActlabError) as e:
            ACTPolicy.from_pretrained(folder)
        owner = f"{__name__}.{Payload.__qualname__}"
        assert_refused(
            e.value,
            folder,
            f"step 2 (device_processor) is registered to {owner}, not to LeRobot; " + REFUSED,
            tmp_path,
            payload,
        )
        tamper(folder, lambda steps: steps.__setitem__(2, {"registry_name": "payload_processor"}))
        with pytest.raises(ActlabError, match=r"step 2 has registry_name 'payload_processor', not one of"):
            ACTPolicy.from_pretrained(folder)
    finally:
        ProcessorStepRegistry.unregister("payload_processor")
        ProcessorStepRegistry.unregister("device_processor")
        ProcessorStepRegistry.register("device_processor")(lerobots)
    assert not (tmp_path / "sentinel").exists()


def test_actlab_eval_refuses_a_tampered_folder(tmp_path, payload):
    from actlab.config.compose import compose_eval
    from actlab.eval.cli import evaluate

    folder = lerobot_folder(tmp_path / "policy")
    tamper(folder, lambda steps: steps.insert(0, {"class": f"{payload}.Payload"}))
    with pytest.raises(ActlabError) as e:
        evaluate(compose_eval([f"checkpoint={folder}"], tmp_path / "eval"))
    message = f"step 0 names a class to import ('{payload}.Payload'); {REFUSED}"
    assert_refused(e.value, folder, message, tmp_path, payload)


def test_actlab_export_of_a_tampered_folder_is_one_line_and_runs_nothing(tmp_path, payload):
    folder = lerobot_folder(tmp_path / "policy")
    tamper(folder, lambda steps: steps.insert(0, {"class": f"{payload}.Payload", "config": {}}))
    result = subprocess.run(
        [sys.executable, "-m", "actlab.export.lerobot", str(folder), str(tmp_path / "out")],
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},  # PYTHONPATH holds the payload's folder
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr == f"error: {folder / PRE}: step 0 names a class to import ('{payload}.Payload'); {REFUSED}\n"
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "sentinel").exists() and not (tmp_path / "out").exists()


def test_untampered_lerobot_folder_still_loads(tmp_path):
    folder = lerobot_folder(tmp_path / "policy")
    policy = ACTPolicy.from_pretrained(folder)
    assert policy.config.chunk_size == 6
