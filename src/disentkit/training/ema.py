"""Exponential moving averages of chosen sub-modules (torch's ``AveragedModel``).

Update ``k`` (k = 1, 2, ...) sets ``ema = decay_k * ema + (1 - decay_k) * weights``. Without
warm-up ``decay_k = decay`` and the first update copies the weights. With warm-up (LDM's
``LitEma``, CompVis/latent-diffusion ``ldm/modules/ema.py``, which DisDiff trains with)
``decay_k = min(decay, (1 + k) / (10 + k))`` (2/11, 3/12, ... until it reaches ``decay``) and
the average starts from the weights the EMA was created with, so early averages forget the
initial weights quickly.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def warmup_decay(decay: float, update: int) -> float:
    """``min(decay, (1 + k) / (10 + k))`` for the ``k``-th update (k >= 1)."""
    return min(decay, (1.0 + update) / (10.0 + update))


class EMA:
    """EMA copies of ``model``'s sub-modules named in ``names`` (the whole model when empty)."""

    def __init__(self, model: nn.Module, decay: float, names: list[str] | tuple[str, ...],
                 warmup: bool = False) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.names = list(names) or [""]
        #: updates so far (k of the last update)
        self.updates = 0
        self._now = self.decay
        self.averaged: dict[str, AveragedModel] = {}
        for name in self.names:
            module = model.get_submodule(name) if name else model
            averaged = AveragedModel(module, multi_avg_fn=self._average, use_buffers=True)
            if self.warmup:
                # AveragedModel copies on its first update (n_averaged 0); LitEma averages into
                # the weights it was created with from the first update on
                averaged.n_averaged.fill_(1)
            self.averaged[name] = averaged

    def current_decay(self, update: int) -> float:
        """The decay of update ``update`` (1 for the first)."""
        return warmup_decay(self.decay, update) if self.warmup else self.decay

    @torch.no_grad()
    def _average(self, ema: list[torch.Tensor], current: list[torch.Tensor], _n: Any) -> None:
        decay = self._now
        if torch.is_floating_point(ema[0]) or torch.is_complex(ema[0]):
            torch._foreach_lerp_(ema, current, 1 - decay)
        else:  # integer buffers (batch-norm counters), as torch's own EMA function treats them
            for e, c in zip(ema, current, strict=True):
                e.copy_(e * decay + c * (1 - decay))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        self._now = self.current_decay(self.updates)
        # AveragedModel.update_parameters reads its n_averaged counter on the host (a device
        # sync every step); the host knows that count: the first update without warm-up copies
        first = self.updates == 1 and not self.warmup
        for name, averaged in self.averaged.items():
            _update_average(averaged, model.get_submodule(name) if name else model, first,
                            self._average)

    def state_dict(self) -> dict[str, Any]:
        return {name: avg.state_dict() for name, avg in self.averaged.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, avg in self.averaged.items():
            avg.load_state_dict(state[name])
        first = next(iter(self.averaged.values()))
        # n_averaged counts the updates, plus the starting weights under warm-up
        self.updates = int(first.n_averaged) - (1 if self.warmup else 0)

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """``model`` with the EMA weights in its averaged sub-modules for the ``with`` block; its
        own weights are put back exactly afterwards (for samples drawn during training)."""
        saved = {}
        try:
            for name, avg in self.averaged.items():
                module = model.get_submodule(name) if name else model
                saved[name] = {k: v.detach().clone() for k, v in module.state_dict().items()}
                module.load_state_dict(avg.module.state_dict())
            yield model
        finally:
            for name, weights in saved.items():
                (model.get_submodule(name) if name else model).load_state_dict(weights)

    @staticmethod
    def copy_into(model: nn.Module, state: dict[str, Any]) -> None:
        """Load saved EMA weights into ``model``'s sub-modules (for evaluation)."""
        for name, avg_state in state.items():
            module = model.get_submodule(name) if name else model
            weights = {k[len("module."):]: v for k, v in avg_state.items() if k.startswith("module.")}
            module.load_state_dict(weights)


@torch.no_grad()
def _update_average(averaged: AveragedModel, module: nn.Module, copy: bool, average: Any) -> None:
    """``AveragedModel.update_parameters`` (with ``use_buffers``) for a first update that the
    caller knows about: copy the weights, or average every (device, dtype) group with
    ``average``; then count the update on the device."""
    ema = [t.detach() for t in itertools.chain(averaged.module.parameters(), averaged.module.buffers())]
    current = [t.detach().to(e.device) for e, t in
               zip(ema, itertools.chain(module.parameters(), module.buffers()), strict=True)]
    if copy:
        torch._foreach_copy_(ema, current)
    else:
        groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for e, c in zip(ema, current):
            pair = groups.setdefault((e.device, e.dtype), ([], []))
            pair[0].append(e)
            pair[1].append(c)
        for e_list, c_list in groups.values():
            average(e_list, c_list, averaged.n_averaged)
    averaged.n_averaged += 1
