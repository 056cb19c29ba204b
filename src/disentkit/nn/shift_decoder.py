"""PDAE's trainable shift decoder and DisDiff's per-factor variant, on a frozen ADM UNet.

PDAE (Zhang et al. 2022, "Unsupervised Representation Learning from Pre-trained Diffusion
Probabilistic Models"; ``ckczzj/PDAE model/shift_unet.py``, ``model/module.py``) fills the
posterior-mean gap of a frozen DDPM with a gradient field ``G(x_t, z, t)`` predicted by a second
decoder half: it mirrors the UNet's middle and output blocks, reads the *frozen* encoder half's
skips, starts from the last input block's output (not from the frozen middle block) and ends in a
zero-initialised convolution, so ``G = 0`` at initialisation. Its residual blocks
(:class:`ResBlockShift`) are modulated twice after the second GroupNorm, first by the time
embedding, then by the code embedding ``z_emb = Linear(z)``::

    h = GN(h) (1 + s_t) + b_t;   h = h (1 + s_z) + b_z          (AdaGN UNets)
    h = GN(h + e_t + e_z)                                        (additive UNets)

DisDiff (Yang et al. 2023, "DisDiff: Unsupervised Disentanglement of Diffusion Probabilistic
Models"; ``ThomasMrY/DisDiff ldm/modules/diffusionmodules/openaimodel_shift.py``) splits the code
into N factors and runs the same decoder once per factor ``i`` with the code embedding of ``z_i``
and the time embedding offset by a factor embedding: ``emb_i = emb + Linear(P[i])`` with the
orthogonal ``P = expm(W - W^T)`` of a trainable square ``W`` (``orth_emb``), or a learned table
row (``orth_emb: false``). Its outputs ``G_i`` sum to the field used in the loss.

:class:`ShiftDecoder` is that decoder (both variants, :class:`ShiftConfig`);
:class:`ShiftUNet` pairs it with a frozen :class:`~disentkit.nn.unet.UNet` under the names
``base`` (frozen) and ``shift`` (trainable).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from disentkit.errors import ConfigError
from disentkit.nn.unet import (
    GroupNorm32,
    ResBlock,
    UNet,
    UNetConfig,
    _short,
    _spatial,
    build_middle,
    build_output_blocks,
    zero_module,
)

__all__ = ["ResBlockShift", "ShiftConfig", "ShiftDecoder", "ShiftUNet"]

FactorEmbedding = Literal["none", "orthogonal", "table"]
FACTOR_EMBEDDINGS = ("none", "orthogonal", "table")


@dataclass(frozen=True)
class ShiftConfig:
    """The code side of a shift decoder.

    PDAE / DiTi: ``ShiftConfig(code_dim=512)`` (one pass, no factor embedding).
    DisDiff: ``ShiftConfig(code_dim=192, num_factors=6, factor_embedding="orthogonal")``.
    """

    #: length of the code z given to the decoder (all factors together)
    code_dim: int
    #: the code is split into this many equal consecutive chunks, one decoder pass each
    num_factors: int = 1
    #: per-factor offset of the time embedding: none (PDAE), orthogonal (DisDiff orth_emb), table
    factor_embedding: FactorEmbedding = "none"

    def __post_init__(self) -> None:
        for name in ("code_dim", "num_factors"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"shift decoder {name} must be an integer >= 1, got {_short(value)}")
        if self.code_dim % self.num_factors:
            raise ConfigError(f"shift decoder code_dim={self.code_dim} must split into num_factors="
                              f"{self.num_factors} equal chunks; choose a code_dim divisible by it")
        if self.factor_embedding not in FACTOR_EMBEDDINGS:
            raise ConfigError(f"unknown shift decoder factor_embedding {_short(self.factor_embedding)}; "
                              f"expected one of {', '.join(FACTOR_EMBEDDINGS)}")

    @property
    def factor_dim(self) -> int:
        """Length of one factor's chunk of the code."""
        return self.code_dim // self.num_factors

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ShiftConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in values if k not in known)
        if unknown:
            raise ConfigError(f"unknown shift decoder setting(s) {', '.join(unknown)[:200]}; "
                              f"expected some of {', '.join(sorted(known))}")
        return cls(**dict(values))


