"""The CFASL repository's encoder/decoder (GIST-IRR/CFASL
``models/encoder.py``, ``models/decoder.py``), which differs from disentanglement_lib's:

* encoder convolutions (32, 32, 64, 64; kernel 4, stride 2) use **padding 0**, so 64x64 inputs
  shrink 64 -> 31 -> 14 -> 6 -> 2 and flatten to 64 * 2 * 2 = 256;
* one FC ``256 -> dense_dim`` with **no activation** after it, then linear mean and log-variance
  heads (``dense_dim`` = 128 on dSprites, 256 on 3D Shapes, Cars3D, smallNORB, CelebA);
* decoder FC ``latent_dim -> dense_dim`` (ReLU), FC -> 1024 (ReLU), reshape 64x4x4, transposed
  convolutions 64, 32, 32, C (kernel 4, stride 2, padding 1). The reference ends with a sigmoid
  and applies BCELoss/MSELoss to probabilities; here the decoder returns logits (numerically
  safer; the likelihood applies the sigmoid).

The reference initialises with Xavier-uniform weights (``init="xavier"``); its CFASL "group"
models additionally draw biases from U(0, 1) (``init="xavier_u01"``). Only 64x64 inputs.
"""

from __future__ import annotations

import torch
from torch import nn


class CFASLEncoder(nn.Module):
    """x (B, C, 64, 64) -> (mean, logvar), each (B, latent_dim)."""

    def __init__(self, in_channels: int, latent_dim: int, dense_dim: int = 256) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 4, 2, 0), nn.ReLU(),
            nn.Conv2d(32, 32, 4, 2, 0), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 0), nn.ReLU(),
            nn.Conv2d(64, 64, 4, 2, 0), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 2 * 2, dense_dim),  # no activation (as in the reference)
        )
        self.mean = nn.Linear(dense_dim, latent_dim)
        self.logvar = nn.Linear(dense_dim, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.mean(h), self.logvar(h)


class CFASLDecoder(nn.Module):
    """z (B, latent_dim) -> logits (B, C, 64, 64)."""

    def __init__(self, out_channels: int, latent_dim: int, dense_dim: int = 256) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, dense_dim), nn.ReLU(),
            nn.Linear(dense_dim, 1024), nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, out_channels, 4, 2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(z.shape[0], 64, 4, 4))
