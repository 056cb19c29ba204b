"""Report pieces of the diffusion autoencoders (``pdae``, ``diti``): the code's block layout and
a counterfactual grid of two dataset images (DiTi's ``eval/counterfactual_generation.py``
segments and weights, scaled to the model's number of blocks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from disentkit.pixels import for_display, for_model

__all__ = ["is_diffusion_autoencoder", "layout_rows", "write_counterfactual"]


def is_diffusion_autoencoder(model: Any) -> bool:
    """Whether ``model`` offers ``block_layout`` and ``counterfactual`` (pdae, diti)."""
    return callable(getattr(model, "block_layout", None)) and callable(getattr(model, "counterfactual", None))


def layout_rows(model: Any) -> list[tuple[str, str, str, str]]:
    """(blocks, time steps, dims, width) rows; runs of consecutive blocks of one width share a row
    (DiTi's 64 blocks fit in ten rows). A model without time-step blocks gets one row."""
    layout = model.block_layout()
    times = model.block_times() if callable(getattr(model, "block_times", None)) else None
    if times is None:
        return [(f"{len(layout)} (one per dimension)", "all", f"0-{len(layout) - 1}", "1")]
    rows = []
    first = 0
    for i in range(1, len(layout) + 1):
        if i < len(layout) and layout[i][1] == layout[first][1]:
            continue
        blocks = str(first) if i - 1 == first else f"{first}-{i - 1}"
        t0, t1 = times[first][0], times[i - 1][1]
        start, end = layout[first][0], layout[i - 1][0] + layout[i - 1][1]
        dims = f"{start}-{end - 1}" if end > start else "none"
        rows.append((blocks, f"[{t0}, {t1})", dims, str(layout[first][1])))
        first = i
    return rows


@torch.no_grad()
def write_counterfactual(model: Any, images01: torch.Tensor, path: Path, steps: int | None = None) -> Path:
    """Counterfactual grid of the first two ``images01`` (A, B; [0, 1]) as a labelled PNG."""
    from disentkit.viz.counterfactual import (
        REFERENCE_ALPHAS,
        block_label,
        counterfactual_figure,
        reference_blocks,
    )
    from disentkit.viz.images import save_png

    layout = model.block_layout()
    blocks = reference_blocks(len(layout))
    device = next(model.parameters()).device
    x_a, x_b = (images01[i : i + 1].to(device) for i in range(2))
    was_training = model.training
    model.eval()
    try:
        grid = model.counterfactual(for_model(x_a, model), for_model(x_b, model), blocks,
                                    list(REFERENCE_ALPHAS), steps)[:, :, 0]
    finally:
        model.train(was_training)
    labels = [block_label(layout, s, w) for s, w in blocks]
    figure = counterfactual_figure(for_display(grid.float().cpu(), model), x_a[0].cpu(), x_b[0].cpu(),
                                   labels, list(REFERENCE_ALPHAS))
    return save_png(figure, Path(path))
