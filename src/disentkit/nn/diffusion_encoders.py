"""Representation encoders of the PDAE family and of DisDiff.

* :class:`PDAEEncoder` (Zhang et al. 2022, PDAE; reused unchanged by DiTi, Yue et al. 2024):
  stride-2 3x3 convolutions with GroupNorm + SiLU between them, one 4-head self-attention block
  (legacy head order) after a chosen convolution, a final GroupNorm + SiLU, flatten, Linear to the
  code. ``celeba64``: convolutions 64, 128, 128, 128 with attention after the second
  (``ckczzj/PDAE model/representation/encoder/celeba64.py``, 1,487,104 parameters at code 512);
  ``ffhq128``: 64, 128, 256, 256, 256 with attention after the third (``.../encoder/ffhq.py``,
  also bedroom/horse/celebahq; 3,914,240 parameters).
* :class:`DisDiffEncoder` (Yang et al. 2023, DisDiff ``Encoder4``, ``ThomasMrY/DisDiff
  ldm/modules/encoders/modules.py``): four 4x4 stride-2 convolutions of 128 channels, each with
  BatchNorm (ReLU after the first, second and fourth), a residual block, BatchNorm + ReLU, a second
  residual block (``ReLU, conv3x3, BN, ReLU, conv1x1`` plus identity), flatten, Linear to
  ``N * d`` (6 x 32 = 192 in every released config; 1,516,480 parameters). The released class
  hard-codes a 4x4 map; here the flatten size follows the image size (side / 16).

Inputs are images in [-1, 1] of shape (B, C, S, S); outputs are codes (B, latent_dim).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from disentkit.errors import ConfigError
from disentkit.nn.unet import AttentionBlock, GroupNorm32

__all__ = ["DisDiffEncoder", "PDAEEncoder"]


def _check_side(name: str, image_size: int, factor: int) -> int:
    """The final map side, or a ConfigError when the image side does not reduce exactly."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < factor \
            or image_size % factor:
        raise ConfigError(f"the {name} encoder halves the image {factor.bit_length() - 1} times and needs a "
                          f"side divisible by {factor}, got {image_size!r}; resize the images")
    return image_size // factor


class PDAEEncoder(nn.Module):
    """PDAE / DiTi representation encoder; see the module docstring."""

    def __init__(self, image_size: int = 64, latent_dim: int = 512,
                 channels: Sequence[int] = (64, 128, 128, 128), attention_after: int = 1,
                 in_channels: int = 3, num_heads: int = 4, norm_groups: int = 32) -> None:
        super().__init__()
        channels = tuple(channels)
        if not channels or not 0 <= attention_after < len(channels):
            raise ConfigError(f"the PDAE encoder needs at least one convolution and attention_after in "
                              f"0..{len(channels) - 1}, got {len(channels)} convolution(s) and "
                              f"attention_after={attention_after!r}")
        bad = [c for c in channels if c % norm_groups or c % num_heads]
        if bad:
            raise ConfigError(f"the PDAE encoder's channels must divide by norm_groups={norm_groups} and "
                              f"num_heads={num_heads}; {bad[0]} does not")
        side = _check_side("PDAE", image_size, 2 ** len(channels))
        layers: list[nn.Module] = []
        prev = in_channels
        for i, ch in enumerate(channels):
            if i:
                layers += [GroupNorm32(norm_groups, prev), nn.SiLU()]
            layers.append(nn.Conv2d(prev, ch, 3, stride=2, padding=1))
            if i == attention_after:
                layers.append(AttentionBlock(ch, num_heads, groups=norm_groups, legacy_order=True))
            prev = ch
        layers += [GroupNorm32(norm_groups, prev), nn.SiLU(), nn.Flatten(),
                   nn.Linear(prev * side * side, latent_dim)]
        self.latent_dim = latent_dim
        self.net = nn.Sequential(*layers)

    @classmethod
    def celeba64(cls, latent_dim: int = 512, **kwargs: object) -> PDAEEncoder:
        """PDAE's 64-px encoder (CelebA64)."""
        return cls(64, latent_dim, (64, 128, 128, 128), attention_after=1, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def ffhq128(cls, latent_dim: int = 512, **kwargs: object) -> PDAEEncoder:
        """PDAE's 128-px encoder (FFHQ128, Bedroom128, Horse128, CelebA-HQ128)."""
        return cls(128, latent_dim, (64, 128, 256, 256, 256), attention_after=2,  # type: ignore[arg-type]
                   **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class _BNResBlock(nn.Module):
    """``x + conv1x1(ReLU(BN(conv3x3(ReLU(x)))))`` (DisDiff ``ResBlock(bn=True)``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class DisDiffEncoder(nn.Module):
    """DisDiff's ``Encoder4``, size-aware; see the module docstring."""

    def __init__(self, image_size: int = 64, latent_dim: int = 192, in_channels: int = 3,
                 channels: int = 128) -> None:
        super().__init__()
        side = _check_side("DisDiff", image_size, 16)

        def down(c_in: int, relu: bool) -> list[nn.Module]:
            block: list[nn.Module] = [nn.Conv2d(c_in, channels, 4, stride=2, padding=1),
                                      nn.BatchNorm2d(channels)]
            return block + [nn.ReLU()] if relu else block

        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            *down(in_channels, True), *down(channels, True), *down(channels, False), *down(channels, True),
            _BNResBlock(channels), nn.BatchNorm2d(channels), nn.ReLU(), _BNResBlock(channels),
            nn.Flatten(), nn.Linear(channels * side * side, latent_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
