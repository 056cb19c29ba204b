"""The ADM UNet of the diffusion methods (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on
Image Synthesis", Sec. 3; ``openai/guided-diffusion guided_diffusion/unet.py``).

One network, configured by :class:`UNetConfig`, covers every denoiser of the diffusion half:

* PDAE / DiTi's pretrained DDPM (Zhang et al. 2022; ``ckczzj/PDAE model/shift_unet.py``): AdaGN
  time conditioning, residual-block down/up sampling;
* DisDiff's latent-diffusion UNet (Yang et al. 2023; ``ThomasMrY/DisDiff
  ldm/modules/diffusionmodules/openaimodel.py``): 8-head attention at three resolutions;
* FDAE's EDM UNet (Wu et al. 2024; ``wuancong/FDAE edm/unet.py``): additive time embedding,
  channels-per-head attention in the "new" head order, and a *split stem*
  ``conv(in -> stem) -> + condition map -> conv(stem -> base)`` whose first output is not a skip.

The forward pass is split in two so that a trainable shift decoder
(:mod:`disentkit.nn.shift_decoder`) can reuse a frozen network's encoder half::

    h, skips, emb = unet.encode(x, t)      # input blocks; skips[-1] is h
    out = unet.decode(h, skips, emb)       # middle block, output blocks, output head

``unet(x, t) == unet.decode(*unet.encode(x, t))`` exactly; ``decode`` does not consume ``skips``.

Conventions kept from the reference code because they change results: the time embedding is
``cat(cos, sin)`` of ``t * 10000^(-i/half)`` followed by Linear-SiLU-Linear to 4x the base width;
the last convolution of every residual block, the attention output projection and the output
convolution start at zero; GroupNorm is computed in float32; attention uses the legacy head order
(heads split before q/k/v) unless ``legacy_attention=False`` (q/k/v split before heads, FDAE's
flash-attention layout); attention runs through ``torch.nn.functional.scaled_dot_product_attention``
with scale ``1/sqrt(head_dim)`` (the reference's ``1/sqrt(sqrt(d))`` on q and k). Attention places
are given as *downsample factors* (1 = input resolution, 2 = half, ...), as in every reference.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from disentkit.errors import ConfigError

__all__ = [
    "AttentionBlock", "Downsample", "EmbedSequential", "GroupNorm32", "ResBlock", "UNet", "UNetConfig",
    "Upsample", "count_parameters", "timestep_embedding", "zero_module",
]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UNetConfig:
    """Every setting of the ADM UNet; validated on construction (one-line :class:`ConfigError`)."""

    in_channels: int = 3
    out_channels: int = 3
    #: model_channels / base_channel of the references; the time embedding is 4x this wide
    base_channels: int = 64
    #: channel multiplier per level; the image side shrinks by 2 between levels
    channel_mult: tuple[int, ...] = (1, 2, 4, 8)
    #: residual blocks per level in the encoder half (the decoder half has one more per level)
    num_res_blocks: int = 2
    #: downsample factors with self-attention after each residual block (1 = full resolution)
    attention_ds: tuple[int, ...] = ()
    #: attention heads; ignored when head_channels > 0
    num_heads: int = 1
    #: channels per attention head (FDAE: 64); 0 = use num_heads
    head_channels: int = 0
    #: True: heads split before q/k/v (ADM "legacy"); False: q/k/v split first ("new" order)
    legacy_attention: bool = True
    dropout: float = 0.0
    #: GroupNorm groups (32 in every reference; smaller for tiny configurations)
    norm_groups: int = 32
    #: True: AdaGN, GN(h) * (1 + s) + b from the time embedding; False: the embedding is added
    scale_shift: bool = False
    #: down/up sample with residual blocks (avg-pool / nearest inside) instead of plain layers
    resblock_updown: bool = False
    #: when resblock_updown is False: stride-2 / post-upsampling 3x3 convolutions (else pooling only)
    conv_resample: bool = True
    #: > 0: split stem conv(in -> stem_channels) -> + condition map -> conv(-> base) (FDAE: 80)
    stem_channels: int = 0

    def __post_init__(self) -> None:
        # YAML gives lists; the config stays hashable and immutable with tuples
        for name in ("channel_mult", "attention_ds"):
            value = getattr(self, name)
            if isinstance(value, int) or not isinstance(value, Sequence) or isinstance(value, str):
                raise ConfigError(f"unet {name} must be a list of integers, got {_short(value)}")
            object.__setattr__(self, name, tuple(value))
        self._validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def time_embed_dim(self) -> int:
        """Width of the time embedding (4x the base channels in every reference)."""
        return 4 * self.base_channels

    @property
    def num_levels(self) -> int:
        return len(self.channel_mult)

    @property
    def downsample_factor(self) -> int:
        """How much the lowest level is smaller than the input: image sides must divide by it."""
        return 2 ** (self.num_levels - 1)

    def level_channels(self, level: int) -> int:
        return self.base_channels * self.channel_mult[level]

    def heads(self, channels: int) -> int:
        """Attention heads of a block with this many channels."""
        return channels // self.head_channels if self.head_channels > 0 else self.num_heads

    def skip_channels(self) -> list[int]:
        """Channels of the encoder half's outputs, in order (one per input block; the last one is
        the input of the middle block). The decoder half reads them in reverse."""
        chans = [self.level_channels(0)]
        for level in range(self.num_levels):
            chans += [self.level_channels(level)] * self.num_res_blocks
            if level != self.num_levels - 1:
                chans.append(self.level_channels(level))
        return chans

    def check_image_size(self, height: int, width: int | None = None) -> None:
        """ConfigError unless both image sides are positive multiples of :attr:`downsample_factor`."""
        width = height if width is None else width
        f = self.downsample_factor
        if height <= 0 or width <= 0 or height % f or width % f:
            raise ConfigError(f"this UNet ({self.num_levels} levels) needs image sides divisible by {f}, "
                              f"got {height}x{width}; resize the images or use fewer channel_mult levels")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain types only (tuples become lists), e.g. for a run's config file."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> UNetConfig:
        """Build from a mapping (e.g. a YAML section); unknown keys are a ConfigError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in values if k not in known)
        if unknown:
            raise ConfigError(f"unknown unet setting(s) {', '.join(unknown)[:200]}; "
                              f"expected some of {', '.join(sorted(known))}")
        return cls(**dict(values))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> UNetConfig:
        """A reference configuration by name (see :data:`UNET_PRESETS`), optionally modified."""
        if name not in UNET_PRESETS:
            raise ConfigError(f"unknown unet preset {_short(name)}; expected one of "
                              f"{', '.join(sorted(UNET_PRESETS))}")
        return cls(**{**UNET_PRESETS[name], **overrides})

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        for name in ("in_channels", "out_channels", "base_channels", "num_res_blocks", "norm_groups",
                     "num_heads"):
            _require_int(name, getattr(self, name), minimum=1)
        for name in ("legacy_attention", "scale_shift", "resblock_updown", "conv_resample"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"unet {name} must be true or false, got {_short(getattr(self, name))}")
        _require_int("head_channels", self.head_channels, minimum=0)
        _require_int("stem_channels", self.stem_channels, minimum=0)
        if not self.channel_mult:
            raise ConfigError("unet channel_mult must list at least one level, got []")
        for m in self.channel_mult:
            _require_int("channel_mult entries", m, minimum=1)
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ConfigError(f"unet dropout must lie in [0, 1), got {_short(self.dropout)}")
        factors = [2 ** i for i in range(self.num_levels)]
        for ds in self.attention_ds:
            if ds not in factors:
                raise ConfigError(f"unet attention_ds holds downsample factors (1 = full resolution); "
                                  f"{_short(ds)} does not occur in a {self.num_levels}-level UNet, "
                                  f"choose among {', '.join(map(str, factors))}")
        for level in range(self.num_levels):
            ch = self.level_channels(level)
            if ch % self.norm_groups:
                raise ConfigError(f"unet norm_groups={self.norm_groups} does not divide the {ch} channels "
                                  f"of level {level}; choose groups that divide base_channels * "
                                  f"every channel_mult")
        # the middle block always has attention, the other levels where attention_ds says
        attended = {self.num_levels - 1} | {lv for lv, f in enumerate(factors) if f in self.attention_ds}
        for level in sorted(attended):
            self._check_heads(self.level_channels(level))

    def _check_heads(self, channels: int) -> None:
        if self.head_channels > 0 and channels % self.head_channels:
            raise ConfigError(f"unet head_channels={self.head_channels} does not divide an attention "
                              f"block's {channels} channels; choose a divisor or set num_heads instead")
        if self.head_channels == 0 and channels % self.num_heads:
            raise ConfigError(f"unet num_heads={self.num_heads} does not divide an attention block's "
                              f"{channels} channels; choose a divisor")


