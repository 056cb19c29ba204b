"""Learning-rate schedules as multipliers of each parameter group's initial rate."""

from __future__ import annotations

import math
from collections.abc import Callable

from disentkit.config import ScheduleConfig


def lr_multiplier(schedule: ScheduleConfig, total_steps: int) -> Callable[[int], float]:
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
