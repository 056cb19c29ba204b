"""The sub-sequences of time steps a DDIM sampler visits, as each reference code builds them.

A :class:`DDIMGrid` is a list of noise levels ordered from the cleanest (index 0) to the noisiest
(index K). Sampling evaluates the denoiser at levels K, K-1, ..., 1 and lands on K-1, ..., 0;
inversion evaluates it at levels 0, ..., K-1 and lands on 1, ..., K. A level's ``time`` is the
network's time-step input; the end points DiTi adds (abar = 1 after sampling, abar = 0 after
inversion) are only ever landed on and carry time -1.

Spacings (``T`` = schedule steps, ``S`` = requested steps):

* ``pdae``: the sorted set of ``int(linspace(0, T-1, S+1))`` (``ckczzj/PDAE
  diffusion/gaussian_diffusion.py`` ``get_ddim_betas_and_timestep_map``): S steps, sampling ends on
  abar_0 (0.9999 for the linear schedule), inversion starts there; ``ddim10`` = 0, 99, 199, ..., 999.
* ``diti``: ``range(0, T, T // S)`` (``yue-zhongqi/diti model/diffusion/gaussian_diffusion.py``
  ``get_seq`` / ``masked_guided_ddim``): sampling ends on abar = 1 (the clean image), inversion ends
  on abar = 0 (pure noise). When S does not divide T there are ``ceil(T / (T // S))`` steps.
* ``ldm``: latent diffusion's "uniform" spacing ``range(0, T, T // S) + 1`` ("leading" spacing with
  offset 1; ``CompVis/latent-diffusion ldm/modules/diffusionmodules/util.py make_ddim_timesteps``,
  used by DisDiff): the last sampling step lands on abar_0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from disentkit.diffusion.schedules import DiscreteSchedule
from disentkit.errors import ConfigError

SPACINGS = ("pdae", "diti", "ldm")


@dataclass(frozen=True)
class DDIMGrid:
    """Noise levels from clean (index 0) to noisy (index K): network times and their abar."""

    times: Tensor  # long, -1 where the level is an end point never evaluated
    alpha_bars: Tensor  # float64

    def __len__(self) -> int:
        """The number of DDIM steps (levels minus one)."""
        return self.times.numel() - 1


def ddim_grid(schedule: DiscreteSchedule, steps: int, spacing: str = "pdae",
              direction: str = "sample") -> DDIMGrid:
    """The grid ``spacing`` (one of :data:`SPACINGS`) builds for ``steps`` DDIM steps; ``direction``
    ("sample" or "invert") matters for ``diti`` only, whose end point differs between the two."""
    T = schedule.num_steps
    _check(steps, spacing, direction, T)
    if spacing == "pdae":
        # the reference truncates numpy's float linspace; same call, same integers
        times = sorted({int(s) for s in np.linspace(0, T - 1, int(steps) + 1)})
        return _grid(schedule, times)
    skip = T // int(steps)
    if spacing == "ldm":
        # when S does not divide T the reference's last time (T - 1) + 1 = T lies off the
        # schedule (an index error there); it is dropped here
        return _grid(schedule, [0] + [t + 1 for t in range(0, T, skip) if t + 1 < T])
    seq = list(range(0, T, skip))
    if direction == "sample":
        return _grid(schedule, seq, first=1.0)
    return _grid(schedule, seq, last=0.0)


def _grid(schedule: DiscreteSchedule, times: list[int], first: float | None = None,
          last: float | None = None) -> DDIMGrid:
    abar = schedule.alpha_bars[torch.tensor(times, dtype=torch.long)]
    t = torch.tensor(times, dtype=torch.long)
    if first is not None:
        t, abar = torch.cat([t.new_full((1,), -1), t]), torch.cat([abar.new_full((1,), first), abar])
    if last is not None:
        t, abar = torch.cat([t, t.new_full((1,), -1)]), torch.cat([abar, abar.new_full((1,), last)])
    return DDIMGrid(times=t, alpha_bars=abar)


def _check(steps: int, spacing: str, direction: str, T: int) -> None:
    if spacing not in SPACINGS:
        raise ConfigError(f"unknown DDIM spacing {str(spacing)[:60]!r}; expected one of "
                          f"{', '.join(SPACINGS)}")
    if direction not in ("sample", "invert"):
        raise ValueError(f"direction must be 'sample' or 'invert', got {str(direction)[:60]!r}")
    most = T // 2 if spacing == "ldm" else T
    if isinstance(steps, bool) or int(steps) != steps or not 1 <= steps <= most:
        extra = " (the ldm spacing needs T // steps >= 2)" if spacing == "ldm" else ""
        raise ConfigError(f"DDIM steps must be an integer from 1 to {most} for a {T}-step schedule{extra}, "
                          f"got {steps!r}; use fewer steps")
