"""Build datasets and models from a run config (the one place that turns names into objects)."""

from __future__ import annotations

from typing import Any

import torch

from disentkit.config import RunConfig
from disentkit.data.root import resolve_data_root
from disentkit.models.base import DataFacts
from disentkit.registry import DATASETS, MODELS


def build_dataset(config: RunConfig) -> Any:
    cls = DATASETS.get(config.data.name)
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
    return cls(config.model.params, data)


def to_model_input(batch_uint8: torch.Tensor, value_max: float, input_range: str) -> torch.Tensor:
    """uint8 NHWC on the device -> float NCHW in [0, 1] (or [-1, 1] for diffusion models)."""
    x = batch_uint8.permute(0, 3, 1, 2).float().div_(float(value_max))
    if input_range == "pm1":
        x = x.mul_(2.0).sub_(1.0)
    return x.contiguous()
