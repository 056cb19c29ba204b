"""VAE and beta-VAE (Kingma & Welling 2014; Higgins et al. 2017).

Loss (beta-VAE, eq. 4 of Higgins et al.): REC + beta * KL(q(z|x) || N(0, I)), REC summed over
pixels and averaged over the batch; beta = 1 is the plain VAE. ``encode`` returns the
posterior mean, the representation disentanglement_lib evaluates.

:class:`GaussianVAE` holds what the whole VAE family shares (encoder, decoder, reparameterisation,
reconstruction and KL terms); the other methods subclass it and change :meth:`regulariser`, or
override :meth:`training_losses` and reuse :meth:`vae_terms`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, NamedTuple

import torch

from disentkit.models.base import DataFacts, Model
from disentkit.models.losses import kl_normal_per_dim, reconstruction_loss, reparameterise
from disentkit.nn.architectures import Architecture
from disentkit.ranges import Count, NonNegInt, Weight
from disentkit.registry import MODELS

InitChoice = Literal["auto", "xavier_zero", "normal002", "kaiming", "xavier", "xavier_u01", "torch"]


@dataclass
class VAEConfig:
    latent_dim: Annotated[Count, "the number of latent dimensions"] = 10
    #: bernoulli: BCE with logits; gaussian: sum of squared errors on sigmoid(logits)
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    #: encoder/decoder layout (disentkit.nn.architectures)
    architecture: Architecture = "dlib"
    #: dlib's code uses 2x2 kernels in the 3rd/4th encoder convolutions (paper: 4x4)
    dlib_kernel2: bool = False
    #: dlib nets' stride-2 stages: 4 (dlib); 3 keeps a 4x4 feature map at 32x32 (disentkit variant)
    dlib_stages: Literal[3, 4] = 4
    #: hidden width (kim: conv channels, burgess/cfasl: FC/dense_dim, mlp: units); 0: default
    hidden_dim: NonNegInt = 0
    #: weight initialisation; auto: the scheme of the architecture's source (disentkit.nn.init)
    init: InitChoice = "auto"


@dataclass
class BetaVAEConfig(VAEConfig):
    beta: Annotated[Weight, "the weight of the KL term"] = 4.0


def build_encoder_decoder(config: VAEConfig, image_shape: tuple[int, int, int]):
    """Encoder and decoder for ``config.architecture`` (see :mod:`disentkit.nn.architectures`)."""
    from disentkit.nn import architectures

    return architectures.build(config, image_shape)


class VAETerms(NamedTuple):
    """What one pass of a Gaussian VAE over a batch produces."""

    mean: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    logits: torch.Tensor
    reconstruction: torch.Tensor
    kl_per_dim: torch.Tensor


class GaussianVAE(Model):
    """A VAE with a diagonal Gaussian posterior; subclasses override :meth:`regulariser`.

    ``encode`` returns the posterior mean (what disentanglement_lib evaluates).
    """

    Config = VAEConfig

    def __init__(self, config: VAEConfig, data: DataFacts) -> None:
        super().__init__(config, data)
        self.encoder, self.decoder = build_encoder_decoder(config, self.image_shape)

    # ---- building blocks -----------------------------------------------------------------
    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z|x)."""
        return self.encoder(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean (what disentanglement_lib evaluates)."""
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel means in [0, 1] for latent codes ``z``."""
        return torch.sigmoid(self.decoder(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        z = torch.randn(num, self.latent_dim, generator=generator, device=device)
        return self.decode(z)

    # ---- objective ----------------------------------------------------------------------
    def vae_terms(self, batch: torch.Tensor) -> VAETerms:
        """Encode, sample z = mean + sigma * eps, decode; REC and per-dimension KL."""
        mean, logvar = self.posterior(batch)
        z = reparameterise(mean, logvar)
        logits = self.decoder(z)
        rec = reconstruction_loss(logits, batch, self.config.likelihood)
        return VAETerms(mean, logvar, z, logits, rec, kl_normal_per_dim(mean, logvar))

    def regulariser(
        self, mean: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, kl_per_dim: torch.Tensor,
        step: int, extra: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """The method's term added to the reconstruction loss (plain VAE: the KL).

        Put any extra logged term into ``extra`` (scalars or 1-D tensors).
        """
        return kl_per_dim.sum()

    def training_losses(self, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        t = self.vae_terms(batch)
        extra: dict[str, torch.Tensor] = {}
        reg = self.regulariser(t.mean, t.logvar, t.z, t.kl_per_dim, step, extra)
        loss = t.reconstruction + reg
        return {"loss": loss, "reconstruction": t.reconstruction, "kl": t.kl_per_dim.sum(),
                "kl_per_dim": t.kl_per_dim, **extra}


@MODELS.register("vae")
class VAE(GaussianVAE):
    """The plain VAE: REC + KL. ``encode`` returns the posterior mean."""

    Config = VAEConfig


@MODELS.register("betavae")
class BetaVAE(GaussianVAE):
    """beta-VAE (Higgins et al. 2017, eq. 4): REC + beta * KL. ``encode``: posterior mean."""

    Config = BetaVAEConfig

    def regulariser(self, mean, logvar, z, kl_per_dim, step, extra):  # noqa: D102
        return self.config.beta * kl_per_dim.sum()
