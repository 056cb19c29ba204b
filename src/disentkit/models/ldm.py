"""``ldm``: an eps-prediction DDPM on the latents of a frozen image autoencoder (Rombach et al. 2022,
"High-Resolution Image Synthesis with Latent Diffusion Models", Sec. 3.2), DisDiff's stage 2
(Yang et al. 2023; ``ThomasMrY/DisDiff configs/latent-diffusion/{ds}-vq-4-16.yaml``,
``ldm/models/diffusion/ddpm.py``).

Training: the batch (in [-1, 1]) is encoded by the frozen first stage into its *unquantised*
latents (VQ: the encoder output after ``quant_conv``, as the reference's
``VQModelInterface.encode``; KL: a draw from the posterior, as ``get_first_stage_encoding``),
multiplied by ``scale_factor``; then ``t ~ U{0..T-1}``, ``eps ~ N(0, I)``,
``z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps`` and the loss is the **L1** mean
``|eps - eps_theta(z_t, t)|`` (``loss_type: l1``; ``loss="l2"`` gives the MSE of Ho et al.).

``scale_by_std`` (the reference's default for these configs): at the first training step,
``scale_factor = 1 / std(z)`` of the first batch's latents (all elements, unbiased std), stored as
a buffer: it is in every checkpoint, so a resumed run keeps it and a downstream stage (DisDiff)
loads it with the weights. Under DDP the value of rank 0 is broadcast so every process uses the
same one. With ``scale_by_std: false`` the configured ``scale_factor`` is used as it is.

Sampling: DDIM on the LDM grid (``spacing="ldm"``: ``range(0, T, T // S) + 1``), eta 1, no
clipping (DisDiff's ``log_images``), or DDPM ancestral; the latent is divided by
``scale_factor`` and decoded through the first stage (VQ: quantised first, as the reference's
decode path). Images come out in [-1, 1].

Attributes other stages use (DisDiff's stage 3 loads ``first_stage``, ``unet`` and
``scale_factor`` from an ``ldm`` run, ``init.modules=[first_stage, unet, scale_factor]``):

* ``first_stage``: the frozen :class:`~disentkit.nn.ldm_autoencoder.LatentAutoencoder`, with
  ``encode_latent(x_pm1) -> z`` (unquantised) and ``decode_latent(z, quantize=True) -> x_pm1``;
  its weights come from a ``vqgan`` / ``klvae`` run's ``autoencoder``
  (``init.modules=[first_stage=autoencoder]``); its architecture is ``model.first_stage``, which
  must repeat the upstream run's ``model.autoencoder`` (shapes are checked when it is loaded);
* ``unet``: the :class:`~disentkit.nn.unet.UNet` on the latents (``embed_dim`` channels,
  image side / ``2 ** (levels - 1)``);
* ``schedule``: the :class:`~disentkit.diffusion.schedules.DiscreteSchedule` (LDM's
  scaled-linear betas 0.0015 -> 0.0155 by default);
* ``scale_factor``: a 0-d float buffer; ``scale_fitted`` a 0-d bool buffer (True once fitted);
* ``to_latent(x01) -> scaled z`` and ``from_latent(z) -> x01`` (not clamped);
* ``sample(num, generator, steps, sampler) -> images in [-1, 1]``.

Training settings of the reference (presets ``ldm/*``): AdamW with weight decay 0.01, lr 2.56e-4
after a 10k-step linear warm-up, EMA 0.9999 of the UNet with LitEma's warm-up. It learns no
representation (``has_representation = False``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from disentkit.diffusion.schedules import DiscreteSchedule
from disentkit.errors import ConfigError
from disentkit.models.base import DataFacts, Model, require_representation
from disentkit.models.ddpm import SAMPLERS, DDPMConfig, _randint, _randn, sample_from_noise
from disentkit.nn.ldm_autoencoder import AutoencoderConfig, LatentAutoencoder
from disentkit.nn.unet import UNet
from disentkit.ranges import Range
from disentkit.registry import MODELS

__all__ = ["LDM", "LDMConfig"]


@dataclass
class LDMConfig(DDPMConfig):
    #: the first stage's architecture: the upstream vqgan / klvae run's model.autoencoder
    first_stage: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    #: the latent UNet: a preset of disentkit.nn.unet.UNET_PRESETS
    unet: str = "disdiff_ldm"
    schedule: Literal["linear", "scaled_linear", "cosine"] = "scaled_linear"
    #: l1 (LDM / DisDiff loss_type) or l2
    loss: Literal["l1", "l2"] = "l1"
    #: set scale_factor = 1 / std of the first batch's latents at the first step
    scale_by_std: bool = True
    #: the latent scale when scale_by_std is false (and the start value otherwise)
    scale_factor: Annotated[float, Range(gt=0, what="the latent scale")] = 1.0
    sample_steps: Annotated[int, Range(ge=1, what="the DDIM sampling steps")] = 200
    spacing: Literal["pdae", "diti", "ldm"] = "ldm"
    eta: Annotated[float, Range(ge=0, le=1, what="the DDIM eta")] = 1.0
    clip_x0: bool = False


@MODELS.register("ldm")
class LDM(Model):
    """Latent eps-prediction DDPM on a frozen first stage; see the module docstring for the
    attributes (``first_stage``, ``unet``, ``schedule``, ``scale_factor``) other stages use."""

    Config = LDMConfig
    input_range: ClassVar[str] = "pm1"
    has_representation: ClassVar[bool] = False
    samplers: ClassVar[tuple[str, ...]] = SAMPLERS
    frozen_modules: ClassVar[tuple[str, ...]] = ("first_stage",)
    ema_modules: ClassVar[tuple[str, ...]] = ("unet",)

    def __init__(self, config: LDMConfig, data: DataFacts | tuple[int, int, int]) -> None:
        super().__init__(config, data)
        channels, height, width = self.image_shape
        ae = config.first_stage
        if height != width:
            raise ConfigError(f"ldm needs square images, got {height}x{width}")
        ae.check_image_size(height, width)
        self.first_stage = LatentAutoencoder(ae, channels, height)
        side = height // ae.downsample_factor
        unet_config = config.unet_config(ae.embed_dim)
        unet_config.check_image_size(side, side)
        self.unet = UNet(unet_config)
        self.latent_shape = (ae.embed_dim, side, side)
        with torch.device("cpu"):  # float64 CPU tables, also when the net is built on "meta"
            self.schedule = DiscreteSchedule.named(config.schedule, config.num_steps)
        self.register_buffer("scale_factor", torch.tensor(float(config.scale_factor)))
        self.register_buffer("scale_fitted", torch.tensor(not config.scale_by_std))

    # ---- latents -----------------------------------------------------------------------------
    @torch.no_grad()
    def fit_scale(self, z: Tensor) -> None:
        """``scale_factor = 1 / std(z)`` (rank 0's value under DDP); marks it fitted."""
        scale = 1.0 / z.detach().float().flatten().std()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(scale, src=0)
        self.scale_factor.copy_(scale)
        self.scale_fitted.fill_(True)

    @torch.no_grad()
    def first_stage_latent(self, x_pm1: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The unscaled latent the diffusion is trained on (KL: a posterior draw from
        ``generator``, else from the global RNG)."""
        return self.first_stage.encode_latent(x_pm1, sample=not self.config.first_stage.quantize,
                                              generator=generator)

    def to_latent(self, x01: Tensor) -> Tensor:
        """Images in [0, 1] -> scaled latents ``scale_factor * z`` (unquantised; KL: the mean)."""
        with torch.no_grad():
            return self.scale_factor * self.first_stage.encode_latent(x01 * 2.0 - 1.0)

    def from_latent(self, z: Tensor) -> Tensor:
        """Scaled latents -> images in [0, 1] (decoded through the quantiser; not clamped)."""
        return (self.first_stage.decode_latent(z / self.scale_factor) + 1.0) / 2.0

    # ---- training ----------------------------------------------------------------------------
    def training_losses(self, batch: Tensor, step: int,
                        generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The L1 (or L2) eps loss on the scaled first-stage latents of ``batch`` ([-1, 1])."""
        del step
        z = self.first_stage_latent(batch, generator)
        if not bool(self.scale_fitted):
            self.fit_scale(z)
        z = self.scale_factor * z
        t = _randint(self.schedule.num_steps, z.shape[0], z.device, generator)
        noise = _randn(z, generator)
        pred = self.unet(self.schedule.q_sample(z, t, noise), t).float()
        loss = F.l1_loss(pred, noise.float()) if self.config.loss == "l1" else F.mse_loss(pred, noise.float())
        return {"loss": loss, "scale_factor": self.scale_factor.detach().clone()}

    # ---- sampling ----------------------------------------------------------------------------
    def denoise(self, z_t: Tensor, t: Tensor) -> Tensor:
        """eps_theta(z_t, t): the noise prediction the samplers call."""
        return self.unet(z_t, t)

    @torch.no_grad()
    def sample_latents(self, num: int, generator: torch.Generator | None = None,
                       steps: int | None = None, sampler: str | None = None) -> Tensor:
        """``num`` scaled latents from z_T ~ N(0, I) (DDIM with ``steps``, or DDPM ancestral)."""
        return sample_from_noise(self.denoise, self.schedule, self.config,
                                 (int(num), *self.latent_shape), self.scale_factor.device,
                                 generator, steps, sampler)

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None, steps: int | None = None,
               sampler: str | None = None) -> Tensor:
        """``num`` images in [-1, 1]: sampled latents decoded through the first stage."""
        z = self.sample_latents(num, generator, steps, sampler)
        return self.first_stage.decode_latent(z / self.scale_factor)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The first stage's reconstruction of images in [-1, 1] (no diffusion)."""
        return self.first_stage.decode_latent(self.first_stage.encode_latent(x))

    # ---- no representation -------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """A latent DDPM learns no code: raises :class:`NoRepresentationError` (one line)."""
        require_representation(self)
        raise AssertionError("unreachable")  # pragma: no cover
