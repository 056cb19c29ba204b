"""The one pixel-range conversion between stored images, models and pictures.

A model declares the range of the images it takes (``Model.input_range``): ``"01"`` ([0, 1], the
VAE family) or ``"pm1"`` ([-1, 1], the diffusion models; Ho et al. 2020, Sec. 3.3 scale the data
linearly to [-1, 1]). The images a model returns (``decode``, ``reconstruct``, ``sample``) are in
that same range. Everything that feeds images to a model (the training loop, the metrics'
representation function, the visualisations) goes through :func:`to_model_range`; everything that
shows or stores a model's images goes through :func:`from_model_range`. So a ``pm1`` model sees
[-1, 1] in training, in the metrics and in the pictures alike.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "INPUT_RANGES",
    "for_display",
    "for_model",
    "from_model_range",
    "input_range_of",
    "to_model_input",
    "to_model_range",
]

#: the pixel ranges a model can declare
INPUT_RANGES = ("01", "pm1")


def _check(input_range: str) -> str:
    if input_range not in INPUT_RANGES:
        # a model class declares this, not a user: a programming error
        raise ValueError(f"input_range must be one of {', '.join(INPUT_RANGES)}, got {input_range!r:.40}")
    return input_range


def input_range_of(model: Any) -> str:
    """The pixel range ``model`` declares (``"01"`` when it declares none)."""
    return _check(getattr(model, "input_range", "01"))


def to_model_range(images01: torch.Tensor, input_range: str) -> torch.Tensor:
    """[0, 1] images -> the model's range (a new tensor for ``pm1``; ``images01`` is not changed)."""
    if _check(input_range) == "pm1":
        return images01 * 2.0 - 1.0
    return images01


def from_model_range(images: torch.Tensor, input_range: str) -> torch.Tensor:
    """Images in the model's range -> [0, 1], clamped (what a picture can show)."""
    if _check(input_range) == "pm1":
        images = (images + 1.0) / 2.0
    return images.clamp(0.0, 1.0)


def to_model_input(batch_uint8: torch.Tensor, value_max: float, input_range: str) -> torch.Tensor:
    """uint8 NHWC (on the device) -> float NCHW in the model's range: ``x / value_max`` in [0, 1],
    then :func:`to_model_range`. The training loop's conversion."""
    x = batch_uint8.permute(0, 3, 1, 2).float().div_(float(value_max))
    return to_model_range(x, input_range).contiguous()


def for_model(images01: torch.Tensor, model: Any) -> torch.Tensor:
    """[0, 1] images in the range ``model`` takes."""
    return to_model_range(images01, input_range_of(model))


def for_display(images: torch.Tensor, model: Any) -> torch.Tensor:
    """Images ``model`` returned, in [0, 1]."""
    return from_model_range(images, input_range_of(model))
