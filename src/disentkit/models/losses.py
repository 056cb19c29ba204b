"""Loss terms shared by the VAE family (specs/vae_methods.md §2).

Every reconstruction term is summed over pixels and channels and averaged over the batch; the
decoder always returns logits and the likelihood is a separate switch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Negative log-likelihood per image, averaged over the batch.

    * ``bernoulli``: binary cross-entropy with logits (dlib uses it for every dataset);
    * ``gaussian``: sum of squared errors between ``sigmoid(logits)`` and the target, what the
      PyTorch ports (1Konny, CFASL, CLG) call "gaussian"/"mse"/"l2" (2x a unit-variance
      Gaussian NLL up to a constant).
    """
    batch = target.shape[0]
    if likelihood == "bernoulli":
        return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / batch
    if likelihood == "gaussian":
        return F.mse_loss(torch.sigmoid(logits), target, reduction="sum") / batch
    raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")


def kl_normal_per_dim(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per latent dimension, averaged over the batch: (D,)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean(dim=0)


def reparameterise(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mean + exp(logvar / 2) * eps, eps ~ N(0, I)."""
    return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mean, exp(logvar)) (broadcasting)."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mean).pow(2) * torch.exp(-logvar))
