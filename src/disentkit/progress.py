"""One-line progress notes, so that no long stage of a command is silent.

``say("eval: encoding 10,000 images")`` writes one line to stderr -- stdout keeps a command's
result (tables, paths) clean for pipes -- flushed at once so that logs (SLURM, ``| tee``) show it
when it happens. Only the first process of a distributed run speaks. Notes are silenced inside
``with quiet():`` and by ``DISENTKIT_QUIET=1``.

This module imports only the standard library: the command line uses it before torch is loaded.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator

_silenced = 0


def _first_process() -> bool:
    # Ask the distributed helpers only when they are loaded already: importing them imports torch.
    dist = sys.modules.get("disentkit.training.distributed")
    if dist is not None:
        return bool(dist.is_global_zero())
    return os.environ.get("RANK", "0") in ("", "0")


def enabled() -> bool:
    """Whether :func:`say` prints now."""
    return (_silenced == 0 and os.environ.get("DISENTKIT_QUIET", "") in ("", "0")
            and _first_process())


def say(message: str) -> None:
    """Print one progress line to stderr (unless silenced)."""
    if enabled():
        print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def quiet(active: bool = True) -> Iterator[None]:
    """Silence :func:`say` inside the block (``active=False``: leave it as it is)."""
    global _silenced
    _silenced += int(active)
    try:
        yield
    finally:
        _silenced -= int(active)


def duration(seconds: float) -> str:
    """``0.4 s``, ``12.3 s``, ``2:05`` (m:ss) or ``1:02:05`` (h:mm:ss)."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    return clock(seconds)


def clock(seconds: float) -> str:
    """``mm:ss`` below an hour, ``h:mm:ss`` from there (an ETA column)."""
    total = max(int(round(seconds)), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


@contextlib.contextmanager
def stage(what: str) -> Iterator[None]:
    """``what ...`` before the block and ``what done in 1.2 s`` after it (not after a failure:
    the error says what happened)."""
    start = time.perf_counter()
    say(f"{what} ...")
    yield
    say(f"{what} done in {duration(time.perf_counter() - start)}")
