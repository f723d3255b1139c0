"""Camera frames of a LeRobot dataset: PNG columns and mp4 files decoded once into the frame cache.

Videos decode with PyAV (no system FFmpeg needed), each file once, front to back.
"""

from __future__ import annotations

import io
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from actlab.data.formats.lerobot_meta import Layout, data_files
from actlab.data.frame_cache import cached_frames, fingerprint
from actlab.errors import ActlabError, reason


def decode_cameras(layout: Layout, columns, features, cameras, starts, cache_dir) -> dict[str, np.ndarray]:
    """Every camera frame decoded into the frame cache once; later runs memory-map it."""
    root, video_keys = layout.root, [k for k, f in layout.info["features"].items() if f["dtype"] == "video"]
    n = len(columns["index"])
    shapes = {k: (n, features[k].shape[1], features[k].shape[2], features[k].shape[0]) for k in cameras}
    sources = [*(root / "data").rglob("*.parquet"), root / "meta" / "info.json"]
    sources += [p for p in (root / "videos").rglob("*.mp4") if any(k in p.parts for k in cameras)]
    key = fingerprint(sources, {"format": "lerobot-layout", "cameras": cameras})

    def fill(arrays: dict[str, np.ndarray]) -> None:
        for cam in cameras:
            if cam in video_keys:
                decode_videos(layout, columns, cam, starts, arrays[cam])
            else:
                decode_images(read_image_column(root, cam), arrays[cam], root, cam)

    return cached_frames(cache_dir, key, shapes, fill)


def decode_images(blobs: list[bytes], out: np.ndarray, root: Path, key: str) -> None:
    def decode(i: int) -> None:
        try:
            image = np.asarray(Image.open(io.BytesIO(blobs[i])).convert("RGB"))
        except (OSError, ValueError) as e:
            raise ActlabError(f"{root}: '{key}' of frame {i} is not a readable image ({reason(e)})") from None
        out[i] = _checked(image, out.shape[1:], root, key)

    with ThreadPoolExecutor() as pool:
        list(tqdm(pool.map(decode, range(len(blobs))), total=len(blobs), desc=f"decoding {key}", leave=False))


def decode_videos(
    layout: Layout, columns: dict[str, np.ndarray], key: str, starts: np.ndarray, out: np.ndarray
) -> None:
    """Decodes each video file once, front to back, writing frames to their global index."""
    row_of_episode = {int(e): i for i, e in enumerate(layout.episodes["episode_index"])}
    timestamps = columns["timestamp"].astype(np.float64)
    episode_index = columns["episode_index"]
    per_file: dict[Path, dict[int, int]] = {}  # video file -> {frame number in the file: global frame}
    for first, last in zip(starts, [*starts[1:], len(timestamps)], strict=True):
        path, offset = layout.video_file(key, row_of_episode[int(episode_index[first])])
        frames = np.rint((offset + timestamps[first:last]) * layout.fps).astype(np.int64)
        per_file.setdefault(path, {}).update(zip(frames.tolist(), range(first, last), strict=True))

    filled = np.zeros(len(out), dtype=bool)
    libav = logging.getLogger("libav")  # FFmpeg's own messages; a file that fails to decode is reported below
    level = libav.level
    libav.setLevel(logging.CRITICAL)
    try:
        with tqdm(total=len(out), desc=f"decoding {key}", leave=False) as bar:
            for path, wanted in per_file.items():
                decode_video_file(path, wanted, layout, key, out, filled, bar)
    finally:
        libav.setLevel(level)
    if not filled.all():
        missing = int(np.flatnonzero(~filled)[0])
        raise ActlabError(f"{layout.root}: the videos of '{key}' have no frame for global frame {missing}")


def decode_video_file(path: Path, wanted: dict[int, int], layout: Layout, key: str, out, filled, bar) -> None:
    """Writes the frames of one video file that `wanted` maps (frame number -> global frame) into `out`."""
    if not path.is_file():
        raise ActlabError(f"{path} is missing (camera '{key}')")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                number = round(float(frame.pts * stream.time_base) * layout.fps)
                target = wanted.get(number)
                if target is not None:
                    out[target] = _checked(frame.to_ndarray(format="rgb24"), out.shape[1:], layout.root, key)
                    filled[target] = True
                    bar.update()
    except av.FFmpegError as e:
        raise ActlabError(f"{path}: cannot be decoded as a video ({type(e).__name__}: {e.strerror})") from None
    except IndexError:
        raise ActlabError(f"{path}: holds no video stream") from None


def _checked(image: np.ndarray, shape: tuple[int, ...], root: Path, key: str) -> np.ndarray:
    if image.shape != tuple(shape):
        raise ActlabError(f"{root}: '{key}' frames are {image.shape}; meta/info.json says {tuple(shape)}")
    return image


def read_image_column(root: Path, key: str) -> list[bytes]:
    """The PNG bytes of an image feature, in global `index` order."""
    blobs, indices = [], []
    for path in data_files(root):
        try:
            table = pq.read_table(path, columns=["index", key])
        except (pa.ArrowException, OSError) as e:
            raise ActlabError(f"{path}: not a readable parquet file ({reason(e)})") from None
        indices.append(table["index"].to_numpy())
        blobs += table[key].combine_chunks().field("bytes").to_pylist()
    order = np.argsort(np.concatenate(indices), kind="stable")
    return [blobs[i] for i in order]
