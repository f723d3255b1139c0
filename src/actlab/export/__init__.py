"""Turning a trained policy into files other runtimes load: `actlab-export` (LeRobot's ACT folder)."""
