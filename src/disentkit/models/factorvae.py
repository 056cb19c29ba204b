"""FactorVAE (Kim & Mnih 2018; 1Konny/FactorVAE ``solver.py``,
disentanglement_lib ``FactorVAE``).

VAE objective (Kim & Mnih, eq. 2, with the density-ratio trick of §3):

    L_VAE = REC + KL + gamma * TC_hat,   TC_hat = E_q(z)[ D_0(z) - D_1(z) ]

where ``D_0, D_1`` are the discriminator's two logits (class 0 = "sample of q(z)", class 1 =
"dimension-wise permuted sample"), so ``D_0 - D_1 = log D(z) / (1 - D(z))`` estimates
``log q(z) / prod_d q(z_d)``. Discriminator objective:

    L_D = 1/2 [ CE(D(z), 0) + CE(D(perm(z')), 1) ]

with ``perm`` shuffling every latent column independently across the batch. ``z'`` comes from a
second, independent minibatch (``second_batch=True``, the paper and 1Konny; the model then
consumes ``batch_multiplier = 2`` batches per step, the first half for the VAE) or is the same
batch's ``z`` (``second_batch=False``, disentanglement_lib).

Discriminator: MLP ``D -> 1000 x n -> 2`` with LeakyReLU(0.2); ``disc_layers=6`` as in the paper
(App. A) and disentanglement_lib, 5 in 1Konny's code. Its own optimiser: Adam(1e-4, betas
(0.5, 0.9)) (:meth:`optimiser_specs`).

**Update order.** 1Konny's code reuses the discriminator output of the VAE graph after the VAE
optimiser step, which raises an in-place autograd error on PyTorch >= 1.5 (1Konny/FactorVAE#15).
Here both objectives are computed from one forward with the current parameters, and each
network only receives the gradient of its own objective (disentanglement_lib's simultaneous
update): L_D sees ``z.detach()`` (no gradient reaches the VAE), and the VAE's TC term evaluates
the discriminator with *detached* parameters via ``torch.func.functional_call`` (no gradient
reaches D). ``loss = L_VAE + L_D`` is then back-propagated once (DDP-safe).

``encode`` returns the posterior mean. Logged: ``tc`` (TC_hat), ``vae_loss``, ``d_loss``,
``d_accuracy`` (threshold 0.5 over the 2B real/permuted samples), ``d_prob_real`` and
``d_prob_perm`` (mean softmax probability of class "real" on D(z) and on D(perm(z'))).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from disentkit.models.base import DataFacts, OptimiserSpec
from disentkit.models.losses import permute_dims, reparameterise
from disentkit.models.vae import GaussianVAE, VAEConfig
from disentkit.nn.architectures import DEFAULT_INIT
from disentkit.nn.init import initialise
from disentkit.ranges import Count, Decay, Positive, Weight
from disentkit.registry import MODELS


@dataclass
class FactorVAEConfig(VAEConfig):
    gamma: Annotated[Weight, "the weight of the total correlation"] = 10.0
    #: hidden layers of the discriminator: 6 (paper, dlib) or 5 (1Konny)
    disc_layers: Count = 6
    disc_hidden: Count = 1000
    disc_lr: Positive = 1e-4
    disc_betas: tuple[Decay, Decay] = (0.5, 0.9)
    #: permute the latents of an independent second minibatch (paper) or of the same one (dlib)
    second_batch: bool = True


class Discriminator(nn.Module):
    """z (B, D) -> 2 logits; ``layers`` hidden layers of ``hidden`` units, LeakyReLU(0.2)."""

    def __init__(self, latent_dim: int, hidden: int = 1000, layers: int = 6) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"the FactorVAE discriminator needs >= 1 hidden layer, got {layers}")
        blocks: list[nn.Module] = []
        width = latent_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        blocks.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


@MODELS.register("factorvae")
class FactorVAE(GaussianVAE):
    """REC + KL + gamma * TC (density-ratio trick) with an adversarial discriminator.

    ``encode``: posterior mean.
    """

    Config = FactorVAEConfig
    #: the paper's independent second batch; instances with ``second_batch=False`` use 1.
    batch_multiplier = 2

    def __init__(self, config: FactorVAEConfig, data: DataFacts) -> None:
        super().__init__(config, data)
        self.batch_multiplier = 2 if config.second_batch else 1
        self.discriminator = Discriminator(config.latent_dim, config.disc_hidden, config.disc_layers)
        scheme = DEFAULT_INIT[config.architecture] if config.init == "auto" else config.init
        initialise(self.discriminator, scheme)

    def optimiser_specs(self) -> list[OptimiserSpec]:
        vae = [p for n, p in self.named_parameters() if not n.startswith("discriminator.")]
        return [
            OptimiserSpec("vae", [{"params": vae}]),
            OptimiserSpec("discriminator", [{"params": list(self.discriminator.parameters())}],
                          lr=self.config.disc_lr, betas=tuple(self.config.disc_betas)),
        ]

    def discriminator_tc(self, z: torch.Tensor) -> torch.Tensor:
        """TC_hat = mean(D_0(z) - D_1(z)) with the discriminator's parameters detached, so the
        gradient reaches z (the VAE) and never the discriminator."""
        params = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        logits = functional_call(self.discriminator, params, (z,))
        return (logits[:, 0] - logits[:, 1]).mean()

    def training_losses(self, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        if cfg.second_batch:
            if batch.shape[0] % 2:
                raise ValueError(
                    "factorvae with second_batch=True needs an even batch (two minibatches of "
                    f"train.batch_size, batch_multiplier=2), got {batch.shape[0]} images"
                )
            x, x_other = batch.chunk(2)
        else:
            x, x_other = batch, None
        t = self.vae_terms(x)
        kl = t.kl_per_dim.sum()
        tc = self.discriminator_tc(t.z)
        vae_loss = t.reconstruction + kl + cfg.gamma * tc

        # Discriminator objective on detached codes (no gradient to the VAE).
        z_real = t.z.detach()
        if x_other is not None:
            with torch.no_grad():
                z_other = reparameterise(*self.posterior(x_other))
        else:
            z_other = z_real
        z_perm = permute_dims(z_other)
        logits_real = self.discriminator(z_real)
        logits_perm = self.discriminator(z_perm)
        zeros = torch.zeros(z_real.shape[0], dtype=torch.long, device=z_real.device)
        ones = torch.ones(z_perm.shape[0], dtype=torch.long, device=z_perm.device)
        d_loss = 0.5 * (F.cross_entropy(logits_real, zeros) + F.cross_entropy(logits_perm, ones))

        with torch.no_grad():
            p_real = logits_real.softmax(1)[:, 0]
            p_perm = logits_perm.softmax(1)[:, 0]
            accuracy = torch.cat([(p_real >= 0.5), (p_perm < 0.5)]).float().mean()
        return {
            "loss": vae_loss + d_loss,
            "reconstruction": t.reconstruction, "kl": kl, "kl_per_dim": t.kl_per_dim,
            "tc": tc.detach(), "vae_loss": vae_loss.detach(), "d_loss": d_loss.detach(),
            "d_accuracy": accuracy, "d_prob_real": p_real.mean(), "d_prob_perm": p_perm.mean(),
        }
