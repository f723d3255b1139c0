"""State-based scripted expert for robosuite's Lift task (Panda, OSC_POSE delta control).

The expert is a pure function of the current observation: every step it works out which phase it is
in from the state (where the cube is relative to the gripper, and how far the fingers are closed), so
it recovers on its own from perturbations (a missed grasp, a dropped cube, noisy execution) and its
actions are consistent enough to be learned by imitation.

Action layout (robosuite 1.5 BASIC composite controller, OSC_POSE arm, input_ref_frame="base"):
``[dx, dy, dz, dax, day, daz, gripper]``, each in [-1, 1]; one unit is 0.05 m / 0.5 rad, the rotation
is an axis-angle *pre*-multiplied onto the current orientation (base frame = world frame for Lift),
and the gripper only looks at the sign (-1 open, +1 close; it ramps over ~5-10 steps).
"""

from __future__ import annotations

import numpy as np
from robosuite.utils import transform_utils as T

POS_SCALE = 0.05  # m per action unit
ROT_SCALE = 0.5  # rad per action unit
# Gripper pointing straight down (hand z-axis = -world z) with zero yaw: a rotation of pi about x.
_DOWN = np.diag([1.0, -1.0, -1.0])


def _yaw(mat: np.ndarray) -> float:
    """Heading of a rotation's x-axis in the world xy-plane."""
    return float(np.arctan2(mat[1, 0], mat[0, 0]))


def _wrap(angle: float, period: float) -> float:
    """Wrap ``angle`` into [-period/2, period/2)."""
    return float((angle + period / 2) % period - period / 2)


