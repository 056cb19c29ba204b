"""Fully connected encoder/decoder (Higgins et al. 2017; Chen et al. 2018).

The beta-VAE paper's dSprites networks (disentanglement_lib ``fc_encoder``/``fc_decoder``) and
rtqichen/beta-tcvae's ``MLPEncoder``/``MLPDecoder``: encoder ``C*H*W -> 1200 -> 1200 -> 2z``
(ReLU); decoder ``z -> 1200 -> 1200 -> 1200 -> C*H*W`` (tanh), returning logits.
"""

from __future__ import annotations

import torch
from torch import nn


class MLPEncoder(nn.Module):
    """x (B, C, H, W) -> (mean, logvar), each (B, latent_dim)."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int,
                 hidden: int = 1200) -> None:
        super().__init__()
        channels, height, width = image_shape
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * height * width, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.net(x).chunk(2, dim=1)
        return mean, logvar


class MLPDecoder(nn.Module):
    """z (B, latent_dim) -> logits (B, C, H, W)."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int,
                 hidden: int = 1200) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        channels, height, width = image_shape
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, channels * height * width),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.image_shape)