#: Reference configurations (downsample factors for attention). ``pdae_*`` are the documented
#: assumption for PDAE/DiTi's unpublished base DDPM: Diff-AE's DDPM settings (``phizaz/diffae
#: templates.py``), AdaGN and residual-block resampling as in ``ckczzj/PDAE model/shift_unet.py``.
#: ``tiny_*`` are the CPU test configurations of each method.
UNET_PRESETS: dict[str, dict[str, Any]] = {
    # FDAE train.sh: 64 px, 192 ch, (1,2,3,4), 3 blocks, attention at 32/16/8 px with 64 ch per head
    # (flash attention = q/k/v split first), dropout 0.1, added time embedding, stem 3 -> 80 -> 192
    "fdae": dict(base_channels=192, channel_mult=(1, 2, 3, 4), num_res_blocks=3, attention_ds=(2, 4, 8),
                 head_channels=64, legacy_attention=False, dropout=0.1, scale_shift=False,
                 resblock_updown=True, stem_channels=80),
    # DisDiff {ds}-vq-4-16.yaml: 16x16x3 latents, 64 ch, (1,2,4,4), attention at 16/8/4 px, 8 heads
    "disdiff_ldm": dict(base_channels=64, channel_mult=(1, 2, 4, 4), num_res_blocks=2,
                        attention_ds=(1, 2, 4), num_heads=8, scale_shift=True, resblock_updown=True),
    # Diff-AE CelebA64 DDPM: 64 ch, (1,2,4,8), 2 blocks, attention at 16 px, 1 head, dropout 0.1
    "pdae_celeba64": dict(base_channels=64, channel_mult=(1, 2, 4, 8), num_res_blocks=2, attention_ds=(4,),
                          num_heads=1, dropout=0.1, scale_shift=True, resblock_updown=True),
    # Diff-AE FFHQ128 DDPM: 128 ch, (1,1,2,3,4), attention at 16 px
    "pdae_ffhq128": dict(base_channels=128, channel_mult=(1, 1, 2, 3, 4), num_res_blocks=2,
                         attention_ds=(8,), num_heads=1, dropout=0.1, scale_shift=True,
                         resblock_updown=True),
    "tiny_pdae": dict(base_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_ds=(2,),
                      num_heads=1, norm_groups=8, scale_shift=True, resblock_updown=True),
    "tiny_disdiff": dict(base_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_ds=(2,),
                         num_heads=4, norm_groups=8, scale_shift=True, resblock_updown=True),
    "tiny_fdae": dict(base_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_ds=(2,),
                      head_channels=32, legacy_attention=False, dropout=0.1, norm_groups=8,
                      scale_shift=False, resblock_updown=True, stem_channels=16),
}


