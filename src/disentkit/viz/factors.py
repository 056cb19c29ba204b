"""Traversals along the *true* factors of a ground-truth dataset, and the code's response.

For each factor k: hold the other factors at a random base tuple, step factor k through its
values, render those images (one labelled row per factor), and encode them. The response plot
shows, per factor, every latent's code (``model.encode``) against the factor value, averaged over
``num_bases`` random base tuples: the latents that move most are coloured with a band of +-1 std,
the others grey. A disentangled code has one latent that moves with each factor and flat lines
elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from disentkit.viz.images import label_grid, make_grid, save_png, to_uint8
from disentkit.viz.latents import encode_batched

__all__ = [
    "FactorResponse",
    "factor_response",
    "factor_sweep_factors",
    "plot_factor_response",
    "responsive_latents",
    "write_factor_traversals",
]


def factor_sweep_factors(base: np.ndarray, factor: int, size: int) -> np.ndarray:
    """(B * size, K) factor tuples: each base tuple (B, K) with ``factor`` set to 0..size-1
    (base-major: rows b*size .. b*size+size-1 belong to base b)."""
    base = np.asarray(base, dtype=np.int64)
    out = np.repeat(base, size, axis=0)
    out[:, factor] = np.tile(np.arange(size, dtype=np.int64), base.shape[0])
    return out


def _observations(data: Any, factors: np.ndarray, rng: np.random.RandomState) -> torch.Tensor:
    obs = data.sample_observations_from_factors(factors, rng)
    return torch.from_numpy(np.ascontiguousarray(obs)).permute(0, 3, 1, 2).float()


@dataclass
class FactorResponse:
    """Codes along each factor: ``mean[k]``/``std[k]`` are (size_k, D) over the base tuples."""

    factor_names: list[str]
    factor_sizes: list[int]
    mean: list[np.ndarray]
    std: list[np.ndarray]


def factor_response(
    model: torch.nn.Module, data: Any, num_bases: int = 16, seed: int = 0
) -> FactorResponse:
    """Encode each factor's sweep for ``num_bases`` random base tuples (seeded)."""
    rng = np.random.RandomState(seed)
    bases = data.sample_factors(num_bases, rng)
    means, stds = [], []
    for k, size in enumerate(data.factor_sizes):
        factors = factor_sweep_factors(bases, k, int(size))
        codes = encode_batched(model, _observations(data, factors, rng)).numpy()
        codes = codes.reshape(num_bases, int(size), -1)
        means.append(codes.mean(axis=0))
        stds.append(codes.std(axis=0))
    return FactorResponse(list(data.factor_names), [int(s) for s in data.factor_sizes], means, stds)


def _even_subset(size: int, max_values: int) -> np.ndarray:
    if size <= max_values:
        return np.arange(size)
    return np.unique(np.rint(np.linspace(0, size - 1, max_values)).astype(np.int64))


def factor_traversal_grid(data: Any, seed: int = 0, max_values: int = 10):
    """Labelled image grid: one row per factor, the factor stepped through (up to ``max_values``
    evenly spaced) values from one random base tuple; short rows are padded with white."""
    rng = np.random.RandomState(seed)
    base = data.sample_factors(1, rng)
    rows = []
    for k, size in enumerate(data.factor_sizes):
        values = _even_subset(int(size), max_values)
        factors = np.repeat(base, len(values), axis=0)
        factors[:, k] = values
        rows.append(to_uint8(_observations(data, factors, rng)))
    h, w = rows[0].shape[1:3]
    cols = max(len(r) for r in rows)
    tiles = np.full((len(rows), cols, h, w, 3), 255, np.uint8)
    for k, r in enumerate(rows):
        tiles[k, : len(r)] = r
    labels = [f"{n} ({s})" for n, s in zip(data.factor_names, data.factor_sizes)]
    return label_grid(make_grid(tiles), labels, None, title="true factor traversals")


