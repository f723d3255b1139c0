"""Scripted ALOHA demonstrations, the ACT paper's way: plan in end-effector space, record in joint space.

At the first step of an episode the expert reads the objects' initial poses off the simulator, lays out
waypoints for both grippers (a position of the tool point between the fingers, an orientation, an opening)
and plays them in a twin of the scene whose grippers are welded to mocap bodies (gym-aloha's end-effector
scenes): MuJoCo's weld constraint does the inverse kinematics. The arm joint positions that twin passes
through, with the commanded gripper openings, are the 14-D joint-position actions the expert then hands,
step by step, to the joint-space env the demonstrations are recorded in (and which the policies control).
The replay is open loop: it succeeds when the joint-space arms track the planned motion closely enough,
and collection discards the episodes where they did not.

Frames: the world's x runs from the left arm's base (x = -0.469) to the right arm's (x = 0.469), y away
from the bases' side of the table, z up. A gripper frame has its x axis along the fingers ("pointing"),
its y axis along the direction the fingers close in and z = x cross y.
"""

from __future__ import annotations

import numpy as np

from actlab.errors import ActlabError
from actlab.sim.aloha import STATE_DIM, aloha_task, import_dm_control, load_physics
from actlab.sim.aloha_plans import CLOSED, PLANS, Waypoint, conj, interpolate, quat, quat_mul, rotate

GRIPPERS = ("vx300s_left/gripper_link", "vx300s_right/gripper_link")  # welded to mocap bodies 0 and 1
WELD_SOLIMP = (0.99, 0.999, 0.001)  # gym-aloha's: (0.25, 0.25, 0.001)
WELD_SOLREF = (0.005, 1.0)  # gym-aloha's: (0.01, 1)
FOREARM_ROLL_DOFS = [3, 11]  # left and right arm
FOREARM_ROLL_DAMPING = 200.0


class EndEffectorScene:
    """gym-aloha's end-effector scene of a task, stepped with mocap targets; no rendering."""

    def __init__(self, task: str):
        import_dm_control(render=False)
        from dm_control.rl import control
        from gym_aloha.constants import DT
        from gym_aloha.tasks import sim_end_effector

        self.physics = load_physics(aloha_task(task).ee_xml)
        base = getattr(sim_end_effector, aloha_task(task).ee_task_class)
        self.task = _placed(base)()
        self.env = control.Environment(
            self.physics, self.task, float("inf"), control_timestep=DT, flat_observation=False
        )
        model = self.physics.model
        # The twin is an inverse-kinematics solver, not a robot: gym-aloha's soft welds (solimp 0.25) leave
        # the grippers centimetres and tens of degrees behind their mocap targets against the joints' friction,
        # so they are made stiff; and damping on the forearm rolls keeps the solution on the wrist-pitch branch
        # (undamped, the weld twists the forearm and the wrist by ~180 degrees each, into their limits).
        model.eq_solimp[:2, :3] = WELD_SOLIMP
        model.eq_solref[:2] = WELD_SOLREF
        model.dof_damping[FOREARM_ROLL_DOFS] = FOREARM_ROLL_DAMPING
        data = model.eq_data
        # The welds hold each gripper at a fixed pose in its mocap body's frame (MuJoCo's `relpose`).
        self.weld_pos = [np.array(data[i][3:6]) for i in range(2)]
        self.weld_quat = [np.array(data[i][6:10]) for i in range(2)]

    def reset(self, objects: np.ndarray) -> list[Waypoint]:
        """Starts an episode with the objects at `objects`; returns both grippers' starting waypoints."""
        self.task.objects = objects
        self.env.reset()
        start = []
        for i, body in enumerate(GRIPPERS):
            rotation = self.physics.named.data.xmat[body].reshape(3, 3).copy()
            # The mocap body sits where the weld holds it relative to the gripper: at the tool point.
            mocap_quat = self._mocap_quat(i, quat(rotation))
            xyz = self.physics.named.data.xpos[body] - rotate(mocap_quat, self.weld_pos[i])
            self.physics.data.mocap_pos[i], self.physics.data.mocap_quat[i] = xyz, mocap_quat
            start.append(Waypoint(0, xyz, rotation, CLOSED))
        return start

    def _mocap_quat(self, i: int, gripper_quat: np.ndarray) -> np.ndarray:
        return quat_mul(gripper_quat, conj(self.weld_quat[i]))

    def step(self, targets: list[tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
        """Moves the mocap bodies to the targets (tool point, gripper quaternion, opening); returns the
        joint positions reached (gym-aloha's 14-D qpos)."""
        action = []
        for i, (xyz, orientation, opening) in enumerate(targets):
            action += [*xyz, *self._mocap_quat(i, orientation), opening]
        return self.env.step(np.array(action)).observation["qpos"]


def _placed(task_class: type) -> type:
    """gym-aloha's end-effector task with the episode's object poses given (its own draws them unseeded),
    the grippers starting closed as in the joint-space scene, and a cheap observation."""

    class Placed(task_class):
        objects: np.ndarray

        def initialize_episode(self, physics) -> None:
            self.initialize_robots(physics)
            physics.data.qpos[16:] = self.objects
            super(task_class, self).initialize_episode(physics)

        def get_observation(self, physics) -> dict[str, np.ndarray]:
            return {"qpos": self.get_qpos(physics)}

    return Placed


class AlohaExpert:
    """Scripted transfer_cube / insertion: called with the joint-space env's raw observation each step,
    returns the 14-D joint-position action. The whole episode is planned at its first step, from the object
    poses the env reset to (`raw["env_state"]`)."""

    def __init__(self, task: str, steps: int = 400):
        if task not in PLANS:
            raise ActlabError(f"no scripted ALOHA expert for env.task={task!r}; experts exist for {sorted(PLANS)}")
        self.task, self.steps = task, steps
        self.scene = EndEffectorScene(task)
        self.plan: np.ndarray | None = None
        self.t = 0

    def reset(self) -> None:
        self.plan, self.t = None, 0

    def __call__(self, raw: dict) -> np.ndarray:
        if self.plan is None:
            self.plan = self.joint_trajectory(np.asarray(raw["env_state"]))
        action = self.plan[min(self.t, len(self.plan) - 1)]
        self.t += 1
        return action

    def joint_trajectory(self, objects: np.ndarray) -> np.ndarray:
        """(steps, 14) joint-position actions: at step t, the arm joints the end-effector rollout reached
        after its step t and the gripper openings it commanded then."""
        start = self.scene.reset(objects)
        left, right = PLANS[self.task](objects, start)
        actions = np.empty((self.steps, STATE_DIM), dtype=np.float32)
        for t in range(self.steps):
            targets = [interpolate(left, t + 1), interpolate(right, t + 1)]
            actions[t] = self.scene.step(targets)
            actions[t, 6], actions[t, 13] = targets[0][2], targets[1][2]
        return actions
