"""The standard 64x64 convolutional encoder/decoder (Locatello et al. 2019).

disentanglement_lib's ``conv_encoder``/``deconv_decoder`` ("row 3 of Table 1" of the beta-VAE
paper): four stride-2 convolutions (32, 32, 64, 64) to 4x4, FC 256, two linear heads (mean and
log-variance); the decoder mirrors it with FC 256, FC 1024 and four stride-2 transposed
convolutions ending in logits. Kernels are 4x4 throughout as in the paper; ``dlib_kernel2=True``
uses the 2x2 kernels of dlib's code for its third and fourth convolutions. Weights use
Glorot-uniform with zero biases, TensorFlow's defaults, as dlib does.

The encoder/decoder work at any input size ``64 / 2**k`` as well (e.g. 32x32 for fast CPU runs):
the flattened size adapts to the input resolution. At 32x32 the four stages end on a 2x2 map, so
the decoder has to draw every sprite from 256 numbers at 2x2; such a net reconstructs position,
scale and the ellipse's elongation but draws squares and hearts as discs even as a plain
autoencoder. ``stages=3`` keeps dlib's 4x4 map and its FC 1024 at 32x32 by dropping the
encoder's last 64-channel convolution and the decoder's last 32-channel transposed convolution
(a disentkit variant, not a dlib network; ``benchmarks/results/quickstart_shape.md``).
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


def check_stages(stages: int, image_size: int) -> None:
    """dlib's nets have 4 stride-2 stages; 3 is the 4x4-map variant (see the module docstring)."""
    if stages not in (3, 4) or image_size % 2**stages:
        raise ValueError(
            f"dlib nets: stages must be 3 or 4 and divide the image size {image_size} into a "
            f"whole feature map, got {stages}"
        )


class ConvEncoder(nn.Module):
    """x (B, C, H, W) in [0, 1] -> (mean, logvar), each (B, latent_dim)."""

    def __init__(
        self, in_channels: int, latent_dim: int, image_size: int = 64, dlib_kernel2: bool = False,
        stages: int = 4,
    ) -> None:
        super().__init__()
        check_stages(stages, image_size)
        k34, p34 = (2, 0) if dlib_kernel2 else (4, 1)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, 32, 4, 2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 4, 2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, k34, 2, padding=p34),
            nn.ReLU(),
        ]
        if stages == 4:
            layers += [nn.Conv2d(64, 64, k34, 2, padding=p34), nn.ReLU()]
        self.features = nn.Sequential(*layers, nn.Flatten())
        spatial = image_size // 2**stages
        self.fc = nn.Sequential(nn.Linear(64 * spatial * spatial, 256), nn.ReLU())
        self.mean = nn.Linear(256, latent_dim)
        self.logvar = nn.Linear(256, latent_dim)
        glorot_zero_init(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(self.features(x))
        return self.mean(h), self.logvar(h)


class ConvDecoder(nn.Module):
    """z (B, latent_dim) -> logits (B, C, H, W)."""

    def __init__(
        self, out_channels: int, latent_dim: int, image_size: int = 64, stages: int = 4
    ) -> None:
        super().__init__()
        check_stages(stages, image_size)
        self.spatial = image_size // 2**stages
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, 256),
            nn.ReLU(),
            nn.Linear(256, 64 * self.spatial * self.spatial),
            nn.ReLU(),
        )
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(64, 64, 4, 2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, padding=1),
            nn.ReLU(),
        ]
        if stages == 4:
            layers += [nn.ConvTranspose2d(32, 32, 4, 2, padding=1), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(32, out_channels, 4, 2, padding=1))
        self.deconv = nn.Sequential(*layers)
        glorot_zero_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], 64, self.spatial, self.spatial)
        return self.deconv(h)