def _short(value: Any) -> str:
    """A bounded repr for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _require_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"unet {name} must be an integer >= {minimum}, got {_short(value)}")


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------
def zero_module(module: nn.Module) -> nn.Module:
    """Set every parameter of ``module`` to zero (ADM's zero-initialised output layers)."""
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (works on the meta device)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype (ADM's ``GroupNorm32``): half-precision
    statistics over large groups lose too much."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding (B,) -> (B, dim): ``cat(cos(t f), sin(t f))`` with frequencies
    ``f_i = max_period^(-i/half)``, zero-padded for odd ``dim`` (ADM / PDAE ``timestep_embedding``).
    ``t`` may be fractional (FDAE feeds ``250 ln sigma``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def _resampler(kind: str | None) -> nn.Module:
    """Parameter-free 2x resampling inside residual blocks: nearest up, average-pool down."""
    if kind == "up":
        return nn.Upsample(scale_factor=2, mode="nearest")
    if kind == "down":
        return nn.AvgPool2d(kernel_size=2, stride=2)
    return nn.Identity()


class Upsample(nn.Module):
    """Nearest 2x upsampling, optionally followed by a 3x3 convolution."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Downsample(nn.Module):
    """2x downsampling: a stride-2 3x3 convolution, or average pooling."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """ADM residual block with time conditioning and optional 2x resampling.

    ``GN -> SiLU -> [resample] -> conv3x3``, then the time embedding enters either as an addition
    before the second GroupNorm or as AdaGN ``GN(h) (1 + s) + b``, then ``SiLU -> dropout ->
    conv3x3`` (zero-initialised); the skip path is resampled too and uses a 1x1 convolution when
    the width changes. Subclasses add a second (code) modulation through :meth:`_film` /
    :meth:`_offset` (see :class:`disentkit.nn.shift_decoder.ResBlockShift`).
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, *, dropout: float = 0.0,
                 groups: int = 32, scale_shift: bool = False, resample: str | None = None) -> None:
        super().__init__()
        self.scale_shift = scale_shift
        self.in_norm = GroupNorm32(groups, in_channels)
        self.in_act = nn.SiLU()
        self.h_resample = _resampler(resample)
        self.x_resample = _resampler(resample)
        self.in_conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_layers = self._modulation(emb_channels, out_channels)
        self.out_norm = GroupNorm32(groups, out_channels)
        self.out_rest = nn.Sequential(nn.SiLU(), nn.Dropout(dropout),
                                      zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)))
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def _modulation(self, emb_channels: int, out_channels: int) -> nn.Sequential:
        """SiLU -> Linear to (scale, shift) for AdaGN, or to one offset for the additive form."""
        width = (2 if self.scale_shift else 1) * out_channels
        return nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, width))

    def forward(self, x: Tensor, emb: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.in_conv(self.h_resample(self.in_act(self.in_norm(x))))
        if self.scale_shift:
            h = self._film(self.out_norm(h), emb, cond)
        else:
            h = self.out_norm(h + self._offset(h, emb, cond))
        return self.skip(self.x_resample(x)) + self.out_rest(h)

    def _film(self, h: Tensor, emb: Tensor, cond: Tensor | None) -> Tensor:
        scale, shift = _spatial(self.emb_layers(emb), h).chunk(2, dim=1)
        return h * (1 + scale) + shift

    def _offset(self, h: Tensor, emb: Tensor, cond: Tensor | None) -> Tensor:
        return _spatial(self.emb_layers(emb), h)


def _spatial(vec: Tensor, like: Tensor) -> Tensor:
    """(B, C) -> (B, C, 1, 1) in the dtype of ``like`` (embeddings are float32)."""
    return vec[:, :, None, None].to(like.dtype)


class AttentionBlock(nn.Module):
    """Self-attention over all positions, residual: ``x + proj(attn(qkv(GN(x))))`` (ADM
    ``AttentionBlock``; ``proj`` starts at zero). ``legacy_order`` picks how the 3C qkv channels
    are read: per head (q, k, v) blocks, or q, k and v blocks each split into heads."""

    def __init__(self, channels: int, num_heads: int, *, groups: int = 32, legacy_order: bool = True) -> None:
        super().__init__()
        if channels % num_heads:
            raise ConfigError(f"attention with {num_heads} heads needs channels divisible by it, "
                              f"got {channels}")
        self.num_heads = num_heads
        self.legacy_order = legacy_order
        self.norm = GroupNorm32(groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        flat = x.reshape(b, c, -1)
        q, k, v = self._split(self.qkv(self.norm(flat)))
        a = F.scaled_dot_product_attention(q, k, v)            # (B, heads, T, d)
        a = a.transpose(-1, -2).reshape(b, c, -1)               # heads-major channels, as ADM
        return (flat + self.proj_out(a)).reshape(x.shape)

    def _split(self, qkv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, 3C, T) -> q, k, v each (B, heads, T, d)."""
        b, width, length = qkv.shape
        d = width // (3 * self.num_heads)
        if self.legacy_order:
            q, k, v = qkv.reshape(b, self.num_heads, 3 * d, length).chunk(3, dim=2)
        else:
            q, k, v = qkv.reshape(b, 3, self.num_heads, d, length).unbind(dim=1)
        # contiguous (B, heads, T, d): strided inputs send CPU SDPA to its unfused "math" path
        return tuple(part.transpose(-1, -2).contiguous() for part in (q, k, v))  # type: ignore[return-value]


class EmbedSequential(nn.Sequential):
    """A sequence whose residual blocks also receive the time embedding (and a code embedding)."""

    def forward(self, x: Tensor, emb: Tensor, cond: Tensor | None = None) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb, cond) if isinstance(layer, ResBlock) else layer(x)
        return x


#: builds a residual block: (in_channels, out_channels, resample) -> block
ResBlockFactory = Callable[[int, int, "str | None"], ResBlock]


def attention(config: UNetConfig, channels: int) -> AttentionBlock:
    """The attention block the config puts at a level with this many channels."""
    return AttentionBlock(channels, config.heads(channels), groups=config.norm_groups,
                          legacy_order=config.legacy_attention)


def build_middle(config: UNetConfig, make_res: ResBlockFactory) -> EmbedSequential:
    """ResBlock, attention, ResBlock at the lowest level."""
    ch = config.level_channels(config.num_levels - 1)
    return EmbedSequential(make_res(ch, ch, None), attention(config, ch), make_res(ch, ch, None))


def build_output_blocks(config: UNetConfig, make_res: ResBlockFactory) -> nn.ModuleList:
    """The decoder half: per level (deepest first) ``num_res_blocks + 1`` blocks, each reading the
    concatenation of the running features and one encoder skip, then an upsampler at the end of
    every level but the top one."""
    skips = config.skip_channels()
    ch = skips[-1]
    ds = config.downsample_factor
    blocks = nn.ModuleList()
    for level in reversed(range(config.num_levels)):
        out_ch = config.level_channels(level)
        for i in range(config.num_res_blocks + 1):
            layers: list[nn.Module] = [make_res(ch + skips.pop(), out_ch, None)]
            ch = out_ch
            if ds in config.attention_ds:
                layers.append(attention(config, ch))
            if level and i == config.num_res_blocks:
                layers.append(make_res(ch, ch, "up") if config.resblock_updown
                              else Upsample(ch, config.conv_resample))
                ds //= 2
            blocks.append(EmbedSequential(*layers))
    return blocks


# --------------------------------------------------------------------------------------------
# The UNet
# --------------------------------------------------------------------------------------------
class UNet(nn.Module):
    """ADM UNet ``(x (B, C, H, W), t (B,)) -> (B, out_channels, H, W)``; see the module docstring.

    ``cond_map`` (split stem only) is added after the first stem convolution, shape
    ``(B, stem_channels, H, W)``; ``None`` adds nothing.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        emb_dim = cfg.time_embed_dim
        self.time_embed = nn.Sequential(nn.Linear(cfg.base_channels, emb_dim), nn.SiLU(),
                                        nn.Linear(emb_dim, emb_dim))
        ch = cfg.level_channels(0)
        if cfg.stem_channels:
            self.stem_in: nn.Module | None = nn.Conv2d(cfg.in_channels, cfg.stem_channels, 3, padding=1)
            first = nn.Conv2d(cfg.stem_channels, ch, 3, padding=1)
        else:
            self.stem_in = None
            first = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)
        self.input_blocks = nn.ModuleList([EmbedSequential(first)])
        ds = 1
        for level in range(cfg.num_levels):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [self._res(ch, cfg.level_channels(level), None)]
                ch = cfg.level_channels(level)
                if ds in cfg.attention_ds:
                    layers.append(attention(cfg, ch))
                self.input_blocks.append(EmbedSequential(*layers))
            if level != cfg.num_levels - 1:
                self.input_blocks.append(EmbedSequential(
                    self._res(ch, ch, "down") if cfg.resblock_updown else Downsample(ch, cfg.conv_resample)))
                ds *= 2
        self.middle_block = build_middle(cfg, self._res)
        self.output_blocks = build_output_blocks(cfg, self._res)
        top = cfg.level_channels(0)
        self.out = nn.Sequential(GroupNorm32(cfg.norm_groups, top), nn.SiLU(),
                                 zero_module(nn.Conv2d(top, cfg.out_channels, 3, padding=1)))

    def _res(self, in_ch: int, out_ch: int, resample: str | None) -> ResBlock:
        cfg = self.config
        return ResBlock(in_ch, out_ch, cfg.time_embed_dim, dropout=cfg.dropout, groups=cfg.norm_groups,
                        scale_shift=cfg.scale_shift, resample=resample)

    # ------------------------------------------------------------------ halves
    def embed_time(self, t: Tensor | float, batch: int, device: torch.device) -> Tensor:
        """The time embedding (B, 4 * base) of ``t`` (a (B,) tensor or one value for the batch)."""
        t = torch.as_tensor(t, device=device)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"time steps must have shape ({batch},) or be a scalar, got {tuple(t.shape)}")
        weight = self.time_embed[0].weight
        return self.time_embed(timestep_embedding(t, self.config.base_channels).to(weight.dtype))

    def encode(self, x: Tensor, t: Tensor | float,
               cond_map: Tensor | None = None) -> tuple[Tensor, list[Tensor], Tensor]:
        """The encoder half: ``(h, skips, emb)``; ``skips`` holds every input block's output
        (``skips[-1] is h``), ``emb`` the time embedding."""
        self._check_input(x)
        emb = self.embed_time(t, x.shape[0], x.device)
        h = x
        if self.stem_in is not None:
            h = self.stem_in(h)
            if cond_map is not None:
                h = h + cond_map
        elif cond_map is not None:
            raise ValueError("a condition map needs a split stem (UNetConfig.stem_channels > 0)")
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        return h, skips, emb

    def decode(self, h: Tensor, skips: Sequence[Tensor], emb: Tensor) -> Tensor:
        """The middle block, the decoder half (reading ``skips`` in reverse, not consuming them)
        and the output head."""
        if len(skips) != len(self.output_blocks):
            raise ValueError(f"decode needs {len(self.output_blocks)} skips, got {len(skips)}")
        h = self.middle_block(h, emb)
        for block, skip in zip(self.output_blocks, reversed(skips)):
            h = block(torch.cat([h, skip], dim=1), emb)
        return self.out(h)

    def forward(self, x: Tensor, t: Tensor | float, cond_map: Tensor | None = None) -> Tensor:
        return self.decode(*self.encode(x, t, cond_map))

    def _check_input(self, x: Tensor) -> None:
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ConfigError(f"the UNet expects images of shape (B, {cfg.in_channels}, H, W), got "
                              f"{tuple(x.shape)}; set unet in_channels to the data's channels")
        cfg.check_image_size(x.shape[2], x.shape[3])
