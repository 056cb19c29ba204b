"""``ddpm``: a pixel-space, eps-prediction denoising diffusion model (Ho et al. 2020, "Denoising
Diffusion Probabilistic Models").

Training (Algorithm 1): draw ``t`` uniformly from {0, ..., T-1} and ``eps ~ N(0, I)``, form
``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` (eq. 4) and minimise the "simple" loss of
eq. 14, ``|| eps - eps_theta(x_t, t) ||^2``, averaged over pixels and the batch (unweighted MSE,
as PDAE's stage-0 DDPM, ``ckczzj/PDAE diffusion/gaussian_diffusion.py``). The network is the ADM
UNet of :mod:`disentkit.nn.unet`, chosen by a preset name plus overrides of its fields; the noise
schedule (linear, LDM scaled-linear or cosine, T steps) comes from the config. Images are in
[-1, 1] (``input_range = "pm1"``).

Sampling: DDIM (Song et al. 2021, eq. 12) with ``sample_steps`` steps on the ``spacing`` grid
(default ``pdae``, eta 0, x0 clipped to [-1, 1], as PDAE and Diff-AE sample), or DDPM ancestral
sampling over all T steps (Algorithm 2). Every draw comes from an explicit ``torch.Generator``.

The model is stage 0 of PDAE / DiTi (its EMA weights become their frozen denoiser) and the
template of DisDiff's stage 2. It learns no representation: ``encode`` and the metrics refuse it
with one line (``has_representation = False``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from disentkit.diffusion.samplers import ddim_sample, ddpm_sample
from disentkit.diffusion.schedules import DiscreteSchedule
from disentkit.errors import ConfigError
from disentkit.models.base import DataFacts, Model, require_representation
from disentkit.nn.unet import UNET_PRESETS, UNet, UNetConfig
from disentkit.ranges import Count, Range
from disentkit.registry import MODELS

#: the samplers ``sample`` offers (``disentkit sample --sampler``)
SAMPLERS = ("ddim", "ddpm")
#: UNet fields the data decides (the image channels)
_DATA_FIELDS = ("in_channels", "out_channels")


@dataclass
class DDPMConfig:
    #: the UNet: a preset of disentkit.nn.unet.UNET_PRESETS (tiny_pdae, pdae_celeba64, ...)
    unet: str = "tiny_pdae"
    #: UNetConfig fields that replace the preset's (base_channels, channel_mult, attention_ds, ...)
    unet_overrides: dict[str, Any] = field(default_factory=dict)
    #: the noise schedule: linear (Ho et al.), scaled_linear (LDM), cosine (Nichol & Dhariwal)
    schedule: Literal["linear", "scaled_linear", "cosine"] = "linear"
    #: T, the number of diffusion steps
    num_steps: Annotated[int, Range(ge=2, what="the number of diffusion steps T")] = 1000
    #: the sampler of reports and `disentkit sample`: ddim (sample_steps steps) or ddpm (all T)
    sampler: Literal["ddim", "ddpm"] = "ddim"
    #: DDIM steps of reports and `disentkit sample` (Diff-AE evaluates with 20)
    sample_steps: Annotated[Count, "the DDIM sampling steps"] = 20
    #: the DDIM time-step grid (disentkit.diffusion.timesteps)
    spacing: Literal["pdae", "diti", "ldm"] = "pdae"
    #: DDIM eta: 0 deterministic, 1 DDPM-like
    eta: Annotated[float, Range(ge=0, le=1, what="the DDIM eta")] = 0.0
    #: clamp the predicted x0 to [-1, 1] in every sampling step (PDAE, Diff-AE)
    clip_x0: bool = True

    def __post_init__(self) -> None:
        # A bad preset name or UNet field fails when the config is loaded, not after training starts.
        self.unet_config(3)

    def unet_config(self, channels: int) -> UNetConfig:
        """The UNet for images with ``channels`` channels (ConfigError naming the bad setting)."""
        if self.unet not in UNET_PRESETS:
            raise ConfigError(f"model.unet: unknown UNet preset {self.unet!r:.60}; expected one of "
                              f"{', '.join(sorted(UNET_PRESETS))}")
        overrides = dict(self.unet_overrides)
        fields = {f.name for f in dataclasses.fields(UNetConfig)} - set(_DATA_FIELDS)
        for key in overrides:
            if key in _DATA_FIELDS:
                raise ConfigError(f"model.unet_overrides.{key}: the image channels come from the data; "
                                  "drop this override")
            if key not in fields:
                raise ConfigError(f"model.unet_overrides: unknown UNet setting {str(key)[:60]!r}; "
                                  f"expected some of {', '.join(sorted(fields))}")
        return UNetConfig.preset(self.unet, **overrides, in_channels=channels, out_channels=channels)


@MODELS.register("ddpm")
class DDPM(Model):
    """Pixel-space eps-prediction DDPM; ``sample`` returns images in [-1, 1]."""

    Config = DDPMConfig
    input_range: ClassVar[str] = "pm1"
    has_representation: ClassVar[bool] = False
    samplers: ClassVar[tuple[str, ...]] = SAMPLERS

    def __init__(self, config: DDPMConfig, data: DataFacts | tuple[int, int, int]) -> None:
        super().__init__(config, data)
        channels, height, width = self.image_shape
        unet_config = config.unet_config(channels)
        unet_config.check_image_size(height, width)
        self.unet = UNet(unet_config)
        with torch.device("cpu"):  # float64 CPU tables, also when the net is built on "meta"
            self.schedule = DiscreteSchedule.named(config.schedule, config.num_steps)

    # ---- training ----------------------------------------------------------------------------
    def training_losses(self, batch: torch.Tensor, step: int,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Ho et al. 2020 eq. 14 on a batch in [-1, 1]: ``mean (eps - eps_theta(x_t, t))^2``.

        ``t`` (uniform) and then ``eps`` are drawn from ``generator`` when given, else from the
        global torch RNG (which the engine checkpoints, so a resumed run draws the same noise).
        """
        del step
        t = _randint(self.schedule.num_steps, batch.shape[0], batch.device, generator)
        noise = _randn(batch, generator)
        x_t = self.schedule.q_sample(batch, t, noise)
        mse = F.mse_loss(self.unet(x_t, t).float(), noise.float())
        return {"loss": mse}

    # ---- sampling ----------------------------------------------------------------------------
    def denoise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps_theta(x_t, t): the noise prediction the samplers call."""
        return self.unet(x_t, t)

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None, steps: int | None = None,
               sampler: str | None = None) -> torch.Tensor:
        """``num`` images in [-1, 1] from x_T ~ N(0, I): DDIM with ``steps`` (default
        ``config.sample_steps``) or DDPM ancestral over all T steps (``sampler="ddpm"``); the
        noise is drawn from ``generator`` (default: a fresh one seeded 0)."""
        return sample_from_noise(self.denoise, self.schedule, self.config,
                                 (int(num), *self.image_shape), next(self.parameters()).device,
                                 generator, steps, sampler)

    # ---- no representation -------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """A pixel DDPM learns no code: raises :class:`NoRepresentationError` (one line)."""
        require_representation(self)
        raise AssertionError("unreachable")  # pragma: no cover


def sample_from_noise(denoise: Any, schedule: DiscreteSchedule, config: Any, shape: tuple[int, ...],
                      device: torch.device, generator: torch.Generator | None = None,
                      steps: int | None = None, sampler: str | None = None) -> torch.Tensor:
    """Draw x_T ~ N(0, I) of ``shape`` from ``generator`` (default: a fresh one seeded 0) and run
    the eps-model ``denoise`` back to x_0: DDIM with ``steps`` (default ``config.sample_steps``)
    or DDPM ancestral over all T steps. ``config`` gives ``sampler``, ``sample_steps``,
    ``spacing``, ``eta`` and ``clip_x0`` (``DDPMConfig`` and the configs built on it)."""
    sampler = sampler or config.sampler
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r:.40}; expected one of {', '.join(SAMPLERS)}")
    if sampler == "ddpm" and steps is not None:
        raise ConfigError(f"the ddpm sampler runs all T={schedule.num_steps} steps; the number "
                          "of steps applies to ddim, so drop it or use the ddim sampler")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    x_T = torch.randn(shape, generator=generator, device=generator.device).to(device)
    if sampler == "ddpm":
        return ddpm_sample(denoise, schedule, x_T, generator, clip_x0=config.clip_x0)
    return ddim_sample(denoise, schedule, x_T, steps or config.sample_steps,
                       spacing=config.spacing, eta=config.eta, clip_x0=config.clip_x0,
                       generator=generator)


def _randint(high: int, n: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """``n`` integers uniform in [0, high), drawn on the generator's device (or ``device``)."""
    where = generator.device if generator is not None else device
    return torch.randint(0, high, (n,), generator=generator, device=where).to(device)


def _randn(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    where = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=where, dtype=like.dtype).to(like.device)
