"""``pdae``: a representation learnt from a frozen pre-trained DDPM (Zhang et al., NeurIPS 2022,
"Unsupervised Representation Learning from Pre-trained Diffusion Probabilistic Models";
``ckczzj/PDAE``).

Three parts (the names are the sub-modules of the model):

* ``base``: the frozen eps-prediction DDPM (a :class:`~disentkit.nn.unet.UNet`), loaded from a
  finished ``ddpm`` run through the multi-stage ``init`` section (``init.modules: [base=unet]``,
  its EMA weights; docs/stages.md). It never trains and is in no optimiser (``frozen_modules``).
* ``encoder``: :class:`~disentkit.nn.diffusion_encoders.PDAEEncoder`, image -> code z
  (``celeba64``: 1,487,104 parameters at 512 dims; ``ffhq128``: 3,914,240).
* ``shift``: :class:`~disentkit.nn.shift_decoder.ShiftDecoder`, which reads the frozen base's
  encoder half (computed once per step and shared with the base's own prediction) and predicts
  the mean shift G(x_t, z, t); its last convolution starts at zero, so G = 0 at initialisation.

Objective (``ckczzj/PDAE diffusion/gaussian_diffusion.py`` ``representation_learning_train_one_batch``):
t ~ U{0..T-1}, n ~ N(0, I), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) n,

    L = mean_{b, c, h, w} [ lambda_t (n - (eps_theta(x_t, t) + c_t G(x_t, E(x_0), t)))^2 ],
    c_t = -sqrt(alpha_t) (1 - abar_{t-1}) / sqrt(1 - abar_t),   lambda_t = SNR_t^0.1 / (1 + SNR_t).

Images are flipped horizontally with probability 1/2 inside :meth:`PDAE.training_losses` (PDAE's
data pipeline does it; here the draw comes from the ``generator`` argument, or the global torch
RNG the engine checkpoints). EMA (``train.ema_decay``, 0.9999 in the paper presets) averages the
encoder and the shift decoder only (``ema_modules``).

Sampling (``ckczzj/PDAE diffusion/ddim.py``): deterministic DDIM on PDAE's S+1 map
(``spacing: pdae``) with ``eps~ = eps - sqrt(1 - abar_t) G``, x0 clipped; inversion runs the same
shifted step towards more noise. :mod:`disentkit.models.diti` subclasses this model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import torch
from torch import Tensor

from disentkit.diffusion.samplers import ddim_invert, ddim_sample
from disentkit.diffusion.schedules import DiscreteSchedule
from disentkit.errors import ConfigError
from disentkit.models.base import DataFacts, Model
from disentkit.models.fdae import NoCodePriorError
from disentkit.nn.diffusion_encoders import PDAEEncoder
from disentkit.nn.shift_decoder import ShiftConfig, ShiftDecoder
from disentkit.nn.unet import UNET_PRESETS, UNet, UNetConfig
from disentkit.ranges import Count, Range
from disentkit.registry import MODELS
from disentkit.training.freezing import freeze_modules

__all__ = ["ENCODER_PRESETS", "PDAE", "PDAEConfig", "slerp"]

#: PDAE's encoders: convolution widths and the convolution the attention block follows
#: (``ckczzj/PDAE model/representation_learning/encoder/celeba64.py`` and ``ffhq.py``)
ENCODER_PRESETS: dict[str, tuple[tuple[int, ...], int]] = {
    "celeba64": ((64, 128, 128, 128), 1),
    "ffhq128": ((64, 128, 256, 256, 256), 2),
}
_DATA_FIELDS = ("in_channels", "out_channels")


@dataclass
class PDAEConfig:
    #: length of the code z (512 in every paper configuration)
    latent_dim: Annotated[Count, "the code length"] = 512
    #: the frozen base UNet: a preset of disentkit.nn.unet.UNET_PRESETS; it and unet_overrides
    #: must equal the upstream ddpm run's (the weights are checked by name and shape)
    unet: str = "tiny_pdae"
    #: UNetConfig fields that replace the preset's
    unet_overrides: dict[str, Any] = field(default_factory=dict)
    #: the base DDPM's noise schedule and T (must be the upstream run's)
    schedule: Literal["linear", "scaled_linear", "cosine"] = "linear"
    num_steps: Annotated[int, Range(ge=2, what="the number of diffusion steps T")] = 1000
    #: the encoder: celeba64 (64 px), ffhq128 (128 px), or custom (encoder_channels)
    encoder: Literal["celeba64", "ffhq128", "custom"] = "celeba64"
    #: custom encoder: the stride-2 convolution widths, and the one the attention block follows
    encoder_channels: list[Count] = field(default_factory=list)
    encoder_attention_after: Annotated[int, Range(ge=0, what="the encoder's attention position")] = 1
    #: GroupNorm groups of the encoder (32 in PDAE)
    encoder_norm_groups: Count = 32
    #: random horizontal flips of the training images (PDAE's augmentation)
    flip: bool = True
    #: the exponent gamma of the weight lambda_t = SNR^gamma / (1 + SNR) (0.1 in PDAE)
    weight_gamma: Annotated[float, Range(ge=0, what="the SNR exponent of the loss weight")] = 0.1
    #: DDIM steps of reports, reconstructions and traversals (inversion and decoding)
    sample_steps: Annotated[Count, "the DDIM steps of reports"] = 20
    #: the DDIM time-step grid (disentkit.diffusion.timesteps): PDAE's S+1 map
    spacing: Literal["pdae", "diti", "ldm"] = "pdae"
    #: clamp the predicted x0 to [-1, 1] in every DDIM step (PDAE)
    clip_x0: bool = True

    def __post_init__(self) -> None:
        # bad UNet or encoder settings fail when the config loads, not when training starts
        self.unet_config(3)
        self.encoder_layout()

    def unet_config(self, channels: int) -> UNetConfig:
        """The base UNet for ``channels``-channel images (ConfigError naming the bad setting)."""
        if self.unet not in UNET_PRESETS:
            raise ConfigError(f"model.unet: unknown UNet preset {self.unet!r:.60}; expected one of "
                              f"{', '.join(sorted(UNET_PRESETS))}")
        fields = {f.name for f in dataclasses.fields(UNetConfig)} - set(_DATA_FIELDS)
        for key in self.unet_overrides:
            if key not in fields:
                raise ConfigError(f"model.unet_overrides: unknown or data-given UNet setting "
                                  f"{str(key)[:60]!r}; expected some of {', '.join(sorted(fields))}")
        return UNetConfig.preset(self.unet, **dict(self.unet_overrides), in_channels=channels,
                                 out_channels=channels)

    def encoder_layout(self) -> tuple[tuple[int, ...], int]:
        """(convolution widths, attention position) of the encoder."""
        if self.encoder == "custom":
            if not self.encoder_channels:
                raise ConfigError("model.encoder = custom needs model.encoder_channels (e.g. [32, 64, 64]); "
                                  "or choose encoder celeba64 / ffhq128")
            return tuple(int(c) for c in self.encoder_channels), int(self.encoder_attention_after)
        if self.encoder_channels:
            raise ConfigError(f"model.encoder_channels applies to encoder = custom, not {self.encoder}; "
                              "drop it or set model.encoder=custom")
        return ENCODER_PRESETS[self.encoder]


def slerp(a: Tensor, b: Tensor, alpha: float) -> Tensor:
    """Spherical interpolation per sample (DDIM noise maps; Song et al. 2021, Sec. 5.3):
    ``sin((1-a) th)/sin(th) a + sin(a th)/sin(th) b`` with th the angle between the flattened
    samples (a linear interpolation where they are parallel)."""
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-12)
    theta = torch.arccos(cos.clamp(-1.0, 1.0))
    small = theta.abs() < 1e-6
    sin = torch.sin(theta).where(~small, torch.ones_like(theta))
    wa = torch.where(small, 1.0 - alpha, torch.sin((1.0 - alpha) * theta) / sin)
    wb = torch.where(small, torch.full_like(theta, alpha), torch.sin(alpha * theta) / sin)
    shape = (-1,) + (1,) * (a.dim() - 1)
    return (wa.reshape(shape) * a.double() + wb.reshape(shape) * b.double()).to(a.dtype)


Denoiser = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


@MODELS.register("pdae")
class PDAE(Model):
    """PDAE: frozen ``base`` DDPM, trainable ``encoder`` and ``shift`` decoder.

    Public API. Images are in the model's range [-1, 1] going in and coming out (shape (B, C, H,
    W)), as for every diffusion model of disentkit and as metrics and viz call ``encode``:
    :func:`disentkit.pixels.for_model` / :func:`~disentkit.pixels.for_display` convert from and
    to [0, 1]. Codes are (B, latent_dim); noise maps x_T live in the base DDPM's space; ``steps``
    are DDIM steps (default ``config.sample_steps``). Every method but ``encode`` runs without
    autograd, and all are deterministic (DDIM with eta 0; ``decode`` without ``x_T`` draws one
    noise map from a generator seeded ``seed``):

    * ``encode(x) -> z`` (B, latent_dim): the representation.
    * ``invert(x, steps=None, z=None) -> x_T``: DDIM inversion with the shift of ``z``
      (default: ``encode(x)``).
    * ``decode(z, x_T=None, steps=None, mask=None, seed=0) -> x``: shifted DDIM from ``x_T``;
      ``mask`` ((B, latent_dim) or (latent_dim,), bool or float) multiplies z in every step (DiTi
      adds its time-step masks on top). Without ``x_T`` every code of the batch starts from the
      same N(0, I) map (so a traversal changes only the code): ``decode(z)`` is what traversals
      call.
    * ``reconstruct(x, steps=None) -> x``: invert, then decode with the same code.
    * ``interpolate(x_a, x_b, alphas, steps=None) -> (len(alphas), B, C, H, W)``: codes lerped,
      inverted noises slerped.
    * ``counterfactual(x_a, x_b, blocks, alphas, steps=None) -> (len(blocks), len(alphas), B, C, H,
      W)``: both images inverted; for each ``(start, width)`` in ``blocks`` (units: entries of
      :meth:`block_layout`) the code of ``x_a`` has those blocks lerped towards ``x_b``'s,
      ``z' = z_a - z_a K + lerp(z_a K, z_b K, alpha)``, the noise is ``slerp(x_T_a, x_T_b, alpha)``,
      and the image is regenerated by :meth:`decode` (DiTi: masked guided DDIM). Alpha 0 is the
      reconstruction of ``x_a``.
    * ``block_layout() -> list[(start, width)]``: PDAE's code has no partition, every dimension
      is its own block; DiTi returns its time-step blocks.
    * ``shift_output(x_t, t, z) -> (eps, G)``: the frozen prediction and the shift.
    * ``sample`` refuses (one line): the model has no prior over its codes.
    """

    Config = PDAEConfig
    input_range: ClassVar[str] = "pm1"
    frozen_modules: ClassVar[tuple[str, ...]] = ("base",)
    #: a random base would make the shift decoder fill the gaps of noise: refuse a run without one
    upstream_modules: ClassVar[tuple[str, ...]] = ("base",)
    #: the sampler decode runs (listed so that sample grids ask ``sample``, which refuses)
    samplers: ClassVar[tuple[str, ...]] = ("ddim",)
    #: no prior over the codes: ``sample`` refuses, and so does ``log.images_every`` before training
    has_code_prior: ClassVar[bool] = False
    ema_modules: ClassVar[tuple[str, ...]] = ("encoder", "shift")

    def __init__(self, config: PDAEConfig, data: DataFacts | tuple[int, int, int]) -> None:
        super().__init__(config, data)
        channels, height, width = self.image_shape
        if height != width:
            raise ConfigError(f"{type(self).__name__.lower()} needs square images, got {height}x{width}; "
                              "set data.image_size")
        unet_config = config.unet_config(channels)
        unet_config.check_image_size(height, width)
        widths, attention_after = config.encoder_layout()
        self.encoder = PDAEEncoder(height, config.latent_dim, widths, attention_after, in_channels=channels,
                                   norm_groups=config.encoder_norm_groups)
        self.base = UNet(unet_config)
        self.shift = ShiftDecoder(unet_config, ShiftConfig(code_dim=config.latent_dim))
        # frozen here too, so a model built by hand (tests, notebooks) never trains its base
        freeze_modules(self, ["base"])
        with torch.device("cpu"):  # float64 CPU tables, also when the net is built on "meta"
            self.schedule = DiscreteSchedule.named(config.schedule, config.num_steps)

    # ---- networks ----------------------------------------------------------------------------
    def shift_output(self, x_t: Tensor, t: Tensor, z: Tensor | Sequence[Tensor]) -> tuple[Tensor, Any]:
        """``(eps_theta(x_t, t), G(x_t, z, t))``; the base runs once without autograd and its encoder
        half feeds the shift decoder. ``z`` may be a list of codes: then G is a list (one decoder
        pass each, sharing the base's pass)."""
        with torch.no_grad():
            h, skips, emb = self.base.encode(x_t, t)
            eps = self.base.decode(h, skips, emb)
        if isinstance(z, Tensor):
            return eps, self.shift(h, skips, emb, z)
        return eps, [self.shift(h, skips, emb, code) for code in z]

    def shift_codes(self, z: Tensor, t: Tensor) -> list[Tensor]:
        """The codes the shift decoder is trained with at times ``t``, one loss term each
        (PDAE: z itself; DiTi masks it)."""
        del t
        return [z]

    # ---- training ----------------------------------------------------------------------------
    def training_losses(self, batch: Tensor, step: int,
                        generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The PDAE loss (module docstring) on a batch in [-1, 1]; flips, t and the noise come
        from ``generator`` (or the global torch RNG) in that order."""
        del step
        x0 = self._flip(batch, generator) if self.config.flip else batch
        t = _randint(self.schedule.num_steps, x0.shape[0], x0.device, generator)
        noise = _randn(x0, generator)
        x_t = self.schedule.q_sample(x0, t, noise)
        z = self.encoder(x0)
        eps, shifts = self.shift_output(x_t, t, self.shift_codes(z, t))
        coef = self.schedule.broadcast(self.schedule.pdae_shift_coef(t), x0)
        weight = self.schedule.pdae_weight(t, self.config.weight_gamma).to(x0.device, torch.float32)
        terms = [(weight * ((noise - (eps + coef * g)).float() ** 2).mean(dim=(1, 2, 3))).mean()
                 for g in shifts]
        out = {"loss": torch.stack(terms).sum()}
        if len(terms) > 1:
            out.update({f"loss_{i}": term.detach() for i, term in enumerate(terms)})
        return out

    @staticmethod
    def _flip(x: Tensor, generator: torch.Generator | None) -> Tensor:
        where = generator.device if generator is not None else x.device
        flip = torch.rand(x.shape[0], generator=generator, device=where).to(x.device) < 0.5
        return torch.where(flip.reshape(-1, 1, 1, 1), x.flip(-1), x)

    # ---- representation ----------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """The code z (B, latent_dim) of images in [-1, 1]."""
        return self.encoder(x)

    def block_layout(self) -> list[tuple[int, int]]:
        """(start, width) of each block of the code: PDAE's dimensions are blocks of one."""
        return [(d, 1) for d in range(self.config.latent_dim)]

    def code_mask(self, start: int, width: int) -> Tensor:
        """(latent_dim,) float mask of the code dimensions of ``width`` blocks from block ``start``."""
        layout = self.block_layout()
        if not (0 <= start and width >= 1 and start + width <= len(layout)):
            raise ConfigError(f"code blocks ({start}, {width}) do not fit this code of {len(layout)} "
                              f"blocks; give (start, width) with start + width <= {len(layout)}")
        begin, end = layout[start][0], layout[start + width - 1][0] + layout[start + width - 1][1]
        mask = torch.zeros(self.config.latent_dim)
        mask[begin:end] = 1.0
        return mask

    # ---- sampling ----------------------------------------------------------------------------
    def denoiser(self, z: Tensor, mask: Tensor | None = None) -> Denoiser:
        """``(x_t, t) -> (eps, G)`` for the samplers, with the code ``z`` (times ``mask``)."""
        code = z if mask is None else z * mask.to(z)

        def run(x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
            return self.shift_output(x_t, t, code)

        return run

    def _steps(self, steps: int | None) -> int:
        return int(steps or self.config.sample_steps)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def invert(self, x: Tensor, steps: int | None = None, z: Tensor | None = None) -> Tensor:
        """Deterministic DDIM inversion of images in [-1, 1] with the shift of ``z``: x_T."""
        z = self.encode(x) if z is None else z
        return ddim_invert(self.denoiser(z), self.schedule, x, self._steps(steps),
                           spacing=self.config.spacing, clip_x0=self.config.clip_x0)

    @torch.no_grad()
    def decode(self, z: Tensor, x_T: Tensor | None = None, steps: int | None = None,
               mask: Tensor | None = None, seed: int = 0) -> Tensor:
        """Shifted DDIM from ``x_T`` (default: one shared N(0, I) map drawn with ``seed``) with
        the code ``z`` (times ``mask``): images in [-1, 1]."""
        return ddim_sample(self.denoiser(z, _as_mask(mask)), self.schedule, self._start(z, x_T, seed),
                           self._steps(steps), spacing=self.config.spacing, clip_x0=self.config.clip_x0)

    def _start(self, z: Tensor, x_T: Tensor | None, seed: int) -> Tensor:
        """``x_T``, or one noise map from a CPU generator seeded ``seed`` for every code."""
        if x_T is not None:
            if x_T.shape != (z.shape[0], *self.image_shape):
                raise ValueError(f"x_T must have shape {(z.shape[0], *self.image_shape)}, "
                                 f"got {tuple(x_T.shape)}")
            return x_T
        noise = torch.randn((1, *self.image_shape), generator=torch.Generator().manual_seed(int(seed)))
        return noise.to(z.device).expand(z.shape[0], -1, -1, -1)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, steps: int | None = None) -> Tensor:
        """Invert, then decode with the same code (PDAE's autoencoding); [-1, 1]."""
        z = self.encode(x)
        return self.decode(z, self.invert(x, steps, z), steps)

    @torch.no_grad()
    def interpolate(self, x_a: Tensor, x_b: Tensor, alphas: Sequence[float],
                    steps: int | None = None) -> Tensor:
        """(len(alphas), B, C, H, W): lerp of the codes, slerp of the inverted noises."""
        z_a, z_b = self.encode(x_a), self.encode(x_b)
        n_a, n_b = self.invert(x_a, steps, z_a), self.invert(x_b, steps, z_b)
        codes = [torch.lerp(z_a, z_b, float(a)) for a in alphas]
        return self._decode_all(codes, [slerp(n_a, n_b, float(a)) for a in alphas], steps)

    @torch.no_grad()
    def counterfactual(self, x_a: Tensor, x_b: Tensor, blocks: Sequence[tuple[int, int]],
                       alphas: Sequence[float], steps: int | None = None,
                       context: str = "a") -> Tensor:
        """(rows, len(alphas), B, C, H, W) (DiTi's ``eval/counterfactual_generation.py``).

        For each segment K the segment is lerped from A's code to B's,
        ``lerp(z_A K, z_B K, alpha)``, with the inverted noises slerped alike. ``context="a"``
        puts it into A's code (``z_A - z_A K + ...``: alpha 0 reconstructs A), ``"b"`` into B's
        (the reference's second row: alpha 1 reconstructs B), ``"both"`` gives the two rows per
        segment, A's first (rows = 2 len(blocks)); otherwise rows = len(blocks).
        """
        if context not in ("a", "b", "both"):
            raise ValueError(f"context must be 'a', 'b' or 'both', got {context!r}")
        z_a, z_b = self.encode(x_a), self.encode(x_b)
        n_a, n_b = self.invert(x_a, steps, z_a), self.invert(x_b, steps, z_b)
        noises = [slerp(n_a, n_b, float(a)) for a in alphas]
        contexts = [z_a, z_b] if context == "both" else [z_a if context == "a" else z_b]
        codes = []
        for start, width in blocks:
            keep = self.code_mask(int(start), int(width)).to(z_a)
            for z in contexts:
                codes += [z - z * keep + torch.lerp(z_a * keep, z_b * keep, float(a)) for a in alphas]
        out = self._decode_all(codes, noises * (len(blocks) * len(contexts)), steps)
        return out.reshape(len(blocks) * len(contexts), len(alphas), *out.shape[1:])

    def _decode_all(self, codes: list[Tensor], noises: list[Tensor], steps: int | None) -> Tensor:
        """Decode the pairs (codes[i], noises[i]) of B images each in one sampler batch:
        (len(codes), B, C, H, W)."""
        out = self.decode(torch.cat(codes), torch.cat(noises), steps)
        return out.reshape(len(codes), -1, *out.shape[1:])

    def sample(self, num: int, generator: torch.Generator | None = None, steps: int | None = None,
               sampler: str | None = None) -> Tensor:
        """Refused in one line: the model learns no prior over its codes."""
        raise NoCodePriorError(
            f"{self.registry_name} cannot draw unconditional samples: it learns no prior over its codes; "
            "decode the codes of real images instead (reconstructions, traversals, counterfactuals)")


def _as_mask(mask: Tensor | None) -> Tensor | None:
    if mask is None:
        return None
    mask = torch.as_tensor(mask)
    return mask.float() if mask.dtype == torch.bool else mask


def _randint(high: int, n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    where = generator.device if generator is not None else device
    return torch.randint(0, high, (n,), generator=generator, device=where).to(device)


def _randn(like: Tensor, generator: torch.Generator | None) -> Tensor:
    where = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=where, dtype=like.dtype).to(like.device)

