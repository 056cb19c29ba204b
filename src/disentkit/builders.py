"""Build datasets and models from a run config (the one place that turns names into objects)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from disentkit.config import RunConfig
from disentkit.data.root import resolve_data_root
from disentkit.errors import ConfigError, UserError
from disentkit.models.base import DataFacts
from disentkit.pixels import to_model_input  # noqa: F401  (the pixel conversion lives there)
from disentkit.registry import DATASETS, MODELS


@contextmanager
def _settings_checked(section: str, name: str) -> Iterator[None]:
    """Turn a constructor's refusal of its settings (a ValueError naming fields that do not fit
    together, e.g. ``orientations`` that do not divide 40) into a one-line ConfigError; errors
    that already are user errors (a broken data file) pass unchanged."""
    try:
        yield
    except UserError:
        raise
    except ValueError as err:
        first = (str(err).splitlines() or [repr(err)])[0][:400]
        raise ConfigError(f"{section}.name={name} does not accept these settings: {first}") from err


def build_dataset(config: RunConfig) -> Any:
    cls = DATASETS.get(config.data.name)
    with _settings_checked("data", config.data.name):
        return cls(config.data.params, data_root=resolve_data_root(config.data_root or None))


def image_shape_of(data: Any) -> tuple[int, int, int]:
    """(C, H, W) of the dataset's observations."""
    height, width, channels = data.observation_shape
    return (int(channels), int(height), int(width))


def data_facts_of(data: Any) -> DataFacts:
    """The :class:`~disentkit.models.base.DataFacts` of a dataset object."""
    return DataFacts.of(data)


def build_model(
    config: RunConfig, data: DataFacts | tuple[int, int, int], dataset_size: int | None = None
) -> torch.nn.Module:
    """The run's model, told the facts of its training data (``data``; a bare (C, H, W) shape
    plus ``dataset_size`` is accepted too)."""
    if not isinstance(data, DataFacts):
        data = DataFacts(tuple(data), int(dataset_size or 0))
    cls = MODELS.get(config.model.name)
    with _settings_checked("model", config.model.name):
        return cls(config.model.params, data)
