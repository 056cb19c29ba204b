"""``vqgan`` and ``klvae``: the image autoencoders of latent diffusion, DisDiff's stage 1
(Esser et al. 2021, "Taming Transformers for High-Resolution Image Synthesis", Sec. 3.1-3.2;
Rombach et al. 2022, Sec. 3.1 and App. G; Yang et al. 2023, DisDiff).

Network: :class:`disentkit.nn.ldm_autoencoder.LatentAutoencoder` (LDM's encoder/decoder with the
middle-block attention, ``quant_conv``/``post_quant_conv``), on images in [-1, 1].

``vqgan`` (taming ``taming/modules/losses/vqperceptual.py`` ``VQLPIPSWithDiscriminator``,
DisDiff ``configs/autoencoder/*_vq_4_16.yaml``)::

    nll   = mean(|x - x^| + w_p LPIPS(x, x^))
    g     = -mean(D(x^))
    lam   = clamp(||grad_W nll|| / (||grad_W g|| + 1e-4), 0, 1e4) * disc_weight   (W: decoder.conv_out.weight)
    L_AE  = nll + lam * f(step) * g + codebook_weight * L_q                           (L_q: legacy VQ loss)
    L_D   = f(step) * 0.5 * (mean(relu(1 - D(x))) + mean(relu(1 + D(x^))))            (hinge)

with ``f(step) = disc_factor`` from ``disc_start`` on and 0 before (taming's ``adopt_weight``).
``klvae`` (``ldm/modules/losses/contperceptual.py`` ``LPIPSWithDiscriminator``) replaces the VQ
term by the posterior's KL and the L1 by a Gaussian likelihood with one learned log-variance::

    nll   = sum((|x - x^| + w_p LPIPS) / exp(s) + s) / B,   s a learned scalar (logvar_init)
    L_AE  = nll + kl_weight * KL(q(z|x) || N(0, I)) / B + lam * f(step) * g

**One backward, blocked cross-gradients** (as :mod:`disentkit.models.factorvae`): the generator
term evaluates the discriminator with *detached* parameters (``torch.func.functional_call``), so
``g`` puts no gradient on D; ``L_D`` sees ``x.detach()`` and ``x^.detach()``, so it puts none on the
autoencoder. ``loss = L_AE + L_D`` is back-propagated once and each optimiser (autoencoder and
discriminator, :meth:`optimiser_specs`) steps on its own objective's gradient (DDP-safe). The
reference (PyTorch Lightning's two optimisers) updates D after the autoencoder step with fresh
reconstructions; here both see the same forward, the simultaneous update. Before ``disc_start``
the discriminator still runs, with a zero weight (as the reference), so every parameter gets a
gradient each step; its Adam moments stay zero, so its weights do not move.

**Perceptual loss.** LPIPS needs VGG16 and LPIPS linear-head weights that disentkit cannot
download; it is off by default (``perceptual_weight = 0``; the reference uses 1.0) and needs both
files given (``lpips_vgg``, ``lpips_lin``, :mod:`disentkit.nn.lpips_vgg`). Without it the
autoencoder is trained with L1 + GAN only: reconstructions are typically blurrier in fine texture,
which on the synthetic datasets (flat colours, simple shapes) matters little.

Neither model learns a disentangled code (``has_representation = False``): they are the first
stage of ``ldm``, which loads ``autoencoder`` as its ``first_stage``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from disentkit.errors import ConfigError
from disentkit.models.base import DataFacts, Model, OptimiserSpec, require_representation
from disentkit.nn.ldm_autoencoder import AutoencoderConfig, LatentAutoencoder
from disentkit.nn.patchgan import PatchDiscriminator, patchgan_min_side
from disentkit.ranges import Count, NonNegInt, Positive, Range, Weight
from disentkit.registry import MODELS

__all__ = ["KLVAE", "VQGAN", "KLVAEConfig", "VQGANConfig", "adaptive_weight", "hinge_d_loss"]


@dataclass
class _GANConfig:
    """Settings both autoencoders share: the PatchGAN and the perceptual term."""

    #: the first step at which the discriminator's terms count (taming's disc_start)
    disc_start: NonNegInt = 0
    #: the adaptive weight's factor (taming's discriminator_weight)
    disc_weight: Weight = 0.75
    #: f(step) once the discriminator is on (taming's disc_factor)
    disc_factor: Weight = 1.0
    #: PatchGAN layers (3 in the reference; 2 for 16-px images)
    disc_layers: Count = 3
    #: PatchGAN base width (ndf)
    disc_channels: Count = 64
    #: the discriminator's learning rate; null: the run's optim.lr (as the reference)
    disc_lr: Positive | None = None
    #: weight of the LPIPS term (the reference: 1.0; needs lpips_vgg and lpips_lin)
    perceptual_weight: Weight = 0.0
    #: VGG16 state_dict (torchvision layout) for LPIPS
    lpips_vgg: str = ""
    #: LPIPS linear heads state_dict (lin0.model.1.weight, ...)
    lpips_lin: str = ""

    def __post_init__(self) -> None:
        # refused when the config is read, before any data is loaded
        if self.perceptual_weight > 0 and not (self.lpips_vgg and self.lpips_lin):
            raise ConfigError(
                f"model.perceptual_weight = {self.perceptual_weight:g} needs the LPIPS weights: "
                "set model.lpips_vgg (a VGG16 state_dict) and model.lpips_lin (the LPIPS linear "
                "heads); none are downloaded, or set model.perceptual_weight=0")


@dataclass
class VQGANConfig(_GANConfig):
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    #: weight of the legacy VQ loss in L_AE
    codebook_weight: Weight = 1.0


@dataclass
class KLVAEConfig(_GANConfig):
    autoencoder: AutoencoderConfig = field(default_factory=lambda: AutoencoderConfig(
        quantize=False, z_channels=4, embed_dim=4))
    kl_weight: Weight = 1e-6
    #: initial value of the learned log-variance of the likelihood (exp(+-30) is the float32 edge
    #: the loss can still divide by)
    logvar_init: Annotated[float, Range(ge=-30, le=30, what="the initial log-variance")] = 0.0
    disc_start: NonNegInt = 50_001
    disc_weight: Weight = 0.5


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """``0.5 (mean relu(1 - D(x)) + mean relu(1 + D(x^)))``."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_weight(nll: Tensor, g_loss: Tensor, last_layer: Tensor, factor: float) -> Tensor:
    """taming's ``calculate_adaptive_weight``: ``clamp(|grad nll| / (|grad g| + 1e-4), 0, 1e4) *
    factor``, the gradients taken at ``last_layer``; detached (a weight, not a loss term)."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = torch.norm(nll_grad) / (torch.norm(g_grad) + 1e-4)
    return torch.clamp(weight, 0.0, 1e4).detach() * factor


class _AutoencoderGAN(Model):
    """What ``vqgan`` and ``klvae`` share: the network, the PatchGAN, LPIPS and the GAN terms."""

    input_range: ClassVar[str] = "pm1"
    has_representation: ClassVar[bool] = False
    #: True for the VQ model
    quantized: ClassVar[bool] = True

    def __init__(self, config: Any, data: DataFacts | tuple[int, int, int]) -> None:
        super().__init__(config, data)
        channels, height, width = self.image_shape
        ae = config.autoencoder
        self._check(ae, height, width)
        self.autoencoder = LatentAutoencoder(ae, channels, height)
        self.discriminator = PatchDiscriminator(channels, config.disc_channels, config.disc_layers)
        self.perceptual: nn.Module | None = None
        if config.perceptual_weight > 0:
            from disentkit.nn.lpips_vgg import LPIPS

            self.perceptual = LPIPS(config.lpips_vgg, config.lpips_lin)
            self.frozen_modules = ("perceptual",)  # eval mode and in no optimiser

    def _check(self, ae: AutoencoderConfig, height: int, width: int) -> None:
        name = getattr(self, "registry_name", type(self).__name__)
        if ae.quantize != self.quantized:
            want = "true (vqgan quantises)" if self.quantized else "false (klvae has a Gaussian posterior)"
            other = "klvae" if self.quantized else "vqgan"
            raise ConfigError(f"model.autoencoder.quantize: {name} needs {want}; use model {other} "
                              "for the other kind")
        if height != width:
            raise ConfigError(f"{name} needs square images, got {height}x{width}")
        ae.check_image_size(height, width)
        need = patchgan_min_side(self.config.disc_layers)
        if height < need:
            raise ConfigError(f"model.disc_layers = {self.config.disc_layers}: the PatchGAN needs images "
                              f"of at least {need} px, got {height}; use fewer disc_layers")

    @property
    def latent_dim(self) -> int:
        return int(self.config.autoencoder.embed_dim)

    def optimiser_specs(self) -> list[OptimiserSpec]:
        ae = [p for n, p in self.named_parameters()
              if not n.startswith(("discriminator.", "perceptual."))]
        return [
            OptimiserSpec("autoencoder", [{"params": ae}]),
            OptimiserSpec("discriminator", [{"params": list(self.discriminator.parameters())}],
                          lr=self.config.disc_lr),
        ]

    # ---- the shared loss pieces ------------------------------------------------------------
    def pixel_loss(self, x: Tensor, rec: Tensor) -> Tensor:
        """``|x - x^| + w_p LPIPS(x, x^)`` per pixel (LPIPS broadcast over pixels)."""
        loss = (x - rec).abs()
        if self.perceptual is not None:
            loss = loss + self.config.perceptual_weight * self.perceptual(x, rec)
        return loss

    def disc_factor(self, step: int) -> float:
        """f(step): ``disc_factor`` from ``disc_start`` on, 0 before."""
        return float(self.config.disc_factor) if step >= self.config.disc_start else 0.0

    def generator_term(self, rec: Tensor) -> Tensor:
        """``g = -mean D(x^)`` with D's parameters detached: the gradient reaches the autoencoder
        only."""
        params = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        return -functional_call(self.discriminator, params, (rec,)).mean()

    def gan_terms(self, x: Tensor, rec: Tensor, nll: Tensor, step: int) -> dict[str, Tensor]:
        """The generator term (weighted), the discriminator loss and what is logged."""
        factor = self.disc_factor(step)
        zero = nll.new_zeros(())
        if factor > 0:
            g = self.generator_term(rec)
            weight = adaptive_weight(nll, g, self.autoencoder.last_layer, self.config.disc_weight)
            weighted_g = weight * factor * g
        else:  # taming computes g with a zero weight here; it changes nothing
            g, weight, weighted_g = zero, zero, zero
        logits_real = self.discriminator(x.detach())
        logits_fake = self.discriminator(rec.detach())
        d_loss = factor * hinge_d_loss(logits_real, logits_fake)
        return {"weighted_g": weighted_g, "d_loss": d_loss, "g_loss": g.detach(),
                "d_weight": weight, "disc_factor": torch.tensor(factor),
                "logits_real": logits_real.detach().mean(), "logits_fake": logits_fake.detach().mean()}

    # ---- inference -------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Images in [-1, 1] -> their reconstructions (VQ: quantised; KL: the posterior mean)."""
        return self.autoencoder.decode_latent(self.autoencoder.encode_latent(x))

    def encode(self, x: Tensor) -> Tensor:
        """The autoencoder's latent map is not a disentangled code: one-line refusal."""
        require_representation(self)
        raise AssertionError("unreachable")  # pragma: no cover


