"""Where the ALOHA expert's grippers go: the waypoints of each task, laid out from the objects' initial poses,
and their interpolation (linear for the tool point and the opening, slerp for the orientation).

Frames as in actlab.sim.aloha_expert: x from the left arm's base to the right arm's, y away from the bases'
side of the table, z up; a gripper frame has x along the fingers and y along the direction they close in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPEN, CLOSED = 1.0, 0.0  # gym-aloha's normalised gripper positions


@dataclass(frozen=True)
class Waypoint:
    t: int  # step at which the gripper is here
    xyz: np.ndarray  # tool point (the welded mocap body: between the fingers, ~13.5 cm ahead of the wrist)
    rotation: np.ndarray  # 3 x 3 gripper orientation in the world
    gripper: float  # normalised opening


def gripper_frame(pointing, closing) -> np.ndarray:
    """The rotation whose x axis is `pointing` and whose y axis is `closing`, made orthogonal to it."""
    x = np.asarray(pointing, dtype=float) / np.linalg.norm(pointing)
    y = np.asarray(closing, dtype=float) - np.dot(closing, x) * x
    y /= np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)], axis=1)


def pitched(toward_x: float, pitch_deg: float, closing_y: float) -> np.ndarray:
    """A gripper pointing along world x (`toward_x` = +1 or -1) tilted down by `pitch_deg`, fingers closing along y."""
    pitch = np.radians(pitch_deg)
    return gripper_frame([toward_x * np.cos(pitch), 0.0, -np.sin(pitch)], [0.0, closing_y, 0.0])


def quat(rotation: np.ndarray) -> np.ndarray:
    """The unit quaternion (w, x, y, z) of a rotation matrix (MuJoCo's convention). Plain numpy: importing
    `mujoco` here, before the adapter has chosen MUJOCO_GL, would fix the process's GL platform."""
    m = rotation
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:  # Shepperd's method: divide by the largest of the four candidates
        s = 2.0 * np.sqrt(1.0 + trace)
        q = [s / 4, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] >= m[1, 1] and m[0, 0] >= m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] >= m[2, 2]:
        s = 2.0 * np.sqrt(1.0 - m[0, 0] + m[1, 1] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 - m[0, 0] - m[1, 1] + m[2, 2])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4]
    q = np.array(q)
    return q / np.linalg.norm(q)


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ])  # fmt: skip


