"""Build datasets and models from a run config (the one place that turns names into objects)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from disentkit.config import RunConfig
from disentkit.data.root import resolve_data_root
from disentkit.registry import DATASETS, MODELS


def build_dataset(config: RunConfig) -> Any:
    cls = DATASETS.get(config.data.name)
    return cls(config.data.params, data_root=resolve_data_root(config.data_root or None))


def image_shape_of(data: Any) -> tuple[int, int, int]:
    """(C, H, W) of the dataset's observations."""
    height, width, channels = data.observation_shape
    return (int(channels), int(height), int(width))


def build_model(
    config: RunConfig, image_shape: tuple[int, int, int], dataset_size: int
) -> torch.nn.Module:
    """The run's model for images of ``image_shape`` (C, H, W) from a dataset of ``dataset_size``."""
    cls = MODELS.get(config.model.name)
    params = config.model.params
    # Methods whose estimators need the dataset size (beta-TCVAE's MSS) declare a field for it.
    if dataclasses.is_dataclass(params) and any(
        f.name == "dataset_size" for f in dataclasses.fields(params)
    ):
        if not getattr(params, "dataset_size", 0):
            params = dataclasses.replace(params, dataset_size=dataset_size)
    return cls(params, tuple(image_shape))


def to_model_input(batch_uint8: torch.Tensor, value_max: float, input_range: str) -> torch.Tensor:
    """uint8 NHWC on the device -> float NCHW in [0, 1] (or [-1, 1] for diffusion models)."""
    x = batch_uint8.permute(0, 3, 1, 2).float().div_(float(value_max))
    if input_range == "pm1":
        x = x.mul_(2.0).sub_(1.0)
    return x.contiguous()
