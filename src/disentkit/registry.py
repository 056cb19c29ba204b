"""Name -> class/function registries for datasets, models and metrics: one place, no string switches.

Every module inside the packages a registry names is imported on the first look-up, so adding a
model or a dataset means adding one file that decorates its class with ``@MODELS.register("name")``.
User code can register its own entries the same way (and name its module in the run config's
``imports`` list so that training processes import it too).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from typing import Any

from disentkit.errors import UserError


class UnknownEntryError(UserError, LookupError):
    """A name that no module registered; the message lists the known names."""


class Registry:
    """A named table of entries, filled by decorators in the modules of ``packages``."""

    def __init__(self, kind: str, packages: Iterable[str]) -> None:
        self.kind = kind
        self._packages = tuple(packages)
        self._entries: dict[str, Any] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[Any], Any]:
        def decorator(obj: Any) -> Any:
            existing = self._entries.get(name)
            if existing is not None and existing is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice: {existing} and {obj}")
            self._entries[name] = obj
            obj.registry_name = name
            return obj

        return decorator

    def _load_builtins(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for package_name in self._packages:
            package = importlib.import_module(package_name)
            for info in pkgutil.iter_modules(package.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{package_name}.{info.name}")

    def get(self, name: str) -> Any:
        self._load_builtins()
        if name not in self._entries:
            raise UnknownEntryError(
                f"unknown {self.kind} '{name}'; known {self.kind}s: {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load_builtins()
        return name in self._entries


DATASETS = Registry("dataset", ["disentkit.data"])
MODELS = Registry("model", ["disentkit.models"])
METRICS = Registry("metric", ["disentkit.metrics"])
