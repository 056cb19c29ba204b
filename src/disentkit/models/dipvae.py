"""DIP-VAE I and II (Kumar et al. 2018; disentanglement_lib ``DIPVAE``).

    loss = REC + KL + lambda_od * sum_{i != j} C_ij**2 + lambda_d * sum_i (C_ii - 1)**2

* DIP-VAE-I: ``C = Cov_batch(mu(x))``, the covariance of the encoder means over the batch;
* DIP-VAE-II: ``C = Cov_batch(mu(x)) + E_batch[diag(sigma**2(x))]``, the covariance of the
  aggregate posterior q(z).

disentanglement_lib sweeps lambda_od in {1, 2, 5, 10, 20, 50} with lambda_d = 10 * lambda_od
(DIP-I) or lambda_d = lambda_od (DIP-II). ``encode`` returns the posterior mean. Logged:
``dip_offdiag`` (sum of squared off-diagonal entries), ``dip_diag`` (sum of (C_ii - 1)**2) and
``dip_penalty`` (the weighted sum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from disentkit.models.losses import dip_covariance, dip_penalty
from disentkit.models.vae import GaussianVAE, VAEConfig
from disentkit.ranges import Weight
from disentkit.registry import MODELS


@dataclass
class DIPVAEConfig(VAEConfig):
    #: "i": match Cov(mu) to I; "ii": match Cov(mu) + E[diag sigma^2] to I
    variant: Literal["i", "ii"] = "i"
    lambda_od: Weight = 10.0
    lambda_d: Weight = 100.0


@MODELS.register("dipvae")
class DIPVAE(GaussianVAE):
    """REC + KL + DIP moment-matching penalty. ``encode``: posterior mean."""

    Config = DIPVAEConfig

    def regulariser(self, mean, logvar, z, kl_per_dim, step, extra):  # noqa: D102
        cfg = self.config
        cov = dip_covariance(mean, logvar, cfg.variant)
        penalty, off, on = dip_penalty(cov, cfg.lambda_od, cfg.lambda_d)
        extra["dip_offdiag"] = off.detach()
        extra["dip_diag"] = on.detach()
        extra["dip_penalty"] = penalty.detach()
        return kl_per_dim.sum() + penalty
