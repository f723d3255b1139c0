"""LeRobot's processor pipelines (policy_preprocessor.json, policy_postprocessor.json) read without running
anything a folder names.

LeRobot's own loader (`PolicyProcessorPipeline.from_pretrained`) imports whatever `class` path a step names
and builds every step with the folder's arguments; even some of LeRobot's registered steps download and run
code when built (`action_tokenizer_processor` with `trust_remote_code`, `reward_classifier_processor`).
Policy folders come from the hub, so a folder is data here, as a pickle is under `torch.load(weights_only=True)`:
every step must be one of the steps LeRobot's ACT processors are made of, registered by LeRobot itself, with
its state file inside the folder; anything else is refused with one line before it is imported or built. Only
the (un)normaliser step actlab reads is built, with LeRobot's own class, from its JSON config and state file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actlab.errors import ActlabError, reason
from actlab.io import read_json

# The steps of LeRobot's ACT pre- and post-processor (lerobot.policies.act.processor_act), by registry name.
ACT_STEPS = (
    "rename_observations_processor",
    "to_batch_processor",
    "device_processor",
    "normalizer_processor",
    "unnormalizer_processor",
)
REFUSED = "refused: actlab loads only LeRobot's own ACT processor steps and imports nothing a folder names"


def read_pipeline(path: Path) -> list[dict[str, Any]]:
    """The steps of the processor pipeline file `path`, each checked by `check_step`."""
    data = read_json(path, " (a LeRobot processor pipeline)")
    steps = data.get("steps")
    if not isinstance(steps, list):
        raise ActlabError(f"{path}: no list of 'steps'; expected a LeRobot processor pipeline")
    for index, step in enumerate(steps):
        check_step(step, index, path)
    return steps


def check_step(step: Any, index: int, path: Path) -> None:
    """Refuses, with one line naming `path` and the step, a step that is not one of `ACT_STEPS` as LeRobot
    registers it, or whose config or state file is not plain data in the folder."""
    if not isinstance(step, dict):
        raise ActlabError(f"{path}: step {index} is a JSON {type(step).__name__}, not a processor step; {REFUSED}")
    if "class" in step:
        raise ActlabError(f"{path}: step {index} names a class to import ({step['class']!r}); {REFUSED}")
    name = step.get("registry_name")
    if not isinstance(name, str) or name not in ACT_STEPS:
        raise ActlabError(
            f"{path}: step {index} has registry_name {name!r}, not one of {', '.join(ACT_STEPS)}; {REFUSED}"
        )
    step_class = registered_class(name)
    if step_class is None or not step_class.__module__.startswith("lerobot."):
        owner = "nothing" if step_class is None else f"{step_class.__module__}.{step_class.__qualname__}"
        raise ActlabError(f"{path}: step {index} ({name}) is registered to {owner}, not to LeRobot; {REFUSED}")
    if not isinstance(step.get("config", {}), dict):
        raise ActlabError(f"{path}: step {index} ({name}): 'config' is not a JSON object")
    state_file = step.get("state_file")
    if state_file is not None and not (
        isinstance(state_file, str) and Path(state_file).name == state_file and (path.parent / state_file).is_file()
    ):
        raise ActlabError(
            f"{path}: step {index} ({name}): state_file {state_file!r} is not a file in {path.parent} "
            "(state files are read from the folder itself, never downloaded)"
        )


def registered_class(name: str) -> type | None:
    """The class LeRobot's ProcessorStepRegistry holds for `name` (importing lerobot.processor registers
    LeRobot's own steps), or None."""
    from lerobot.processor import ProcessorStepRegistry

    try:
        return ProcessorStepRegistry.get(name)
    except KeyError:
        return None


def load_normalizer_step(path: Path, name: str) -> Any:
    """The first `name` step (normalizer_processor or unnormalizer_processor) of the checked pipeline `path`,
    built on the CPU by LeRobot's class from its config and state file; the other steps are never built."""
    steps = read_pipeline(path)
    found = [(index, step) for index, step in enumerate(steps) if step["registry_name"] == name]
    if not found:
        raise ActlabError(f"{path}: no {name} step; expected the processor of a LeRobot ACT policy")
    index, step = found[0]
    step_class = registered_class(name)
    try:
        # The device a pipeline was saved on ("cuda") may be absent here; the statistics do not depend on it.
        instance = step_class(**{**step.get("config", {}), "device": "cpu"})
        if "state_file" in step:
            from safetensors.torch import load_file

            instance.load_state_dict(load_file(path.parent / step["state_file"]))
    except Exception as e:  # noqa: BLE001 - JSON values and safetensors files damaged in any way
        raise ActlabError(f"{path}: LeRobot cannot load it (step {index} {name}: {reason(e)})") from None
    return instance
