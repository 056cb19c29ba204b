"""The in-house torchvision-layout ResNets and FDAE's CMFNet: parameter parity with the reference
classes (torchvision ``resnet18`` / ``resnet50`` with ``weights=None``; FDAE's
``ContentMaskGenerator`` at ``train.sh``'s settings), torchvision's state-dict names and init, and
the shapes a forward pass gives. Counts are taken on the meta device (no memory, no init cost)."""

from __future__ import annotations

import math

import pytest
import torch

from disentkit.errors import ConfigError
from disentkit.nn.cmfnet import CMFNet, CMFNetConfig
from disentkit.nn.resnet import resnet, resnet18, resnet50
from disentkit.nn.unet import count_parameters


def _meta(build):
    with torch.device("meta"):
        return build()


@pytest.mark.parametrize("build, with_fc, trunk", [
    (resnet18, 11_689_512, 11_176_512),
    (resnet50, 25_557_032, 23_508_032),
])
def test_parameter_counts_equal_torchvisions(build, with_fc, trunk) -> None:
    assert count_parameters(_meta(build)) == with_fc
    assert count_parameters(_meta(lambda: build(num_classes=0))) == trunk


def test_state_dict_names_and_shapes_follow_torchvision() -> None:
    state = _meta(resnet18).state_dict()
    expected = {
        "conv1.weight": (64, 3, 7, 7), "bn1.running_var": (64,), "layer1.1.conv2.weight": (64, 64, 3, 3),
        "layer2.0.conv1.weight": (128, 64, 3, 3), "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer2.0.downsample.1.weight": (128,), "layer4.1.bn2.bias": (512,), "fc.weight": (1000, 512),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert "layer1.0.downsample.0.weight" not in state  # stage 1 keeps the shape: identity shortcut
    # 20 convolutions/linears and 20 BatchNorms: 62 parameter tensors, 122 entries with the BN buffers
    assert len(state) == 122
    r50 = _meta(resnet50).state_dict()
    # torchvision's v1.5 bottleneck: the stride sits on the 3x3 convolution, expansion 4
    assert tuple(r50["layer3.0.conv2.weight"].shape) == (256, 256, 3, 3)
    assert tuple(r50["layer3.0.downsample.0.weight"].shape) == (1024, 512, 1, 1)


def test_initialisation_is_torchvisions() -> None:
    torch.manual_seed(0)
    net = resnet18()
    # Kaiming normal, fan_out, ReLU gain: std = sqrt(2 / (out_channels * k * k))
    w = net.layer3[0].conv2.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.05)
    assert w.mean().abs().item() < 0.1 * w.std().item()  # zero-mean normal
    assert torch.equal(net.layer2[1].bn1.weight, torch.ones(128))
    assert torch.equal(net.layer2[1].bn1.bias, torch.zeros(128))


def test_forward_shapes_on_small_images() -> None:
    torch.manual_seed(0)
    net = resnet(18, widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1), num_classes=0)
    assert net.feature_dim == 16
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 16)
    assert resnet(50, widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1), num_classes=5)(
        torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_bad_resnet_settings_are_one_line_config_errors() -> None:
    with pytest.raises(ConfigError, match="depth must be one of 18, 34, 50, got 19"):
        resnet(19)
    with pytest.raises(ConfigError, match="4 stages"):
        resnet(18, widths=(8, 8, 8))


# ---- CMFNet ---------------------------------------------------------------------------------
def test_cmfnet_parity_at_the_paper_configuration() -> None:
    """ResNet-18 trunk 11,176,512 + Linear 512->480 x 2 + 6 x Linear 80->80 + mask decoder 3,082,689."""
    net = _meta(lambda: CMFNet(CMFNetConfig()))
    assert count_parameters(net) == 14_790_561
    assert count_parameters(net.trunk) == 11_176_512
    assert count_parameters(net.content_head) + count_parameters(net.mask_head) == 492_480
    assert count_parameters(net.content_adjust) == 38_880
    assert count_parameters(net.mask_decoder) == 3_082_689
    # the seed grid is 64 / 2^4 = 4: Linear 80 -> 384 * 4 * 4
    assert net.mask_decoder.fc.weight.shape == (384 * 16, 80)
    heads50 = 2 * (2048 * 480 + 480)  # ResNet-50 pools 2048 features
    assert count_parameters(_meta(lambda: CMFNet(CMFNetConfig(depth=50)))) == \
        23_508_032 + heads50 + 38_880 + 3_082_689


def test_cmfnet_shapes_and_mask_decoder_sizing() -> None:
    torch.manual_seed(0)
    cfg = CMFNetConfig(num_concepts=3, content_dim=4, mask_dim=5, cond_dim=6, image_size=(16, 32),
                       widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1), mask_channels=(8, 4), mask_norm_groups=4)
    net = CMFNet(cfg)
    assert cfg.seed_size() == (4, 8)
    content, mask_codes = net.codes(torch.randn(2, 3, 16, 32))
    assert content.shape == (2, 3, 4) and mask_codes.shape == (2, 3, 5)
    assert net.masks(mask_codes).shape == (2, 3, 16, 32)
    assert net.condition_map(content, mask_codes).shape == (2, 6, 16, 32)
    with pytest.raises(ConfigError, match="image sides must be multiples of 4, got 18x32"):
        CMFNetConfig(image_size=(18, 32), mask_channels=(8, 4), mask_norm_groups=4)
    with pytest.raises(ConfigError, match="mask_norm_groups=32 does not divide the mask decoder's 8"):
        CMFNetConfig(mask_channels=(8, 4))
