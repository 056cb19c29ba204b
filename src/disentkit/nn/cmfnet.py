"""FDAE's content-mask factorisation network, CMFNet (Wu & Zheng, AAAI 2024, "Factorized Diffusion
Autoencoder for Unsupervised Disentangled Representation Learning", Sec. 3.2; ``wuancong/FDAE
cmfnet/content_mask_generator.py`` and ``cmfnet/generator.py``).

From a clean image ``x`` in [-1, 1] it produces, for N concepts:

* content codes ``f_c^n`` (N x d_c): one Linear on the pooled features of a randomly initialised
  torchvision-layout ResNet (:mod:`disentkit.nn.resnet`), split into N chunks;
* mask codes ``f_m^n`` (N x d_m): a second Linear on the same features;
* adjusted content codes ``f_c^n' = A_n f_c^n`` (N x d_F): one Linear d_c -> d_F per concept;
* masks ``M^n`` (N x H x W): every mask code goes through one shared DCGAN-like decoder to one
  logit map, and the N maps are softmax-normalised across the concepts, so the masks sum to 1 at
  every pixel. With N = 1 the mask is all ones (the paper's DiffAE baseline) and no decoder is
  built;
* the condition map ``C[:, :, i, j] = sum_n M^n[i, j] f_c^n'`` (d_F x H x W), which FDAE's UNet adds
  after its first convolution (the split stem of :class:`disentkit.nn.unet.UNet`).

Mask decoder (``SeperateMaskGenerator`` in the reference): Linear d_m -> C_0 * s_h * s_w, reshaped to
C_0 x s_h x s_w, then one block per entry of ``mask_channels``
``[GroupNorm -> nearest 2x upsampling -> 3x3 conv (no bias) -> GroupNorm -> SiLU]`` and a final 3x3
conv to one channel (with bias). The seed grid is the image size divided by 2^len(mask_channels)
(4 x 4 for FDAE's 64 px and four blocks of 384, 256, 128, 64 channels), so other image sizes work.

At FDAE's configuration (ResNet-18, N = 6, d_c = d_m = d_F = 80, 64 px) the network has 14,790,561
parameters: trunk 11,176,512, two heads 492,480, six adjusters 38,880, mask decoder 3,082,689.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from disentkit.errors import ConfigError
from disentkit.nn.resnet import RESNET_DEPTHS, resnet
from disentkit.nn.unet import GroupNorm32

__all__ = ["CMFNet", "CMFNetConfig", "MaskDecoder"]


@dataclass(frozen=True)
class CMFNetConfig:
    """CMFNet's sizes (defaults: FDAE's ``train.sh``, 64 px images)."""

    num_concepts: int = 6
    content_dim: int = 80
    mask_dim: int = 80
    #: d_F, the channels of the condition map (the UNet's stem_channels)
    cond_dim: int = 80
    image_size: tuple[int, int] = (64, 64)
    in_channels: int = 3
    #: torchvision ResNet depth of the trunk: 18 (FDAE) or 50
    depth: int = 18
    #: stage widths of the trunk; empty: torchvision's (64, 128, 256, 512)
    widths: tuple[int, ...] = ()
    #: blocks per stage; empty: the depth's (2, 2, 2, 2) for ResNet-18
    blocks: tuple[int, ...] = ()
    #: output channels of the mask decoder's upsampling blocks (the first is also the seed's)
    mask_channels: tuple[int, ...] = (384, 256, 128, 64)
    #: GroupNorm groups of the mask decoder (32 in the reference)
    mask_norm_groups: int = 32

    def __post_init__(self) -> None:
        for name in ("widths", "blocks", "mask_channels", "image_size"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        for name in ("num_concepts", "content_dim", "mask_dim", "cond_dim", "in_channels",
                     "mask_norm_groups"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"cmfnet {name} must be a positive integer, got {getattr(self, name)}")
        if self.depth not in RESNET_DEPTHS:
            raise ConfigError(f"cmfnet depth must be one of {', '.join(map(str, RESNET_DEPTHS))}, got "
                              f"{str(self.depth)[:20]}")
        if not self.mask_channels:
            raise ConfigError("cmfnet mask_channels must list at least one upsampling block")
        bad = [c for c in self.mask_channels if c % self.mask_norm_groups]
        if bad:
            raise ConfigError(f"cmfnet mask_norm_groups={self.mask_norm_groups} does not divide the mask "
                              f"decoder's {bad[0]} channels; choose groups dividing every mask_channels "
                              "entry")
        self.seed_size()  # image sides must fit the decoder's upsampling

    def seed_size(self) -> tuple[int, int]:
        """(s_h, s_w): the mask decoder's seed grid, the image size / 2^len(mask_channels)."""
        factor = 2 ** len(self.mask_channels)
        height, width = self.image_size
        if height % factor or width % factor or height < factor or width < factor:
            raise ConfigError(f"the mask decoder upsamples {len(self.mask_channels)} times (x{factor}), so "
                              f"image sides must be multiples of {factor}, got {height}x{width}; use "
                              "fewer mask_channels entries or resize the images")
        return height // factor, width // factor


