"""The model contract every method implements.

A model is an ``nn.Module`` that owns its maths:

* ``training_losses(batch, step) -> dict``: ``batch`` is float NCHW in the model's
  ``input_range`` ([0, 1], or [-1, 1] for diffusion models) on the device, of
  ``batch_multiplier * train.batch_size`` images. The dict holds a scalar ``loss`` (what the
  engine back-propagates once) plus named terms that are logged. Models with several optimisers
  (FactorVAE's discriminator) put every optimiser's objective into ``loss`` and block the
  cross-gradients themselves (detach the inputs one side must not train, evaluate the other side
  with detached parameters), so a single backward pass gives each parameter exactly the gradient
  of its own objective. This is what makes them work unchanged under DDP, which allows one
  backward per forward.
* ``encode(x) -> codes``: the representation used for evaluation (documented per method);
  models that learn none set ``has_representation = False``.
* ``decode``/``reconstruct``/``sample`` where they apply (used by traversals and reports). Images
  go in and come out in the model's ``input_range`` (:mod:`disentkit.pixels` converts).
* ``optimiser_specs(optim)``: which parameters each optimiser steps, with per-group settings.

What a model declares to the engine and to evaluation (class attributes, docs/models.md):

* ``__init__(config, data)``: ``data`` is a :class:`DataFacts` (image shape, dataset size, factor
  sizes), the facts of the training data a model may need; nothing else is filled into the config.
* ``frozen_modules``: sub-modules kept in eval mode and out of every optimiser, their weights never
  change (:mod:`disentkit.training.freezing`);
* ``ema_modules``: the sub-modules ``train.ema_decay`` averages when ``train.ema_modules`` is
  empty (empty: the whole model);
* ``default_protocol`` and ``code_groups()``: how ``disentkit eval`` scores the code when no
  ``--protocol`` / ``eval.protocol`` is given (``dlib``, or the grouped ``fdae`` / ``disdiff``
  over the declared groups of code dimensions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from disentkit.errors import UserError


class NoRepresentationError(UserError, TypeError):
    """The run's model learns no code (a pixel-space DDPM): nothing to evaluate or traverse."""


def require_representation(model: Any) -> None:
    """Raise :class:`NoRepresentationError` (one line) unless ``model`` has a representation."""
    if not getattr(model, "has_representation", True):
        name = getattr(model, "registry_name", type(model).__name__)
        raise NoRepresentationError(
            f"{name} has no representation to evaluate: it learns no code (encode does not "
            f"exist for it); draw images with `disentkit sample RUN_DIR`, or evaluate a method "
            "that learns a representation"
        )


@dataclass(frozen=True)
class DataFacts:
    """What a model is told about its training data (the one value ``Model.__init__`` takes).

    ``image_shape`` is (C, H, W); ``dataset_size`` the number of training images (0: unknown, a
    model built outside the engine); ``factor_sizes`` the ground-truth factor grid (None: the data
    has no factors, or they are unknown, e.g. a run folder written before they were recorded).
    """

    image_shape: tuple[int, int, int]
    dataset_size: int = 0
    factor_sizes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        shape = tuple(int(v) for v in self.image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape must be (C, H, W) of positive sizes, got {self.image_shape!r:.60}")
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "dataset_size", int(self.dataset_size))
        if self.factor_sizes is not None:
            object.__setattr__(self, "factor_sizes", tuple(int(v) for v in self.factor_sizes))

    @classmethod
    def of(cls, data: Any) -> DataFacts:
        """The facts of a dataset object (``observation_shape`` is (H, W, C))."""
        height, width, channels = data.observation_shape
        sizes = getattr(data, "factor_sizes", None)
        return cls((int(channels), int(height), int(width)), len(data),
                   tuple(sizes) if sizes else None)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (stored in checkpoints)."""
        return {"image_shape": list(self.image_shape), "dataset_size": self.dataset_size,
                "factor_sizes": None if self.factor_sizes is None else list(self.factor_sizes)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> DataFacts:
        return cls(tuple(state["image_shape"]), int(state.get("dataset_size", 0)),
                   state.get("factor_sizes"))


def as_data_facts(data: DataFacts | tuple[int, int, int] | list[int]) -> DataFacts:
    """``data`` as :class:`DataFacts`; a bare (C, H, W) shape (models built by hand in tests and
    notebooks) becomes facts with an unknown dataset size."""
    return data if isinstance(data, DataFacts) else DataFacts(tuple(data))


@dataclass
class OptimiserSpec:
    """One optimiser: its parameter groups (torch format, may carry their own ``lr``) and the
    settings that differ from the run's ``optim`` section (None: take the run's value)."""

    name: str
    param_groups: list[dict[str, Any]]
    lr: float | None = None
    betas: tuple[float, float] | None = None
    eps: float | None = None
    weight_decay: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Model(nn.Module):
    """Base class of every method. Subclasses set ``Config`` (a dataclass of hyperparameters)."""

    Config: ClassVar[type]
    #: how many batches of ``train.batch_size`` images one training step consumes
    #: (2 for FactorVAE's independent second batch).
    batch_multiplier: ClassVar[int] = 1
    #: the pixel range the model expects: "01" ([0, 1]) or "pm1" ([-1, 1], diffusion models)
    input_range: ClassVar[str] = "01"
    #: False for models that learn no code (a pixel DDPM): metrics and traversals refuse them
    #: with one line (:func:`require_representation`)
    has_representation: ClassVar[bool] = True
    #: sub-modules (dotted names) that never train: eval mode, no gradients, in no optimiser
    frozen_modules: ClassVar[tuple[str, ...]] = ()
    #: sub-modules the EMA averages when ``train.ema_modules`` is empty (empty: the whole model)
    ema_modules: ClassVar[tuple[str, ...]] = ()
    #: sub-modules that are only meaningful when loaded from an upstream run (PDAE's frozen base
    #: DDPM): a new run of such a model must name one in ``init`` (training/stages.apply_init)
    upstream_modules: ClassVar[tuple[str, ...]] = ()
    #: the evaluation protocol ``disentkit eval`` uses when none is given: dlib, fdae or disdiff
    default_protocol: ClassVar[str] = "dlib"

    def __init__(self, config: Any, data: DataFacts | tuple[int, int, int]) -> None:
        super().__init__()
        self.config = config
        self.data_facts = as_data_facts(data)
        self.image_shape = self.data_facts.image_shape  # (C, H, W)

    # ---- training ----------------------------------------------------------------------------
    def training_losses(self, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def optimiser_specs(self) -> list[OptimiserSpec]:
        """Default: one optimiser over all parameters with the run's settings."""
        return [OptimiserSpec("main", [{"params": [p for p in self.parameters() if p.requires_grad]}])]

    # ---- inference ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def code_groups(self) -> list[list[int]] | None:
        """The groups of code dimensions (one list of indices per concept) that the grouped
        protocols score; None: the code has no declared groups (give ``--groups`` instead)."""
        return None

    @property
    def latent_dim(self) -> int:
        return int(self.config.latent_dim)
