"""Pretrained encoder weights come the way the ecosystem gets them: torchvision's loader for ImageNet
ResNets (cache under $TORCH_HOME, hash-checked download on a miss) and huggingface_hub for open_clip's
CLIP weights. The download functions are faked here (the tests never touch the network); offline, the
run stops with one line naming the file, the URL and the ways out."""

from __future__ import annotations

import io
import urllib.error
from email.message import Message
from pathlib import Path

import pytest
import torch
import torchvision

from actlab.errors import ActlabError
from actlab.policy.encoders import build_backbone

RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
CLIP_REPO, CLIP_FILE = "timm/vit_base_patch32_clip_224.openai", "open_clip_model.safetensors"
WAYS_OUT = "ways out: connect to the internet once (the file is then cached for later runs), or download "


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torchvision cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    return tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    return tmp_path / "hub"


def test_imagenet_cache_miss_downloads_through_torchvision_then_reuses_the_cache(torch_home, monkeypatch):
    reference = torchvision.models.resnet18()
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, Path(dst), hash_prefix, progress))
        torch.save(reference.state_dict(), dst)

    monkeypatch.setattr("torch.hub.download_url_to_file", fake_download)
    backbone = build_backbone({"name": "resnet18", "pretrained": "imagenet"})
    assert calls == [(RESNET18_URL, torch_home, "f37072fd", True)]  # torchvision's URL, hash check, progress bar
    assert torch.equal(backbone.layer2[0].conv1.weight, reference.layer2[0].conv1.weight)
    assert torch.equal(backbone.bn1.running_var, reference.bn1.running_var)
    build_backbone({"name": "resnet18", "pretrained": "imagenet"})
    assert len(calls) == 1  # the second time it comes from the cache


def test_imagenet_offline_stops_with_one_line_naming_the_file_the_url_and_the_ways_out(torch_home, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr("torch.hub.urlopen", no_network)
    with pytest.raises(ActlabError) as e:
        build_backbone({"name": "resnet18", "pretrained": "imagenet"})
    assert str(e.value) == (
        f"encoder.pretrained=imagenet: resnet18 weights are not at {torch_home} and downloading failed "
        "(URLError: <urlopen error [Errno -2] Name or service not known>); "
        f"{WAYS_OUT}{RESNET18_URL} elsewhere and copy it to {torch_home} (or pass encoder.weights=FILE), "
        "or set encoder.pretrained=null for random init"
    )
    assert not torch_home.parent.exists() or not list(torch_home.parent.iterdir())  # nothing half-written

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("torch.hub.download_url_to_file", lambda *a, **k: pytest.fail("downloaded while offline"))
    with pytest.raises(ActlabError, match=r"are not at .* and HF_HUB_OFFLINE is set, so nothing is downloaded; ways"):
        build_backbone({"name": "resnet18", "pretrained": "imagenet"})


class FakeResponse:
    """What urlopen returns, serving `data`."""

    def __init__(self, data: bytes):
        self.body = io.BytesIO(data)

    def info(self) -> Message:
        headers = Message()
        headers["Content-Length"] = str(len(self.body.getvalue()))
        return headers

    def read(self, n: int = -1) -> bytes:
        return self.body.read(n)

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc) -> None:
        pass


def test_a_download_that_fails_torchvisions_hash_check_is_refused_and_not_cached(torch_home, monkeypatch):
    buffer = io.BytesIO()
    torch.save(torchvision.models.resnet18().state_dict(), buffer)
    monkeypatch.setattr("torch.hub.urlopen", lambda *a, **k: FakeResponse(buffer.getvalue()))
    with pytest.raises(ActlabError, match=r"downloading failed \(RuntimeError: invalid hash value"):
        build_backbone({"name": "resnet18", "pretrained": "imagenet"})
    assert not torch_home.exists()


def test_a_damaged_cached_file_says_to_delete_it(torch_home):
    torch_home.parent.mkdir(parents=True)
    torch_home.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ActlabError, match=rf"{torch_home} cannot be read \(.*\); delete it to fetch it again$"):
        build_backbone({"name": "resnet18", "pretrained": "imagenet"})


