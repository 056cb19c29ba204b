"""Interventional Robustness Score (Suter et al. 2019) as in dlib ``irs.py``.

Defaults (``config/sample/irs/irs.gin`` + code default): ``num_train=10000``, chunk
``batch_size=16``, ``diff_quantile=0.99``, factors discretised with 20 histogram bins. Result keys:
``IRS``, ``num_active_dims``. dlib's ``num_active_dims`` is the *sum of the code values* (bug);
that is the default here, ``fix_num_active_dims=True`` reports the count of non-constant codes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from disentkit.metrics.declare import declare_metric
from disentkit.metrics.sampling import DEFAULT_ENCODE_BATCH, RepresentationFunction, sample_codes
from disentkit.metrics.utils import histogram_discretize

__all__ = ["irs", "irs_from_codes", "scalable_disentanglement_score"]


def scalable_disentanglement_score(
    gen_factors: np.ndarray, latents: np.ndarray, diff_quantile: float = 0.99
) -> dict[str, Any]:
    """IRS matrix and score of (N, K) discrete factors and (N, D) non-constant latents."""
    num_gen = gen_factors.shape[1]
    num_lat = latents.shape[1]
    max_deviations = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
    cum_deviations = np.zeros([num_lat, num_gen])
    for i in range(num_gen):
        unique_factors = np.unique(gen_factors[:, i], axis=0)
        for value in unique_factors:
            match = gen_factors[:, i] == value
            e_loc = np.mean(latents[match, :], axis=0)
            diffs = np.abs(latents[match, :] - e_loc)
            cum_deviations[:, i] += np.percentile(diffs, q=diff_quantile * 100, axis=0)
        cum_deviations[:, i] /= unique_factors.shape[0]
    normalized = cum_deviations / max_deviations[:, np.newaxis]
    irs_matrix = 1.0 - normalized
    scores = irs_matrix.max(axis=1)
    if np.sum(max_deviations) > 0.0:
        avg = np.average(scores, weights=max_deviations)
    else:
        avg = np.mean(scores)
    return {
        "disentanglement_scores": scores,
        "avg_score": float(avg),
        "parents": irs_matrix.argmax(axis=1),
        "IRS_matrix": irs_matrix,
        "max_deviations": max_deviations,
    }


def irs_from_codes(
    codes: np.ndarray,
    factors: np.ndarray,
    diff_quantile: float = 0.99,
    num_bins: int = 20,
    fix_num_active_dims: bool = False,
) -> dict[str, Any]:
    """Array-level IRS: discretise factors, drop exactly constant codes, score."""
    codes = np.asarray(codes)
    factors_discrete = histogram_discretize(np.asarray(factors), num_bins)
    active = codes[:, codes.std(axis=0) > 0.0]
    out: dict[str, Any] = {}
    if not active.any():
        out["IRS"] = 0.0
    else:
        details = scalable_disentanglement_score(factors_discrete, active, diff_quantile)
        out["IRS"] = details["avg_score"]
        out["IRS_matrix"] = details["IRS_matrix"]
    out["num_active_dims"] = int(active.shape[1]) if fix_num_active_dims else np.sum(active).item()
    return out


@declare_metric(
    "irs", headline="IRS", order=70, shared_code=True, fdae="reduced",
    presets={"study": {"num_train": 10000, "batch_size": 16, "diff_quantile": 0.99},
             "fast": {"num_train": 2000, "batch_size": 16, "diff_quantile": 0.99}},
)
def irs(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    random_state: np.random.RandomState,
    num_train: int = 10000,
    batch_size: int = 16,
    diff_quantile: float = 0.99,
    num_bins: int = 20,
    fix_num_active_dims: bool = False,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
) -> dict[str, Any]:
    """dlib ``compute_irs``: ``num_train=10000`` points in chunks of
    ``batch_size=16`` (``irs.gin``), ``diff_quantile=0.99`` (1.0 = the paper's max), factors
    binned with ``num_bins=20``. ``fix_num_active_dims``: module docstring."""
    codes, factors = sample_codes(
        ground_truth_data, representation_function, num_train, random_state, batch_size,
        encode_batch_size,
    )
    return irs_from_codes(codes, factors, diff_quantile, num_bins, fix_num_active_dims)


def draw_sizes(num_train: int = 10000, **_: Any) -> list[int]:
    """The consecutive ``sample_codes`` draws this metric makes (for code sharing)."""
    return [num_train]


def score_draws(
    draws: list[tuple[np.ndarray, np.ndarray]],
    random_state: np.random.RandomState,
    diff_quantile: float = 0.99,
    num_bins: int = 20,
    fix_num_active_dims: bool = False,
    **_: Any,
) -> dict[str, Any]:
    """Score the training draw."""
    (codes, factors), = draws
    return irs_from_codes(codes, factors, diff_quantile, num_bins, fix_num_active_dims)
