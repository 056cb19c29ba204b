"""Latent traversals (1Konny/FactorVAE ``solver.py`` ``visualize_traverse``).

Start from a *seed code*, set one latent to each of a sequence of values, keep the others fixed,
decode. Four kinds of seed codes, as in the FactorVAE repository plus the project's superset:

* ``fixed``  -- encoder means of fixed dataset images (default: the middle of each third of the
  dataset, which for dSprites gives one square, one ellipse and one heart);
* ``random`` -- the encoder mean of one randomly drawn image;
* ``zero``   -- the zero vector (the prior mean);
* ``prior``  -- samples of the prior N(0, I) (``prior="uniform"`` draws uniform[0, 1) like
  KFV's ``torch.rand``, kept for parity only).

Values run over ``linspace(-limit, limit, steps)`` (KFV: limit 3, 10 frames, i.e.
``arange(-3, 3.1, 2/3)``), or over per-latent quantiles of the aggregate posterior
(``values="quantile"``). Outputs: one PNG grid per seed code (one row per latent, one column per
value, rows labelled) and one animated GIF per mode (frame = one value; rows = latents,
columns = seed codes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from disentkit.viz.images import (
    add_caption,
    data_batch,
    label_grid,
    make_grid,
    save_gif,
    save_png,
    to_display,
    to_uint8,
)
from disentkit.viz.latents import LatentOrder, encode_batched, sample_indices

__all__ = [
    "MODES",
    "SeedCodes",
    "decode_codes",
    "fixed_indices",
    "mark_collapsed",
    "quantile_values",
    "range_values",
    "seed_codes",
    "traversal_codes",
    "traversal_images",
    "write_traversals",
]

MODES = ("fixed", "random", "zero", "prior")


def range_values(limit: float = 3.0, steps: int = 10) -> torch.Tensor:
    """``steps`` evenly spaced values in [-limit, limit] (both ends included)."""
    if steps < 2 or limit <= 0:
        raise ValueError(f"need steps >= 2 and limit > 0, got steps={steps}, limit={limit}")
    return torch.linspace(-limit, limit, steps)


def quantile_values(codes: torch.Tensor, steps: int = 10, tail: float = 0.05) -> torch.Tensor:
    """(D, steps) per-latent quantiles ``tail .. 1 - tail`` of encoded codes (N, D)."""
    if not 0 <= tail < 0.5:
        raise ValueError(f"quantile tail must be in [0, 0.5), got {tail}")
    levels = torch.linspace(tail, 1.0 - tail, steps)
    return torch.quantile(codes.float(), levels, dim=0).T.contiguous()


def traversal_codes(base: torch.Tensor, dims: Sequence[int], values: torch.Tensor) -> torch.Tensor:
    """Codes (B, len(dims), S, D): ``base`` with latent ``dims[r]`` set to each value.

    ``values`` is (S,) shared by all latents or (D, S) per latent. Every other coordinate keeps
    the seed code's value.
    """
    if base.ndim != 2:
        raise ValueError(f"seed codes must be (B, D), got shape {tuple(base.shape)}")
    batch, latent_dim = base.shape
    dims = list(dims)
    if any(not 0 <= d < latent_dim for d in dims):
        raise ValueError(f"latent indices {dims} out of range for {latent_dim} latents")
    if values.ndim == 1:
        per_row = values[None, :].expand(len(dims), -1)
    elif values.ndim == 2 and values.shape[0] == latent_dim:
        per_row = values[dims]
    else:
        raise ValueError(f"values must be (S,) or ({latent_dim}, S), got {tuple(values.shape)}")
    steps = per_row.shape[1]
    codes = base[:, None, None, :].expand(batch, len(dims), steps, latent_dim).clone()
    per_row = per_row.to(codes)
    for r, d in enumerate(dims):
        codes[:, r, :, d] = per_row[r]
    return codes


@torch.inference_mode()
def decode_codes(model: torch.nn.Module, codes: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``model.decode`` over codes of any leading shape (..., D) -> images (..., C, H, W) in [0, 1]
    (from the model's pixel range)."""
    if not hasattr(model, "decode"):
        raise TypeError(f"{type(model).__name__} has no decode(z); traversals need a decoder")
    lead, latent_dim = codes.shape[:-1], codes.shape[-1]
    flat = codes.reshape(-1, latent_dim)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    out = [
        model.decode(flat[s : s + batch_size].to(device)).float().cpu()
        for s in range(0, flat.shape[0], batch_size)
    ]
    images = torch.cat(out)
    return to_display(images.reshape(*lead, *images.shape[1:]), model)


def traversal_images(
    model: torch.nn.Module, base: torch.Tensor, dims: Sequence[int], values: torch.Tensor
) -> torch.Tensor:
    """Decoded traversals (B, len(dims), S, C, H, W) for seed codes ``base`` (B, D)."""
    return decode_codes(model, traversal_codes(base, dims, values))


@dataclass
class SeedCodes:
    """Seed codes of one mode with a short name for each (used in titles and file names)."""

    mode: str
    codes: torch.Tensor  # (B, D)
    names: list[str]


