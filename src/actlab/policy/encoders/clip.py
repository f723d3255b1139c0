"""open_clip's vision transformer (default ViT-B-32) as an ACT backbone.

Images are resized to the model's input size (224 for ViT-B-32) and must arrive normalised with CLIP's
statistics (`image_stats`). The feature map is the grid of patch tokens after the final LayerNorm (7x7x768
for ViT-B-32), so `encoder.fuse=none` gives ACT one token per patch per camera; `embed` is CLIP's
projected image embedding (512), what the fused modes combine.

`encoder.pretrained=openai` reads the weights from `encoder.weights` (an open_clip checkpoint:
.safetensors or .bin) or from the Hugging Face cache where open_clip keeps them; it never downloads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from actlab.errors import ActlabError
from actlab.policy.encoders.files import read_weights_file

CLIP_STATS = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
# Hugging Face repos where open_clip 3.x fetches the OpenAI weights from.
OPENAI_HUB = {
    "ViT-B-32": "timm/vit_base_patch32_clip_224.openai",
    "ViT-B-16": "timm/vit_base_patch16_clip_224.openai",
    "ViT-L-14": "timm/vit_large_patch14_clip_224.openai",
}
HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class CLIPVisionFeatures(nn.Module):
    def __init__(self, model_name: str):
        super().__init__()
        import open_clip
        from open_clip.model import _build_vision_tower

        config = open_clip.get_model_config(model_name)
        if config is None or "vision_cfg" not in config:
            raise ActlabError(f"encoder.model_name={model_name!r} is not an open_clip model (e.g. 'ViT-B-32')")
        vision = dict(config["vision_cfg"], output_tokens=True)
        # The OpenAI weights were trained with QuickGELU; a random init uses the same architecture.
        self.visual = _build_vision_tower(config["embed_dim"], vision, quick_gelu=True)
        if not hasattr(self.visual, "patch_size"):
            raise ActlabError(f"encoder.model_name={model_name!r}: only vision-transformer CLIP models are supported")
        size = self.visual.image_size
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.grid = tuple(self.visual.grid_size)
        self.out_channels = self.visual.transformer.width
        self.embed_dim = config["embed_dim"]
        self.image_stats = CLIP_STATS

    def _resize(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) == self.image_size:
            return x
        return F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False, antialias=True)

    def forward(self, x: Tensor) -> Tensor:
        _, tokens = self.visual(self._resize(x))
        batch, _, width = tokens.shape
        return tokens.transpose(1, 2).reshape(batch, width, *self.grid)

    def embed(self, x: Tensor) -> Tensor:
        pooled, _ = self.visual(self._resize(x))
        return pooled


def build_clip(cfg: dict[str, Any], load_weights: bool) -> CLIPVisionFeatures:
    model_name = cfg.get("model_name") or "ViT-B-32"
    pretrained = cfg.get("pretrained")
    if pretrained not in (None, "openai"):
        raise ActlabError(f"encoder.pretrained={pretrained!r}; expected 'openai' or null")
    backbone = CLIPVisionFeatures(model_name)
    if load_weights and pretrained:
        load_clip_weights(backbone.visual, openai_weights_file(model_name, cfg.get("weights")))
    return backbone


def openai_weights_file(model_name: str, weights: str | None) -> Path:
    if weights:
        return Path(weights).expanduser()  # read_weights_file says if it is missing
    repo = OPENAI_HUB.get(model_name)
    if repo is not None:
        from huggingface_hub import try_to_load_from_cache

        for name in HUB_FILES:
            cached = try_to_load_from_cache(repo, name)
            if isinstance(cached, str):
                return Path(cached)
    where = f"https://huggingface.co/{repo}/resolve/main/{HUB_FILES[0]}" if repo else "open_clip's release"
    raise ActlabError(
        f"encoder.pretrained=openai: no {model_name} weights in the Hugging Face cache; download {where} "
        "and pass encoder.weights=/path/to/file (or run `huggingface-cli download "
        f"{repo} {HUB_FILES[0]}` once online), or set encoder.pretrained=null for random init"
    )


def load_clip_weights(visual: nn.Module, path: Path) -> None:
    """The `visual.*` part of an open_clip checkpoint (or a bare vision-tower state dict), loaded strictly."""
    state = read_weights_file(path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("visual.") for k in state):
        state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    try:
        result = visual.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise ActlabError(f"encoder.weights={path}: does not match the CLIP vision tower: {first}") from None
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys or result.unexpected_keys)[0]
        raise ActlabError(
            f"encoder.weights={path}: does not match the CLIP vision tower ({len(result.missing_keys)} missing, "
            f"{len(result.unexpected_keys)} unexpected keys, e.g. {bad!r})"
        )
