"""The standard 64x64 convolutional encoder/decoder (Locatello et al. 2019).

disentanglement_lib's ``conv_encoder``/``deconv_decoder`` ("row 3 of Table 1" of the beta-VAE
paper): four stride-2 convolutions (32, 32, 64, 64) to 4x4, FC 256, two linear heads (mean and
log-variance); the decoder mirrors it with FC 256, FC 1024 and four stride-2 transposed
convolutions ending in logits. Kernels are 4x4 throughout as in the paper; ``dlib_kernel2=True``
uses the 2x2 kernels of dlib's code for its third and fourth convolutions. Weights use
Glorot-uniform with zero biases, TensorFlow's defaults, as dlib does.

The encoder/decoder work at any input size ``64 / 2**k`` as well (e.g. 32x32 for fast CPU runs):
the flattened size adapts to the input resolution.
"""

from __future__ import annotations

import torch
from torch import nn


def glorot_zero_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases (TensorFlow's defaults, used by dlib)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ConvEncoder(nn.Module):
    """x (B, C, H, W) in [0, 1] -> (mean, logvar), each (B, latent_dim)."""

    def __init__(
        self, in_channels: int, latent_dim: int, image_size: int = 64, dlib_kernel2: bool = False
    ) -> None:
        super().__init__()
        k34, p34 = (2, 0) if dlib_kernel2 else (4, 1)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 4, 2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 4, 2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, k34, 2, padding=p34),
            nn.ReLU(),
            nn.Conv2d(64, 64, k34, 2, padding=p34),
            nn.ReLU(),
            nn.Flatten(),
        )
        spatial = image_size // 16
        self.fc = nn.Sequential(nn.Linear(64 * spatial * spatial, 256), nn.ReLU())
        self.mean = nn.Linear(256, latent_dim)
        self.logvar = nn.Linear(256, latent_dim)
        glorot_zero_init(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(self.features(x))
        return self.mean(h), self.logvar(h)


class ConvDecoder(nn.Module):
    """z (B, latent_dim) -> logits (B, C, H, W)."""

    def __init__(self, out_channels: int, latent_dim: int, image_size: int = 64) -> None:
        super().__init__()
        self.spatial = image_size // 16
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, 256),
            nn.ReLU(),
            nn.Linear(256, 64 * self.spatial * self.spatial),
            nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 64, 4, 2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 32, 4, 2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, out_channels, 4, 2, padding=1),
        )
        glorot_zero_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], 64, self.spatial, self.spatial)
        return self.deconv(h)
