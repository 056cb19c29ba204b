"""The image autoencoder of latent diffusion (Rombach et al. 2022, "High-Resolution Image
Synthesis with Latent Diffusion Models", Sec. 3.1; ``CompVis/latent-diffusion
ldm/modules/diffusionmodules/model.py`` ``Encoder`` / ``Decoder``, ``ldm/models/autoencoder.py``),
DisDiff's first stage (Yang et al. 2023; ``ThomasMrY/DisDiff configs/autoencoder/*_4_16.yaml``).

Encoder: ``conv_in`` 3x3 to ``ch``; per level ``num_res_blocks`` residual blocks (GroupNorm with
eps 1e-6, SiLU, 3x3 convs, 1x1 skip when the width changes; optional self-attention at the
feature-map sides listed in ``attn_resolutions``) and, except at the last level, a stride-2 3x3
convolution after zero padding right and bottom by one; a middle block ``res -> attention -> res``
which is there *whatever* ``attn_resolutions`` says (DisDiff's configs set it empty and still get
this attention, ``model.py`` lines 273-277); GroupNorm, SiLU, ``conv_out`` to ``z_channels``
(twice that for the KL variant: mean and log-variance). The decoder mirrors it with
``num_res_blocks + 1`` blocks per level and nearest-neighbour 2x upsampling followed by a 3x3 conv.

:class:`LatentAutoencoder` puts the pieces together as ``VQModel`` / ``AutoencoderKL`` do:
``encoder -> quant_conv (1x1) -> [quantize | Gaussian posterior] -> post_quant_conv (1x1) ->
decoder``. The latent-diffusion stage reads the *unquantised* latents (``encode_latent``, as the
reference's ``VQModelInterface.encode``) and decodes through the quantiser (``decode_latent``, as
its ``decode`` with ``force_not_quantize=False``). Images are in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from disentkit.errors import ConfigError
from disentkit.nn.vector_quantizer import Quantized, VectorQuantizer
from disentkit.ranges import Count, NonNegInt, Range

__all__ = ["AutoencoderConfig", "Decoder", "Encoder", "LatentAutoencoder"]


@dataclass
class AutoencoderConfig:
    """The architecture of the first-stage autoencoder (defaults: DisDiff's VQ f4 autoencoder,
    ``configs/autoencoder/shapes3d_vq_4_16.yaml``: 64 px -> 16 x 16 x 3, 2048 codes)."""

    #: base channels (``ch``)
    ch: Count = 32
    #: channel multiplier per level; the image side halves between levels
    ch_mult: tuple[Count, ...] = (1, 2, 4)
    num_res_blocks: Count = 2
    #: feature-map sides (pixels) with self-attention after each residual block (the middle
    #: block always has one)
    attn_resolutions: tuple[Count, ...] = ()
    #: channels of the encoder output / decoder input
    z_channels: Count = 3
    #: channels of the latent the diffusion stage sees (the codebook vectors' width)
    embed_dim: Count = 3
    #: True: vector-quantised (VQ-GAN); False: Gaussian posterior (the KL autoencoder)
    quantize: bool = True
    #: codebook entries (quantize only)
    n_embed: Count = 2048
    #: weight of the codebook term of the legacy VQ loss (taming's beta)
    beta: Annotated[float, Range(ge=0, what="the codebook-term weight beta")] = 0.25
    dropout: Annotated[float, Range(ge=0, lt=1, what="the dropout rate")] = 0.0
    #: GroupNorm groups (32 in the reference; fewer for tiny widths)
    norm_groups: NonNegInt = 32

    def __post_init__(self) -> None:
        self.ch_mult = tuple(self.ch_mult)
        self.attn_resolutions = tuple(self.attn_resolutions)
        if not self.ch_mult:
            raise ConfigError("autoencoder ch_mult: give at least one level, e.g. [1, 2, 4]")
        widths = sorted({self.ch * m for m in self.ch_mult})
        bad = [w for w in widths if self.norm_groups < 1 or w % self.norm_groups]
        if bad:
            raise ConfigError(f"autoencoder: norm_groups = {self.norm_groups} must divide every "
                              f"level's width ({', '.join(map(str, widths))}); set norm_groups to "
                              "a divisor of ch")

    @property
    def downsample_factor(self) -> int:
        """How much smaller the latent's sides are than the image's."""
        return 2 ** (len(self.ch_mult) - 1)

    def check_image_size(self, height: int, width: int) -> None:
        """ConfigError unless both image sides divide by :attr:`downsample_factor`."""
        f = self.downsample_factor
        if height % f or width % f:
            raise ConfigError(f"the autoencoder ({len(self.ch_mult)} levels) needs image sides "
                              f"divisible by {f}, got {height}x{width}; use fewer ch_mult levels")


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """``x + conv(drop(SiLU(GN(conv(SiLU(GN(x)))))))``, with a 1x1 skip when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = (nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels
                             else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, 1x1 q/k/v/out convolutions, residual."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = _norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (conv(n).reshape(b, 1, c, h * w).transpose(-1, -2).contiguous()
                   for conv in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(c)) v, as the reference
        return x + self.proj_out(a.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then a stride-2 3x3 convolution (the reference's asymmetric
    padding)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest 2x upsampling and a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: residual blocks, their attention blocks, and the resampler."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()
        self.resample: nn.Module = nn.Identity()

    def forward(self, h: Tensor) -> Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[i](h)
        return self.resample(h)


class _Middle(nn.Module):
    def __init__(self, channels: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups, dropout)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = ResnetBlock(channels, channels, groups, dropout)

    def forward(self, h: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class Encoder(nn.Module):
    """(B, in_channels, H, W) -> (B, out_channels, H / f, W / f)."""

    def __init__(self, config: AutoencoderConfig, in_channels: int, resolution: int,
                 out_channels: int) -> None:
        super().__init__()
        cfg, groups = config, config.norm_groups
        self.conv_in = nn.Conv2d(in_channels, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        widths_in = (1, *cfg.ch_mult)
        side = resolution
        for level, mult in enumerate(cfg.ch_mult):
            stage, width = _Level(), cfg.ch * widths_in[level]
            for _ in range(cfg.num_res_blocks):
                stage.block.append(ResnetBlock(width, cfg.ch * mult, groups, cfg.dropout))
                width = cfg.ch * mult
                if side in cfg.attn_resolutions:
                    stage.attn.append(AttnBlock(width, groups))
            if level != len(cfg.ch_mult) - 1:
                stage.resample = Downsample(width)
                side //= 2
            self.down.append(stage)
        self.mid = _Middle(width, groups, cfg.dropout)
        self.norm_out = _norm(width, groups)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = stage(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    """(B, z_channels, h, w) -> (B, out_channels, h * f, w * f)."""

    def __init__(self, config: AutoencoderConfig, out_channels: int, resolution: int) -> None:
        super().__init__()
        cfg, groups = config, config.norm_groups
        width = cfg.ch * cfg.ch_mult[-1]
        side = resolution // cfg.downsample_factor
        self.conv_in = nn.Conv2d(cfg.z_channels, width, 3, padding=1)
        self.mid = _Middle(width, groups, cfg.dropout)
        levels: list[_Level] = []
        for level in reversed(range(len(cfg.ch_mult))):
            stage = _Level()
            for _ in range(cfg.num_res_blocks + 1):
                stage.block.append(ResnetBlock(width, cfg.ch * cfg.ch_mult[level], groups, cfg.dropout))
                width = cfg.ch * cfg.ch_mult[level]
                if side in cfg.attn_resolutions:
                    stage.attn.append(AttnBlock(width, groups))
            if level != 0:
                stage.resample = Upsample(width)
                side *= 2
            levels.append(stage)
        #: lowest resolution first (the order they run in)
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(width, groups)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for stage in self.up:
            h = stage(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class LatentAutoencoder(nn.Module):
    """The first-stage autoencoder (VQ or KL) on images in [-1, 1].

    Modules: ``encoder``, ``quant_conv``, ``quantizer`` (VQ only), ``post_quant_conv``,
    ``decoder``. :attr:`last_layer` is the decoder's output convolution weight (where the GAN's
    adaptive weight is measured).
    """

    def __init__(self, config: AutoencoderConfig, image_channels: int, resolution: int) -> None:
        super().__init__()
        self.config = cfg = config
        moments = 1 if cfg.quantize else 2  # KL: mean and log-variance (double_z)
        self.encoder = Encoder(cfg, image_channels, resolution, moments * cfg.z_channels)
        self.quant_conv = nn.Conv2d(moments * cfg.z_channels, moments * cfg.embed_dim, 1)
        self.quantizer = VectorQuantizer(cfg.n_embed, cfg.embed_dim, cfg.beta) if cfg.quantize else None
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)
        self.decoder = Decoder(cfg, image_channels, resolution)

    @property
    def latent_channels(self) -> int:
        return int(self.config.embed_dim)

    @property
    def downsample_factor(self) -> int:
        return self.config.downsample_factor

    @property
    def last_layer(self) -> Tensor:
        return self.decoder.conv_out.weight

    # ---- encoding ----------------------------------------------------------------------------
    def moments(self, x: Tensor) -> Tensor:
        """The encoder's output after ``quant_conv``: the unquantised latent (VQ) or the
        posterior's mean and log-variance stacked on the channels (KL)."""
        return self.quant_conv(self.encoder(x))

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """KL only: the Gaussian posterior's (mean, log-variance), the latter clamped to
        [-30, 20] as the reference's ``DiagonalGaussianDistribution``."""
        mean, logvar = self.moments(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode_latent(self, x: Tensor, sample: bool = False,
                      generator: torch.Generator | None = None) -> Tensor:
        """Images in [-1, 1] -> latents, *unquantised* for VQ (the reference's
        ``VQModelInterface.encode``); for KL the posterior mean, or a draw from the posterior
        with ``sample=True`` (the reference's LDM trains on draws)."""
        if self.quantizer is not None:
            return self.moments(x)
        mean, logvar = self.posterior(x)
        if not sample:
            return mean
        where = generator.device if generator is not None else x.device
        noise = torch.randn(mean.shape, generator=generator, device=where, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * noise.to(mean.device)

    def quantize(self, z: Tensor) -> Quantized:
        """VQ only: the quantised latent, the legacy VQ loss, the indices and the perplexity."""
        if self.quantizer is None:
            raise TypeError("a KL autoencoder has no codebook to quantise with")
        return self.quantizer(z)

    # ---- decoding ----------------------------------------------------------------------------
    def decode_latent(self, z: Tensor, quantize: bool = True) -> Tensor:
        """Latents -> images in [-1, 1] (not clamped). A VQ autoencoder quantises first unless
        ``quantize=False`` (DisDiff decodes its predicted x0 without quantisation)."""
        if self.quantizer is not None and quantize:
            z = self.quantizer(z).z_q
        return self.decoder(self.post_quant_conv(z))
