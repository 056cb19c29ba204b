"""Labelled grids of DiTi's counterfactual generation and attribute manipulation.

* :func:`counterfactual_figure`: one row per chosen code segment (``blocks 2-5 / dims 2-5``), one
  column per interpolation weight alpha, framed by the two inputs (image A on the left, image B on
  the right); alpha 0 regenerates A, alpha 1 has the segment taken from B.
* :func:`manipulation_figure`: one row per image; the input, then the regenerations at each
  editing scale (0 = the plain inversion + regeneration).
* :func:`reference_blocks`: DiTi's counterfactual segments ``(2, 4), (16, 8), (24, 8), (32, 32)``
  (``yue-zhongqi/diti`` ``eval/counterfactual_generation.py``, given for k = 64 blocks), scaled
  to a code of another number of blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from disentkit.viz.images import label_grid, make_grid, to_uint8

__all__ = ["REFERENCE_ALPHAS", "REFERENCE_BLOCKS", "block_label", "counterfactual_figure",
           "manipulation_figure", "reference_blocks"]

#: DiTi's segments (first block, number of blocks) for k = 64, and its interpolation weights
REFERENCE_BLOCKS: tuple[tuple[int, int], ...] = ((2, 4), (16, 8), (24, 8), (32, 32))
REFERENCE_ALPHAS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def reference_blocks(num_blocks: int) -> list[tuple[int, int]]:
    """DiTi's segments for ``num_blocks`` blocks: as given for 64, else scaled by ``num_blocks / 64``
    (start rounded down, width at least 1, clipped to the code); duplicates are dropped."""
    if num_blocks == 64:
        return list(REFERENCE_BLOCKS)
    out: list[tuple[int, int]] = []
    for start, width in REFERENCE_BLOCKS:
        s = min(int(start * num_blocks / 64), num_blocks - 1)
        w = max(1, min(int(round(width * num_blocks / 64)), num_blocks - s))
        if (s, w) not in out:
            out.append((s, w))
    return out


def block_label(layout: Sequence[tuple[int, int]], start: int, width: int) -> str:
    """``"blocks 2-5 / dims 2-5"`` for ``width`` blocks from ``start`` of a (start, width) layout."""
    first, last = layout[start], layout[start + width - 1]
    dims = (first[0], last[0] + last[1] - 1)
    blocks = f"block {start}" if width == 1 else f"blocks {start}-{start + width - 1}"
    if layout[start:start + width] == [(d, 1) for d in range(dims[0], dims[1] + 1)]:
        return f"dim {dims[0]}" if width == 1 else f"dims {dims[0]}-{dims[1]}"  # PDAE: blocks are dims
    return f"{blocks} / dims {dims[0]}-{dims[1]}" if dims[1] >= dims[0] else f"{blocks} / no dims"


def _tiles(images: torch.Tensor) -> np.ndarray:
    return to_uint8(images.detach().float().cpu().clamp(0, 1))


def counterfactual_figure(grid: torch.Tensor, image_a: torch.Tensor, image_b: torch.Tensor,
                          row_labels: Sequence[str], alphas: Sequence[float]) -> Image.Image:
    """Labelled PNG-ready image of a (n_rows, n_alphas, C, H, W) grid with inputs (C, H, W)."""
    if grid.ndim != 5 or grid.shape[0] != len(row_labels) or grid.shape[1] != len(alphas):
        raise ValueError(f"expected a ({len(row_labels)}, {len(alphas)}, C, H, W) grid, got "
                         f"{tuple(grid.shape)}")
    rows = grid.shape[0]
    a = image_a[None, None].expand(rows, 1, *image_a.shape)
    b = image_b[None, None].expand(rows, 1, *image_b.shape)
    tiles = _tiles(torch.cat([a.to(grid), grid, b.to(grid)], dim=1))
    columns = ["image A", *[f"alpha {float(x):g}" for x in alphas], "image B"]
    return label_grid(make_grid(tiles), list(row_labels), columns,
                      title="counterfactual: a code segment moved from A's (alpha 0) to B's (alpha 1)")


def manipulation_figure(inputs: torch.Tensor, edits: torch.Tensor, scales: Sequence[float],
                        title: str) -> Image.Image:
    """Rows = images; columns = the input then one regeneration per editing scale.

    ``inputs`` (B, C, H, W), ``edits`` (len(scales), B, C, H, W)."""
    if edits.ndim != 5 or edits.shape[0] != len(scales) or edits.shape[1] != inputs.shape[0]:
        raise ValueError(f"expected edits ({len(scales)}, {inputs.shape[0]}, C, H, W), got "
                         f"{tuple(edits.shape)}")
    tiles = _tiles(torch.cat([inputs[:, None].to(edits), edits.transpose(0, 1)], dim=1))
    columns = ["input", *[f"scale {float(s):+g}" if s else "scale 0" for s in scales]]
    return label_grid(make_grid(tiles), None, columns, title=title)
