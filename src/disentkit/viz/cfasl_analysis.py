"""CFASL's qualitative analyses (Jung, Jeong & Kim 2024;
GIST-IRR/CFASL ``src/analysis_tools/``), for any Gaussian VAE of this package.

* :func:`largest_kld_change` (Fig. 5a): random image pairs; per latent dimension the KL between the
  two posteriors; decode z1, then z1 with its top-1, top-1..2, ... largest-KL dimensions replaced
  by z2's values, then z2.
* :func:`latent_eigen`: covariance of latent codes over many images, its eigenvalues (sorted
  descending) and eigenvectors (the *columns* of the eigenvector matrix reordered with them; the
  reference reorders rows, which pairs eigenvalues with the wrong vectors).
* :func:`latent_scatter3d` (Fig. 1): codes of images with some factors held fixed, the 3 latent
  dimensions of largest mean KL, coloured by one factor.

Each returns arrays; the ``plot_*`` functions write PNGs with matplotlib's Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from disentkit.builders import to_model_input


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def _images(model: Any, data: Any, indices: np.ndarray) -> torch.Tensor:
    """Dataset images ``indices`` as model input (float NCHW on the model's device)."""
    device = next(model.parameters()).device
    batch = data.uint8_batch(np.asarray(indices, dtype=np.int64))
    batch = torch.as_tensor(batch).to(device)
    return to_model_input(batch, data.value_max, getattr(model, "input_range", "01"))


def require_posterior(model: Any) -> None:
    """Raise TypeError unless ``model`` has a Gaussian posterior (``posterior(x) -> mean, logvar``)."""
    if not hasattr(model, "posterior"):
        raise TypeError(
            f"{type(model).__name__} has no Gaussian posterior (posterior(x) -> mean, logvar); "
            "the CFASL analyses and the latent sweep need a VAE-family model"
        )


@torch.no_grad()
def posterior_codes(model: Any, x: torch.Tensor, sampled: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, logvar, z) of the model's Gaussian posterior on ``x``; z is a posterior sample
    (torch's global generator, as CF's encoder) when ``sampled``, else the mean."""
    require_posterior(model)
    mean, logvar = model.posterior(x)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if sampled else mean
    return mean, logvar, z


def kl_between_posteriors(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor,
                          logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per dimension (elementwise)."""
    return 0.5 * (logvar2 - logvar1 + (logvar1.exp() + (mean1 - mean2).pow(2)) / logvar2.exp() - 1.0)


# ---------------------------------------------------------------------------------------------
# Largest-KLD dimension change
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def largest_kld_change(model: Any, data: Any, random_state: np.random.RandomState,
                       num_pairs: int = 5, top_k: int = 5, sampled: bool = False
                       ) -> dict[str, np.ndarray]:
    """Images (pairs, 2 + top_k + 2, H, W, C): x1, decode(z1), decode(z1 with its top-1..j
    largest-KL dimensions from z2) for j = 1..top_k, decode(z2), x2; plus the KL ranking."""
    model.eval()
    indices = random_state.randint(len(data), size=2 * num_pairs)
    x = _images(model, data, indices)
    mean, logvar, z = posterior_codes(model, x, sampled)
    top_k = min(top_k, z.shape[1])
    x1, x2 = x[:num_pairs], x[num_pairs:]
    z1, z2 = z[:num_pairs], z[num_pairs:]
    kl = kl_between_posteriors(mean[:num_pairs], logvar[:num_pairs], mean[num_pairs:],
                               logvar[num_pairs:])
    order = kl.argsort(dim=1, descending=True)[:, :top_k]  # (pairs, top_k)
    # codes[j] = z1 with the top-j dimensions taken from z2 (j = 0..top_k), then z2
    steps = [z1]
    for j in range(1, top_k + 1):
        mask = torch.zeros_like(z1, dtype=torch.bool).scatter_(1, order[:, :j], True)
        steps.append(torch.where(mask, z2, z1))
    steps.append(z2)
    codes = torch.stack(steps, dim=1)  # (pairs, top_k + 2, D)
    decoded = model.decode(codes.reshape(-1, codes.shape[-1])).reshape(
        num_pairs, top_k + 2, *x.shape[1:])
    panels = torch.cat([x1.unsqueeze(1), decoded, x2.unsqueeze(1)], dim=1)
    return {
        "images": panels.permute(0, 1, 3, 4, 2).cpu().numpy(),
        "order": order.cpu().numpy(),
        "kl": kl.gather(1, order).cpu().numpy(),
        "indices": indices.reshape(2, num_pairs).T,
    }


# ---------------------------------------------------------------------------------------------
# Eigen-decomposition of the latent covariance
# ---------------------------------------------------------------------------------------------
def sorted_eigen(covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues in descending order and the matching eigenvectors as *columns*."""
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    return values[order], vectors[:, order]


@torch.no_grad()
def latent_eigen(model: Any, data: Any, random_state: np.random.RandomState,
                 num_batches: int = 100, batch_size: int = 64, sampled: bool = True
                 ) -> dict[str, np.ndarray]:
    """Covariance of the codes of ``num_batches * batch_size`` random images and its sorted
    eigen-decomposition (CF uses sampled codes, ``sampled=True``)."""
    model.eval()
    codes = []
    for _ in range(num_batches):
        x = _images(model, data, random_state.randint(len(data), size=batch_size))
        codes.append(posterior_codes(model, x, sampled)[2])
    z = torch.cat(codes).double().cpu().numpy()
    covariance = np.cov(z, rowvar=False)
    values, vectors = sorted_eigen(covariance)
    return {"covariance": covariance, "eigenvalues": values, "eigenvectors": vectors}


# ---------------------------------------------------------------------------------------------
# 3-D latent scatter
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def latent_scatter3d(model: Any, data: Any, random_state: np.random.RandomState,
                     num_points: int = 640, fixed_factors: list[int] | None = None,
                     color_factor: int = 0) -> dict[str, np.ndarray]:
    """Codes (posterior means) of ``num_points`` images whose ``fixed_factors`` share one random
    value; the 3 dimensions of largest mean KL(q(z|x) || N(0, I)); labels = ``color_factor``."""
    sizes = getattr(data, "factor_sizes", None)
    if not sizes:
        raise ValueError(
            f"the 3-D latent plot colours codes by a ground-truth factor, but dataset "
            f"'{getattr(data, 'name', type(data).__name__)}' has no factors; use a ground-truth "
            "dataset (dsprites, shapes3d, cars3d, smallnorb, sprites, ...)"
        )
    fixed = list(fixed_factors or [])
    for f in [*fixed, color_factor]:
        if not 0 <= f < len(sizes):
            raise ValueError(f"factor index {f} is out of range: the dataset has factors "
                             f"{list(getattr(data, 'factor_names', range(len(sizes))))}")
    model.eval()
    factors = data.sample_factors(num_points, random_state)
    for f in fixed:
        factors[:, f] = random_state.randint(sizes[f])
    indices = data.factors_to_index(factors)
    means, kls = [], []
    for start in range(0, num_points, 256):
        x = _images(model, data, indices[start : start + 256])
        mean, logvar, _ = posterior_codes(model, x)
        means.append(mean)
        kls.append(0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar))
    mean = torch.cat(means).cpu().numpy()
    kl = torch.cat(kls).mean(0).cpu().numpy()
    dims = np.argsort(kl)[::-1][: min(3, mean.shape[1])].copy()
    return {"codes": mean[:, dims], "dims": dims, "kl": kl, "labels": factors[:, color_factor],
            "factors": factors}


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _show(ax, image: np.ndarray) -> None:
    image = np.clip(image, 0.0, 1.0)
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_largest_kld(result: dict[str, np.ndarray], path: Path) -> Path:
    plt = _pyplot()
    images = result["images"]
    rows, cols = images.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.3 * rows + 0.4), squeeze=False)
    top_k = cols - 4
    for r in range(rows):
        for c in range(cols):
            _show(axes[r, c], images[r, c])
        axes[r, 0].set_ylabel(f"pair {r}", fontsize=7)
        for j in range(top_k):
            axes[r, j + 2].set_title(f"+z{result['order'][r, j]} ({result['kl'][r, j]:.1f})",
                                     fontsize=6)
    for c, name in ((0, "x1"), (1, "dec z1"), (cols - 2, "dec z2"), (cols - 1, "x2")):
        axes[0, c].set_title(name, fontsize=7)
    fig.suptitle("Largest-KLD dimension change: z1 -> z2, top dims (KL) swapped cumulatively",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_eigen(result: dict[str, np.ndarray], path: Path) -> Path:
    plt = _pyplot()
    values, vectors = result["eigenvalues"], result["eigenvectors"]
    dim = len(values)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.bar(np.arange(dim), values)
    ax1.set_xlabel("eigen-component (sorted)")
    ax1.set_ylabel("eigenvalue (variance)")
    ax1.set_title("Eigenvalues of the latent covariance")
    im = ax2.imshow(np.abs(vectors), cmap="viridis", vmin=0.0, vmax=1.0)
    ax2.set_xlabel("eigen-component (sorted)")
    ax2.set_ylabel("latent dimension")
    ax2.set_xticks(range(dim))
    ax2.set_yticks(range(dim))
    ax2.set_title("|eigenvectors| (columns)")
    fig.colorbar(im, ax=ax2, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_scatter3d(result: dict[str, np.ndarray], path: Path, factor_name: str = "factor") -> Path:
    plt = _pyplot()
    codes, labels, dims = result["codes"], result["labels"], result["dims"]
    fig = plt.figure(figsize=(6, 5))
    ax = fig.add_subplot(projection="3d")
    padded = np.zeros((codes.shape[0], 3))
    padded[:, : codes.shape[1]] = codes
    values = np.unique(labels)
    if len(values) <= 10:  # categorical factor: one colour per value, with a legend
        cmap = plt.get_cmap("tab10")
        for i, value in enumerate(values):
            sel = labels == value
            ax.scatter(padded[sel, 0], padded[sel, 1], padded[sel, 2], s=6, color=cmap(i),
                       label=f"{factor_name}={value}")
        ax.legend(fontsize=7, loc="upper left")
    else:
        points = ax.scatter(padded[:, 0], padded[:, 1], padded[:, 2], c=labels, cmap="viridis", s=6)
        fig.colorbar(points, ax=ax, fraction=0.03, label=factor_name)
    names = [f"z{d}" for d in dims] + [""] * (3 - len(dims))
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_zlabel(names[2])
    ax.set_title(f"Codes on the 3 largest-KL dims, coloured by {factor_name}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