class LiftExpert:
    """Reactive pick-and-lift expert; phases are read off the state, not off a clock.

    Phases, checked in this order every step:

    1. **Lift** - the cube is between the fingers (within ``hold_xy_tol`` / ``hold_z_tol`` of the grasp
       point) and the fingers stopped on it (gap between ``min_hold_width`` and ``max_hold_width``):
       keep closing and raise the cube to ``lift_z``.
    2. **Grasp** - the grip site is within ``grasp_xy_tol`` / ``grasp_z_tol`` of the grasp point, or
       the fingers are already closing (gap below ``open_width``) and the cube is still between them:
       close. The looser tolerance once closing is a hysteresis read off the finger gap, so that
       jitter while the fingers travel (~5 steps) does not abort the grasp.
    3. **Approach** - otherwise, open the gripper and servo to the grasp point through a funnel: the
       target height above the grasp point grows with the horizontal and yaw errors, so the hand only
       comes down once it is centred over and aligned with the cube.

    The hand yaw is servoed to the cube yaw modulo 90 degrees, choosing the nearest of the four
    equivalent targets (the "cube" is a box of 4.0-4.4 cm sides, so either pair of faces fits the
    fingers); pitch and roll are servoed to pointing straight down.
    """

    def __init__(
        self,
        pos_gain: float = 1.5,
        rot_gain: float = 1.0,
        hover_height: float = 0.08,
        funnel_slope: float = 4.0,
        funnel_xy_free: float = 0.01,
        funnel_yaw_slope: float = 0.15,
        funnel_yaw_free: float = 0.15,
        grasp_z_offset: float = -0.005,
        grasp_xy_tol: float = 0.015,
        grasp_z_tol: float = 0.015,
        hold_xy_tol: float = 0.025,
        hold_z_tol: float = 0.02,
        open_width: float = 0.07,
        min_hold_width: float = 0.02,
        max_hold_width: float = 0.048,
        lift_z: float = 0.92,
        align_yaw: bool = True,
    ) -> None:
        """
        Args:
            pos_gain: proportional gain, position error (m) -> commanded displacement (m).
            rot_gain: proportional gain, orientation error (rad) -> commanded rotation (rad).
            hover_height: most height kept above the grasp point while far from it (m).
            funnel_slope: extra height per metre of horizontal error during the approach.
            funnel_xy_free: horizontal error (m) tolerated before the funnel starts to hold the hand up.
            funnel_yaw_slope: extra height (m) per radian of yaw error during the approach.
            funnel_yaw_free: yaw error (rad) tolerated before the funnel starts to hold the hand up.
            grasp_z_offset: grip-site height relative to the cube centre at the grasp (m).
            grasp_xy_tol: horizontal distance from the grasp point within which to close (m).
            grasp_z_tol: vertical distance from the grasp point within which to close (m).
            hold_xy_tol: horizontal distance from the grasp point within which the cube counts as
                between the fingers once they are closing (m).
            hold_z_tol: vertical counterpart of ``hold_xy_tol`` (m).
            open_width: finger gap above which the gripper counts as open (fully open is ~0.079 m).
            min_hold_width: finger gap below which the fingers are taken to have closed on nothing (m).
            max_hold_width: finger gap below which the fingers are taken to be holding the cube (m).
            lift_z: world height to carry the cube centre to (m); Lift's table top is at 0.8 and success
                is the cube centre above 0.84 (it rests at ~0.82).
            align_yaw: servo the hand yaw to the cube's; if False keep the hand at zero yaw.
        """
        self.pos_gain = pos_gain
        self.rot_gain = rot_gain
        self.hover_height = hover_height
        self.funnel_slope = funnel_slope
        self.funnel_xy_free = funnel_xy_free
        self.funnel_yaw_slope = funnel_yaw_slope
        self.funnel_yaw_free = funnel_yaw_free
        self.grasp_z_offset = grasp_z_offset
        self.grasp_xy_tol = grasp_xy_tol
        self.grasp_z_tol = grasp_z_tol
        self.hold_xy_tol = hold_xy_tol
        self.hold_z_tol = hold_z_tol
        self.open_width = open_width
        self.min_hold_width = min_hold_width
        self.max_hold_width = max_hold_width
        self.lift_z = lift_z
        self.align_yaw = align_yaw
        self.phase = "approach"  # last phase, for logging only; never read back

    def reset(self) -> None:
        self.phase = "approach"

    def _target_rotation(self, hand: np.ndarray, cube_quat: np.ndarray) -> tuple[np.ndarray, float]:
        """Downward-pointing target orientation and the yaw error still to cover (rad)."""
        hand_yaw = _yaw(hand)
        yaw_err = _wrap(_yaw(T.quat2mat(cube_quat)) - hand_yaw, np.pi / 2) if self.align_yaw else -hand_yaw
        c, s = np.cos(hand_yaw + yaw_err), np.sin(hand_yaw + yaw_err)
        rot_z = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return rot_z @ _DOWN, yaw_err

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        eef = np.asarray(obs["robot0_eef_pos"], dtype=np.float64)
        hand = T.quat2mat(np.asarray(obs["robot0_eef_quat"], dtype=np.float64))
        cube = np.asarray(obs["cube_pos"], dtype=np.float64)
        qpos = np.asarray(obs["robot0_gripper_qpos"], dtype=np.float64)

        target_rot, yaw_err = self._target_rotation(hand, np.asarray(obs["cube_quat"], dtype=np.float64))
        grasp_point = cube + np.array([0.0, 0.0, self.grasp_z_offset])
        rel = grasp_point - eef
        xy_err = float(np.linalg.norm(rel[:2]))
        width = float(qpos[0] - qpos[1])
        at_grasp = xy_err < self.grasp_xy_tol and abs(rel[2]) < self.grasp_z_tol
        in_hand = xy_err < self.hold_xy_tol and abs(rel[2]) < self.hold_z_tol

        if in_hand and self.min_hold_width < width < self.max_hold_width:
            self.phase = "lift"
            # Straight up by the cube's shortfall in height. No horizontal correction: an off-centre
            # grasp cannot be fixed by moving the hand, which would only drag the cube along.
            target = eef + np.array([0.0, 0.0, self.lift_z - cube[2]])
            gripper = 1.0
        elif width >= self.max_hold_width and (at_grasp or (in_hand and width < self.open_width)):
            self.phase = "grasp"
            target = grasp_point
            gripper = 1.0
        else:
            # Includes closed-on-nothing (width <= min_hold_width): open and go round again.
            self.phase = "approach"
            height = min(
                self.hover_height,
                self.funnel_slope * max(0.0, xy_err - self.funnel_xy_free)
                + self.funnel_yaw_slope * max(0.0, abs(yaw_err) - self.funnel_yaw_free),
            )
            target = grasp_point + np.array([0.0, 0.0, height])
            gripper = -1.0

        dpos = self.pos_gain * (target - eef) / POS_SCALE
        rotvec = T.quat2axisangle(T.mat2quat(target_rot @ hand.T))
        drot = self.rot_gain * rotvec / ROT_SCALE
        return np.clip(np.concatenate([dpos, drot, [gripper]]), -1.0, 1.0).astype(np.float32)
