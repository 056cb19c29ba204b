"""The NaN watch: the first step whose loss was not finite, recorded on the device.

Reading a loss on the host (``.item()``, ``float()``, ``if loss:``) makes the host wait for the
device: one such read per step keeps a GPU idle between steps. :class:`FiniteWatch` instead keeps,
on the device, the step number and the logged terms of the first micro-batch whose loss was NaN or
infinite; the training loop reads it (one host sync) only where it must know: before a checkpoint
is written, at log steps and at the end. Since every checkpoint write is preceded by a read, a
checkpoint is still written only when every loss computed up to then was finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: ``(name, numel, is_vector)`` of each tensor term of a step's losses, the loss first (its
#: record's layout)
Layout = tuple[tuple[str, int, bool], ...]

#: stands for "no bad step" in the cross-process minimum
_NONE = 2**62


@dataclass
class NonFiniteStep:
    """What the watch found: the step, the loss there and the names of its non-finite terms."""

    step: int
    loss: float
    bad_terms: list[str]


class _Record:
    """The first bad step of one layout of terms (models may log different terms on some steps)."""

    def __init__(self, values: torch.Tensor) -> None:
        self.first_step = torch.full((), -1, dtype=torch.int64, device=values.device)
        self.first_values = torch.zeros_like(values)

    def observe(self, step: int, values: torch.Tensor) -> None:
        # values[0] is the loss; only the loss decides, as the synchronous check did
        new = torch.logical_and(~torch.isfinite(values[0]), self.first_step < 0)
        self.first_step = torch.where(new, step, self.first_step)
        self.first_values = torch.where(new, values, self.first_values)


class FiniteWatch:
    """Records, without a host sync, the first step whose loss was not finite."""

    def __init__(self) -> None:
        self._records: dict[Layout, _Record] = {}

    def observe(self, step: int, losses: dict[str, object]) -> None:
        """Note the loss terms of one micro-batch of step ``step`` (device work only)."""
        terms = [("loss", losses["loss"])]
        terms += [(k, v) for k, v in losses.items() if isinstance(v, torch.Tensor) and k != "loss"]
        layout: Layout = tuple((k, v.numel(), v.ndim > 0) for k, v in terms)  # type: ignore[union-attr]
        values = torch.cat([v.detach().float().reshape(-1) for _, v in terms])  # type: ignore[union-attr]
        record = self._records.get(layout)
        if record is None:
            record = self._records[layout] = _Record(values)
        record.observe(step, values)

    def first_step_tensor(self) -> torch.Tensor | None:
        """The first bad step over every layout as a device tensor (``_NONE`` when there is
        none), or None before anything was observed; for a cross-process minimum."""
        if not self._records:
            return None
        steps = torch.stack([r.first_step for r in self._records.values()])
        return torch.where(steps < 0, _NONE, steps).min()

    def found(self, first_step: int | None = None) -> NonFiniteStep | None:
        """The first bad step (one host read), or None when every loss so far was finite.
        ``first_step``: the step agreed on by all processes (their minimum), when known."""
        if not self._records:
            return None
        if first_step is None:
            first = self.first_step_tensor()
            assert first is not None
            first_step = int(first)
        if first_step >= _NONE:
            return None
        for layout, record in self._records.items():
            if int(record.first_step) == first_step:
                values = record.first_values.cpu()
                return NonFiniteStep(first_step, float(values[0]), _bad_names(layout, values))
        # another process saw it: this one's terms were finite at that step
        return NonFiniteStep(first_step, float("nan"), [])


def _bad_names(layout: Layout, values: torch.Tensor) -> list[str]:
    """The names of the non-finite values, scalars as ``name`` and vectors as ``name/i``."""
    names: list[str] = []
    offset = 0
    for key, numel, is_vector in layout:
        part = values[offset: offset + numel]
        offset += numel
        bad = (~torch.isfinite(part)).nonzero().reshape(-1).tolist()
        names += [f"{key}/{i}" if is_vector else key for i in bad]
    return names
