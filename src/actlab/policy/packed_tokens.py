"""Token layouts of the transformer encoder: batch-first (B, L, D), or packed without the padded tokens.

A token whose key is padded is hidden from every query by the key-padding mask, so its output in a layer is
never read by the next one; if the encoder returns only its first tokens (the VAE encoder reads its [cls]
token), a padded token's whole column of work is unused. `PackedTokens` keeps the real tokens only, as
(N, D) rows: the projections, feed-forward blocks, norms and dropout run on N rows instead of B * L, and
attention scatters its keys and values back to (B, L, D) (zeros under the mask) and gathers its output.
The arithmetic of every real token is the same as batch-first; only dropout draws fewer random numbers.
In ACT's VAE encoder the padded tokens are the actions past an episode's end.
"""

from __future__ import annotations

import torch
from torch import Tensor


class BatchFirst:
    """(B, L, D) tokens; every method is the identity or a slice."""

    def to_batch(self, x: Tensor) -> Tensor:
        return x

    def from_batch(self, x: Tensor) -> Tensor:
        return x

    def first(self, x: Tensor, n: int) -> Tensor:
        """The first n tokens of every sample, (B, n, D)."""
        return x[:, :n]


BATCH_FIRST = BatchFirst()


class PackedTokens(BatchFirst):
    """The real tokens of a (B, L) key-padding mask (True = padded) as (N, D) rows, sample by sample; the
    first `n_first` tokens of every sample must be real (`first` reads them)."""

    def __init__(self, key_padding_mask: Tensor, n_first: int):
        real = ~key_padding_mask
        self.shape = real.shape
        self.index = real.flatten().nonzero().squeeze(1)  # (N,) positions in B * L
        lengths = real.sum(1)
        starts = lengths.cumsum(0) - lengths  # each sample's first row
        self.first_rows = (starts[:, None] + torch.arange(n_first, device=starts.device)).flatten()

    @staticmethod
    def worthwhile(key_padding_mask: Tensor | None, n_out: int | None, x: Tensor) -> bool:
        """Packing needs an output of the first tokens only, and pays off where there is padding. On a CPU
        only and not under torch.compile: the number of real tokens is known only from the data."""
        return (
            key_padding_mask is not None
            and n_out is not None
            and x.device.type == "cpu"
            and not torch.compiler.is_compiling()
            and bool(key_padding_mask.any())
        )

    def pack(self, x: Tensor) -> Tensor:
        """(B, L, ...) -> (N, ...); a (1, L, ...) tensor (a position table) is broadcast over the batch."""
        return x.expand(self.shape[0], *x.shape[1:]).flatten(0, 1).index_select(0, self.index)

    def to_batch(self, x: Tensor) -> Tensor:
        """(N, D) -> (B, L, D), zeros at the padded positions."""
        out = x.new_zeros(self.shape.numel(), x.shape[-1]).index_copy(0, self.index, x)
        return out.view(*self.shape, x.shape[-1])

    def from_batch(self, x: Tensor) -> Tensor:
        return self.pack(x)

    def first(self, x: Tensor, n: int) -> Tensor:
        return x.index_select(0, self.first_rows).view(self.shape[0], n, x.shape[-1])
