"""Process-rank helpers that work with or without an initialised process group."""

from __future__ import annotations

import os

import torch.distributed as dist

# The rank of this process in the last run it trained, kept for after the run has closed its
# process group (the launcher's environment alone does not give the global rank).
_remembered_rank: int | None = None


def remember_rank(rank: int) -> None:
    global _remembered_rank
    _remembered_rank = int(rank)


def global_rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    if _remembered_rank is not None:
        return _remembered_rank
    for var in ("RANK", "SLURM_PROCID"):
        if var in os.environ and "WORLD_SIZE" in os.environ:
            return int(os.environ[var])
    return 0


def is_global_zero() -> bool:
    return global_rank() == 0
