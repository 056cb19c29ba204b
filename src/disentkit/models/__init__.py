"""Models: one file per method, each registered in ``disentkit.registry.MODELS``."""

from disentkit.models.base import Model, OptimiserSpec

__all__ = ["Model", "OptimiserSpec"]
