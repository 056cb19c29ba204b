"""What each latent does: per-dimension KL, the code/factor mutual-information matrix, row order.

* :func:`kl_per_dim` -- KL(q(z_d|x) || N(0, 1)) averaged over a batch (the quantity KFV/KBV log
  per dimension); latents with near-zero KL are "switched off" and traverse to nothing.
* :func:`mi_matrix` -- normalised mutual information I(z_i; v_k) / H(v_k) between each code
  dimension and each ground-truth factor, estimated exactly as MIG does (disentanglement_lib
  ``mig.py``: 20-bin histogram discretisation of the codes, plug-in MI), on
  ``num_points`` samples drawn with a seeded ``RandomState``.
* :func:`order_latents` -- the row order and labels of a traversal grid: by index, by KL, or by
  the factor each latent captures (argmax of its MI row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from disentkit.viz.images import data_batch, to_model_input

__all__ = [
    "LatentOrder",
    "encode_batched",
    "kl_per_dim",
    "mi_matrix",
    "order_latents",
    "sample_indices",
]


def sample_indices(num_items: int, num: int, seed: int) -> np.ndarray:
    """``num`` distinct dataset indices (all of them when the dataset is smaller), seeded."""
    rng = np.random.RandomState(seed)
    if num >= num_items:
        return np.arange(num_items)
    return np.sort(rng.choice(num_items, size=num, replace=False))


@torch.inference_mode()
def encode_batched(model: torch.nn.Module, images01: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``model.encode`` over [0, 1] NCHW images in chunks; returns (N, D) float codes on CPU."""
    device = _device(model)
    chunks = []
    for start in range(0, images01.shape[0], batch_size):
        x = to_model_input(images01[start : start + batch_size].to(device), model)
        codes = model.encode(x)
        if codes.ndim != 2:
            raise ValueError(
                f"{type(model).__name__}.encode returned shape {tuple(codes.shape)}; traversals "
                "need flat (N, D) codes"
            )
        chunks.append(codes.float().cpu())
    return torch.cat(chunks)


def _device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.inference_mode()
def kl_per_dim(model: torch.nn.Module, images01: torch.Tensor) -> tuple[np.ndarray, str]:
    """Per-latent activity over a batch of [0, 1] images: ``(values, kind)``.

    With a Gaussian posterior (``model.posterior(x) -> (mean, logvar)``) this is
    KL(N(mean, exp(logvar)) || N(0, 1)) averaged over the batch (kind ``"KL"``). Models without a
    posterior (deterministic encoders) get the variance of each code dimension (kind ``"var"``),
    which orders latents the same way for a fixed prior scale.
    """
    from disentkit.models.losses import kl_normal_per_dim

    x = to_model_input(images01.to(_device(model)), model)
    posterior = getattr(model, "posterior", None)
    if callable(posterior):
        out = posterior(x)
        if isinstance(out, (tuple, list)) and len(out) == 2 and out[0].shape == out[1].shape:
            mean, logvar = out
            if mean.ndim == 2:
                return kl_normal_per_dim(mean.float(), logvar.float()).cpu().numpy(), "KL"
    codes = encode_batched(model, images01)
    return codes.var(dim=0, unbiased=True).numpy(), "var"


def mi_matrix(
    model: torch.nn.Module,
    data: Any,
    num_points: int = 10000,
    seed: int = 0,
    num_bins: int = 20,
    batch_size: int = 256,
) -> np.ndarray:
    """Normalised MI matrix (D codes x K factors): I(z_i; v_k) / H(v_k), MIG's estimator.

    Factors are drawn uniformly (``data.sample_factors``), observations rendered with
    ``sample_observations_from_factors`` and encoded with ``model.encode``; codes are discretised
    into ``num_bins`` equal-width bins per dimension (dlib's histogram discretiser).
    """
    from disentkit.metrics.utils import discrete_entropy, discrete_mutual_info, histogram_discretize

    if not hasattr(data, "sample_factors"):
        raise ValueError(
            f"the MI matrix needs a ground-truth dataset (with factors); {type(data).__name__} "
            "has none. Order traversals by 'kl' or 'index' instead."
        )
    rng = np.random.RandomState(seed)
    factors = data.sample_factors(num_points, rng)
    chunks = []
    for start in range(0, num_points, batch_size):
        obs = data.sample_observations_from_factors(factors[start : start + batch_size], rng)
        images = torch.from_numpy(np.ascontiguousarray(obs)).permute(0, 3, 1, 2).float()
        chunks.append(encode_batched(model, images, batch_size))
    codes = torch.cat(chunks).numpy()
    mi = discrete_mutual_info(histogram_discretize(codes, num_bins), factors)
    entropy = discrete_entropy(factors)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = np.where(entropy[None, :] > 0, mi / entropy[None, :], 0.0)
    return normalised


