"""Exponential moving averages of chosen sub-modules (torch's ``AveragedModel``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EMA:
    """EMA copies of ``model``'s sub-modules named in ``names`` (the whole model when empty)."""

    def __init__(self, model: nn.Module, decay: float, names: list[str]) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1), got {decay}")
        self.names = list(names) or [""]
        self.averaged: dict[str, AveragedModel] = {}
        for name in self.names:
            module = model.get_submodule(name) if name else model
            self.averaged[name] = AveragedModel(
                module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
            )

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, averaged in self.averaged.items():
            averaged.update_parameters(model.get_submodule(name) if name else model)

    def state_dict(self) -> dict[str, Any]:
        return {name: avg.state_dict() for name, avg in self.averaged.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, avg in self.averaged.items():
            avg.load_state_dict(state[name])

    @staticmethod
    def copy_into(model: nn.Module, state: dict[str, Any]) -> None:
        """Load saved EMA weights into ``model``'s sub-modules (for evaluation)."""
        for name, avg_state in state.items():
            module = model.get_submodule(name) if name else model
            weights = {k[len("module."):]: v for k, v in avg_state.items() if k.startswith("module.")}
            module.load_state_dict(weights)
