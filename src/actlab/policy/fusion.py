"""Camera fusion: the cameras' per-image embeddings combined into one transformer token (seed 002's
`fuse` modes). `encoder.fuse=none` skips this and gives ACT every feature-map cell of every camera."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CameraFusion(nn.Module):
    """(..., n_cameras, embed_dim) -> (..., dim).

    mean        average of the cameras, then a linear projection
    concat_mlp  cameras concatenated, then a two-layer MLP
    gated       softmax over per-camera learned gates, weighted sum, then a linear projection
    """

    def __init__(self, mode: str, n_cameras: int, embed_dim: int, dim: int):
        super().__init__()
        self.mode = mode
        if mode == "concat_mlp":
            self.mlp = nn.Sequential(nn.Linear(n_cameras * embed_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        else:
            if mode == "gated":
                self.gate = nn.Linear(embed_dim, 1)
            self.proj = nn.Linear(embed_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "concat_mlp":
            return self.mlp(x.flatten(-2))
        if self.mode == "gated":
            weights = torch.softmax(self.gate(x), dim=-2)  # (..., n_cameras, 1)
            return self.proj((weights * x).sum(dim=-2))
        return self.proj(x.mean(dim=-2))
