"""The Higgins/Kim "H" encoder/decoder (Higgins et al. 2017; Kim & Mnih 2018).

As in 1Konny/Beta-VAE ``BetaVAE_H`` and 1Konny/FactorVAE ``FactorVAE1/2``: four stride-2
convolutions (32, 32, 64, 64; kernel 4, padding 1), a "valid" convolution to ``hidden`` channels
at 1x1 (256; 128 in 1Konny's dSprites FactorVAE) and a linear map to ``2 * latent_dim`` (mean,
log-variance). The decoder mirrors it: linear ``latent_dim -> hidden`` at 1x1, a transposed
convolution to 64 channels at 4x4, then four stride-2 transposed convolutions (64, 32, 32, C)
ending in logits. 1Konny/FactorVAE initialises with N(0, 0.02), 1Konny/Beta-VAE with Kaiming
normal; biases are zero in both.
"""

from __future__ import annotations

import torch
from torch import nn


class KimEncoder(nn.Module):
    """x (B, C, S, S), S = 16 * 2**k -> (mean, logvar), each (B, latent_dim)."""

    def __init__(self, in_channels: int, latent_dim: int, image_size: int = 64,
                 hidden: int = 256) -> None:
        super().__init__()
        spatial = image_size // 16
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, hidden, spatial), nn.ReLU(),  # "valid": spatial x spatial -> 1 x 1
            nn.Flatten(),
            nn.Linear(hidden, 2 * latent_dim),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.net(x).chunk(2, dim=1)
        return mean, logvar


class KimDecoder(nn.Module):
    """z (B, latent_dim) -> logits (B, C, S, S)."""

    def __init__(self, out_channels: int, latent_dim: int, image_size: int = 64,
                 hidden: int = 256) -> None:
        super().__init__()
        spatial = image_size // 16
        self.hidden = hidden
        self.fc = nn.Linear(latent_dim, hidden)
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(hidden, 64, spatial), nn.ReLU(),  # 1 x 1 -> spatial x spatial
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, out_channels, 4, 2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(z.shape[0], self.hidden, 1, 1))
