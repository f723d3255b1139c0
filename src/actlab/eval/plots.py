"""Plots of predicted vs recorded actions over an episode (matplotlib, rendered off-screen): a PNG per
episode, and the frames of a "live" plot for videos, where the curves grow with the episode."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # off-screen; set before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

RECORDED, PREDICTED = "#222222", "#e8710a"


def grid(dims: int) -> tuple[int, int]:
    """Rows and columns of subplots for `dims` action dimensions."""
    cols = 4 if dims > 6 else 2 if dims > 1 else 1
    return math.ceil(dims / cols), cols


def action_figure(predicted: np.ndarray, recorded: np.ndarray, names: list[str], title: str, size: tuple[float, float]):
    """A grid of one subplot per action dimension, predicted and recorded over time."""
    dims = recorded.shape[1]
    rows, cols = grid(dims)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, sharex=True)
    steps = np.arange(len(recorded))
    for d, ax in enumerate(axes.flat):
        if d >= dims:
            ax.axis("off")
            continue
        ax.plot(steps, recorded[:, d], color=RECORDED, lw=1.2, label="recorded")
        ax.plot(steps, predicted[:, d], color=PREDICTED, lw=1.2, label="predicted")
        ax.set_title(names[d], fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_xlim(0, max(1, len(recorded) - 1))
    axes.flat[0].legend(fontsize=6, loc="best")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_action_plot(path: Path, predicted: np.ndarray, recorded: np.ndarray, names: list[str], title: str) -> Path:
    rows, _ = grid(recorded.shape[1])
    fig = action_figure(predicted, recorded, names, title, (10, 1.8 * rows + 0.8))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class LivePlot:
    """Frames of the action plot as the episode unfolds: frame t shows the curves up to step t. The plot
    is drawn twice (with and without curves) and frame t takes, inside each subplot, the columns left of
    step t from the first and the rest from the second: one matplotlib draw per episode, not per frame."""

    def __init__(
        self, predicted: np.ndarray, recorded: np.ndarray, names: list[str], title: str, width: int, height: int
    ):
        dpi = 100
        fig = action_figure(predicted, recorded, names, title, (width / dpi, height / dpi))
        fig.set_dpi(dpi)
        self.full = _pixels(fig)
        for ax in fig.axes:
            for line in ax.get_lines():
                line.set_visible(False)
        self.empty = _pixels(fig)
        rows = self.full.shape[0]
        self.boxes = []  # per subplot: (top row, bottom row, x of step 0, pixels per step, right column)
        for ax in fig.axes:
            if not ax.axison:
                continue
            box = ax.get_window_extent()
            x0 = ax.transData.transform((0, 0))[0]
            x1 = ax.transData.transform((1, 0))[0]
            self.boxes.append((int(rows - box.y1), int(rows - box.y0), x0, x1 - x0, int(math.ceil(box.x1))))
        plt.close(fig)

    def frame(self, t: int) -> np.ndarray:
        image = self.full.copy()
        for top, bottom, x0, per_step, right in self.boxes:
            cut = int(round(x0 + per_step * t)) + 1
            image[top:bottom, cut:right] = self.empty[top:bottom, cut:right]
        return image


def _pixels(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