class MaskDecoder(nn.Module):
    """One mask code (B, d_m) -> one logit map (B, 1, H, W); shared by all concepts."""

    def __init__(self, code_dim: int, channels: Sequence[int], seed: tuple[int, int], groups: int) -> None:
        super().__init__()
        self.seed = seed
        self.seed_channels = channels[0]
        self.fc = nn.Linear(code_dim, channels[0] * seed[0] * seed[1])
        blocks = []
        cin = channels[0]
        for cout in channels:
            blocks.append(nn.Sequential(
                GroupNorm32(groups, cin), nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), GroupNorm32(groups, cout), nn.SiLU()))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(cin, 1, 3, padding=1)

    def forward(self, code: Tensor) -> Tensor:
        h = self.fc(code).reshape(code.shape[0], self.seed_channels, *self.seed)
        return self.out(self.blocks(h))


class CMFNet(nn.Module):
    """Image in [-1, 1] -> content codes, mask codes, masks and the condition map (module docstring)."""

    def __init__(self, config: CMFNetConfig) -> None:
        super().__init__()
        self.config = cfg = config
        n = cfg.num_concepts
        self.trunk = resnet(cfg.depth, widths=cfg.widths or None, blocks=cfg.blocks or None,
                            num_classes=0, in_channels=cfg.in_channels)
        features = self.trunk.feature_dim
        self.content_head = nn.Linear(features, n * cfg.content_dim)
        self.mask_head = nn.Linear(features, n * cfg.mask_dim)
        self.content_adjust = nn.ModuleList(nn.Linear(cfg.content_dim, cfg.cond_dim) for _ in range(n))
        self.mask_decoder = (
            MaskDecoder(cfg.mask_dim, cfg.mask_channels, cfg.seed_size(), cfg.mask_norm_groups)
            if n > 1 else None)
        if n == 1:
            # One concept: the mask is all ones, so nothing trains the mask head; it stays the fixed
            # random projection the reference's untrained head is (its codes are still reported).
            self.mask_head.requires_grad_(False)

    @property
    def num_concepts(self) -> int:
        return self.config.num_concepts

    def codes(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Content codes (B, N, d_c) and mask codes (B, N, d_m) of images in [-1, 1]."""
        f = self.trunk(x)
        b, n = x.shape[0], self.num_concepts
        return self.content_head(f).reshape(b, n, -1), self.mask_head(f).reshape(b, n, -1)

    def masks(self, mask_codes: Tensor) -> Tensor:
        """Masks (B, N, H, W) from mask codes (B, N, d_m): softmax over the concepts (float32);
        all ones for one concept."""
        b, n = mask_codes.shape[:2]
        if self.mask_decoder is None:
            height, width = self.config.image_size
            return mask_codes.new_ones(b, 1, height, width, dtype=torch.float32)
        logits = self.mask_decoder(mask_codes.reshape(b * n, -1))
        return torch.softmax(logits.reshape(b, n, *logits.shape[2:]).float(), dim=1)

    def adjusted(self, content: Tensor) -> Tensor:
        """Adjusted content codes f_c^n' (B, N, d_F)."""
        return torch.stack([adjust(content[:, i]) for i, adjust in enumerate(self.content_adjust)], dim=1)

    def condition_map(self, content: Tensor, mask_codes: Tensor) -> Tensor:
        """C = sum_n M^n f_c^n' as (B, d_F, H, W), from content (B, N, d_c) and mask codes (B, N, d_m)."""
        return self.combine(self.masks(mask_codes), content)

    def combine(self, masks: Tensor, content: Tensor) -> Tensor:
        """The condition map from masks (B, N, H, W) and content codes (B, N, d_c)."""
        adjusted = self.adjusted(content)
        return torch.einsum("bnhw,bnc->bchw", masks.to(adjusted.dtype), adjusted)

    def forward(self, x: Tensor) -> Tensor:
        """The condition map of images in [-1, 1]."""
        return self.condition_map(*self.codes(x))
