"""Atomic checkpoints: write to a temporary file in the same directory, then rename.

A run killed at any moment therefore always leaves either the previous or the new checkpoint,
never a truncated one. Loading uses ``weights_only=True`` (no pickled code is executed).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def _write_atomic(path: Path, mode: str, write: Callable[[IO[Any]], None]) -> None:
    """Write through ``write`` into a temporary file beside ``path``, fsync, then rename; the
    temporary file is removed if anything fails, so ``path`` is always old or complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_atomic(state: dict[str, Any], path: Path) -> None:
    _write_atomic(path, "wb", lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}; a run directory keeps its checkpoints in checkpoints/"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt or foreign file
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err


def write_text_atomic(path: Path, text: str) -> None:
    _write_atomic(path, "w", lambda handle: handle.write(text))
