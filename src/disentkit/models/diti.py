"""``diti``: PDAE whose code is partitioned over diffusion time steps (Yue et al., ICLR 2024,
"Exploring Diffusion Time-steps for Unsupervised Representation Learning"; ``yue-zhongqi/diti``).

The encoder, the frozen base and the shift decoder are PDAE's (:mod:`disentkit.models.pdae`). The
code of ``latent_dim`` dimensions is split into ``num_blocks`` (k) consecutive blocks; time step t
belongs to block ``idx(t) = int(t / (T / k))`` and the shift decoder at time t sees the blocks
``0 .. idx(t)`` only (``trainer/diti_trainer.py``):

* **Partition** (``get_mask_end_dim``): block i belongs to the first stage whose bound exceeds the
  block's first time step; a stage's ``d`` dimensions are shared by its ``n`` blocks, ``int(d / n)``
  each, counted from the stage's cumulative start, and its last block ends at the stage's
  cumulative end (it takes the remainder). Two quirks of the reference code, kept here: the last
  block of a stage is wider, and a stage in which no block starts gives its dimensions to the
  first block of the next stage (k = 8 with stages 50, 100, 300, 500, 1000 and dims 2, 3, 15, 8, 4
  gives widths 2, 10, 8, 8, 1, 1, 1, 1). The paper's k = 64 with dims 10, 25, 327, 100, 50
  gives 0-2: 2, 3: 4, 4-5: 8, 6: 9, 7-18: 25, 19: 27, 20-30: 8, 31: 12, 32-62: 1, 63: 19.
  Without stages (the ``balanced`` configs) every block has ``latent_dim / k`` dimensions.
* **Modes** (``model/diffusion/gaussian_diffusion.py``): ``base`` gives the decoder
  ``z * mask[idx(t)]`` (mask = dims ``[0, end_idx)``); ``stop_grad`` gives
  ``sg(z) * receding[idx] + z * k_mask[idx]`` (earlier blocks detached, only block idx(t) learns at
  t); ``dual`` sums the two losses (two decoder passes on one base pass).
* DiTi's zero-weight SSL branch (``ssl_weight: 0``, yet computed every step in the reference) is
  not run: it cannot change the parameters.

Sampling: DiTi's ``masked_guided_ddim`` (``spacing: diti``: ``range(0, T, T // S)``, sampling ends
on abar = 1 and inversion on abar = 0), z masked by the block of each step's time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

import torch
from torch import Tensor

from disentkit.diffusion.samplers import ddim_sample
from disentkit.errors import ConfigError
from disentkit.models.base import DataFacts
from disentkit.models.pdae import PDAE, Denoiser, PDAEConfig, _as_mask
from disentkit.ranges import Count
from disentkit.registry import MODELS

__all__ = ["DiTi", "DiTiConfig", "block_ends", "block_widths", "time_to_block"]

MODES = ("base", "stop_grad", "dual")


def time_to_block(num_steps: int, num_blocks: int) -> list[int]:
    """``idx(t) = int(t / (T / k))`` for t = 0 .. T-1 (the reference's float formula)."""
    return [int(t / (num_steps / num_blocks)) for t in range(num_steps)]


def block_ends(num_steps: int, num_blocks: int, stages: list[int], stage_dims: list[int],
               latent_dim: int) -> list[int]:
    """The end dimension (exclusive) of each block; see the module docstring."""
    if num_blocks > num_steps:
        raise ConfigError(f"model.num_blocks={num_blocks} exceeds the {num_steps} time steps; "
                          "use at most T blocks")
    if not stages:
        if latent_dim % num_blocks:
            raise ConfigError(f"without stages every block has latent_dim / num_blocks dims; "
                              f"{latent_dim} does not divide by {num_blocks}; change one or give stages")
        width = latent_dim // num_blocks
        return [width * (i + 1) for i in range(num_blocks)]
    _check_stages(num_steps, stages, stage_dims, latent_dim)
    index = time_to_block(num_steps, num_blocks)
    first_t = [index.index(i) for i in range(num_blocks)]
    stage_of = [next(s for s, bound in enumerate(stages) if bound > t) for t in first_t]
    ends = []
    for i, stage in enumerate(stage_of):
        members = [b for b, s in enumerate(stage_of) if s == stage]
        start = sum(stage_dims[:stage])
        if i == members[-1]:
            ends.append(start + stage_dims[stage])
        else:
            ends.append(start + (members.index(i) + 1) * (stage_dims[stage] // len(members)))
    if ends[-1] != latent_dim:
        raise ConfigError(f"no block starts in the last stage(s) (stages {stages}): dims {ends[-1]} to "
                          f"{latent_dim} would never be used; lower the last stage's dims or add blocks")
    return ends


def _check_stages(num_steps: int, stages: list[int], dims: list[int], latent_dim: int) -> None:
    if len(stages) != len(dims):
        raise ConfigError(f"model.stages has {len(stages)} bounds but model.stage_dims {len(dims)} sizes; "
                          "give one size per stage")
    if any(b <= a for a, b in zip(stages, stages[1:])) or stages[-1] != num_steps:
        raise ConfigError(f"model.stages must increase and end at T = {num_steps}, got {stages}; "
                          f"e.g. [{num_steps // 20}, {num_steps // 10}, {3 * num_steps // 10}, "
                          f"{num_steps // 2}, {num_steps}]")
    if sum(dims) != latent_dim:
        raise ConfigError(f"model.stage_dims sum to {sum(dims)} but latent_dim is {latent_dim}; "
                          "make them add up")


def block_widths(ends: list[int]) -> list[int]:
    """Block widths from their ends."""
    return [e - s for s, e in zip([0, *ends[:-1]], ends)]


@dataclass
class DiTiConfig(PDAEConfig):
    #: k, the number of time-step blocks of the code (64 in the paper)
    num_blocks: Annotated[Count, "the number of code blocks"] = 64
    #: upper time-step bound of each stage (last = T); empty: equal blocks (``balanced``)
    stages: list[Count] = field(default_factory=lambda: [50, 100, 300, 500, 1000])
    #: code dimensions of each stage (sum = latent_dim)
    stage_dims: list[Count] = field(default_factory=lambda: [10, 25, 327, 100, 50])
    #: base (cumulative mask), stop_grad (earlier blocks detached) or dual (both losses)
    mode: Literal["base", "stop_grad", "dual"] = "base"
    #: DiTi samples on range(0, T, T // S) with its own end points
    spacing: Literal["pdae", "diti", "ldm"] = "diti"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ends()

    def ends(self) -> list[int]:
        """The end dimension of each block."""
        return block_ends(self.num_steps, self.num_blocks, list(self.stages), list(self.stage_dims),
                          self.latent_dim)


@MODELS.register("diti")
class DiTi(PDAE):
    """DiTi: PDAE with the time-step partition of the code (see the module docstring).

    Everything of :class:`~disentkit.models.pdae.PDAE` applies, with:

    * ``block_layout() -> list[(start, width)]``: the k blocks (``counterfactual`` blocks are
      ``(first block, number of blocks)``, as DiTi's evaluation gives them: (2, 4), (16, 8),
      (24, 8), (32, 32)); ``dimension_blocks() -> list[int]``: the block of each dimension;
    * ``decode(z, x_T=None, steps=None, mask=None, seed=0, timestep_masks=True)``: masked guided DDIM, z times
      the cumulative mask of each step's block (and times ``mask`` when given);
      ``timestep_masks=False`` decodes with the whole code, as DiTi's manipulation script does;
    * ``invert`` uses the same masked shift.
    """

    Config = DiTiConfig
    modes: ClassVar[tuple[str, ...]] = MODES

    def __init__(self, config: DiTiConfig, data: DataFacts | tuple[int, int, int]) -> None:
        super().__init__(config, data)
        ends = config.ends()
        starts = [0, *ends[:-1]]
        dims = torch.arange(config.latent_dim)
        end_t, start_t = torch.tensor(ends), torch.tensor(starts)
        # (k, D) masks of block i: cumulative [0, end_i), own [end_{i-1}, end_i), earlier [0, end_{i-1})
        self._cumulative = (dims[None] < end_t[:, None]).float()
        self._own = ((dims[None] >= start_t[:, None]) & (dims[None] < end_t[:, None])).float()
        self._receding = (dims[None] < start_t[:, None]).float()
        self._index = torch.tensor(time_to_block(config.num_steps, config.num_blocks), dtype=torch.long)
        self._layout = [(s, e - s) for s, e in zip(starts, ends)]

    # ---- the partition -----------------------------------------------------------------------
    def block_layout(self) -> list[tuple[int, int]]:
        """(start dimension, width) of each of the k blocks."""
        return list(self._layout)

    def block_times(self) -> list[tuple[int, int]]:
        """[first, last + 1) time steps of each block."""
        index = self._index.tolist()
        return [(index.index(i), len(index) - index[::-1].index(i)) for i in range(len(self._layout))]

    def dimension_blocks(self) -> list[int]:
        """The block (time-step interval) of each code dimension."""
        return [i for i, (_, width) in enumerate(self._layout) for _ in range(width)]

    def block_of(self, t: Tensor) -> Tensor:
        """idx(t) for a (B,) tensor of time steps."""
        return self._index.to(t.device)[t.long()]

    def masks(self, t: Tensor, kind: str = "cumulative") -> Tensor:
        """(B, latent_dim) masks at times ``t``: cumulative, own (block idx(t)) or receding."""
        table = {"cumulative": self._cumulative, "own": self._own, "receding": self._receding}[kind]
        return table.to(t.device)[self.block_of(t)]

    # ---- training ----------------------------------------------------------------------------
    def shift_codes(self, z: Tensor, t: Tensor) -> list[Tensor]:
        """``base``: z times the cumulative mask; ``stop_grad``: earlier blocks detached, block
        idx(t) live; ``dual``: both (two loss terms)."""
        mode = self.config.mode
        codes = []
        if mode in ("base", "dual"):
            codes.append(z * self.masks(t).to(z))
        if mode in ("stop_grad", "dual"):
            codes.append(z.detach() * self.masks(t, "receding").to(z) + z * self.masks(t, "own").to(z))
        return codes

    # ---- sampling ----------------------------------------------------------------------------
    def denoiser(self, z: Tensor, mask: Tensor | None = None, timestep_masks: bool = True) -> Denoiser:
        """``(x_t, t) -> (eps, G)`` with z times the cumulative mask of idx(t) (DiTi's
        ``masked_guided_ddim``), and times ``mask`` when given."""
        code = z if mask is None else z * mask.to(z)
        if not timestep_masks:
            return super().denoiser(code)

        def run(x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
            return self.shift_output(x_t, t, code * self.masks(t).to(code))

        return run

    @torch.no_grad()
    def decode(self, z: Tensor, x_T: Tensor | None = None, steps: int | None = None,
               mask: Tensor | None = None, seed: int = 0, timestep_masks: bool = True) -> Tensor:
        """Masked guided DDIM from ``x_T`` (default: one shared N(0, I) map drawn with ``seed``):
        images in [-1, 1]."""
        denoise = self.denoiser(z, _as_mask(mask), timestep_masks)
        return ddim_sample(denoise, self.schedule, self._start(z, x_T, seed), self._steps(steps),
                           spacing=self.config.spacing, clip_x0=self.config.clip_x0)

    def code_groups(self) -> list[list[int]] | None:
        """The non-empty time-step blocks, as groups of code dimensions."""
        return [list(range(s, s + w)) for s, w in self._layout if w]
