"""The Action Chunking Transformer network (Zhao et al., 2023), on normalised tensors.

Submodule and parameter names are LeRobot's (`backbone`, `encoder`, `decoder`, `vae_encoder`,
`action_head`, ...), so for the resnet / single-observation case a state dict moves between this module
and `lerobot.policies.act.modeling_act.ACT` unchanged. Internally tensors are batch-first and attention
runs through `scaled_dot_product_attention`; numerically it is the same network.

Token layout of the transformer encoder: [latent, then for each observed step: robot state?, environment
state?, image cells of every camera (or one fused image token)].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from actlab.config.policy import ACTPolicyConfig
from actlab.features import ACTION, ACTION_IS_PAD, OBS_ENV_STATE, OBS_STATE, OBSERVATION_IS_PAD
from actlab.policy.encoders import build_backbone
from actlab.policy.fusion import CameraFusion
from actlab.policy.transformer import Decoder, Encoder, exact_shortcuts, sinusoidal_1d, sinusoidal_2d


class ACT(nn.Module):
    """ACT on normalised inputs.

    With n_obs_steps=1, vectors are (B, D) and images a list of (B, 3, H, W) tensors, one per camera
    (LeRobot's layout). With n_obs_steps=T>1 they carry a time axis, (B, T, D) and (B, T, 3, H, W), and
    `observation_is_pad` (B, T) marks history before the episode start: every step's tokens enter the
    encoder with a learned per-step embedding, and padded steps are masked out of attention.

    `forward` is the training pass. It chains steps that are public so that an inference runtime
    (actlab.policy.runtime) can run them with its own copies of the backbone and the encoder:
    `latent`, `image_features`, `encoder_inputs`, `encoder`, `decode`.
    """

    def __init__(self, cfg: ACTPolicyConfig, load_backbone_weights: bool = True):
        super().__init__()
        self.cfg = cfg
        dim = cfg.dim_model
        state, env_state, action = cfg.robot_state_feature, cfg.env_state_feature, cfg.action_feature
        self.fuse = cfg.encoder.fuse

        if cfg.use_vae:
            # BERT-like encoder over [cls, robot state?, action chunk] giving the latent's mean and log-var.
            self.vae_encoder = Encoder(cfg, cfg.n_vae_encoder_layers)
            self.vae_encoder_cls_embed = nn.Embedding(1, dim)
            if state:
                self.vae_encoder_robot_state_input_proj = nn.Linear(state.shape[0], dim)
            self.vae_encoder_action_input_proj = nn.Linear(action.shape[0], dim)
            self.vae_encoder_latent_output_proj = nn.Linear(dim, cfg.latent_dim * 2)
            n_vae_tokens = 1 + cfg.chunk_size + (1 if state else 0)
            self.register_buffer("vae_encoder_pos_enc", sinusoidal_1d(n_vae_tokens, dim).unsqueeze(0))

        if cfg.image_features:
            self.backbone = build_backbone(cfg.encoder, load_backbone_weights)

        self.encoder = Encoder(cfg, cfg.n_encoder_layers)
        self.decoder = Decoder(cfg)

        if state:
            self.encoder_robot_state_input_proj = nn.Linear(state.shape[0], dim)
        if env_state:
            self.encoder_env_state_input_proj = nn.Linear(env_state.shape[0], dim)
        self.encoder_latent_input_proj = nn.Linear(cfg.latent_dim, dim)
        if cfg.image_features and self.fuse == "none":
            self.encoder_img_feat_input_proj = nn.Conv2d(self.backbone.out_channels, dim, kernel_size=1)
        elif cfg.image_features:
            self.encoder_img_fusion = CameraFusion(self.fuse, len(cfg.image_features), self.backbone.embed_dim, dim)
            self.encoder_img_fused_pos_embed = nn.Embedding(1, dim)
        self.encoder_1d_feature_pos_embed = nn.Embedding(1 + bool(state) + bool(env_state), dim)
        if cfg.n_obs_steps > 1:
            self.encoder_obs_step_embed = nn.Embedding(cfg.n_obs_steps, dim)
        self.decoder_pos_embed = nn.Embedding(cfg.chunk_size, dim)
        self.action_head = nn.Linear(dim, action.shape[0])

        for p in [*self.encoder.parameters(), *self.decoder.parameters()]:
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, batch: dict[str, Tensor], images: list[Tensor]) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Returns the (B, chunk_size, action_dim) chunk and the latent's (mean, 2*log sigma) or Nones."""
        latent, mu, log_sigma_x2 = self.latent(batch, images)
        tokens, pos, mask = self.encoder_inputs(batch, self.image_features(images), latent)
        return self.decode(self.encoder(tokens, pos, mask), pos, mask), mu, log_sigma_x2

    def latent(self, batch: dict[str, Tensor], images: list[Tensor]) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The (B, latent_dim) latent and its (mean, 2*log sigma): sampled from the VAE encoder's posterior
        given the action chunk while training; zeros (the prior's mean) and Nones otherwise."""
        cfg = self.cfg
        ref = images[0] if images else batch.get(OBS_ENV_STATE, batch.get(OBS_STATE))
        batch_size, device = ref.shape[0], ref.device
        if not (cfg.use_vae and self.training and ACTION in batch):
            return torch.zeros(batch_size, cfg.latent_dim, device=device), None, None

        has_state = cfg.robot_state_feature is not None
        tokens = [self.vae_encoder_cls_embed.weight.expand(batch_size, 1, -1)]
        if has_state:
            current_state = batch[OBS_STATE][:, -1] if cfg.n_obs_steps > 1 else batch[OBS_STATE]
            tokens.append(self.vae_encoder_robot_state_input_proj(current_state).unsqueeze(1))
        prefix_pad = torch.zeros(batch_size, len(tokens), dtype=torch.bool, device=device)
        pad_mask = torch.cat([prefix_pad, batch[ACTION_IS_PAD]], dim=1)
        first_qkv = None
        if not cfg.pre_norm and exact_shortcuts(batch[ACTION]):
            first_qkv = self.vae_first_projections(torch.cat(tokens, dim=1), batch[ACTION])
        tokens.append(self.vae_encoder_action_input_proj(batch[ACTION]))
        tokens = torch.cat(tokens, dim=1)
        cls_out = self.vae_encoder(tokens, self.vae_encoder_pos_enc, pad_mask, n_out=1, first_qkv=first_qkv)[:, 0]
        # The KL term and the sampled latent in float32, as the action loss is, under mixed precision too.
        latent_params = self.vae_encoder_latent_output_proj(cls_out).float()
        mu, log_sigma_x2 = latent_params.split(cfg.latent_dim, dim=-1)
        return mu + (log_sigma_x2 / 2).exp() * torch.randn_like(mu), mu, log_sigma_x2

    def vae_first_projections(self, prefix: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The VAE encoder's first self-attention projections (queries and keys with the position table,
        values) of its tokens: the (B, n, D) `prefix` ([cls], robot state) and one token per action of the
        (B, chunk, action_dim) `actions`. An action token is a linear map of its action, so its projections
        are one (action_dim -> 3D) map, the product of the two weights, where they would be a (D -> 3D) one
        per token. Post-norm only: with pre-norm the first layer projects the tokens' layer norm. In fp32 only
        (`exact_shortcuts`)."""
        attention = self.vae_encoder.layers[0].self_attn
        weight, bias = attention.in_proj_weight, attention.in_proj_bias
        action_proj = self.vae_encoder_action_input_proj
        dim = weight.shape[1]
        of_actions = F.linear(actions, weight @ action_proj.weight, F.linear(action_proj.bias, weight, bias))
        q, k, v = torch.cat([F.linear(prefix, weight, bias), of_actions], dim=1).split(dim, dim=-1)
        pos_q, pos_k = F.linear(self.vae_encoder_pos_enc, weight[: 2 * dim]).split(dim, dim=-1)  # (1, n + chunk, D)
        return q + pos_q, k + pos_k, v

    def image_features(self, images: list[Tensor], backbone: Callable[[Tensor], Tensor] | None = None) -> list[Tensor]:
        """Per camera, the backbone's (B, T, C, h, w) feature map, or with camera fusion its (B, T, E)
        embedding (T = 1 without history).

        `backbone` maps (N, 3, H, W) images to what `self.backbone` gives (its `embed` with fusion), which
        is the default; an inference runtime passes its own copy of it.
        """
        if not images:
            return []
        images = [_steps(img, self.cfg.n_obs_steps > 1) for img in images]
        batch_size, steps = images[0].shape[:2]
        if backbone is None:
            backbone = self.backbone if self.fuse == "none" else self.backbone.embed
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.backbone.frozen):
            if all(img.shape == images[0].shape for img in images):
                # One backbone call for all cameras and steps (faster than one call per camera).
                out = backbone(torch.cat(images).flatten(0, 1))
                return list(out.unflatten(0, (len(images), batch_size, steps)).unbind(0))
            return [backbone(img.flatten(0, 1)).unflatten(0, (batch_size, steps)) for img in images]

    def encoder_inputs(
        self, batch: dict[str, Tensor], image_features: list[Tensor], latent: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """The transformer encoder's input tokens (B, n, D), their position embedding (1, n, D) and
        key-padding mask (B, n) or None, from the normalised vectors (and `observation_is_pad`) of `batch`,
        the cameras' `image_features` and the latent."""
        cfg = self.cfg
        history = cfg.n_obs_steps > 1
        has_state = cfg.robot_state_feature is not None

        # Every group of tokens is (B, T, n, D) with its position embedding (T or 1, n, D); T = 1 without history.
        steps = cfg.n_obs_steps
        pos_1d = self.encoder_1d_feature_pos_embed.weight
        groups = []
        if has_state:
            groups.append((self.encoder_robot_state_input_proj(_steps(batch[OBS_STATE], history)), pos_1d[1]))
        if cfg.env_state_feature is not None:
            env = self.encoder_env_state_input_proj(_steps(batch[OBS_ENV_STATE], history))
            groups.append((env, pos_1d[1 + has_state]))
        groups = [(t.unsqueeze(2), p.view(1, 1, -1)) for t, p in groups]
        if image_features:
            groups.append(self._image_tokens(image_features))

        step_embed = self.encoder_obs_step_embed.weight[:, None] if history else 0.0  # (T, 1, D)
        per_step = torch.cat([t for t, _ in groups], dim=2) if groups else None  # (B, T, n, D)
        tokens = [self.encoder_latent_input_proj(latent).unsqueeze(1)]
        pos = [pos_1d[:1].unsqueeze(0)]
        mask = None
        if per_step is not None:
            n = per_step.shape[2]
            step_pos = torch.cat([p.expand(steps, -1, -1) if p.shape[0] == 1 else p for _, p in groups], dim=1)
            tokens.append(per_step.flatten(1, 2))
            pos.append((step_pos + step_embed).reshape(1, steps * n, -1))
            if history and OBSERVATION_IS_PAD in batch:
                pad = batch[OBSERVATION_IS_PAD].repeat_interleave(n, dim=1)
                mask = torch.cat([pad.new_zeros(latent.shape[0], 1), pad], dim=1)
        tokens = torch.cat(tokens, dim=1)
        # Under mixed-precision training the projections give bf16 tokens; the positions follow them.
        pos = torch.cat([p.to(tokens.dtype) for p in pos], dim=1)
        return tokens, pos, mask

    def decode(self, memory: Tensor, pos: Tensor, mask: Tensor | None) -> Tensor:
        """(B, chunk_size, action_dim) actions from the encoder's memory."""
        queries = memory.new_zeros(memory.shape[0], self.cfg.chunk_size, self.cfg.dim_model)
        out = self.decoder(queries, memory, self.decoder_pos_embed.weight.unsqueeze(0), pos, mask, uniform=True)
        return self.action_head(out)

    def _image_tokens(self, image_features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Image tokens (B, T, n, D) of every camera and their position embedding (1, n, D).

        `fuse=none`: one token per feature-map cell per camera, with a 2-D sinusoidal embedding.
        Otherwise: one token for all cameras, from the fusion of their embeddings.
        """
        if self.fuse != "none":
            token = self.encoder_img_fusion(torch.stack(image_features, dim=2))  # (B, T, D)
            return token.unsqueeze(2), self.encoder_img_fused_pos_embed.weight.unsqueeze(0)
        batch_size, steps = image_features[0].shape[:2]
        tokens, pos = [], []
        for fmap in image_features:  # (B, T, C, h, w)
            h, w = fmap.shape[-2:]
            cells = self.encoder_img_feat_input_proj(fmap.flatten(0, 1)).flatten(2).transpose(1, 2)
            tokens.append(cells.unflatten(0, (batch_size, steps)))
            emb = sinusoidal_2d(h, w, self.cfg.dim_model).to(fmap.device)
            pos.append(emb.flatten(1).transpose(0, 1))
        return torch.cat(tokens, dim=2), torch.cat(pos, dim=0).unsqueeze(0)


def _steps(x: Tensor, history: bool) -> Tensor:
    """Adds the time axis (B, 1, ...) that observations have only with history."""
    return x if history else x.unsqueeze(1)
