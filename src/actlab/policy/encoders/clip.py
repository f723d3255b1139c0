"""open_clip's vision transformer (default ViT-B-32) as an ACT backbone.

Images are resized to the model's input size (224 for ViT-B-32) and must arrive normalised with CLIP's
statistics (`image_stats`). The feature map is the grid of patch tokens after the final LayerNorm (7x7x768
for ViT-B-32), so `encoder.fuse=none` gives ACT one token per patch per camera; `embed` is CLIP's
projected image embedding (512), what the fused modes combine.

`encoder.pretrained=openai` reads the weights from `encoder.weights` (an open_clip checkpoint:
.safetensors or .bin) or gets them as open_clip does: from the Hugging Face cache, downloaded there on
first use.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from actlab.config.encoders import ClipEncoderConfig
from actlab.errors import ActlabError, reason
from actlab.policy.encoders.files import OFFLINE, hub_offline, missing_weights, read_weights_file

CLIP_STATS = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # what open_clip looks for, in order


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


def build_clip(cfg: ClipEncoderConfig, load_weights: bool) -> CLIPVisionFeatures:
    backbone = CLIPVisionFeatures(cfg.model_name)
    if load_weights and cfg.pretrained:
        load_clip_weights(backbone.visual, openai_weights_file(cfg.model_name, cfg.weights))
    return backbone


def openai_weights_file(model_name: str, weights: str | None) -> Path:
    """`weights`, or the OpenAI weights where open_clip gets them: the Hugging Face repo of its pretrained
    config, through huggingface_hub's cache ($HF_HOME / $HF_HUB_CACHE). A cached file is used as it is
    (the weights never change, so no network round trip); a missing one is downloaded there with the
    hub's progress bar, unless HF_HUB_OFFLINE is set. A failure is one line naming the file, the URL and
    the ways out."""
    if weights:
        return Path(weights).expanduser()  # read_weights_file says if it is missing
    import huggingface_hub
    import open_clip

    pretrained = open_clip.get_pretrained_cfg(model_name, "openai")
    hub = pretrained.get("hf_hub", "")  # "org/repo/" (open_clip's default file names) or "org/repo/file"
    if not hub:
        raise ActlabError(
            f"encoder.model_name={model_name}: open_clip has no OpenAI weights on the Hugging Face hub for it; "
            "pass encoder.weights=FILE or set encoder.pretrained=null for random init"
        )
    repo, _, filename = hub.rpartition("/")
    for name in [filename] if filename else HUB_FILES:
        cached = huggingface_hub.try_to_load_from_cache(repo, name)
        if isinstance(cached, str):
            return Path(cached)
    filename = filename or HUB_FILES[0]
    url = f"https://huggingface.co/{repo}/resolve/main/{filename}"
    what = f"encoder.pretrained=openai: {model_name} weights ({filename})"
    where = f"in the Hugging Face cache ({huggingface_hub.constants.HF_HUB_CACHE})"
    if hub_offline():
        raise ActlabError(missing_weights(what, where, url, OFFLINE))
    try:
        return Path(huggingface_hub.hf_hub_download(repo, filename))
    except Exception as e:  # noqa: BLE001 - network and file errors end the same way
        raise ActlabError(missing_weights(what, where, url, f"downloading failed ({reason(e)})")) from None


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