class ResBlockShift(ResBlock):
    """A :class:`ResBlock` modulated by the time embedding, then by a code embedding ``cond`` of
    the same width (PDAE ``ResBlockShift``; DisDiff ``ResBlockShift``)."""

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, **kwargs: Any) -> None:
        super().__init__(in_channels, out_channels, emb_channels, **kwargs)
        self.cond_layers = self._modulation(emb_channels, out_channels)

    def _film(self, h: Tensor, emb: Tensor, cond: Tensor | None) -> Tensor:
        h = super()._film(h, emb, cond)
        scale, shift = _spatial(self.cond_layers(_required(cond)), h).chunk(2, dim=1)
        return h * (1 + scale) + shift

    def _offset(self, h: Tensor, emb: Tensor, cond: Tensor | None) -> Tensor:
        return super()._offset(h, emb, cond) + _spatial(self.cond_layers(_required(cond)), h)


def _required(cond: Tensor | None) -> Tensor:
    if cond is None:
        raise ValueError("a shift residual block needs a code embedding")
    return cond


class ShiftDecoder(nn.Module):
    """Trainable decoder half predicting ``G`` from a frozen UNet's ``encode`` output.

    ``forward(h, skips, emb, z) -> G`` (B, in_channels, H, W): the sum of the factor fields;
    ``fields(h, skips, emb, z)`` -> (B, num_factors, in_channels, H, W). ``h, skips, emb`` come
    from :meth:`UNet.encode` of a UNet built from the same :class:`UNetConfig`.
    The factor passes run as one batch of ``num_factors * B``.
    """

    def __init__(self, unet_config: UNetConfig, shift_config: ShiftConfig) -> None:
        super().__init__()
        self.unet_config = unet_config
        self.shift_config = shift_config
        cfg, emb_dim = unet_config, unet_config.time_embed_dim
        # PDAE label_emb = Linear(latent -> 4 base); DisDiff repre_embed = Linear(factor dim -> 4 base)
        self.code_embed = nn.Linear(shift_config.factor_dim, emb_dim)
        self._build_factor_embedding(shift_config, emb_dim)
        self.middle_block = build_middle(cfg, self._res)
        self.output_blocks = build_output_blocks(cfg, self._res)
        # G lives in the space of x_t, so it has the UNet's input channels
        self.out = nn.Sequential(GroupNorm32(cfg.norm_groups, cfg.level_channels(0)), nn.SiLU(),
                                 zero_module(nn.Conv2d(cfg.level_channels(0), cfg.in_channels, 3, padding=1)))

    def _build_factor_embedding(self, sc: ShiftConfig, emb_dim: int) -> None:
        if sc.factor_embedding == "orthogonal":
            # DisDiff: W (E/2 x E/2) ~ N(0, 1); rows of expm(W - W^T) -> Linear(E/2 -> E)
            side = emb_dim // 2
            if sc.num_factors > side:
                raise ConfigError(f"an orthogonal factor embedding has {side} rows (time_embed_dim / 2) "
                                  f"but num_factors={sc.num_factors}; use fewer factors or "
                                  f"factor_embedding=table")
            self.factor_latents = nn.Parameter(torch.randn(side, side))
            self.factor_proj: nn.Linear | None = nn.Linear(side, emb_dim)
        elif sc.factor_embedding == "table":
            # DisDiff without orth_emb: an embedding table of factor-chunk width
            self.factor_latents = nn.Parameter(torch.randn(sc.num_factors, sc.factor_dim))
            self.factor_proj = nn.Linear(sc.factor_dim, emb_dim)
        else:
            self.register_parameter("factor_latents", None)
            self.factor_proj = None

    def _res(self, in_ch: int, out_ch: int, resample: str | None) -> ResBlock:
        cfg = self.unet_config
        return ResBlockShift(in_ch, out_ch, cfg.time_embed_dim, dropout=cfg.dropout, groups=cfg.norm_groups,
                             scale_shift=cfg.scale_shift, resample=resample)

    # ------------------------------------------------------------------ embeddings
    def factor_offsets(self) -> Tensor | None:
        """(num_factors, time_embed_dim) offsets added to the time embedding, or None."""
        if self.factor_proj is None:
            return None
        latents = self.factor_latents
        if self.shift_config.factor_embedding == "orthogonal":
            # float32: matrix_exp has no half-precision kernels and loses orthogonality in them
            skew = (latents - latents.T).float()
            latents = torch.linalg.matrix_exp(skew).to(latents.dtype)
        return self.factor_proj(latents[: self.shift_config.num_factors])

    # ------------------------------------------------------------------ forward
    def fields(self, h: Tensor, skips: Sequence[Tensor], emb: Tensor, z: Tensor) -> Tensor:
        """Per-factor fields (B, num_factors, C, H, W)."""
        b, n = h.shape[0], self.shift_config.num_factors
        if z.shape != (b, self.shift_config.code_dim):
            raise ValueError(f"the shift decoder expects codes of shape ({b}, {self.shift_config.code_dim}), "
                             f"got {tuple(z.shape)}")
        # factor-major batch: row f * B + i is sample i's pass for factor f
        chunks = z.reshape(b, n, -1).transpose(0, 1).reshape(n * b, -1)
        cond = self.code_embed(chunks)
        offsets = self.factor_offsets()
        if n > 1:
            h = h.repeat(n, 1, 1, 1)
            skips = [s.repeat(n, 1, 1, 1) for s in skips]
            emb = emb.repeat(n, 1)
        if offsets is not None:
            emb = emb + offsets.repeat_interleave(b, dim=0)
        g = self.run(h, skips, emb, cond)
        return g.reshape(n, b, *g.shape[1:]).transpose(0, 1)

    def run(self, h: Tensor, skips: Sequence[Tensor], emb: Tensor, cond: Tensor) -> Tensor:
        """One decoder pass with given (already offset) time embedding and code embedding."""
        if len(skips) != len(self.output_blocks):
            raise ValueError(f"the shift decoder needs {len(self.output_blocks)} skips, got {len(skips)}")
        h = self.middle_block(h, emb, cond)
        for block, skip in zip(self.output_blocks, reversed(skips)):
            h = block(torch.cat([h, skip], dim=1), emb, cond)
        return self.out(h)

    def forward(self, h: Tensor, skips: Sequence[Tensor], emb: Tensor, z: Tensor) -> Tensor:
        return self.fields(h, skips, emb, z).sum(dim=1)


