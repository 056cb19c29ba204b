"""Learning-rate schedules (the ``lr_schedule`` section) as multipliers of each parameter
group's initial rate.

Linear warm-up over ``W = warmup_steps`` steps: step ``s`` (0-based) for ``s < W`` runs at
``lr * (s + 1) / W``, so the first step already moves (at ``lr / W``) and step ``W - 1`` runs at the
full rate; after it the rate is constant, or decays (cosine or linear) from ``lr`` at step ``W``
to ``min_lr_ratio * lr`` at ``total_steps``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from disentkit.config import LRScheduleConfig


def lr_multiplier(schedule: LRScheduleConfig, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_steps``, then constant, cosine or linear decay to
    ``min_lr_ratio`` at ``total_steps``."""
    warmup = max(0, schedule.warmup_steps)
    floor = schedule.min_lr_ratio

    def multiplier(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule.name == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if schedule.name == "cosine":
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - (1.0 - floor) * progress

    return multiplier
