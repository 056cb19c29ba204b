"""Reconstruction grids: originals above their reconstructions (KFV logs these every 10k steps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from disentkit.viz.images import label_grid, make_grid, save_png, to_display, to_model_input, to_uint8

__all__ = ["reconstruct", "reconstruction_grid", "write_reconstructions"]


@torch.inference_mode()
def reconstruct(model: torch.nn.Module, images01: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Reconstructions in [0, 1] of [0, 1] NCHW images (``model.reconstruct``, else
    ``decode(encode(x))``, both in the model's pixel range), on CPU."""
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    out = []
    for start in range(0, images01.shape[0], batch_size):
        x = to_model_input(images01[start : start + batch_size].to(device), model)
        if hasattr(model, "reconstruct"):
            rec = model.reconstruct(x)
        else:
            rec = model.decode(model.encode(x))
        out.append(to_display(rec.float().cpu(), model))
    return torch.cat(out)


def reconstruction_grid(
    model: torch.nn.Module, images01: torch.Tensor, per_row: int = 8
) -> Image.Image:
    """Labelled grid: pairs of rows (originals, reconstructions), ``per_row`` images wide."""
    recs = reconstruct(model, images01)
    n = images01.shape[0]
    cols = min(per_row, n)
    num_pairs = -(-n // cols)
    orig_tiles = to_uint8(images01.cpu())
    rec_tiles = to_uint8(recs)
    h, w = orig_tiles.shape[1:3]
    tiles = np.full((2 * num_pairs, cols, h, w, 3), 255, np.uint8)
    labels = []
    for p in range(num_pairs):
        chunk = slice(p * cols, min(n, (p + 1) * cols))
        count = chunk.stop - chunk.start
        tiles[2 * p, :count] = orig_tiles[chunk]
        tiles[2 * p + 1, :count] = rec_tiles[chunk]
        labels += ["original", "reconstruction"]
    return label_grid(make_grid(tiles), labels, None)


def write_reconstructions(
    model: torch.nn.Module, images01: torch.Tensor, path: Path, per_row: int = 8
) -> Path:
    return save_png(reconstruction_grid(model, images01, per_row), Path(path))
