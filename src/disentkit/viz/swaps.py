"""Code-swap grids of a trained run (``disentkit swap``, the report's "Code swaps" section).

A model that can swap parts of its code between images implements::

    swap_grids(sources01, targets01, *, spec, partial, steps, generator) -> {name: image}

``sources01`` / ``targets01`` are float NCHW images in [0, 1]; ``spec`` is the model's own swap
syntax (None: its default swaps; DisDiff: factor indices ``"0,2"``; FDAE: ``"c1,2-m0"``);
``partial`` asks for the model's partial variant (DisDiff: sample with the swapped factor's field
alone); ``steps`` the sampler steps (None: the model's default); ``generator`` a CPU
``torch.Generator`` for every draw. Each entry is one picture, any of

* a uint8 array / tensor (H, W, 3): written as is;
* a float tensor (C, H, W) in [0, 1]: one image;
* a float tensor (rows, cols, C, H, W) in [0, 1]: tiles, laid out as a grid here.

:func:`framed` builds the usual layout: row 0 the sources, column 0 the targets, cell (i, j) the
result for target i and source j, with a blank corner.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from disentkit.errors import UserError
from disentkit.viz.images import data_batch, make_grid, save_png, to_uint8

__all__ = ["CannotSwapError", "framed", "pick_images", "swap_picture", "write_swaps"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class CannotSwapError(UserError, TypeError):
    """The run's model has no code swaps (no ``swap_grids``), or was asked for an impossible one."""


def framed(sources: torch.Tensor, targets: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """(T + 1, S + 1, C, H, W) tiles in [0, 1]: sources along the top, targets down the left,
    ``cells`` (T, S, C, H, W) inside, a white corner."""
    t, s = cells.shape[:2]
    if sources.shape[0] != s or targets.shape[0] != t:
        raise ValueError(f"cells {tuple(cells.shape[:2])} do not match {s} sources and {t} targets")
    out = torch.ones(t + 1, s + 1, *cells.shape[2:], dtype=torch.float32)
    out[0, 1:] = sources.float()
    out[1:, 0] = targets.float()
    out[1:, 1:] = cells.float()
    return out


def swap_picture(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """One ``swap_grids`` entry as a uint8 (H, W, 3) picture (see the module docstring)."""
    array = image.detach().cpu() if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    if array.dtype == torch.uint8:
        if array.ndim != 3 or array.shape[-1] != 3:
            raise ValueError(f"a uint8 swap picture must be (H, W, 3), got {tuple(array.shape)}")
        return array.numpy()
    array = array.float().clamp(0, 1)
    if array.ndim == 3:
        array = array[None, None]
    elif array.ndim == 4:  # one row of tiles
        array = array[None]
    if array.ndim != 5:
        raise ValueError(f"a float swap picture must be (C, H, W) or (rows, cols, C, H, W), "
                         f"got {tuple(array.shape)}")
    return make_grid(to_uint8(array))


def pick_images(data, num: int, seed: int, offset: int = 0) -> torch.Tensor:
    """``num`` dataset images (float NCHW in [0, 1]) drawn without replacement with ``seed``;
    ``offset`` skips that many draws first (so sources and targets differ)."""
    rng = np.random.RandomState(seed)
    count = min(len(data), offset + num)
    order = rng.choice(len(data), size=count, replace=False)
    return data_batch(data, order[offset:offset + num])


def write_swaps(model: torch.nn.Module, data, out_dir: str | Path, *, num_sources: int = 4,
                num_targets: int = 4, spec: str | None = None, partial: bool = False,
                steps: int | None = None, seed: int = 0) -> dict[str, Path]:
    """Call ``model.swap_grids`` on dataset images and write one PNG per entry into ``out_dir``;
    returns ``{name: path}``. A model without ``swap_grids`` raises :class:`CannotSwapError`."""
    swap = getattr(model, "swap_grids", None)
    if not callable(swap):
        name = getattr(model, "registry_name", type(model).__name__)
        raise CannotSwapError(f"{name} has no code swaps (it defines no swap_grids); swap grids exist "
                              "for models with a factorised code, such as disdiff and fdae")
    sources = pick_images(data, num_sources, seed)
    targets = pick_images(data, num_targets, seed, offset=num_sources)
    generator = torch.Generator().manual_seed(int(seed))
    was_training = model.training
    model.eval()
    try:
        grids = swap(sources, targets, spec=spec, partial=partial, steps=steps, generator=generator)
    finally:
        model.train(was_training)
    out_dir = Path(out_dir)
    written = {}
    for key, image in grids.items():
        stem = _SAFE.sub("_", str(key))[:80] or "swap"
        written[str(key)] = save_png(swap_picture(image), out_dir / f"{stem}.png")
    return written
