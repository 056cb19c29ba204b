"""disentkit: unsupervised disentangled representation learning on one modern PyTorch code base."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_run", "train"]

# The public functions live in disentkit.api, which imports torch. They are resolved on first use
# (PEP 562) so that ``import disentkit`` -- and with it ``disentkit --help`` -- stays fast.
_LAZY = {"load_run": "disentkit.api", "train": "disentkit.api"}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from disentkit.api import load_run, train


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'disentkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
