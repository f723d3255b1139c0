"""Image augmentation for training batches: a random resized crop, a random shift (DrQ's pad-and-crop)
and colour jitter per sample.

Parameters are drawn from the generator the batch stream passes in (seeded by seed and step), so
augmented runs stay reproducible and resumable. The same parameters apply to every observation step of
a sample. Validation batches are never augmented.
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms.v2 import functional as F  # noqa: N812

from actlab.config.datasets import AugmentConfig
from actlab.errors import ActlabError


class ImageAugment:
    def __init__(self, cfg: AugmentConfig, camera_keys: list[str]):
        if not isinstance(cfg.shift, int) or cfg.shift < 0:
            raise ActlabError(f"dataset.augment.shift={cfg.shift}: expected a whole number of pixels >= 0")
        self.cfg = cfg
        self.camera_keys = camera_keys

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        for key in self.camera_keys:
            images = batch[key]  # (B, [n_obs,] 3, H, W) uint8
            batch[key] = torch.stack([self._one(image, generator) for image in images])
        return batch

    def _one(self, image: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        cfg = self.cfg
        height, width = image.shape[-2:]
        scale = _uniform(g, *cfg.crop_scale)
        crop_h, crop_w = max(1, round(height * math.sqrt(scale))), max(1, round(width * math.sqrt(scale)))
        top = int(torch.randint(0, height - crop_h + 1, (1,), generator=g))
        left = int(torch.randint(0, width - crop_w + 1, (1,), generator=g))
        if (crop_h, crop_w) != (height, width):
            image = F.resized_crop(image, top, left, crop_h, crop_w, [height, width], antialias=True)
        if cfg.shift:
            pad = cfg.shift
            top, left = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=g))
            image = F.crop(F.pad(image, [pad], padding_mode="edge"), top, left, height, width)
        if cfg.brightness:
            image = F.adjust_brightness(image, _uniform(g, 1 - cfg.brightness, 1 + cfg.brightness))
        if cfg.contrast:
            image = F.adjust_contrast(image, _uniform(g, 1 - cfg.contrast, 1 + cfg.contrast))
        if cfg.saturation:
            image = F.adjust_saturation(image, _uniform(g, 1 - cfg.saturation, 1 + cfg.saturation))
        if cfg.hue:
            image = F.adjust_hue(image, _uniform(g, -cfg.hue, cfg.hue))
        return image


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))
