"""The transformer layers of ACT (LeRobot's submodule and parameter names), batch-first, with attention
through `scaled_dot_product_attention`, and the sinusoidal position tables.

Exact shortcuts, each tested against the general path: in training on a CPU the feed-forward block's ReLU
and dropout are fused with its two products (`feedforward`); the decoder's first self-attention, whose
input (ACT's zero queries) is the same everywhere, needs no per-sample products (`Attention.of_uniform_values`);
a caller may pass the first self-attention's projections (`Encoder(first_qkv=...)`, the VAE's action tokens);
an encoder that returns only its first tokens skips the padded ones on a CPU (`actlab.policy.packed_tokens`).
The first three change how values are rounded, so they are taken in fp32 only (`exact_shortcuts`): under
mixed precision the layers round as LeRobot's do, the path the native-bf16 results were measured on."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from actlab.config.policy import ACTPolicyConfig
from actlab.policy.cpu_dropout import add_dropout, attention_with_dropout, dropout, relu_dropout_feedforward
from actlab.policy.packed_tokens import BATCH_FIRST, BatchFirst, PackedTokens

ACTIVATION_FUNCTIONS = {"relu": F.relu, "gelu": F.gelu, "glu": F.glu}  # actlab.config.policy.ACTIVATIONS


class Attention(nn.Module):
    """Multi-head attention with nn.MultiheadAttention's parameter names, batch-first."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None):
        return self.attend(*self.project(query, key, value), key_padding_mask)

    def project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The queries', keys' and values' projections (any leading shape)."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        if query is key:  # self-attention: one matrix product for the queries and keys
            q, k = F.linear(query, self.in_proj_weight[: 2 * len(w_q)], self.in_proj_bias[: 2 * len(w_q)]).chunk(2, -1)
        else:
            q, k = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k)
        return q, k, F.linear(value, w_v, b_v)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """The attention of projected (B, L, D) queries, keys and values, through `out_proj`."""
        return self.out_proj(self.attention(q, k, v, key_padding_mask))

    def attention(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """The attention of projected (B, L, D) queries, keys and values, before `out_proj`."""
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        p = self.dropout if self.training else 0.0
        if p > 0 and q.device.type == "cpu":
            out = attention_with_dropout(q, k, v, mask, p)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        batch, _, length, head_dim = out.shape
        return out.transpose(1, 2).reshape(batch, length, self.n_heads * head_dim)

    def of_uniform_values(self, qk: Tensor, value: Tensor, batch: int) -> Tensor:
        """`self(qk, qk, values)` for (batch, L, D) values all equal to `value` (D,), with `qk` (1, L, D) the
        same for every sample. Every value is then one vector per head, so a query's output is that vector
        times the sum of the query's attention weights: 1 without dropout (the output is the same everywhere),
        the kept weights' sum with it. Only the dropout mask depends on the sample: the queries, keys and
        weights are computed once, and the (batch, L, D) output in rank `n_heads`. Without dropout the output
        is (1, L, D), for every sample (an exported graph keeps its batch size free)."""
        dim = value.shape[-1]
        w_v, b_v = self.in_proj_weight[2 * dim :], self.in_proj_bias[2 * dim :]
        p = self.dropout if self.training else 0.0
        if p == 0:
            return self.out_proj(F.linear(value, w_v, b_v)).expand(1, qk.shape[1], dim)  # broadcasts over samples
        head_value = F.linear(value, w_v, b_v).view(self.n_heads, -1)  # (H, hd)
        per_head = (self.out_proj.weight.view(dim, self.n_heads, -1) * head_value).sum(-1)  # (D, H)
        q, k = F.linear(qk, self.in_proj_weight[: 2 * dim], self.in_proj_bias[: 2 * dim]).chunk(2, -1)
        q, k = self._heads(q), self._heads(k)  # (1, H, L, hd)
        weights = (q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5)).softmax(-1).expand(batch, -1, -1, -1)
        kept = dropout(weights, p)
        return F.linear(kept.sum(-1).transpose(1, 2), per_head, self.out_proj.bias)  # (B, L, D)

    def _heads(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.n_heads, dim // self.n_heads).transpose(1, 2)


class Dropout(nn.Dropout):
    """nn.Dropout, with the CPU's keep mask drawn 3x faster (`cpu_dropout`); other devices use F.dropout."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p) if self.training and self.p > 0 else x

    def residual(self, x: Tensor, y: Tensor) -> Tensor:
        """`x + self(y)`: on a CPU in training one pass (`add_dropout`)."""
        return add_dropout(x, y, self.p) if self.training and self.p > 0 else x + y


def exact_shortcuts(x: Tensor) -> bool:
    """Whether the shortcuts that reorder or fuse products are taken for `x`: in fp32 outside autocast, where
    they give the general path's values up to fp32 rounding. Under autocast they would round to bf16 at other
    points than the general path, whose training results are the measured ones, so it is kept there."""
    return x.dtype == torch.float32 and not torch.is_autocast_enabled(x.device.type)


def feedforward(layer: EncoderLayer | DecoderLayer, h: Tensor) -> Tensor:
    """`linear2(dropout(activation(linear1(h))))` of a layer; fused on a CPU in fp32 training with ReLU."""
    p = layer.dropout.p
    if layer.training and p > 0 and h.device.type == "cpu" and layer.activation is F.relu and exact_shortcuts(h):
        return relu_dropout_feedforward(h, p, layer.linear1, layer.linear2)
    return layer.linear2(layer.dropout(layer.activation(layer.linear1(h))))


def _with_pos(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ACTPolicyConfig):
        super().__init__()
        self.self_attn = Attention(cfg.dim_model, cfg.n_heads, cfg.dropout)
        self.linear1 = nn.Linear(cfg.dim_model, cfg.dim_feedforward)
        self.dropout = Dropout(cfg.dropout)
        self.linear2 = nn.Linear(cfg.dim_feedforward, cfg.dim_model)
        self.norm1 = nn.LayerNorm(cfg.dim_model)
        self.norm2 = nn.LayerNorm(cfg.dim_model)
        self.dropout1 = Dropout(cfg.dropout)
        self.dropout2 = Dropout(cfg.dropout)
        self.activation = ACTIVATION_FUNCTIONS[cfg.feedforward_activation]
        self.pre_norm = cfg.pre_norm

    def forward(
        self,
        x: Tensor,
        pos: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        n_out: int | None = None,
        qkv: tuple[Tensor, Tensor, Tensor] | None = None,
        layout: BatchFirst = BATCH_FIRST,
    ) -> Tensor:
        """With `n_out`, only the first `n_out` tokens are computed (they attend to all of them). `qkv`: the
        self-attention's (B, L, D) projections of x, computed by the caller (with `pos` in the queries and
        keys). `layout`: how x and pos hold the tokens (`actlab.policy.packed_tokens`); the output is in it
        too, but (B, n_out, D) with `n_out`."""
        h = self.norm1(x) if self.pre_norm else x
        if qkv is None:
            qk = _with_pos(h, pos)
            q, k, v = self.self_attn.project(qk if n_out is None else layout.first(qk, n_out), qk, h)
            q, k, v = q if n_out is not None else layout.to_batch(q), layout.to_batch(k), layout.to_batch(v)
        else:
            q, k, v = qkv
            q = q if n_out is None else q[:, :n_out]
        attended = self.self_attn.attention(q, k, v, key_padding_mask)
        attended = self.self_attn.out_proj(attended if n_out is not None else layout.from_batch(attended))
        x = x if n_out is None else layout.first(x, n_out)
        x = self.dropout1.residual(x, attended)
        if not self.pre_norm:
            x = self.norm1(x)
        h = self.norm2(x) if self.pre_norm else x
        x = self.dropout2.residual(x, feedforward(self, h))
        return x if self.pre_norm else self.norm2(x)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ACTPolicyConfig):
        super().__init__()
        self.self_attn = Attention(cfg.dim_model, cfg.n_heads, cfg.dropout)
        self.multihead_attn = Attention(cfg.dim_model, cfg.n_heads, cfg.dropout)
        self.linear1 = nn.Linear(cfg.dim_model, cfg.dim_feedforward)
        self.dropout = Dropout(cfg.dropout)
        self.linear2 = nn.Linear(cfg.dim_feedforward, cfg.dim_model)
        self.norm1 = nn.LayerNorm(cfg.dim_model)
        self.norm2 = nn.LayerNorm(cfg.dim_model)
        self.norm3 = nn.LayerNorm(cfg.dim_model)
        self.dropout1 = Dropout(cfg.dropout)
        self.dropout2 = Dropout(cfg.dropout)
        self.dropout3 = Dropout(cfg.dropout)
        self.activation = ACTIVATION_FUNCTIONS[cfg.feedforward_activation]
        self.pre_norm = cfg.pre_norm

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        pos: Tensor,
        memory_pos: Tensor,
        memory_mask: Tensor | None = None,
        uniform: bool = False,
    ) -> Tensor:
        """`uniform`: x is the same at every position and sample (ACT's zero queries, in the first layer)."""
        h = self.norm1(x) if self.pre_norm else x
        if uniform:
            attended = self.self_attn.of_uniform_values(_with_pos(h[:1, :1], pos), h[0, 0], x.shape[0])
        else:
            qk = _with_pos(h, pos)
            attended = self.self_attn(qk, qk, h)
        x = self.dropout1.residual(x, attended)
        if not self.pre_norm:
            x = self.norm1(x)
        h = self.norm2(x) if self.pre_norm else x
        attended = self.multihead_attn(_with_pos(h, pos), _with_pos(memory, memory_pos), memory, memory_mask)
        x = self.dropout2.residual(x, attended)
        if not self.pre_norm:
            x = self.norm2(x)
        h = self.norm3(x) if self.pre_norm else x
        x = self.dropout3.residual(x, feedforward(self, h))
        return x if self.pre_norm else self.norm3(x)


class Encoder(nn.Module):
    def __init__(self, cfg: ACTPolicyConfig, n_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(n_layers))
        self.norm = nn.LayerNorm(cfg.dim_model) if cfg.pre_norm else nn.Identity()

    def forward(
        self,
        x: Tensor,
        pos: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        n_out: int | None = None,
        first_qkv: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> Tensor:
        """The encoded tokens; with `n_out` only the first `n_out`, whose last layer then skips the others'
        attention queries and feed-forward (the VAE encoder reads its [cls] token only), and whose layers
        skip the padded tokens on a CPU (`PackedTokens`). `first_qkv`: the first layer's self-attention
        projections, computed by the caller (EncoderLayer's `qkv`)."""
        layout = BATCH_FIRST
        if PackedTokens.worthwhile(key_padding_mask, n_out, x):
            layout = PackedTokens(key_padding_mask, n_out)
            x, pos = layout.pack(x), None if pos is None else layout.pack(pos)
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            x = layer(x, pos, key_padding_mask, n_out if last else None, first_qkv if i == 0 else None, layout)
        return self.norm(x)


class Decoder(nn.Module):
    """All `n_decoder_layers` are used (the original ACT code ran only the first of its 7)."""

    def __init__(self, cfg: ACTPolicyConfig):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_decoder_layers))
        self.norm = nn.LayerNorm(cfg.dim_model)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        pos: Tensor,
        memory_pos: Tensor,
        memory_mask: Tensor | None = None,
        uniform: bool = False,
    ) -> Tensor:
        """`uniform`: x is the same at every position and sample, as ACT's zero queries are; the first
        layer's self-attention then needs no per-sample matrix products (in fp32: `exact_shortcuts`)."""
        uniform = uniform and exact_shortcuts(x)
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, pos, memory_pos, memory_mask, uniform=uniform and i == 0)
        return self.norm(x)


