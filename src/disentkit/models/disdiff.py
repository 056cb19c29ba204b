"""``disdiff``: stage 3 of DisDiff (Yang et al. 2023, "DisDiff: Unsupervised Disentanglement of
Diffusion Probabilistic Models", NeurIPS; ``ThomasMrY/DisDiff``), trained on a frozen latent
diffusion model.

Stages 1 and 2 (the autoencoder and the LDM, :mod:`disentkit.models.vqgan`,
:mod:`disentkit.models.ldm`) are separate runs; a DisDiff preset names the LDM preset in its
``init`` section, so ``disentkit train preset=disdiff/smoke`` trains AE -> LDM -> DisDiff in order
(docs/stages.md). This model owns, under the LDM's module names so ``init`` loads them by name:

* ``first_stage`` (frozen): the latent codec, ``encode_latent(x_pm1)`` (unquantised) and
  ``decode_latent(z)`` (decoded *without* quantisation, ``ddpm.py:1059-1110`` of the reference);
  ``latent: pixel`` replaces it by the identity (a pixel-space DisDiff, used by the unit tests);
* ``unet`` (frozen) with the ``scale_factor`` buffer and the LDM noise schedule: eps_theta;
* ``encoder`` (trainable): the size-aware ``Encoder4`` (:class:`DisDiffEncoder`), N factor codes
  of d dimensions read from the clean *image*;
* ``shift`` (trainable): the per-factor shift decoder on the frozen UNet's encoder half
  (:class:`~disentkit.nn.shift_decoder.ShiftDecoder`, factor embedding ``expm(W - W^T)``); the
  N passes run as one batch of N x B.

Training step (``ldm/models/diffusion/ddpm.py:1059-1163`` of the reference)::

    z0 = scale_factor * E_ae(x);  z = Enc(x) (B, N, d);  t ~ U{0..T-1};  x_t = q(z0, t, n)
    pred = eps_theta(x_t, t)                  (frozen, no autograd)
    G_i = shift(x_t, t, z_i, i)               (i = 1..N)
    L_rec = mean | n - (pred + c_t sum_i G_i) |              (c_t: PDAE's shift coefficient)
    c ~ U{0..N-1} per sample
    x0^  = x0(x_t, pred);   x0' = x0(x_t, pred - sqrt(1 - abar_t) G_c)
    z^, z' = Enc_frozen(D_ae(x0^ / s)), Enc_frozen(D_ae(x0' / s))
    a_k = |z^_k - sg z_k| - |z'_k - sg z_k|;   b_k = |z^_k - z'_k|
    w_b = mean (x0^ - sg x0')^2   (latent space: dis_loss_type Z; image space: IM; no gradient)
    L_dis = mean_b w_b gamma (CE(a, c) + CE(b, c));   loss = L_rec + L_dis

The encoder is trained by L_dis as well, through ``G_c``'s code (only the targets in the norms
are detached). ``Enc_frozen`` is the live encoder's current weights, detached and in eval mode
(BatchNorm running statistics), read in place each step with ``torch.func.functional_call``;
the reference makes a ``deepcopy`` of the encoder every step instead, with the same values.
The EMA (``ema_modules``) covers the shift decoder only: the reference's LitEma averages the
decoder side, and evaluation encodes with the raw encoder.

Representation: ``encode(x)`` = the encoder's (B, N * d) code; ``default_protocol = "disdiff"``
(per-factor PCA(1) on the index-ordered codes of the whole ground-truth set, dlib metrics with
``RandomState(0)``; ``code_groups()`` = the N factor chunks). Sampling: the LDM's DDIM (``ldm``
spacing, eta 1, no clipping) with ``eps - sqrt(1 - abar_t) G``; ``decode(z)``, swap grids and
the predicted-x0 strips use deterministic DDIM (eta 0) from one shared ``x_T``, so pictures differ
only by their codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from disentkit.diffusion.samplers import ddim_sample, ddim_step
from disentkit.diffusion.schedules import DiscreteSchedule
from disentkit.diffusion.timesteps import ddim_grid
from disentkit.errors import ConfigError
from disentkit.models.base import DataFacts, Model
from disentkit.nn.diffusion_encoders import DisDiffEncoder
from disentkit.nn.shift_decoder import ShiftConfig, ShiftDecoder
from disentkit.nn.unet import UNET_PRESETS, UNet, UNetConfig
from disentkit.ranges import Count, Range
from disentkit.registry import MODELS

__all__ = ["DisDiff", "DisDiffConfig", "PixelCodec", "parse_factor_spec"]

#: UNet fields the data decides (pixel-space DisDiff only)
_DATA_FIELDS = ("in_channels", "out_channels")


@dataclass
class DisDiffConfig:
    #: where the diffusion runs: ldm (the latents of the frozen stage-1 autoencoder, as DisDiff;
    #: every disdiff preset but pixel_smoke) or pixel (the images themselves; no first stage, for
    #: tests and small experiments). The default is pixel because ldm needs the upstream LDM's
    #: settings below, which no default can know.
    latent: Literal["ldm", "pixel"] = "pixel"
    #: latent ldm: the upstream LDM's model settings (its preset's model section without name),
    #: so this model builds the same first_stage and unet that init loads from the LDM run
    ldm: dict[str, Any] = field(default_factory=dict)
    #: latent pixel: the UNet preset and overrides, schedule and T (ignored for ldm)
    unet: str = "tiny_disdiff"
    unet_overrides: dict[str, Any] = field(default_factory=dict)
    schedule: Literal["linear", "scaled_linear", "cosine"] = "scaled_linear"
    num_steps: Annotated[int, Range(ge=2, what="the number of diffusion steps T")] = 1000
    #: N, the number of factor codes (latent_unit: 6 in every released config)
    num_factors: Annotated[Count, "the number of factors N"] = 6
    #: d, the length of one factor's code (192 / 6 = 32 in every released config)
    factor_dim: Annotated[Count, "the length of one factor code"] = 32
    #: per-factor offset of the time embedding: orthogonal (orth_emb: expm(W - W^T)) or table
    factor_embedding: Literal["orthogonal", "table"] = "orthogonal"
    #: channels of Encoder4's convolutions (128 in the reference)
    encoder_channels: Annotated[Count, "the encoder's channels"] = 128
    #: gamma, the weight of L_dis (dis_weight; see docs/disdiff.md for the reference CLI's -dw)
    dis_weight: Annotated[float, Range(ge=0, what="the disentangling loss weight")] = 0.05
    #: where w_b = mean (x0^ - x0')^2 is measured: Z (latent space) or IM (image space)
    dis_loss_type: Literal["Z", "IM"] = "Z"
    #: the sampler of `disentkit sample` and reports: DDIM on latent diffusion's grid (only)
    sampler: Literal["ddim"] = "ddim"
    #: DDIM steps of samples, decodes, swaps and reports (the reference logs with 200)
    sample_steps: Annotated[Count, "the DDIM sampling steps"] = 200
    #: DDIM eta of sample(): 1 as the reference's log_images (decode and swaps use 0)
    eta: Annotated[float, Range(ge=0, le=1, what="the DDIM eta")] = 1.0

    def __post_init__(self) -> None:
        if self.latent == "pixel":
            self.pixel_unet_config(3)
        elif self.latent == "ldm" and not self.ldm:
            raise ConfigError("model.ldm: a latent DisDiff needs the upstream LDM's model settings "
                              "(its preset's model section); copy them, or set model.latent=pixel")

    @property
    def latent_dim(self) -> int:
        return self.num_factors * self.factor_dim

    def pixel_unet_config(self, channels: int) -> UNetConfig:
        """The UNet of a pixel-space DisDiff for images with ``channels`` channels."""
        if self.unet not in UNET_PRESETS:
            raise ConfigError(f"model.unet: unknown UNet preset {self.unet!r:.60}; expected one of "
                              f"{', '.join(sorted(UNET_PRESETS))}")
        bad = [k for k in self.unet_overrides if k in _DATA_FIELDS]
        if bad:
            raise ConfigError(f"model.unet_overrides.{bad[0]}: the image channels come from the data; "
                              "drop this override")
        try:
            return UNetConfig.preset(self.unet, **self.unet_overrides, in_channels=channels,
                                     out_channels=channels)
        except TypeError as err:
            raise ConfigError(f"model.unet_overrides: {str(err)[:200]}") from None


class PixelCodec(nn.Module):
    """The identity "first stage": diffusion on the images (``latent: pixel``), with the
    interface of :class:`~disentkit.nn.ldm_autoencoder.LatentAutoencoder`."""

    def encode_latent(self, x: Tensor, sample: bool = False,
                      generator: torch.Generator | None = None) -> Tensor:
        del sample, generator
        return x

    def decode_latent(self, z: Tensor, quantize: bool = True) -> Tensor:
        del quantize
        return z


def parse_factor_spec(spec: str | None, num_factors: int) -> list[int]:
    """The factors a swap spec names: None or "" = all, else comma-separated indices ("0,2")."""
    if not spec:
        return list(range(num_factors))
    out = []
    for part in str(spec).split(","):
        part = part.strip()
        if not part.isdigit() or int(part) >= num_factors:
            raise ConfigError(f"--swap: expected factor indices 0..{num_factors - 1} separated by commas "
                              f"(e.g. 0,2), got {str(spec)[:40]!r}")
        out.append(int(part))
    return list(dict.fromkeys(out))


@MODELS.register("disdiff")
class DisDiff(Model):
    """DisDiff stage 3 on a frozen (latent) diffusion model; see the module docstring."""

    Config = DisDiffConfig
    input_range: ClassVar[str] = "pm1"
    frozen_modules: ClassVar[tuple[str, ...]] = ("first_stage", "unet")
    ema_modules: ClassVar[tuple[str, ...]] = ("shift",)
    default_protocol: ClassVar[str] = "disdiff"
    samplers: ClassVar[tuple[str, ...]] = ("ddim",)

    def __init__(self, config: DisDiffConfig, data: DataFacts | tuple[int, int, int]) -> None:
        super().__init__(config, data)
        channels, height, width = self.image_shape
        if height != width:
            raise ConfigError(f"DisDiff's encoder needs square images, got {height}x{width}")
        if config.latent == "ldm":
            self._adopt_ldm(config)
        else:
            unet_config = config.pixel_unet_config(channels)
            unet_config.check_image_size(height, width)
            self.first_stage = PixelCodec()
            self.unet = UNet(unet_config)
            self.register_buffer("scale_factor", torch.tensor(1.0))
            with torch.device("cpu"):
                self.schedule = DiscreteSchedule.named(config.schedule, config.num_steps)
        self.encoder = DisDiffEncoder(height, config.latent_dim, channels, config.encoder_channels)
        self.shift = ShiftDecoder(self.unet.config, ShiftConfig(
            code_dim=config.latent_dim, num_factors=config.num_factors,
            factor_embedding=config.factor_embedding))

    def _adopt_ldm(self, config: DisDiffConfig) -> None:
        """Build the upstream LDM from ``config.ldm`` and take its codec, UNet, scale and schedule."""
        from disentkit.config import from_dict

        ldm_cls = MODELS.get("ldm")
        ldm = ldm_cls(from_dict(ldm_cls.Config, dict(config.ldm), "model.ldm"), self.data_facts)
        self.first_stage = ldm.first_stage
        self.unet = ldm.unet
        self.register_buffer("scale_factor", ldm.scale_factor.detach().clone())
        self.schedule = ldm.schedule
        self.latent_shape = tuple(ldm.latent_shape)
        # a KL first stage trains on posterior draws (the reference's get_first_stage_encoding)
        self._posterior_draw = not ldm.config.first_stage.quantize

    # ---- shapes and the codec ---------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def code_groups(self) -> list[list[int]]:
        """The N factor chunks of d consecutive code dimensions."""
        d = self.config.factor_dim
        return [list(range(k * d, (k + 1) * d)) for k in range(self.config.num_factors)]

    def to_latent(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Images in [-1, 1] -> scaled diffusion latents, unquantised (a KL first stage: a
        posterior draw); no autograd, the first stage is frozen."""
        with torch.no_grad():
            draw = bool(getattr(self, "_posterior_draw", False))
            return self.first_stage.encode_latent(x, sample=draw, generator=generator) * self.scale_factor

    def from_latent(self, z: Tensor, quantize: bool = True) -> Tensor:
        """Scaled latents -> images in [-1, 1], differentiable (the decoder's weights are frozen).
        L_dis decodes without quantisation (the reference), pictures through the quantiser."""
        return self.first_stage.decode_latent(z / self.scale_factor, quantize=quantize)

    def _latent_shape(self) -> tuple[int, ...]:
        if self.config.latent == "pixel":
            return tuple(self.image_shape)
        return self.latent_shape

    # ---- the networks -----------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """The (B, N * d) code of images in [-1, 1] (the raw, non-EMA encoder, as the reference's
        ``test_step``)."""
        return self.encoder(x)

    def _frozen_encode(self, x: Tensor) -> Tensor:
        """The encoder's current weights, detached, in eval mode: gradients reach ``x`` only."""
        weights = {k: v.detach() for k, v in self.encoder.named_parameters()}
        weights.update({k: v for k, v in self.encoder.named_buffers()})
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            return functional_call(self.encoder, weights, (x,))
        finally:
            self.encoder.train(was_training)

    def _frozen_unet(self, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, list[Tensor], Tensor]:
        with torch.no_grad():
            h, skips, emb = self.unet.encode(x_t, t)
            pred = self.unet.decode(h, skips, emb)
        return pred, h, skips, emb

    def fields(self, x_t: Tensor, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(eps_theta, G)`` with ``G`` the per-factor fields (B, N, C, H, W), one batched pass."""
        pred, h, skips, emb = self._frozen_unet(x_t, t)
        return pred, self.shift.fields(h, skips, emb, z)

    # ---- training ---------------------------------------------------------------------------
    def training_losses(self, batch: Tensor, step: int,
                        generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """L_rec + L_dis on a batch of images in [-1, 1]; see the module docstring. ``t``, the
        noise and the factors ``c`` come from ``generator`` when given, else from the global
        torch RNG (which the engine checkpoints)."""
        del step
        terms = self.loss_terms(batch, generator)
        return {"loss": terms["rec"] + terms["dis"], "rec": terms["rec"].detach(),
                "dis": terms["dis"].detach(), "dis_w": terms["weight"].mean()}

    def loss_terms(self, batch: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The undetached terms: ``rec`` (L_rec), ``dis`` (L_dis), ``weight`` (w_b, no gradient),
        ``c`` (the factor drawn per sample)."""
        cfg, sched = self.config, self.schedule
        b, n = batch.shape[0], cfg.num_factors
        z0 = self.to_latent(batch, generator)
        code = self.encoder(batch)
        t = _randint(sched.num_steps, b, batch.device, generator)
        noise = _randn(z0, generator)
        x_t = sched.q_sample(z0, t, noise)
        pred, g = self.fields(x_t, t, code)
        coef = sched.broadcast(sched.pdae_shift_coef(t), x_t)
        rec = (noise - (pred + coef * g.sum(dim=1))).abs().mean()
        c = _randint(n, b, batch.device, generator)
        dis, weight = self._dis_loss(x_t, t, pred, g[torch.arange(b, device=g.device), c], code, c)
        return {"rec": rec, "dis": dis, "weight": weight, "c": c}

    def _dis_loss(self, x_t: Tensor, t: Tensor, pred: Tensor, g_c: Tensor, code: Tensor,
                  c: Tensor) -> tuple[Tensor, Tensor]:
        """``(L_dis, w)``: DisDiff's disentangling loss and its per-sample weights (no gradient)."""
        cfg, sched = self.config, self.schedule
        b, n = x_t.shape[0], cfg.num_factors
        sigma = sched.broadcast(sched.sigma(t), x_t)
        # the x0^ branch carries no gradient: decoded and encoded without autograd, so the
        # backward runs through the first-stage decoder and the encoder for x0' alone
        with torch.no_grad():
            x0_hat = sched.predict_x0(x_t, t, pred)
            image_hat = self.from_latent(x0_hat, quantize=False)
            z_hat = self._frozen_encode(image_hat).reshape(b, n, -1)
        x0_new = sched.predict_x0(x_t, t, pred - sigma * g_c)
        image_new = self.from_latent(x0_new, quantize=False)
        z_new = self._frozen_encode(image_new).reshape(b, n, -1)
        target = code.detach().reshape(b, n, -1)
        a = (z_hat - target).norm(dim=-1) - (z_new - target).norm(dim=-1)
        bb = (z_hat - z_new).norm(dim=-1)
        ce = F.cross_entropy(a, c, reduction="none") + F.cross_entropy(bb, c, reduction="none")
        with torch.no_grad():
            if cfg.dis_loss_type == "IM":
                diff = image_hat - image_new
            else:
                diff = x0_hat - x0_new
            weight = diff.float().pow(2).flatten(1).mean(dim=1)
        return (weight * cfg.dis_weight * ce).mean(), weight

    # ---- sampling ---------------------------------------------------------------------------
    def _grid(self, steps: int | None):
        return ddim_grid(self.schedule, int(steps or self.config.sample_steps), "ldm", "sample")

    def _noise(self, num: int, generator: torch.Generator | None, shared: bool) -> Tensor:
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        shape = (1 if shared else num, *self._latent_shape())
        x = torch.randn(shape, generator=generator, device=generator.device)
        return x.expand(num, *shape[1:]).contiguous() if shared else x

    def _denoiser(self, code: Tensor | None, factors: list[int] | None = None):
        """``(x, t) -> (eps, G)`` with ``G`` summed over ``factors`` (all when None)."""
        def denoise(x: Tensor, t: Tensor):
            if code is None:
                return self.unet(x, t)
            eps, g = self.fields(x, t, code)
            return eps, (g if factors is None else g[:, factors]).sum(dim=1)
        return denoise

    @torch.no_grad()
    def sample_from(self, code: Tensor | None, x_T: Tensor, steps: int | None = None, *,
                    eta: float = 0.0, factors: list[int] | None = None,
                    generator: torch.Generator | None = None) -> Tensor:
        """Images in [-1, 1] sampled by DDIM from ``x_T`` with the fields of ``code`` (None: the
        frozen LDM alone; ``factors``: only those factors' fields, DisDiff's "partial" sampling)."""
        device = self.scale_factor.device
        z = ddim_sample(self._denoiser(code, factors), self.schedule, x_T.to(device), 0,
                        eta=eta, generator=generator, grid=self._grid(steps))
        return self.from_latent(z)

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None, steps: int | None = None,
               sampler: str | None = None) -> Tensor:
        """``num`` images in [-1, 1] from the frozen LDM (no code: G = 0), DDIM with the config's
        eta on the ``ldm`` grid."""
        if sampler not in (None, "ddim"):
            raise ConfigError(f"disdiff samples with ddim only, got sampler {sampler!r:.40}")
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        x_T = self._noise(int(num), generator, shared=False)
        return self.sample_from(None, x_T, steps, eta=self.config.eta, generator=generator)

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Images in [-1, 1] for codes (B, N * d): deterministic DDIM from one x_T (seed 0)."""
        return self.sample_from(z, self._noise(z.shape[0], None, shared=True))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    # ---- pictures ---------------------------------------------------------------------------
    @torch.no_grad()
    def swap_grids(self, sources01: Tensor, targets01: Tensor, *, spec: str | None = None,
                   partial: bool = False, steps: int | None = None,
                   generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """DisDiff's swapped-concept grids: per factor k, cell (i, j) is target i with its factor-k
        code replaced by source j's (``partial``: sampled with factor k's field alone). Plus the
        predicted-x0 strips of the first target. Images in [0, 1], (rows, cols, C, H, W) each,
        row 0 / column 0 holding the sources / targets (see :mod:`disentkit.viz.swaps`)."""
        from disentkit.viz.swaps import framed

        n, d = self.config.num_factors, self.config.factor_dim
        device = self.scale_factor.device
        src, tgt = sources01.to(device), targets01.to(device)
        z_src = self.encode(src * 2 - 1).reshape(len(src), n, d)
        z_tgt = self.encode(tgt * 2 - 1).reshape(len(tgt), n, d)
        x_T = self._noise(1, generator, shared=True)
        out: dict[str, Tensor] = {}
        for k in parse_factor_spec(spec, n):
            codes = z_tgt[:, None].repeat(1, len(src), 1, 1)  # (targets, sources, N, d)
            codes[:, :, k] = z_src[None, :, k]
            flat = codes.reshape(-1, n * d)
            images = self.sample_from(flat, x_T.expand(len(flat), *x_T.shape[1:]), steps,
                                      factors=[k] if partial else None)
            cells = _to01(images).reshape(len(tgt), len(src), *images.shape[1:])
            name = f"swap_factor{k}" + ("_partial" if partial else "")
            out[name] = framed(src.cpu(), tgt.cpu(), cells.cpu())
        out["x0_strip"] = self.x0_strip(tgt[:1] * 2 - 1, steps, generator=generator)
        return out

    @torch.no_grad()
    def x0_strip(self, x: Tensor, steps: int | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """Predicted x0 along the sampler's steps (columns) with each factor's field alone (rows
        1..N) and with all of them (row 0), for one image ``x`` in [-1, 1]: (N + 1, S, C, H, W)
        in [0, 1] (the reference's "decoded x_start" plots)."""
        code = self.encode(x[:1])
        x_T = self._noise(1, generator, shared=True).to(x.device)
        rows = [self._x0_path(code, x_T, steps, None)]
        rows += [self._x0_path(code, x_T, steps, [k]) for k in range(self.config.num_factors)]
        return torch.stack(rows).cpu()

    def _x0_path(self, code: Tensor, x_T: Tensor, steps: int | None, factors: list[int] | None) -> Tensor:
        grid, denoise, x, shots = self._grid(steps), self._denoiser(code, factors), x_T, []
        for level in range(len(grid), 0, -1):
            abar, abar_next = grid.alpha_bars[level].item(), grid.alpha_bars[level - 1].item()
            t = torch.full((1,), int(grid.times[level]), dtype=torch.long, device=x.device)
            eps, g = denoise(x, t)
            eps = eps - (1 - abar) ** 0.5 * g
            shots.append((x - (1 - abar) ** 0.5 * eps) / abar ** 0.5)
            x = ddim_step(x, eps, abar, abar_next)
        return _to01(self.from_latent(torch.cat(shots)))


def _to01(images: Tensor) -> Tensor:
    return ((images.float() + 1) / 2).clamp(0, 1)


def _randint(high: int, n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    where = generator.device if generator is not None else device
    return torch.randint(0, high, (n,), generator=generator, device=where).to(device)


def _randn(like: Tensor, generator: torch.Generator | None) -> Tensor:
    where = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=where, dtype=like.dtype).to(like.device)