class ShiftUNet(nn.Module):
    """A frozen ``base`` UNet and a trainable ``shift`` decoder on its encoder half.

    ``forward(x, t, z) -> (eps, G)``; ``fields(x, t, z) -> (eps, G_per_factor)``. The base runs
    without autograd while none of its parameters requires a gradient, and stays in eval mode
    (no dropout) when the module is put in training mode, as in PDAE's ``freeze`` and DisDiff's
    ``train`` override.
    """

    def __init__(self, unet_config: UNetConfig, shift_config: ShiftConfig) -> None:
        super().__init__()
        self.base = UNet(unet_config)
        self.shift = ShiftDecoder(unet_config, shift_config)
        self.base.requires_grad_(False)
        self.base.eval()

    def train(self, mode: bool = True) -> ShiftUNet:
        super().train(mode)
        self.base.eval()
        return self

    def _base(self, x: Tensor, t: Tensor | float,
              cond_map: Tensor | None) -> tuple[Tensor, Tensor, list[Tensor], Tensor]:
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.base.parameters())
        with torch.set_grad_enabled(grad):
            h, skips, emb = self.base.encode(x, t, cond_map)
            eps = self.base.decode(h, skips, emb)
        return eps, h, skips, emb

    def fields(self, x: Tensor, t: Tensor | float, z: Tensor,
               cond_map: Tensor | None = None) -> tuple[Tensor, Tensor]:
        eps, h, skips, emb = self._base(x, t, cond_map)
        return eps, self.shift.fields(h, skips, emb, z)

    def forward(self, x: Tensor, t: Tensor | float, z: Tensor,
                cond_map: Tensor | None = None) -> tuple[Tensor, Tensor]:
        eps, fields = self.fields(x, t, z, cond_map)
        return eps, fields.sum(dim=1)
