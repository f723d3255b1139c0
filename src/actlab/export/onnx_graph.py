"""The policy as one traceable graph for ONNX: raw observations in, the action chunk in action units out.

`ChunkGraph` holds what `ACTPolicy.predict_action_chunk` runs at fp32 (normalisation, the inference
runtime's backbone with frozen BatchNorm folded into its convolutions, the transformer encoder, the decoder,
the un-normalisation), with the latent fixed at zero as ACT's inference uses it; the VAE encoder is left out.

Its inputs are `graph_inputs(config)` (actlab.policy.onnx_backend, which runs the graph), in that order:

    observation.state               float32 (B, D)             (B, T, D) with n_obs_steps = T > 1
    observation.environment_state   float32 (B, E)             (B, T, E)
    observation.images.<camera>     uint8   (B, H, W, 3)       (B, T, H, W, 3): the camera's own RGB layout
    observation_is_pad              bool    (B, T)             only with n_obs_steps > 1: history before
                                                               the episode's start (its steps are ignored)

and its output `action` float32 (B, chunk_size, action_dim). Images are taken as cameras give them (uint8,
channels last) so that a runtime converts nothing; the graph makes them the float [0, 1] NCHW images the
policy reads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from actlab.features import ACTION, OBSERVATION_IS_PAD
from actlab.policy.onnx_backend import OUTPUT, GraphInput, graph_inputs
from actlab.policy.policy import ACTPolicy
from actlab.policy.runtime import FoldedBackbone

__all__ = ["OUTPUT", "ChunkGraph", "GraphInput", "graph_inputs"]


class ChunkGraph(nn.Module):
    """`forward(*inputs)` in the order of `graph_inputs`: the (B, chunk_size, action_dim) chunk in action units.

    It runs the policy's own modules, except a ResNet backbone with frozen BatchNorm, which is the runtime's
    folded copy made when the graph is built."""

    def __init__(self, policy: ACTPolicy):
        super().__init__()
        config = policy.config
        self.config = config
        self.inputs = graph_inputs(config)
        self.model = policy.model
        self.normalizer = policy.normalizer
        self.history = config.n_obs_steps > 1
        self.image_keys = list(config.image_features)
        backbone = getattr(policy.model, "backbone", None)
        self.backbone = None
        if backbone is not None and any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules()):
            # The runtime's fp32 copy: what predict_action_chunk runs, and three fewer ops per convolution.
            embed = policy.model.fuse != "none"
            self.backbone = FoldedBackbone(backbone, torch.device("cpu"), False, torch.float32, embed)

    def forward(self, *values: Tensor) -> Tensor:
        batch = {spec.name: value for spec, value in zip(self.inputs, values, strict=True)}
        vectors = {}
        for key, feature in self.config.input_features.items():
            if feature.type != "VISUAL":
                vectors[key] = self.normalizer.normalize(key, batch[key])
        if self.history:
            vectors[OBSERVATION_IS_PAD] = batch[OBSERVATION_IS_PAD]
        images = [self.normalizer.normalize(key, self._unit_nchw(batch[key])) for key in self.image_keys]
        model = self.model
        reference = images[0] if images else next(iter(vectors.values()))
        latent = reference.new_zeros(reference.shape[0], self.config.latent_dim)
        features = model.image_features(images, self.backbone)
        tokens, pos, mask = model.encoder_inputs(vectors, features, latent)
        memory = model.encoder(tokens, pos, mask)
        return self.normalizer.unnormalize(ACTION, model.decode(memory, pos, mask))

    @staticmethod
    def _unit_nchw(image: Tensor) -> Tensor:
        """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [0, 1], as the policy converts uint8 images."""
        # Positive axes: the TorchScript exporter writes negative ones into Transpose's perm, which ONNX refuses.
        axes = list(range(image.dim()))
        return image.permute(*axes[:-3], axes[-1], *axes[-3:-1]).float() / 255.0
