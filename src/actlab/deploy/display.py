"""`control.display=true`: the control loop live in rerun, as `lerobot-record --display_data` shows it
(LeRobot's `log_rerun_data`): the cameras, the state, and per action dimension the planned action (what
the policy proposed for the tick) and the sent one (after clipping, what the robot says it sent).

`control.display_to` says where: null spawns the rerun viewer on this machine (LeRobot's `init_rerun`),
`rerun+http://host:9876/proxy` streams to a viewer elsewhere (the robot's computer often has no screen),
a path ending in `.rrd` saves the recording to open later with `rerun <file>.rrd`.
"""

from __future__ import annotations

import numpy as np

from actlab.features import OBS_IMAGES, OBS_STATE


class RerunDisplay:
    def __init__(self, action_names: list[str], state_names: list[str] | None, target: str | None = None):
        import rerun as rr

        self.rr = rr
        self.action_names = action_names
        self.state_names = state_names
        self.tick = 0
        if target and target.endswith(".rrd"):
            rr.init("actlab_deploy")
            rr.save(target)
        elif target:
            rr.init("actlab_deploy")
            rr.connect_grpc(url=target)
        else:
            from lerobot.utils.visualization_utils import init_rerun

            init_rerun(session_name="actlab_deploy")

    def log(self, observation: dict[str, np.ndarray], planned: np.ndarray | None, sent: np.ndarray | None) -> None:
        from lerobot.utils.visualization_utils import log_rerun_data

        self.rr.set_time("tick", sequence=self.tick)
        self.tick += 1
        shown = {}
        for key, value in observation.items():
            if key == OBS_STATE and self.state_names and len(self.state_names) == len(value):
                shown.update({f"{OBS_STATE}.{n}": float(v) for n, v in zip(self.state_names, value, strict=True)})
            else:
                shown[key.removeprefix(f"{OBS_IMAGES}.")] = value
        actions = {}
        for kind, vector in (("planned", planned), ("sent", sent)):
            if vector is not None:
                actions.update({f"{kind}.{n}": float(v) for n, v in zip(self.action_names, vector, strict=False)})
        log_rerun_data(observation=shown, action=actions)

    def close(self) -> None:
        self.rr.disconnect()
