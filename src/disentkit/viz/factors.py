"""Traversals along the *true* factors of a ground-truth dataset, and the code's response.

For each factor k: hold the other factors at a random base tuple, step factor k through its
values, render those images (one labelled row per factor), and encode them. The response plot
shows, per factor, every latent's code (``model.encode``) against the factor value, averaged over
``num_bases`` random base tuples with a band of +-1 std: a disentangled code has one latent that
moves with each factor and flat lines elsewhere.
"""

from __future__ import annotations

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


def plot_factor_response(response: FactorResponse, path: Path, dims: list[int] | None = None) -> Path:
    """One panel per factor: each latent's mean code vs the factor value (+-1 std band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num = len(response.factor_names)
    latent_dim = response.mean[0].shape[1]
    dims = list(range(latent_dim)) if dims is None else dims
    cols = min(3, num)
    rows = -(-num // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    cmap = plt.get_cmap("tab10" if latent_dim <= 10 else "tab20")
    for k in range(num):
        ax = axes[k // cols][k % cols]
        x = np.arange(response.factor_sizes[k])
        for i, d in enumerate(dims):
            mean, std = response.mean[k][:, d], response.std[k][:, d]
            color = cmap(i % cmap.N)
            ax.plot(x, mean, color=color, label=f"z{d}", lw=1.4)
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.12, lw=0)
        ax.set_title(response.factor_names[k])
        ax.set_xlabel("factor value (index)")
        ax.set_ylabel("code")
    for k in range(num, rows * cols):
        axes[k // cols][k % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_factor_traversals(
    model: torch.nn.Module, data: Any, out_dir: Path, seed: int = 0, num_bases: int = 16,
    dims: list[int] | None = None,
) -> dict[str, Path]:
    """Write ``factor_traversals.png`` (images) and ``factor_response.png`` (codes vs factors)."""
    if not hasattr(data, "factor_sizes") or not len(data.factor_sizes):
        raise ValueError("factor traversals need a ground-truth dataset with factors")
    out_dir = Path(out_dir)
    grid = save_png(factor_traversal_grid(data, seed), out_dir / "factor_traversals.png")
    response = factor_response(model, data, num_bases=num_bases, seed=seed)
    plot = plot_factor_response(response, out_dir / "factor_response.png", dims)
    return {"images": grid, "response": plot}