@MODELS.register("vqgan")
class VQGAN(_AutoencoderGAN):
    """VQ autoencoder + PatchGAN (taming's legacy VQ loss, hinge GAN with the adaptive weight).

    Modules: ``autoencoder`` (what ``ldm`` loads as ``first_stage``), ``discriminator``,
    ``perceptual`` (only with ``perceptual_weight > 0``; frozen).
    """

    Config = VQGANConfig
    quantized: ClassVar[bool] = True

    def training_losses(self, batch: Tensor, step: int) -> dict[str, Tensor]:
        ae = self.autoencoder
        q = ae.quantize(ae.moments(batch))
        rec = ae.decode_latent(q.z_q, quantize=False)
        nll = self.pixel_loss(batch, rec).mean()
        gan = self.gan_terms(batch, rec, nll, step)
        ae_loss = nll + gan["weighted_g"] + self.config.codebook_weight * q.loss
        return {"loss": ae_loss + gan["d_loss"], "ae_loss": ae_loss.detach(), "nll": nll.detach(),
                "codebook": q.loss.detach(), "perplexity": q.perplexity,
                **{k: v.detach() for k, v in gan.items() if k != "weighted_g"}}


@MODELS.register("klvae")
class KLVAE(_AutoencoderGAN):
    """KL-regularised autoencoder + PatchGAN (LDM's ``AutoencoderKL`` with
    ``LPIPSWithDiscriminator``). Modules as :class:`VQGAN`, plus the scalar ``logvar``."""

    Config = KLVAEConfig
    quantized: ClassVar[bool] = False

    def __init__(self, config: KLVAEConfig, data: DataFacts | tuple[int, int, int]) -> None:
        super().__init__(config, data)
        self.logvar = nn.Parameter(torch.full((), float(config.logvar_init)))

    def training_losses(self, batch: Tensor, step: int) -> dict[str, Tensor]:
        ae = self.autoencoder
        mean, logvar = ae.posterior(batch)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        rec = ae.decode_latent(z)
        b = batch.shape[0]
        nll = (self.pixel_loss(batch, rec) / torch.exp(self.logvar) + self.logvar).sum() / b
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum() / b
        gan = self.gan_terms(batch, rec, nll, step)
        ae_loss = nll + self.config.kl_weight * kl + gan["weighted_g"]
        return {"loss": ae_loss + gan["d_loss"], "ae_loss": ae_loss.detach(), "nll": nll.detach(),
                "kl": kl.detach(), "logvar": self.logvar.detach(),
                "rec_l1": (batch - rec).abs().mean().detach(),
                **{k: v.detach() for k, v in gan.items() if k != "weighted_g"}}