def responsive_latents(response: FactorResponse, factor: int, dims: list[int], num: int = 2,
                       muted: frozenset[int] = frozenset()) -> list[int]:
    """The ``num`` latents of ``dims`` (outside ``muted``) whose mean code moves most along
    ``factor`` (largest range of the mean over the factor's values), most first."""
    candidates = [d for d in dims if d not in muted]
    moves = {d: float(np.ptp(response.mean[factor][:, d])) for d in candidates}
    return sorted(candidates, key=lambda d: -moves[d])[:num]


def plot_factor_response(response: FactorResponse, path: Path, dims: list[int] | None = None,
                         highlight: int = 2, muted: Sequence[int] = ()) -> Path:
    """One panel per factor: each latent's mean code vs the factor value.

    The ``highlight`` latents that move most with the factor are drawn in their colour, the first
    with a +-1 std band over the base tuples; the others are thin grey lines without bands (ten
    overlapping bands are a smear). ``muted`` latents (collapsed, KL ~ 0) are never highlighted.
    Colours are the same latent in every panel; the legend sits beside the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    num = len(response.factor_names)
    latent_dim = response.mean[0].shape[1]
    dims = list(range(latent_dim)) if dims is None else dims
    quiet = frozenset(int(d) for d in muted)
    cols = min(3, num)
    rows = -(-num // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    cmap = plt.get_cmap("tab10" if latent_dim <= 10 else "tab20")
    shown: list[int] = []
    for k in range(num):
        ax = axes[k // cols][k % cols]
        x = np.arange(response.factor_sizes[k])
        top = responsive_latents(response, k, dims, highlight, quiet)
        for d in dims:
            if d not in top:
                ax.plot(x, response.mean[k][:, d], color="#b0b0b0", lw=0.8, zorder=1)
        for rank, d in enumerate(top):
            mean, std = response.mean[k][:, d], response.std[k][:, d]
            color = cmap(d % cmap.N)
            if rank == 0:  # one band per panel: two bands over the other factors' spread smear
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.18, lw=0, zorder=2)
            ax.plot(x, mean, color=color, lw=1.8, zorder=3)
            if d not in shown:
                shown.append(d)
        moving = ", ".join(f"z{d}" for d in top) or "every latent collapsed"
        ax.set_title(f"{response.factor_names[k]}: {moving}", fontsize=10)
        ax.set_xlabel("factor value (index)", fontsize=8)
        ax.set_ylabel("code (mean over bases)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # factor values are indices
    for k in range(num, rows * cols):
        axes[k // cols][k % cols].axis("off")
    handles = [Line2D([], [], color=cmap(d % cmap.N), lw=1.8, label=f"z{d}") for d in sorted(shown)]
    handles.append(Line2D([], [], color="#b0b0b0", lw=0.8, label="other latents"))
    fig.tight_layout()
    # beside the axes (outside the panels' area); bbox_inches="tight" keeps it in the image
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.98), fontsize=8,
               frameon=False, title_fontsize=8,
               title=f"the {highlight} latents that\nmove most per factor\n"
                     "(band: ±1 std of\nthe first over bases)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def write_factor_traversals(
    model: torch.nn.Module, data: Any, out_dir: Path, seed: int = 0, num_bases: int = 16,
    dims: list[int] | None = None, muted: Sequence[int] = (),
) -> dict[str, Path]:
    """Write ``factor_traversals.png`` (images) and ``factor_response.png`` (codes vs factors;
    ``muted`` latents, e.g. collapsed ones, stay grey)."""
    if not hasattr(data, "factor_sizes") or not len(data.factor_sizes):
        raise ValueError("factor traversals need a ground-truth dataset with factors")
    out_dir = Path(out_dir)
    grid = save_png(factor_traversal_grid(data, seed), out_dir / "factor_traversals.png")
    response = factor_response(model, data, num_bases=num_bases, seed=seed)
    plot = plot_factor_response(response, out_dir / "factor_response.png", dims, muted=muted)
    return {"images": grid, "response": plot}
