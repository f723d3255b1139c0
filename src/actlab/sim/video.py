"""Videos of episodes: H.264 MP4s written with PyAV (no system FFmpeg), text overlays, and animated GIFs
for loggers that show those (TensorBoard)."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont


class VideoWriter:
    """Frames (H x W x 3 uint8, all the same size) -> an MP4 file; odd sizes are padded to even ones."""

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.container: av.container.OutputContainer | None = None
        self.stream = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(_even(frame))
        if self.container is None:
            self.container = av.open(str(self.path), mode="w")
            self.stream = self.container.add_stream("libx264", rate=round(self.fps))
            self.stream.height, self.stream.width = frame.shape[:2]
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": "23", "preset": "veryfast"}
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
            self.container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _even(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return frame
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)))


def overlay(frame: np.ndarray, lines: list[str], colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """`frame` with `lines` of text in its top-left corner, on a dark box so they read on any image."""
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(10, frame.shape[0] // 20))
    text = "\n".join(lines)
    left, top, right, bottom = draw.multiline_textbbox((4, 4), text, font=font)
    draw.rectangle((left - 3, top - 3, right + 3, bottom + 3), fill=(0, 0, 0))
    draw.multiline_text((4, 4), text, fill=colour, font=font)
    return np.asarray(image)


def read_frames(path: str | Path) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of a video file."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def gif_bytes(frames: np.ndarray, fps: float, max_side: int = 160) -> tuple[bytes, int, int]:
    """An animated GIF of `frames`, downscaled so its longer side is at most `max_side` pixels, with its
    height and width."""
    scale = min(1.0, max_side / max(frames.shape[1:3]))
    size = (max(1, round(frames.shape[2] * scale)), max(1, round(frames.shape[1] * scale)))
    images = [Image.fromarray(f).resize(size) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return buffer.getvalue(), size[1], size[0]
