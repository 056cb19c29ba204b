"""Process-rank helpers that work with or without an initialised process group."""

from __future__ import annotations

import os

import torch.distributed as dist


def global_rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    for var in ("RANK", "SLURM_PROCID"):
        if var in os.environ and "WORLD_SIZE" in os.environ:
            return int(os.environ[var])
    return 0


def is_global_zero() -> bool:
    return global_rank() == 0