def test_imagenet_weights_from_a_local_file_load_with_imagenet_input_statistics(tmp_path):
    from actlab.policy.encoders.resnet import IMAGENET_STATS

    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    backbone = build_backbone({"name": "resnet18", "pretrained": "imagenet", "weights": str(tmp_path / "r18.pth")})
    assert backbone.out_channels == 512 and backbone.image_stats == IMAGENET_STATS
    assert torch.equal(backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert torch.equal(backbone.bn1.running_var, reference.bn1.running_var)  # FrozenBatchNorm keeps the statistics


def test_weights_of_another_architecture_stop_with_one_line(tmp_path):
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(ActlabError) as e:
        build_backbone({"name": "resnet18", "pretrained": "imagenet", "weights": str(tmp_path / "resnet34.pth")})
    assert str(e.value) == (
        f"encoder.weights={tmp_path / 'resnet34.pth'}: not resnet18 weights: 0 resnet18 keys missing and "
        "80 unexpected (e.g. 'layer1.2.conv1.weight')"
    )


def clip_checkpoint() -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    reference = build_backbone({"name": "clip", "pretrained": None})
    state = {f"visual.{k}": v for k, v in reference.visual.state_dict().items()}
    state["text_projection"] = torch.zeros(512, 512)  # the text tower is ignored
    return state, reference


def test_clip_cache_miss_downloads_through_huggingface_hub_then_reuses_the_cache(hf_cache, monkeypatch):
    from safetensors.torch import save_file

    state, reference = clip_checkpoint()
    calls = []

    def fake_hf_hub_download(repo_id, filename, **kwargs):
        """Writes the file where huggingface_hub keeps it: models--org--name/snapshots/<revision>/."""
        calls.append((repo_id, filename))
        model = hf_cache / f"models--{repo_id.replace('/', '--')}"
        (model / "refs").mkdir(parents=True)
        (model / "refs" / "main").write_text("0" * 40)
        (model / "snapshots" / ("0" * 40)).mkdir(parents=True)
        save_file(state, model / "snapshots" / ("0" * 40) / filename)
        return str(model / "snapshots" / ("0" * 40) / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_hf_hub_download)
    loaded = build_backbone({"name": "clip", "pretrained": "openai"})
    assert calls == [(CLIP_REPO, CLIP_FILE)]
    assert torch.equal(loaded.visual.conv1.weight, reference.visual.conv1.weight)
    build_backbone({"name": "clip", "pretrained": "openai"})
    assert len(calls) == 1  # found in the cache, no network round trip


def test_clip_offline_stops_with_one_line(hf_cache, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", lambda *a, **k: pytest.fail("downloaded while offline"))
    with pytest.raises(ActlabError) as e:
        build_backbone({"name": "clip", "pretrained": "openai"})
    assert str(e.value) == (
        f"encoder.pretrained=openai: ViT-B-32 weights ({CLIP_FILE}) are not in the Hugging Face cache ({hf_cache}) "
        f"and HF_HUB_OFFLINE is set, so nothing is downloaded; {WAYS_OUT}"
        f"https://huggingface.co/{CLIP_REPO}/resolve/main/{CLIP_FILE} elsewhere and pass encoder.weights=FILE, "
        "or set encoder.pretrained=null for random init"
    )

    def refused(*args, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", refused)
    with pytest.raises(ActlabError, match=r"and downloading failed \(OSError: connection refused\); ways out"):
        build_backbone({"name": "clip", "pretrained": "openai"})


def test_clip_weights_from_a_file_load_strictly(tmp_path):
    from safetensors.torch import save_file

    state, reference = clip_checkpoint()
    save_file(state, tmp_path / CLIP_FILE)
    loaded = build_backbone({"name": "clip", "pretrained": "openai", "weights": str(tmp_path / CLIP_FILE)})
    assert torch.equal(loaded.visual.conv1.weight, reference.visual.conv1.weight)
    del state["visual.proj"]
    save_file(state, tmp_path / "partial.safetensors")
    with pytest.raises(ActlabError, match=r"does not match the CLIP vision tower \(1 missing"):
        build_backbone({"name": "clip", "pretrained": "openai", "weights": str(tmp_path / "partial.safetensors")})
