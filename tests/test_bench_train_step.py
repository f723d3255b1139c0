"""`python -m bench train_step` times LeRobot's update turn by turn with actlab's, without disturbing the
actlab run it sits in."""

from __future__ import annotations

from types import SimpleNamespace

import torch

import bench.train_step as train_step


def test_lerobot_takes_its_turns_after_every_nth_update_on_a_copy_of_the_rng_state(monkeypatch):
    turns = []
    monkeypatch.setattr(train_step, "_LEROBOT", SimpleNamespace(step=lambda: turns.append(torch.rand(1))))
    callback = train_step.LeRobotBetweenSteps(every=2, turn=3)
    torch.manual_seed(0)
    alone = torch.rand(4)  # what the run would draw without LeRobot's turns
    torch.manual_seed(0)
    drawn = []
    for step in range(1, 5):
        drawn.append(torch.rand(1))  # the run's update
        callback.on_train_batch_end(SimpleNamespace(global_step=step), None, None, None, step - 1)
    assert len(turns) == 6  # three after update 2, three after update 4
    torch.testing.assert_close(torch.cat(drawn), alone)