def fixed_indices(num_items: int, num: int = 3) -> list[int]:
    """The middle of each of ``num`` equal slices of the dataset (row-major factor grids put the
    first factors' values in consecutive slices, so these differ in the leading factor)."""
    return [int((2 * k + 1) * num_items // (2 * num)) for k in range(num)]


def seed_codes(
    model: torch.nn.Module,
    mode: str,
    *,
    data: Any = None,
    indices: Sequence[int] | None = None,
    num_fixed: int = 3,
    num_prior: int = 3,
    seed: int = 0,
    prior: str = "normal",
) -> SeedCodes:
    """Seed codes for a traversal ``mode`` (see module docstring)."""
    latent_dim = int(model.latent_dim)
    generator = torch.Generator().manual_seed(seed)
    if mode in ("fixed", "random"):
        if data is None:
            raise ValueError(f"traversal mode '{mode}' encodes dataset images; no dataset was given")
        if mode == "fixed":
            idx = list(indices) if indices else fixed_indices(len(data), num_fixed)
        else:
            idx = [int(sample_indices(len(data), 1, seed + 1)[0])]
        codes = encode_batched(model, data_batch(data, idx))
        return SeedCodes(mode, codes, [f"{mode} image #{i}" for i in idx])
    if mode == "zero":
        return SeedCodes(mode, torch.zeros(1, latent_dim), ["zero vector"])
    if mode == "prior":
        if prior == "normal":
            codes = torch.randn(num_prior, latent_dim, generator=generator)
            label = "N(0,I) sample"
        elif prior == "uniform":
            codes = torch.rand(num_prior, latent_dim, generator=generator)
            label = "U[0,1) sample"
        else:
            raise ValueError(f"unknown prior {prior!r}; use 'normal' (default) or 'uniform' (KFV parity)")
        return SeedCodes(mode, codes, [f"{label} {k}" for k in range(num_prior)])
    raise ValueError(f"unknown traversal mode {mode!r}; use one of: {', '.join(MODES)}, all")


def mark_collapsed(order: LatentOrder, kl: Sequence[float] | None, threshold: float = 0.01
                   ) -> tuple[LatentOrder, list[int]]:
    """``order`` with the rows of collapsed latents (KL < ``threshold``: the posterior is the
    prior, the decoder ignores the latent) relabelled ``z3 KL 0.004 collapsed``; returns it and
    those latents, for :func:`write_traversals`' ``muted``."""
    if kl is None:
        return order, []
    collapsed = [d for d in order.dims if float(kl[d]) < threshold]
    labels = [f"z{d} KL {float(kl[d]):.3f} collapsed" if d in collapsed else label
              for d, label in zip(order.dims, order.labels)]
    return LatentOrder(list(order.dims), labels, order.criterion, list(order.notes)), collapsed


def _fade(tiles: np.ndarray, rows: list[int]) -> np.ndarray:
    """Wash out rows ``rows`` of uint8 tiles (..., R, S, H, W, 3) towards light grey."""
    if not rows:
        return tiles
    out = tiles.copy()
    faded = out[..., rows, :, :, :, :].astype(np.float32) * 0.35 + 0.65 * 225.0
    out[..., rows, :, :, :, :] = faded.round().astype(np.uint8)
    return out


def _value_labels(values: torch.Tensor, quantile_tail: float | None) -> list[str]:
    steps = values.shape[-1]
    if values.ndim == 2:
        levels = torch.linspace(quantile_tail or 0.0, 1.0 - (quantile_tail or 0.0), steps)
        return [f"q{lv:.2f}" for lv in levels.tolist()]
    return [f"{v:+.2f}" for v in values.tolist()]


def write_traversals(
    model: torch.nn.Module,
    out_dir: Path,
    order: LatentOrder,
    *,
    data: Any = None,
    modes: Sequence[str] = MODES,
    values: torch.Tensor | None = None,
    quantile_tail: float | None = None,
    fixed: Sequence[int] | None = None,
    num_fixed: int = 3,
    num_prior: int = 3,
    seed: int = 0,
    prior: str = "normal",
    gif: bool = True,
    duration_ms: int = 150,
    muted: Sequence[int] = (),
) -> dict[str, list[Path]]:
    """Write traversal PNGs (one per seed code) and GIFs (one per mode) to ``out_dir``.

    ``values`` (S,) or (D, S) defaults to ``range_values()``. Rows of the latents in ``muted``
    (collapsed ones, :func:`mark_collapsed`) are washed out grey. Returns ``{mode: [paths]}``;
    the GIF (if any) is the last path of each mode.
    """
    values = range_values() if values is None else values
    col_labels = _value_labels(values, quantile_tail)
    written: dict[str, list[Path]] = {}
    out_dir = Path(out_dir)
    faded_rows = [r for r, d in enumerate(order.dims) if d in set(muted)]
    for mode in modes:
        seeds = seed_codes(
            model, mode, data=data, indices=fixed, num_fixed=num_fixed, num_prior=num_prior,
            seed=seed, prior=prior,
        )
        images = traversal_images(model, seeds.codes, order.dims, values)  # (B, R, S, C, H, W)
        tiles = _fade(to_uint8(images), faded_rows)  # (B, R, S, H, W, 3)
        paths: list[Path] = []
        for b, name in enumerate(seeds.names):
            grid = label_grid(
                make_grid(tiles[b]), order.labels, col_labels,
                title=f"{name} - rows ordered by {order.criterion}",
            )
            paths.append(save_png(grid, out_dir / f"traverse_{mode}_{b}.png"))
        if gif:
            frames: list[Image.Image] = []
            for s, value in enumerate(col_labels):
                frame_tiles = np.ascontiguousarray(tiles[:, :, s].transpose(1, 0, 2, 3, 4))
                grid = label_grid(make_grid(frame_tiles), order.labels, None)
                frames.append(add_caption(grid, f"{mode}: value {value}"))
            paths.append(save_gif(frames, out_dir / f"traverse_{mode}.gif", duration_ms, bounce=True))
        written[mode] = paths
    return written
