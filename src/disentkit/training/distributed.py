"""Process-rank and process-group helpers that work with or without an initialised group."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

# The rank of this process in the last run it trained, kept for after the run has closed its
# process group (the launcher's environment alone does not give the global rank).
_remembered_rank: int | None = None


def remember_rank(rank: int) -> None:
    global _remembered_rank
    _remembered_rank = int(rank)


def process_group_ready() -> bool:
    return dist.is_available() and dist.is_initialized()


def global_rank() -> int:
    if process_group_ready():
        return dist.get_rank()
    if _remembered_rank is not None:
        return _remembered_rank
    for var in ("RANK", "SLURM_PROCID"):
        if var in os.environ and "WORLD_SIZE" in os.environ:
            return int(os.environ[var])
    return 0


def is_global_zero() -> bool:
    return global_rank() == 0


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Stack one tensor from every rank (plain collective: no autograd graph, unlike Fabric's
    ``all_gather``, whose autograd path is deprecated in torch)."""
    rows = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(rows, tensor)
    return torch.stack(rows)


def close_process_group(wait_for_peers: bool) -> None:
    """Tear down the process group on this rank, before the interpreter exits.

    Leaving gloo's threads to die at interpreter exit aborts a rank now and then ("terminate called
    without an active exception"), which launchers report as a failed job."""
    if not process_group_ready():
        return
    if wait_for_peers:
        dist.barrier()
    dist.destroy_process_group()
