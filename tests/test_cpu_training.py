"""The fp32 CPU training kernels of ResNet trunks give nn.Conv2d's gradients (actlab.policy.encoders.cpu_training)."""

import pytest
import torch
from torch import nn

from actlab.policy.encoders.cpu_training import CpuTrainConv2d, _SmallMapConv2d, use_small_map_convs
from actlab.policy.encoders.resnet import resnet_trunk


@pytest.mark.parametrize(
    "in_channels, size, kernel, stride, padding, dilation",
    [(16, 2, 3, 1, 1, 1), (8, 4, 3, 2, 1, 1), (8, 3, 1, 1, 0, 1), (4, 3, 3, 1, 2, 2), (8, 3, 3, 1, 0, 1)],
)
def test_small_map_gradients_are_conv2d_gradients(in_channels, size, kernel, stride, padding, dilation):
    torch.manual_seed(0)
    reference = nn.Conv2d(in_channels, 12, kernel, stride, padding, dilation, bias=False)
    ours = use_small_map_convs(
        nn.Sequential(nn.Conv2d(in_channels, 12, kernel, stride, padding, dilation, bias=False))
    )[0]
    ours.load_state_dict(reference.state_dict())
    assert type(ours) is CpuTrainConv2d
    x = torch.randn(5, in_channels, size, size * 2 if size < 3 else size)  # non-square maps as well
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    assert ours._small_map_training(x_ours)  # the matrix-product path is the one under test
    out_ref, out_ours = reference(x_ref), ours(x_ours)
    grad = torch.randn_like(out_ref)
    out_ref.backward(grad)
    out_ours.backward(grad)
    torch.testing.assert_close(out_ours, out_ref)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad, rtol=1e-5, atol=1e-5)


def test_the_matrix_product_path_is_taken_only_for_fp32_cpu_training_on_small_maps(monkeypatch):
    calls = []
    monkeypatch.setattr(_SmallMapConv2d, "apply", lambda *a: calls.append(a) or torch.zeros(1))
    conv = use_small_map_convs(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False)))[0]
    small, large = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 4, 4)
    conv(large)  # 16 output cells: oneDNN
    with torch.no_grad():
        conv(small)  # no gradients: oneDNN
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv(small)  # autocast: oneDNN
    conv.weight.requires_grad_(False)
    conv(small)  # a frozen weight: oneDNN
    assert calls == []
    conv.weight.requires_grad_(True)
    conv(small)
    assert len(calls) == 1


@pytest.mark.parametrize("width", [1, 2])
def test_bf16_weight_gradients_of_one_wide_strided_maps_are_right(width):
    """Under bf16 autocast on a CPU with native bf16, oneDNN's weight gradient of a strided convolution with
    a 1-wide output is wrong in most draws (1e30, NaN); CpuTrainConv2d computes it in fp32. Compared with
    fp64 over 10 draws, so the kernel's error shows on such a CPU (without the guard, width 1 fails there)."""
    for seed in range(10):
        torch.manual_seed(seed)
        conv = use_small_map_convs(nn.Sequential(nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False)))[0]
        x = torch.randn(2, 64, 3, width)
        assert conv._one_wide_bf16_training(x) is False  # no autocast: the fp32 paths
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert conv._one_wide_bf16_training(x)
            out = conv(x)
        grad = torch.randn(out.shape)
        out.backward(grad)
        w = conv.weight.detach().double().requires_grad_()
        nn.functional.conv2d(x.double(), w, stride=2, padding=1).backward(grad.double())
        # bf16's own rounding is under 1 % of the largest entry; the kernel's errors are 1e30 or NaN
        torch.testing.assert_close(conv.weight.grad, w.grad.float(), rtol=0, atol=2e-2 * w.grad.abs().max().item())


def test_only_strided_one_wide_outputs_under_bf16_autocast_leave_it():
    conv = use_small_map_convs(nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1, bias=False)))[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv._one_wide_bf16_training(torch.randn(1, 4, 5, 2))
        assert not conv._one_wide_bf16_training(torch.randn(1, 4, 5, 3))  # 2-wide output
        with torch.no_grad():
            assert not conv._one_wide_bf16_training(torch.randn(1, 4, 5, 1))
        conv.stride = (1, 1)
        assert not conv._one_wide_bf16_training(torch.randn(1, 4, 5, 1))
    conv.stride = (2, 2)
    with torch.autocast("cpu", dtype=torch.float16):
        assert not conv._one_wide_bf16_training(torch.randn(1, 4, 5, 1))


def test_a_trunk_trains_as_torchvisions_does_with_the_same_state_dict():
    """A whole trunk at 64x64 (layer4 on 2x2 maps, channels-last activations): torchvision's output and
    gradients, and torchvision's state dict keys."""
    from actlab.policy.encoders.resnet import features

    torch.manual_seed(0)
    ours = features(resnet_trunk("resnet18", norm="group_norm"), None)
    plain = features(resnet_trunk("resnet18", norm="group_norm"), None)
    plain.load_state_dict(ours.state_dict())
    for m in plain.modules():
        if type(m) is CpuTrainConv2d:
            m.__class__ = nn.Conv2d
    assert not any(type(m) is nn.Conv2d for m in ours.modules())
    assert set(ours.state_dict()) == set(torchvision_resnet18_keys()) - {"fc.weight", "fc.bias"}
    x = torch.randn(4, 3, 64, 64)
    out_ours, out_plain = ours(x), plain(x)
    assert out_ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out_ours, out_plain, rtol=1e-4, atol=1e-4)
    out_ours.square().sum().backward()
    out_plain.square().sum().backward()
    for (name, a), b in zip(ours.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-4, msg=name)


def torchvision_resnet18_keys() -> list[str]:
    import torchvision

    return list(torchvision.models.resnet18(weights=None, norm_layer=lambda c: nn.GroupNorm(c // 16, c)).state_dict())
