"""``fdae``: the Factorized Diffusion Autoencoder (Wu & Zheng, AAAI 2024, "Factorized Diffusion
Autoencoder for Unsupervised Disentangled Representation Learning"; ``wuancong/FDAE``).

Two sub-modules, trained jointly from scratch with one optimiser (RAdam 1e-4 in ``train.sh``), no EMA:

* ``cmfnet``: :class:`~disentkit.nn.cmfnet.CMFNet`, clean image -> N content codes, N mask codes,
  N masks (softmax over the concepts) and the condition map ``C = sum_n M^n f_c^n'``;
* ``unet``: the ADM UNet of ``edm/unet.py`` (:class:`~disentkit.nn.unet.UNet`, preset ``fdae``:
  281,535,299 parameters) whose split stem adds ``C`` after its first convolution.

Objective (``edm/karras_diffusion.py`` ``KarrasDenoiser.training_losses``, ``edm/resample.py``,
``edm/losses.py``; :class:`~disentkit.diffusion.edm.EDM`): ``ln sigma ~ N(-1.2, 1.2^2)``,
``x_sigma = x_0 + sigma n``, ``D = c_skip x_sigma + c_out F(c_in x_sigma, 250 ln sigma; C)`` and

    L = mean_b [ lambda(sigma_b) mean_pixels (D - x_0)^2 ] + 2.5e-5 L_CD + 1e-4 L_ME,
    lambda(sigma) = 1/sigma^2 + 1/sigma_data^2,

with the content-decorrelation and mask-entropy terms in the reference code's scaling
(:func:`content_decorrelation_loss`, :func:`mask_entropy_loss`; ``aux_scaling: paper`` gives the
paper's eqs. instead). The encoder sees the clean image ``x_0``.

The code (``encode``) is the reference's ``feature`` output: the raw content codes followed by
the mask codes, laid out as ``[content_0, ..., content_{N-1}, mask_0, ..., mask_{N-1}]`` (each
content block ``content_dim`` wide, each mask block ``mask_dim`` wide), ``N (d_c + d_m)`` numbers;
``code_groups()`` lists these 2N blocks, which the ``fdae`` evaluation protocol (the default here)
reduces group by group. N = 1 is the paper's DiffAE baseline: the mask is all ones.

Sampling (``edm/karras_diffusion.py`` ``karras_sample``, ``sample_heun``): Karras sigmas (rho 7,
80 -> 0.002), deterministic Heun (40 steps = 79 network evaluations) or Euler, the denoised image
clamped to [-1, 1] at every evaluation, from ``80 n``. The reference recomputes CMFNet from the
conditioning image at every network evaluation; its output does not change during sampling (eval
mode), so the condition map is computed once per image here, with identical results.

Images go in and come out in [-1, 1] (``input_range = "pm1"``), as for every diffusion model:
:func:`disentkit.pixels.for_model` / :func:`~disentkit.pixels.for_display` convert from and to [0, 1].
The model has no prior over its codes, so it draws no unconditional samples (``sample`` says so in
one line); it reconstructs, and decodes given (e.g. swapped) codes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import torch
from torch import Tensor

from disentkit.diffusion.edm import EDM
from disentkit.diffusion.samplers import euler_sample, heun_sample
from disentkit.errors import ConfigError, UserError
from disentkit.models.base import DataFacts, Model
from disentkit.nn.cmfnet import CMFNet, CMFNetConfig
from disentkit.nn.unet import UNET_PRESETS, UNet, UNetConfig
from disentkit.ranges import Count, Positive, Range, Weight
from disentkit.registry import MODELS

__all__ = ["FDAE", "FDAEConfig", "NoCodePriorError", "content_decorrelation_loss", "mask_entropy_loss",
           "SAMPLERS"]

#: the samplers ``decode`` offers
SAMPLERS = ("heun", "euler")
#: UNet fields the data or the CMFNet decide
_DATA_FIELDS = ("in_channels", "out_channels")


class NoCodePriorError(UserError, TypeError):
    """FDAE cannot draw unconditional samples: it has no prior over its codes."""


@dataclass
class FDAEConfig:
    #: the UNet: a preset of disentkit.nn.unet.UNET_PRESETS (fdae, tiny_fdae)
    unet: str = "fdae"
    #: UNetConfig fields that replace the preset's (stem_channels comes from cond_dim)
    unet_overrides: dict[str, Any] = field(default_factory=dict)
    #: N, the number of concepts (1: the DiffAE baseline, a mask of ones)
    num_concepts: Annotated[Count, "the number of concepts N"] = 6
    #: d_c, the width of each raw content code
    content_dim: Annotated[Count, "the content code width"] = 80
    #: d_m, the width of each mask code
    mask_dim: Annotated[Count, "the mask code width"] = 80
    #: d_F, the channels of the condition map (= the UNet's stem_channels)
    cond_dim: Annotated[Count, "the condition map channels"] = 80
    #: the encoder trunk: torchvision ResNet depth 18 (FDAE) or 50
    encoder_depth: Literal[18, 50] = 18
    #: the trunk's four stage widths; empty: torchvision's 64, 128, 256, 512
    encoder_widths: list[Annotated[Count, "a ResNet stage width"]] = field(default_factory=list)
    #: the trunk's blocks per stage; empty: the depth's
    encoder_blocks: list[Annotated[Count, "blocks per ResNet stage"]] = field(default_factory=list)
    #: output channels of the mask decoder's upsampling blocks (the seed is size / 2^len)
    mask_channels: list[Annotated[Count, "a mask decoder width"]] = field(
        default_factory=lambda: [384, 256, 128, 64])
    #: GroupNorm groups of the mask decoder
    mask_norm_groups: Annotated[Count, "the mask decoder's GroupNorm groups"] = 32
    #: weight of the content-decorrelation loss (train.sh --content_decorrelation_weight)
    cd_weight: Weight = 2.5e-5
    #: weight of the mask-entropy loss (train.sh --mask_entropy_weight)
    me_weight: Weight = 1e-4
    #: code: the reference code's L_CD / L_ME (the weights above are tuned for it);
    #: paper: the paper's eqs. (L_CD larger by N^3 (N-1) / (B-1), L_ME smaller by N)
    aux_scaling: Literal["code", "paper"] = "code"
    #: EDM (Karras et al. 2022 Table 1; FDAE's c_noise = 250 ln sigma)
    sigma_min: Positive = 0.002
    sigma_max: Positive = 80.0
    sigma_data: Positive = 0.5
    rho: Positive = 7.0
    p_mean: Annotated[float, Range(what="the mean of ln sigma in training")] = -1.2
    p_std: Positive = 1.2
    c_noise_scale: Positive = 250.0
    #: the sampler of decode / reconstruct / reports: heun (FDAE) or euler
    sampler: Literal["heun", "euler"] = "heun"
    #: Karras sigmas of decode / reconstruct / reports (FDAE: 40, i.e. 79 evaluations with heun)
    sample_steps: Annotated[int, Range(ge=2, what="the sampling steps")] = 40
    #: clamp the denoised image to [-1, 1] at every evaluation (FDAE)
    clip_denoised: bool = True

    def __post_init__(self) -> None:
        # bad settings fail when the config is loaded, not after training starts; sizes below 1
        # are left to the field ranges, whose messages name the field
        sizes = (self.num_concepts, self.content_dim, self.mask_dim, self.cond_dim, self.mask_norm_groups)
        if all(isinstance(v, int) and v >= 1 for v in sizes):
            self.unet_config(3)
            size = 2 ** len(self.mask_channels) if self.mask_channels else 1
            self.cmfnet_config(3, (size, size))
        self.edm()

    def edm(self) -> EDM:
        return EDM(sigma_min=self.sigma_min, sigma_max=self.sigma_max, sigma_data=self.sigma_data,
                   rho=self.rho, p_mean=self.p_mean, p_std=self.p_std, c_noise_scale=self.c_noise_scale)

    def unet_config(self, channels: int) -> UNetConfig:
        """The UNet for images with ``channels`` channels, its stem ``cond_dim`` wide."""
        if self.unet not in UNET_PRESETS:
            raise ConfigError(f"model.unet: unknown UNet preset {self.unet!r:.60}; expected one of "
                              f"{', '.join(sorted(UNET_PRESETS))}")
        fields = {f.name for f in dataclasses.fields(UNetConfig)} - set(_DATA_FIELDS)
        for key in self.unet_overrides:
            if key in _DATA_FIELDS:
                raise ConfigError(f"model.unet_overrides.{key}: the image channels come from the data; "
                                  "drop this override")
            if key == "stem_channels":
                raise ConfigError("model.unet_overrides.stem_channels: FDAE's stem is as wide as the "
                                  "condition map; set model.cond_dim instead")
            if key not in fields:
                raise ConfigError(f"model.unet_overrides: unknown UNet setting {str(key)[:60]!r}; "
                                  f"expected some of {', '.join(sorted(fields))}")
        return UNetConfig.preset(self.unet, **self.unet_overrides, stem_channels=self.cond_dim,
                                 in_channels=channels, out_channels=channels)

    def cmfnet_config(self, channels: int, image_size: tuple[int, int]) -> CMFNetConfig:
        return CMFNetConfig(
            num_concepts=self.num_concepts, content_dim=self.content_dim, mask_dim=self.mask_dim,
            cond_dim=self.cond_dim, image_size=image_size, in_channels=channels,
            depth=self.encoder_depth, widths=tuple(self.encoder_widths), blocks=tuple(self.encoder_blocks),
            mask_channels=tuple(self.mask_channels), mask_norm_groups=self.mask_norm_groups)


# ------------------------------------------------------------------------------------------------
# The auxiliary losses
# ------------------------------------------------------------------------------------------------
def content_decorrelation_loss(content: Tensor, scaling: str = "code") -> Tensor:
    """L_CD of content codes (B, N, d) (``wuancong/FDAE edm/losses.py``).

    Centre each code dimension over the batch, L2-normalise every sample's group vector (z^_n^b),
    and take ``S_nm = sum_b <z^_n^b, z^_m^b>`` (a dimension-aligned sum of cosine similarities):

    * ``code``: the reference divides the normalised vectors by N and averages ``|.|`` over the
      N(N-1) ordered off-diagonal pairs: ``sum_{n != m} |S_nm| / (N^3 (N-1))``;
    * ``paper``: the covariance over the batch summed over the pairs, ``sum_{n != m} |S_nm| / (B-1)``.

    Zero for one concept (there is no pair).
    """
    _check_scaling(scaling)
    b, n, _ = content.shape
    if n < 2:
        return content.new_zeros((), dtype=torch.float32)
    z = content.float()
    z = torch.nn.functional.normalize(z - z.mean(0, keepdim=True), dim=2)
    # elementwise products and a sum, not a matmul: autocast leaves them in float32 in bf16 runs
    gram = (z[:, :, None, :] * z[:, None, :, :]).sum(dim=(0, 3))
    # |S| over the off-diagonal entries, without a data-dependent boolean index (meta, compile)
    off = gram.abs().sum() - gram.diagonal().abs().sum()
    if scaling == "paper":
        return off / max(b - 1, 1)
    return off / (n * (n - 1)) / n ** 2


def mask_entropy_loss(masks: Tensor, scaling: str = "code") -> Tensor:
    """L_ME of masks (B, N, H, W) summing to 1 over N: the mean over the batch and the pixels of
    ``-sum_n p_n log(p_n + 1e-20)`` (``edm/losses.py``); ``paper`` divides it by N."""
    _check_scaling(scaling)
    p = masks.float()
    entropy = -(p * torch.log(p + 1e-20)).sum(1).mean()
    return entropy / masks.shape[1] if scaling == "paper" else entropy


def _check_scaling(scaling: str) -> None:
    if scaling not in ("code", "paper"):
        raise ConfigError(f"FDAE aux_scaling must be 'code' or 'paper', got {str(scaling)[:40]!r}")


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------
@MODELS.register("fdae")
class FDAE(Model):
    """CMFNet + EDM UNet, trained jointly; see the module docstring (codes, layout, sampling)."""

    Config = FDAEConfig
    input_range: ClassVar[str] = "pm1"
    default_protocol: ClassVar[str] = "fdae"
    samplers: ClassVar[tuple[str, ...]] = SAMPLERS

    def __init__(self, config: FDAEConfig, data: DataFacts | tuple[int, int, int]) -> None:
        super().__init__(config, data)
        channels, height, width = self.image_shape
        unet_config = config.unet_config(channels)
        unet_config.check_image_size(height, width)
        self.cmfnet = CMFNet(config.cmfnet_config(channels, (height, width)))
        self.unet = UNet(unet_config)
        self.edm = config.edm()

    # ---- the code ----------------------------------------------------------------------------
    @property
    def num_concepts(self) -> int:
        return int(self.config.num_concepts)

    @property
    def latent_dim(self) -> int:
        cfg = self.config
        return int(cfg.num_concepts * (cfg.content_dim + cfg.mask_dim))

    def code_groups(self) -> list[list[int]]:
        """The 2N blocks of the code: content 0..N-1, then mask 0..N-1."""
        cfg = self.config
        n, dc, dm = cfg.num_concepts, cfg.content_dim, cfg.mask_dim
        content = [list(range(i * dc, (i + 1) * dc)) for i in range(n)]
        masks = [list(range(n * dc + i * dm, n * dc + (i + 1) * dm)) for i in range(n)]
        return content + masks

    def content_and_mask_codes(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Content codes (B, N, d_c) and mask codes (B, N, d_m) of images in [-1, 1]."""
        return self.cmfnet.codes(x)

    def encode(self, x: Tensor) -> Tensor:
        """The code (B, N (d_c + d_m)) of images in [-1, 1]: ``[content_0..content_{N-1},
        mask_0..mask_{N-1}]``."""
        content, masks = self.content_and_mask_codes(x)
        return torch.cat([content.flatten(1), masks.flatten(1)], dim=1)

    def split_codes(self, codes: Tensor) -> tuple[Tensor, Tensor]:
        """A (B, latent_dim) code as content (B, N, d_c) and mask codes (B, N, d_m)."""
        cfg = self.config
        if codes.ndim != 2 or codes.shape[1] != self.latent_dim:
            raise ConfigError(f"an FDAE code has {self.latent_dim} numbers (N={cfg.num_concepts} content "
                              f"codes of {cfg.content_dim}, then {cfg.num_concepts} mask codes of "
                              f"{cfg.mask_dim}), got shape {tuple(codes.shape)}")
        split = cfg.num_concepts * cfg.content_dim
        b = codes.shape[0]
        n = cfg.num_concepts
        return codes[:, :split].reshape(b, n, -1), codes[:, split:].reshape(b, n, -1)

    def masks_from_codes(self, mask_codes: Tensor) -> Tensor:
        """Masks (B, N, H, W) summing to 1 over N, from mask codes (B, N, d_m) or (B, N d_m)."""
        if mask_codes.ndim == 2:
            mask_codes = mask_codes.reshape(mask_codes.shape[0], self.num_concepts, -1)
        return self.cmfnet.masks(mask_codes)

    def condition_map(self, content: Tensor, mask_codes: Tensor) -> Tensor:
        """The condition map (B, d_F, H, W) from content (B, N, d_c) and mask codes (B, N, d_m)."""
        return self.cmfnet.condition_map(content, mask_codes)

    # ---- training ----------------------------------------------------------------------------
    def denoised(self, x: Tensor, sigma: Tensor, cond_map: Tensor | None) -> Tensor:
        """D(x; sigma, C) = c_skip x + c_out F(c_in x, c_noise; C), ``sigma`` of shape (B,)."""
        edm = self.edm
        out = self.unet(edm.network_input(x, sigma), edm.c_noise(sigma), cond_map)
        return edm.denoised(out, x, sigma)

    def training_losses(self, batch: Tensor, step: int,
                        generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The FDAE objective on a batch in [-1, 1] (module docstring). ``sigma`` and then the noise
        are drawn from ``generator`` when given, else from the global torch RNG (checkpointed by
        the engine)."""
        del step
        cfg = self.config
        content, mask_codes = self.cmfnet.codes(batch)
        masks = self.cmfnet.masks(mask_codes)
        cond = self.cmfnet.combine(masks, content)
        sigma = _lognormal(self.edm, batch.shape[0], batch.device, generator)
        noise = _randn(batch, generator)
        x_t = self.edm.add_noise(batch, sigma, noise)
        denoised = self.denoised(x_t, sigma, cond)
        per_sample = ((denoised.float() - batch.float()) ** 2).flatten(1).mean(1)
        rec = (self.edm.loss_weight(sigma.float()) * per_sample).mean()
        cd = content_decorrelation_loss(content, cfg.aux_scaling)
        me = mask_entropy_loss(masks, cfg.aux_scaling)
        loss = rec + cfg.cd_weight * cd + cfg.me_weight * me
        return {"loss": loss, "rec": rec, "cd": cd, "me": me}

    # ---- sampling ----------------------------------------------------------------------------
    def denoiser(self, cond_map: Tensor):
        """``(x, sigma) -> D`` for the EDM samplers, with a fixed condition map."""
        return lambda x, sigma: self.denoised(x, sigma, cond_map)

    @torch.no_grad()
    def decode(self, codes: Tensor, noise: Tensor | None = None, steps: int | None = None,
               generator: torch.Generator | None = None, sampler: str | None = None) -> Tensor:
        """Images in [-1, 1] generated from codes (B, latent_dim) by the EDM sampler (``sampler``,
        default ``config.sampler``; ``steps`` Karras sigmas, default ``config.sample_steps``).

        ``noise`` (B or 1, C, H, W) ~ N(0, I) is the starting point (scaled by sigma_max); when
        None one noise image is drawn from ``generator`` (default: seeded 0) and shared by every
        code, so that codes differing in one block give images differing only through it.
        The condition map is computed once per code.
        """
        cfg = self.config
        sampler = sampler or cfg.sampler
        if sampler not in SAMPLERS:
            raise ConfigError(f"unknown FDAE sampler {sampler!r:.40}; expected one of {', '.join(SAMPLERS)}")
        content, mask_codes = self.split_codes(codes)
        cond = self.condition_map(content, mask_codes)
        noise = self._noise(codes.shape[0], noise, generator, cond)
        run = heun_sample if sampler == "heun" else euler_sample
        return run(self.denoiser(cond), self.edm, noise, int(steps or cfg.sample_steps),
                   clip_denoised=cfg.clip_denoised)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, steps: int | None = None, generator: torch.Generator | None = None,
                    sampler: str | None = None) -> Tensor:
        """``decode(encode(x))`` for images in [-1, 1] (noise as in :meth:`decode`)."""
        return self.decode(self.encode(x), steps=steps, generator=generator, sampler=sampler)

    def sample(self, num: int, generator: torch.Generator | None = None, steps: int | None = None,
               sampler: str | None = None) -> Tensor:
        """FDAE has no prior over its codes: raises :class:`NoCodePriorError` (one line)."""
        raise NoCodePriorError(
            "fdae cannot draw unconditional samples: it learns no prior over its codes; decode the "
            "codes of real images instead (reconstructions, `disentkit swap RUN`, traversals)")

    def swap_grids(self, sources01: Tensor, targets01: Tensor, *, spec: str | None = None,
                   partial: bool = False, steps: int | None = None,
                   generator: torch.Generator | None = None) -> dict[str, Any]:
        """``disentkit swap``'s grids (``--swap c1,2-m0``):
        :func:`disentkit.viz.fdae_views.fdae_swap_grids`."""
        from disentkit.viz.fdae_views import fdae_swap_grids  # pictures live at the run level

        return fdae_swap_grids(self, sources01, targets01, spec=spec, partial=partial, steps=steps,
                               generator=generator)

    def _noise(self, batch: int, noise: Tensor | None, generator: torch.Generator | None,
               like: Tensor) -> Tensor:
        shape = (self.image_shape[0], *like.shape[2:])
        if noise is None:
            generator = generator if generator is not None else torch.Generator().manual_seed(0)
            noise = torch.randn((1, *shape), generator=generator, device=generator.device)
        if noise.ndim != 4 or tuple(noise.shape[1:]) != shape or noise.shape[0] not in (1, batch):
            sizes = ", ".join(map(str, shape))
            raise ConfigError(f"FDAE decode: noise must have shape ({batch} or 1, {sizes}), got "
                              f"{tuple(noise.shape)}")
        return noise.to(device=like.device, dtype=torch.float32).expand(batch, *shape)


def _lognormal(edm: EDM, n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """Training sigmas ``exp(P_mean + P_std z)`` drawn from ``generator`` or the global RNG."""
    if generator is not None:
        return edm.sample_sigma(n, generator, device=device)
    z = torch.randn(n, device=device)
    return torch.exp(edm.p_mean + edm.p_std * z)


def _randn(like: Tensor, generator: torch.Generator | None) -> Tensor:
    where = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=where, dtype=like.dtype).to(like.device)