@dataclass
class LatentOrder:
    """Which latents are shown, in which order, with which row labels."""

    dims: list[int]
    labels: list[str]
    criterion: str
    notes: list[str] = field(default_factory=list)


def order_latents(
    latent_dim: int,
    order: str = "kl",
    *,
    activity: np.ndarray | None = None,
    activity_kind: str = "KL",
    mi: np.ndarray | None = None,
    factor_names: list[str] | None = None,
    max_latents: int | None = None,
    min_mi: float = 0.05,
    inactive_kl: float = 0.01,
) -> LatentOrder:
    """Row order for a traversal grid.

    * ``index``: 0..D-1;
    * ``kl``: decreasing ``activity`` (per-dim KL, or code variance for deterministic encoders);
    * ``factor``: latents grouped by the factor of highest normalised MI (factor order), strongest
      first within a factor; latents whose best MI is below ``min_mi`` (or whose KL is below
      ``inactive_kl``: collapsed to the prior) come last.

    ``max_latents`` keeps the first rows only (e.g. the 10 most active of 64 latents).
    """
    notes: list[str] = []
    if order not in ("index", "kl", "factor"):
        raise ValueError(f"unknown latent order {order!r}; use one of: index, kl, factor")
    if order == "kl" and activity is None:
        notes.append("no data to measure KL: rows in index order")
        order = "index"
    if order == "factor" and mi is None:
        notes.append("no MI matrix (needs a ground-truth dataset): rows in KL order")
        order = "kl" if activity is not None else "index"

    def base_label(d: int) -> str:
        text = f"z{d}"
        if activity is not None:
            text += f" {activity_kind} {float(activity[d]):.2f}"
        return text

    if order == "index":
        dims = list(range(latent_dim))
        labels = [base_label(d) for d in dims]
    elif order == "kl":
        dims = [int(d) for d in np.argsort(-np.asarray(activity), kind="stable")]
        labels = [base_label(d) for d in dims]
    else:
        mi = np.asarray(mi)
        if mi.shape[0] != latent_dim:
            raise ValueError(f"MI matrix has {mi.shape[0]} rows for {latent_dim} latents")
        names = factor_names or [f"v{k}" for k in range(mi.shape[1])]
        best = mi.argmax(axis=1)
        score = mi.max(axis=1).copy()
        if activity is not None and activity_kind == "KL":
            # A collapsed latent (KL ~ 0) has codes that barely move; the histogram estimator
            # still finds spurious MI in its tiny fluctuations, so treat it as capturing nothing.
            score[np.asarray(activity) < inactive_kl] = 0.0
        active = [d for d in range(latent_dim) if score[d] >= min_mi]
        inactive = [d for d in range(latent_dim) if score[d] < min_mi]
        active.sort(key=lambda d: (int(best[d]), -float(score[d])))
        inactive.sort(key=lambda d: -float(score[d]))
        dims = active + inactive
        labels = [
            f"z{d} {names[best[d]]} {score[d]:.2f}" if score[d] >= min_mi else f"z{d} (none)"
            for d in dims
        ]
        order = "factor"
    if max_latents is not None and max_latents < len(dims):
        dims, labels = dims[:max_latents], labels[:max_latents]
    return LatentOrder(dims=dims, labels=labels, criterion=order, notes=notes)


def activity_from_data(
    model: torch.nn.Module, data: Any, num: int = 256, seed: int = 0
) -> tuple[np.ndarray, str]:
    """:func:`kl_per_dim` on ``num`` seeded random images of ``data``."""
    indices = sample_indices(len(data), num, seed)
    return kl_per_dim(model, data_batch(data, indices))
