"""The Burgess "B" encoder/decoder (1Konny/Beta-VAE ``model.py`` ``BetaVAE_B``).

Used for the capacity-annealed beta-VAE of Burgess et al. (2018): four stride-2 convolutions of
32 channels (kernel 4, padding 1) to 32x4x4 = 512, FC 256, FC 256, FC ``2 * latent_dim``. The
decoder: FC 256, FC 256, FC 512, reshape 32x4x4, three stride-2 transposed convolutions of 32
channels and a last one to C channels (logits). 1Konny initialises with Kaiming normal, zero bias.
"""

from __future__ import annotations

import torch
from torch import nn


class BurgessEncoder(nn.Module):
    """x (B, C, S, S) -> (mean, logvar), each (B, latent_dim)."""

    def __init__(self, in_channels: int, latent_dim: int, image_size: int = 64,
                 hidden: int = 256) -> None:
        super().__init__()
        spatial = image_size // 16
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * spatial * spatial, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.net(x).chunk(2, dim=1)
        return mean, logvar


class BurgessDecoder(nn.Module):
    """z (B, latent_dim) -> logits (B, C, S, S)."""

    def __init__(self, out_channels: int, latent_dim: int, image_size: int = 64,
                 hidden: int = 256) -> None:
        super().__init__()
        self.spatial = image_size // 16
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 32 * self.spatial * self.spatial), nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, out_channels, 4, 2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(z.shape[0], 32, self.spatial, self.spatial))
