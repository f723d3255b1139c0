"""Mean/std normalisation whose statistics live in the policy as buffers (saved with its weights)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from actlab.errors import ActlabError
from actlab.features import PolicyFeature

EPS = 1e-8  # as LeRobot's NormalizerProcessorStep, so both give the same numbers


def _stat_shape(feature: PolicyFeature) -> tuple[int, ...]:
    # Images are normalised per channel; vectors per dimension.
    return (feature.shape[0], 1, 1) if feature.type == "VISUAL" else tuple(feature.shape)


class _MeanStd(nn.Module):
    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))


class Normalizer(nn.Module):
    """Holds (mean, std) for each feature; `stats` maps feature key -> {"mean": ..., "std": ...}."""

    def __init__(
        self,
        features: Mapping[str, PolicyFeature],
        stats: Mapping[str, Mapping[str, np.ndarray | Tensor]] | None,
    ):
        super().__init__()
        self.features = dict(features)
        self.stats = nn.ModuleDict({_name(k): _MeanStd(_stat_shape(f)) for k, f in self.features.items()})
        if stats is not None:
            self.set_stats(stats)

    def set_stats(self, stats: Mapping[str, Mapping[str, np.ndarray | Tensor]]) -> None:
        for key, feature in self.features.items():
            if key not in stats or not {"mean", "std"} <= set(stats[key]):
                raise ActlabError(f"normalisation statistics have no mean/std for '{key}'")
            shape = _stat_shape(feature)
            buffers = self.stats[_name(key)]
            for name in ("mean", "std"):
                value = torch.as_tensor(np.asarray(stats[key][name], dtype=np.float32))
                if value.numel() != int(np.prod(shape)):
                    raise ActlabError(f"statistics '{key}.{name}' have {value.numel()} values; expected shape {shape}")
                if not bool(torch.isfinite(value).all()):
                    raise ActlabError(f"statistics '{key}.{name}' are not finite: {value.flatten().tolist()}")
                getattr(buffers, name).copy_(value.reshape(shape))

    def check_finite(self, source: object) -> None:
        """Refuses buffers loaded from `source` (a checkpoint's weights file) that are NaN or infinite."""
        for name, buffer in self.named_buffers():
            if not bool(torch.isfinite(buffer).all()):
                key = name.rpartition(".")[0].replace("__", ".").removeprefix("stats.")
                raise ActlabError(
                    f"{source}: the normalisation statistics '{key}.{name.rpartition('.')[2]}' are not finite "
                    "(NaN or inf); this checkpoint cannot act"
                )

    def mean_std(self, key: str) -> tuple[Tensor, Tensor]:
        """The (mean, std) buffers of feature `key` (images: per channel, (3, 1, 1))."""
        s = self.stats[_name(key)]
        return s.mean, s.std

    def normalize(self, key: str, x: Tensor) -> Tensor:
        s = self.stats[_name(key)]
        return (x - s.mean) / (s.std + EPS)

    def unnormalize(self, key: str, x: Tensor) -> Tensor:
        s = self.stats[_name(key)]
        return x * (s.std + EPS) + s.mean


def _name(key: str) -> str:
    return key.replace(".", "__")