def sinusoidal_1d(n_positions: int, dim: int) -> Tensor:
    """(n_positions, dim) fixed embedding of "Attention is all you need"; sin on even dims, cos on odd."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    angle = position / torch.pow(10000.0, 2 * (torch.arange(dim) // 2) / dim).to(torch.float64)
    table = torch.where(torch.arange(dim) % 2 == 0, angle.sin(), angle.cos())
    return table.float()


def sinusoidal_2d(height: int, width: int, dim: int) -> Tensor:
    """(dim, height, width) embedding of a feature map: dim/2 channels for rows, dim/2 for columns.

    Positions run 1..n and are scaled to (0, 2pi], as in the original ACT (DETR) code. A new tensor on every
    call from a cached numpy table: a cached tensor would be whatever the first caller made, e.g. a traced
    placeholder left behind by torch.export.
    """
    return torch.from_numpy(_sinusoidal_2d_table(height, width, dim).copy())


@lru_cache(maxsize=16)
def _sinusoidal_2d_table(height: int, width: int, dim: int) -> np.ndarray:
    half = dim // 2
    two_pi = np.float32(2 * math.pi)
    rows = np.arange(1, height + 1, dtype=np.float32)
    cols = np.arange(1, width + 1, dtype=np.float32)
    rows = rows / (rows[-1:] + np.float32(1e-6)) * two_pi
    cols = cols / (cols[-1:] + np.float32(1e-6)) * two_pi
    inv_freq = np.float32(10000) ** (2 * (np.arange(half, dtype=np.float32) // 2) / np.float32(half))
    even = np.arange(half) % 2 == 0

    def embed(p: np.ndarray) -> np.ndarray:
        angle = p[:, None] / inv_freq
        return np.where(even, np.sin(angle), np.cos(angle))

    row_emb = np.broadcast_to(embed(rows)[:, None, :], (height, width, half))
    col_emb = np.broadcast_to(embed(cols)[None, :, :], (height, width, half))
    table = np.concatenate([row_emb, col_emb], axis=-1).transpose(2, 0, 1)
    return np.ascontiguousarray(table, dtype=np.float32)
