"""LPIPS with VGG16 features (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features
as a Perceptual Metric", eq. 1; ``richzhang/PerceptualSimilarity`` v0.1, the form
taming-transformers' ``taming/modules/losses/lpips.py`` uses for VQGAN's perceptual loss).

    d(x, y) = sum_l  mean_{h,w} || w_l * (n(f_l(x)) - n(f_l(y))) ||^2

with ``f_l`` the VGG16 activations after relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 of the
inputs shifted and scaled as LPIPS does (images in [-1, 1]), ``n`` the unit-normalisation over
channels and ``w_l`` the learned non-negative 1x1 "linear heads".

No weights ship with disentkit and none are downloaded: the user supplies two files, both plain
``state_dict`` files read with ``torch.load(weights_only=True)`` (so opening them runs no code):

* the VGG16 trunk in torchvision's layout (``features.0.weight`` ... ``features.28.bias``; a full
  ``vgg16`` state dict with its ``classifier.*`` entries is accepted, those are ignored);
* the linear heads in the LPIPS layout (``lin0.model.1.weight`` ... ``lin4.model.1.weight``,
  the 7 KB ``vgg.pth`` of the ``lpips`` package / taming).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from disentkit.errors import ConfigError

__all__ = ["LPIPS", "VGG16_LAYERS", "vgg16_features"]

#: torchvision's VGG16 "D" configuration up to relu5_3 (M = 2x2 max-pool)
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
#: indices in ``features`` after which LPIPS reads an activation (relu1_2 ... relu5_3)
TAPS = (3, 8, 15, 22, 29)
CHANNELS = (64, 128, 256, 512, 512)


def vgg16_features() -> nn.Sequential:
    """VGG16's convolutional trunk up to relu5_3, indexed as torchvision's ``vgg16().features``."""
    layers: list[nn.Module] = []
    width = 3
    for item in VGG16_LAYERS:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(width, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            width = int(item)
    return nn.Sequential(*layers)


class _Head(nn.Module):
    """LPIPS's ``NetLinLayer``: dropout then a bias-free 1x1 convolution to one channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def _read_state(path: str, key: str, what: str) -> dict[str, Tensor]:
    """A state dict from a user's file (no code runs); one-line ConfigError when unusable."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{key}: the {what} file {str(file)[:200]} does not exist; give the path "
                          f"of a state_dict saved with torch.save (no weights are downloaded), or set "
                          f"model.perceptual_weight=0")
    try:
        state: Any = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        reason = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise ConfigError(f"{key}: {str(file)[:200]} is not a readable torch state_dict ({reason}); "
                          f"give the {what} saved with torch.save(model.state_dict())") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"{key}: {str(file)[:200]} does not hold a state_dict of tensors; give the "
                          f"{what} saved with torch.save(model.state_dict())")
    return state


def _load(module: nn.Module, state: dict[str, Tensor], key: str, path: str, what: str) -> None:
    """Copy the entries ``module`` has from ``state``; ConfigError naming a missing or
    mis-shaped entry."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [f"{k} {list(state[k].shape)} (expected {list(own[k].shape)})" for k in own
             if k in state and state[k].shape != own[k].shape]
    if missing or wrong:
        problem = f"lacks {missing[0]}" if missing else f"has {wrong[0]}"
        raise ConfigError(f"{key}: {str(path)[:200]} {problem}; it should be the {what}")
    module.load_state_dict({k: state[k].float() for k in own})


class LPIPS(nn.Module):
    """The LPIPS distance of two image batches in [-1, 1]: (B, 1, 1, 1). Frozen (no gradients to
    its weights; it is kept in eval mode by the model that owns it)."""

    def __init__(self, vgg_path: str, lin_path: str, *, vgg_key: str = "model.lpips_vgg",
                 lin_key: str = "model.lpips_lin") -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1),
                             persistent=False)
        trunk = nn.Module()
        trunk.features = vgg16_features()
        _load(trunk, _read_state(vgg_path, vgg_key, "VGG16 weights (torchvision layout)"), vgg_key,
              vgg_path, "VGG16 weights in torchvision's layout (features.0.weight, ...)")
        self.features = trunk.features
        heads = nn.Module()
        for i, channels in enumerate(CHANNELS):
            heads.add_module(f"lin{i}", _Head(channels))
        _load(heads, _read_state(lin_path, lin_key, "LPIPS linear heads"), lin_key, lin_path,
              "LPIPS VGG linear heads (lin0.model.1.weight, ...)")
        self.heads = nn.ModuleList(getattr(heads, f"lin{i}") for i in range(len(CHANNELS)))
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: Tensor) -> list[Tensor]:
        out, h = [], (x - self.shift) / self.scale
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in TAPS:
                out.append(h)
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        total = x.new_zeros(x.shape[0], 1, 1, 1)
        for head, fx, fy in zip(self.heads, self._taps(x), self._taps(y)):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + head((nx - ny) ** 2).mean(dim=(2, 3), keepdim=True)
        return total
