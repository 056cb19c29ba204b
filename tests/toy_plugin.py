"""A tiny registered dataset and a deterministic model for engine tests (imported through the
run config's ``imports`` list, as user plugins are)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from disentkit.data.base import ArrayGroundTruthData
from disentkit.models.base import DataFacts, Model
from disentkit.registry import DATASETS, MODELS


@dataclass
class ToyBarsConfig:
    size: int = 32
    #: make pixel (0, 0) of image 0 NaN-inducing when true (value 255 on a model that divides)
    positions: int = 8


@DATASETS.register("toy_bars")
class ToyBars(ArrayGroundTruthData):
    """A vertical and a horizontal bar at independent positions: factors (x, y)."""

    Config = ToyBarsConfig

    def __init__(self, config: ToyBarsConfig, data_root: Path | None = None) -> None:
        n, size = config.positions, config.size
        step = size // n
        images = np.zeros((n, n, size, size, 1), dtype=np.uint8)
        for i in range(n):
            images[i, :, :, i * step : i * step + 2, 0] = 255
        for j in range(n):
            images[:, j, j * step : j * step + 2, :, 0] = 255
        super().__init__(images.reshape(n * n, size, size, 1), ["x", "y"], [n, n], name="toy_bars")


@dataclass
class ToyAEConfig:
    latent_dim: int = 2
    #: multiply the loss by this; a huge value makes the loss overflow to inf (NaN-stop test)
    loss_scale: float = 1.0
    #: step at which the loss becomes NaN (-1: never)
    nan_at_step: int = -1


@MODELS.register("toy_ae")
class ToyAE(Model):
    """A deterministic linear autoencoder: its loss is a plain mean over the batch, so DDP over
    two processes equals one process with the doubled batch."""

    Config = ToyAEConfig

    def __init__(self, config: ToyAEConfig, data: DataFacts) -> None:
        super().__init__(config, data)
        c, h, w = self.image_shape
        self.enc = nn.Linear(c * h * w, config.latent_dim)
        self.dec = nn.Linear(config.latent_dim, c * h * w)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.dec(z)).view(-1, *self.image_shape)

    def training_losses(self, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        z = self.encode(batch)
        rec = (torch.sigmoid(self.dec(z)) - batch.flatten(1)).pow(2).sum(1).mean()
        loss = rec * self.config.loss_scale
        if step == self.config.nan_at_step:
            loss = loss * float("nan")
        return {"loss": loss, "reconstruction": rec, "code_norm": z.norm(dim=1).mean()}
