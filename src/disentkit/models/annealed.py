"""AnnealedVAE: the capacity-controlled beta-VAE of Burgess et al. (2018)
(disentanglement_lib ``AnnealedVAE``, 1Konny/Beta-VAE objective "B").

    loss = REC + gamma * | KL(q(z|x) || p(z)) - C(t) |,   C(t) = min(C_max, C_max * t / T_ramp)

The encoding capacity C grows linearly from 0 to ``c_max`` nats over ``ramp_steps`` training
steps and then stays there; KL is the analytic KL summed over latents, averaged over the batch.
``encode`` returns the posterior mean. Logged: ``capacity`` (C(t)) and ``kl_gap`` (KL - C).
Paper settings (1Konny README, Burgess et al.): gamma = 1000, C_max = 25, T_ramp = 100k, lr 5e-4,
"burgess" networks; disentanglement_lib: gamma = 1000, T_ramp = 100k, C_max swept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from disentkit.models.losses import capacity
from disentkit.models.vae import GaussianVAE, VAEConfig
from disentkit.ranges import NonNegative, NonNegInt, Weight
from disentkit.registry import MODELS


@dataclass
class AnnealedVAEConfig(VAEConfig):
    gamma: Annotated[Weight, "the weight of |KL - C|"] = 1000.0
    #: final capacity C_max in nats
    c_max: NonNegative = 25.0
    #: steps over which C rises linearly from 0 to C_max (dlib: iteration_threshold; 0: C_max
    #: from the start)
    ramp_steps: NonNegInt = 100000


@MODELS.register("annealedvae")
class AnnealedVAE(GaussianVAE):
    """REC + gamma * |KL - C(t)| with a linear capacity ramp. ``encode``: posterior mean."""

    Config = AnnealedVAEConfig

    def regulariser(self, mean, logvar, z, kl_per_dim, step, extra):  # noqa: D102
        cfg = self.config
        c = capacity(step, cfg.c_max, cfg.ramp_steps)
        kl = kl_per_dim.sum()
        extra["capacity"] = torch.tensor(c, device=kl.device)
        extra["kl_gap"] = (kl - c).detach()
        return cfg.gamma * (kl - c).abs()
