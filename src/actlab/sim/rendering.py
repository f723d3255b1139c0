"""Choosing MuJoCo's OpenGL backend for camera observations, before robosuite or mujoco is imported."""

from __future__ import annotations

import os
import subprocess
import sys

from actlab.errors import ActlabError

BACKENDS = ("egl", "osmesa")
_PROBE = "import mujoco; c = mujoco.GLContext(16, 16); c.make_current(); c.free()"


def select_gl_backend() -> str:
    """Sets MUJOCO_GL to a backend that renders here; keeps the user's choice when MUJOCO_GL is set."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    for backend in BACKENDS:
        env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
        probe = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=60)
        if probe.returncode == 0:
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    raise ActlabError(
        "cannot render MuJoCo cameras: neither EGL nor OSMesa works here; install the Debian packages "
        "libegl1 (EGL) or libosmesa6 (OSMesa), or set MUJOCO_GL to a backend that works"
    )