def conj(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    return quat_mul(quat_mul(q, np.concatenate([[0.0], v])), conj(q))[1:]


def slerp(q0: np.ndarray, q1: np.ndarray, fraction: float) -> np.ndarray:
    dot = float(np.dot(q0, q1))
    if dot < 0.0:  # the shorter way round
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + fraction * (q1 - q0)
    else:
        angle = np.arccos(dot)
        q = (np.sin((1 - fraction) * angle) * q0 + np.sin(fraction * angle) * q1) / np.sin(angle)
    return q / np.linalg.norm(q)


def interpolate(waypoints: list[Waypoint], t: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(tool point, gripper quaternion, opening) at step `t`: linear between waypoints, slerp for the orientation."""
    if t <= waypoints[0].t:
        w = waypoints[0]
        return w.xyz, quat(w.rotation), w.gripper
    for a, b in zip(waypoints, waypoints[1:], strict=False):
        if t <= b.t:
            f = (t - a.t) / (b.t - a.t)
            return (
                a.xyz + f * (b.xyz - a.xyz),
                slerp(quat(a.rotation), quat(b.rotation), f),
                a.gripper + f * (b.gripper - a.gripper),
            )
    w = waypoints[-1]
    return w.xyz, quat(w.rotation), w.gripper


def transfer_cube_waypoints(objects: np.ndarray, start: list[Waypoint]) -> tuple[list[Waypoint], list[Waypoint]]:
    """The right arm picks the cube from above, lifts it to the middle of the table and holds it out; the left
    arm, rolled a quarter turn so that its fingers close vertically, takes it there; the right one lets go."""
    cube = np.array([objects[0], objects[1], 0.02])  # resting on the table (the pose is sampled 3 cm above it)
    meet = np.array([0.0, 0.5, 0.22])
    pick = pitched(-1.0, 60.0, -1.0)
    take = gripper_frame([1.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    left0, right0 = start
    right = [
        right0,
        Waypoint(70, cube + [0.0, 0.0, 0.09], pick, OPEN),  # above the cube
        Waypoint(110, cube + [0.0, 0.0, 0.005], pick, OPEN),  # fingers around it
        Waypoint(135, cube + [0.0, 0.0, 0.005], pick, CLOSED),  # grasp
        Waypoint(150, cube + [0.0, 0.0, 0.005], pick, CLOSED),
        Waypoint(200, meet + [0.06, 0.0, 0.0], pick, CLOSED),  # lift, towards the middle
        Waypoint(225, meet, pick, CLOSED),  # hold it out
        Waypoint(300, meet, pick, CLOSED),
        Waypoint(320, meet, pick, OPEN),  # let go
        Waypoint(360, meet + [0.12, 0.0, 0.02], pick, OPEN),
        Waypoint(400, meet + [0.12, 0.0, 0.02], pick, OPEN),
    ]
    left = [
        left0,
        Waypoint(120, meet + [-0.14, 0.0, 0.0], take, OPEN),  # in front of the meeting point
        Waypoint(230, meet + [-0.14, 0.0, 0.0], take, OPEN),
        Waypoint(270, meet + [-0.005, 0.0, 0.0], take, OPEN),  # around the cube
        Waypoint(295, meet + [-0.005, 0.0, 0.0], take, CLOSED),  # grasp
        Waypoint(340, meet + [-0.005, 0.0, 0.0], take, CLOSED),
        Waypoint(380, meet + [-0.1, 0.0, 0.0], take, CLOSED),  # take it away
        Waypoint(400, meet + [-0.1, 0.0, 0.0], take, CLOSED),
    ]
    return left, right


def picked_up(grip: np.ndarray, orientation: np.ndarray) -> list[Waypoint]:
    """Insertion's grasp, the same for both arms: above the object, down around it, close, hold."""
    return [
        Waypoint(90, grip + [0.0, 0.0, 0.08], orientation, OPEN),
        Waypoint(130, grip, orientation, OPEN),
        Waypoint(155, grip, orientation, CLOSED),
        Waypoint(170, grip, orientation, CLOSED),
    ]


def insertion_waypoints(objects: np.ndarray, start: list[Waypoint]) -> tuple[list[Waypoint], list[Waypoint]]:
    """The left arm picks the socket, the right arm the peg, each 3 cm out from its centre; both lift them to
    the middle of the table, the socket's mouth facing the peg along x, and the right arm pushes the peg in
    until its tip touches the pin."""
    peg = np.array([objects[0], objects[1], 0.01])  # 12 x 2 x 2 cm bar along x, resting on the table
    socket = np.array([objects[7], objects[8], 0.022])  # 12 cm square tube along x (4.4 cm across), pin inside
    # The peg is low: a steeper gripper keeps its fingertips (2 cm beyond the tool point) off the table.
    grip_peg = pitched(-1.0, 80.0, -1.0)
    grip_socket = pitched(1.0, 60.0, 1.0)
    peg_grip = peg + [0.03, 0.0, 0.012]  # tool point relative to the peg's centre while held
    socket_grip = socket + [-0.03, 0.0, -0.002]
    # Meeting: the socket's centre at `mouth` - 6 cm (its mouth at `mouth`, the pin 2 cm inside it); the
    # peg first waits with its tip 4 cm outside the mouth, then goes in until the tip is 2.5 cm inside.
    mouth = np.array([0.0, 0.5, 0.2])
    socket_at = mouth - [0.06, 0.0, 0.0] + (socket_grip - socket)
    peg_tip = np.array([-0.06, 0.0, 0.0])  # from the peg's centre
    peg_before = mouth + [0.04, 0.0, 0.0] - peg_tip + (peg_grip - peg)
    peg_in = mouth + [-0.025, 0.0, 0.0] - peg_tip + (peg_grip - peg)
    left0, right0 = start
    left = [
        left0,
        *picked_up(socket_grip, grip_socket),
        Waypoint(240, socket_at, grip_socket, CLOSED),  # lift, mouth towards the middle
        Waypoint(400, socket_at, grip_socket, CLOSED),
    ]
    right = [
        right0,
        *picked_up(peg_grip, grip_peg),
        Waypoint(240, peg_before, grip_peg, CLOSED),  # lift, lined up with the socket
        Waypoint(270, peg_before, grip_peg, CLOSED),
        Waypoint(340, peg_in, grip_peg, CLOSED),  # in, until the pin
        Waypoint(400, peg_in, grip_peg, CLOSED),
    ]
    return left, right


PLANS = {"transfer_cube": transfer_cube_waypoints, "insertion": insertion_waypoints}
