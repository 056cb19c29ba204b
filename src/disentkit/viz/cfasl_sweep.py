"""CFASL's qualitative latent sweep (Jung, Jeong & Kim 2024;
GIST-IRR/CFASL ``src/analysis_tools/common_quali.py``), for any Gaussian VAE of this package.

Take D random images (D = the latent size, CF's ``quali_sampling``); for image d, set latent d to
each of ``num_values`` evenly spaced values in [-limit, limit] (CF: 10 values in [-2, 2]) and keep
the image's other coordinates; decode. Row d of the grid is the input image followed by its
sweep of latent d, so the diagonal structure shows what each dimension controls on a different
image. CF encodes with a posterior *sample* (its encoder always samples); the default here is the
posterior mean (``sampled=True`` for CF's behaviour).

The reference builds the value grid with ``arange(-2, 2.1, 4 / (interval - 1))`` and an identity
mask whose size is the batch, so it only works when the number of values equals the latent size;
here the two are independent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from disentkit.viz.cfasl_analysis import posterior_codes, require_posterior
from disentkit.viz.images import data_batch, label_grid, make_grid, save_png, to_model_input, to_uint8
from disentkit.viz.traversal import decode_codes

__all__ = ["diagonal_sweep_codes", "latent_sweep", "plot_latent_sweep"]


def diagonal_sweep_codes(codes: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(D, S, D) codes: row d is ``codes[d]`` with latent d set to each of ``values`` (S,).

    ``codes`` must be (D, D): one code per latent dimension.
    """
    if codes.ndim != 2 or codes.shape[0] != codes.shape[1]:
        raise ValueError(
            f"the diagonal sweep needs one code per latent dimension, (D, D); got shape "
            f"{tuple(codes.shape)}"
        )
    if values.ndim != 1 or values.numel() < 1:
        raise ValueError(f"sweep values must be a non-empty 1-D tensor, got shape {tuple(values.shape)}")
    dim = codes.shape[0]
    eye = torch.eye(dim, dtype=codes.dtype, device=codes.device)[:, None, :]  # (D, 1, D)
    values = values.to(codes)[None, :, None]  # (1, S, 1)
    return codes[:, None, :] * (1.0 - eye) + values * eye


@torch.no_grad()
def latent_sweep(model: Any, data: Any, random_state: np.random.RandomState, num_values: int = 10,
                 limit: float = 2.0, sampled: bool = False) -> dict[str, np.ndarray]:
    """Images (D, 1 + num_values, H, W, C): per row d the input image d, then the decoding of its
    code with latent d swept over ``linspace(-limit, limit, num_values)``; plus the values and the
    dataset indices of the D images."""
    if num_values < 2 or limit <= 0:
        raise ValueError(f"the sweep needs num_values >= 2 and limit > 0, got num_values={num_values}, "
                         f"limit={limit}")
    require_posterior(model)
    model.eval()
    dim = int(model.latent_dim)
    indices = random_state.randint(len(data), size=dim)
    images = data_batch(data, indices)  # (D, C, H, W) in [0, 1]
    device = next(model.parameters()).device
    _, _, z = posterior_codes(model, to_model_input(images, model).to(device), sampled)
    values = torch.linspace(-limit, limit, num_values)
    decoded = decode_codes(model, diagonal_sweep_codes(z.float().cpu(), values))  # (D, S, C, H, W)
    panels = torch.cat([images[:, None], decoded], dim=1)
    return {
        "images": panels.permute(0, 1, 3, 4, 2).numpy(),
        "values": values.numpy(),
        "indices": np.asarray(indices),
    }


def plot_latent_sweep(result: dict[str, np.ndarray], path: Path) -> Path:
    """One labelled PNG grid: rows z0..z{D-1}, columns the input and the swept values."""
    images = np.moveaxis(result["images"], -1, -3)  # (D, 1 + S, C, H, W)
    grid = make_grid(to_uint8(images))
    rows = [f"z{d}" for d in range(images.shape[0])]
    cols = ["input", *(f"{v:+.2f}" for v in result["values"])]
    title = "Latent sweep: row d = image d with latent d swept (other latents kept)"
    return save_png(label_grid(grid, rows, cols, title=title), path)
