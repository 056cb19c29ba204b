"""Where dataset files live: ``--data-root`` / the run config's ``data_root``, else the
``DISENTKIT_DATA`` environment variable, else ``<user cache>/disentkit/data``."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("DISENTKIT_DATA"):
        return Path(os.environ["DISENTKIT_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "disentkit" / "data"
