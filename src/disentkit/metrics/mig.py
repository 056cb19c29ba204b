"""Mutual Information Gap (Chen et al. 2018) as in disentanglement_lib ``mig.py``.

Study defaults (``mig.gin``): ``num_train=10000``, sampling chunk ``batch_size=16``,
histogram discretiser with ``num_bins=20``. Result key: ``discrete_mig``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from disentkit.metrics.declare import declare_metric
from disentkit.metrics.groups import kmeans_discretize_groups
from disentkit.metrics.sampling import DEFAULT_ENCODE_BATCH, RepresentationFunction, sample_codes
from disentkit.metrics.utils import discrete_entropy, discrete_mutual_info, histogram_discretize

__all__ = ["mig", "mig_from_codes", "mig_from_discrete"]


def mig_from_discrete(discrete_codes: np.ndarray, factors: np.ndarray) -> dict[str, Any]:
    """MIG from already discretised codes (N, D) and factor indices (N, K).

    Used directly by the FDAE protocol (k-means labels per group, wuancong/FDAE). Per factor:
    (largest MI over codes - second largest) / H(factor); mean over factors. A factor with zero
    empirical entropy divides by zero and gives nan/inf, as in dlib; fewer than 2 code
    dimensions raise (dlib fails with an IndexError).
    """
    discrete_codes = np.asarray(discrete_codes)
    factors = np.asarray(factors)
    if discrete_codes.shape[1] < 2:
        raise ValueError(
            f"MIG needs at least 2 code dimensions (gap between the two most informative codes), "
            f"got {discrete_codes.shape[1]}"
        )
    m = discrete_mutual_info(discrete_codes, factors)
    entropy = discrete_entropy(factors)
    sorted_m = np.sort(m, axis=0)[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        per_factor = np.divide(sorted_m[0, :] - sorted_m[1, :], entropy[:])
    return {
        "discrete_mig": float(np.mean(per_factor)),
        "mig_per_factor": per_factor,
        "mutual_info": m,
        "factor_entropy": entropy,
    }


def mig_from_codes(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict[str, Any]:
    """Array-level MIG: histogram-discretise codes (dlib ``utils.py``) then :func:`mig_from_discrete`."""
    return mig_from_discrete(histogram_discretize(np.asarray(codes), num_bins), factors)


def _fdae_score(reduced_draws: list, reducer: Any, random_state: np.random.RandomState,
                params: dict[str, Any]) -> dict[str, Any]:
    """FDAE's MIG (wuancong/FDAE): each group's PCA codes discretised by k-means, not histograms."""
    (codes, factors), = reduced_draws
    labels = kmeans_discretize_groups(codes, reducer.group_slices(), params.get("num_clusters", 20),
                                      params.get("kmeans_seed", 0),
                                      num_bins=params.get("num_bins", 20))
    return mig_from_discrete(labels, factors)


@declare_metric(
    "mig", headline="discrete_mig", order=30, shared_code=True, fdae=_fdae_score,
    presets={"study": {"num_train": 10000, "batch_size": 16, "num_bins": 20},
             "fast": {"num_train": 2000, "batch_size": 16, "num_bins": 20}},
)
def mig(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    random_state: np.random.RandomState,
    num_train: int = 10000,
    batch_size: int = 16,
    num_bins: int = 20,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
) -> dict[str, Any]:
    """dlib ``compute_mig``: sample ``num_train`` points (chunks of ``batch_size``) and score.

    Defaults are the Locatello et al. (2019) study values (``mig.gin``):
    ``num_train=10000`` points drawn in chunks of ``batch_size=16``, ``num_bins=20``.
    ``encode_batch_size`` only sets how many observations go to one representation call.
    Returns ``discrete_mig`` (mean over factors of the MI gap / H(factor), nats) and the MI
    matrix, factor entropies and per-factor gaps.
    """
    codes, factors = sample_codes(
        ground_truth_data, representation_function, num_train, random_state, batch_size,
        encode_batch_size,
    )
    return mig_from_codes(codes, factors, num_bins)


def draw_sizes(num_train: int = 10000, **_: Any) -> list[int]:
    """The consecutive ``sample_codes`` draws this metric makes (for code sharing)."""
    return [num_train]


def score_draws(
    draws: list[tuple[np.ndarray, np.ndarray]],
    random_state: np.random.RandomState,
    num_bins: int = 20,
    **_: Any,
) -> dict[str, Any]:
    """Score the training draw (``random_state`` unused; kept for a uniform interface)."""
    (codes, factors), = draws
    return mig_from_codes(codes, factors, num_bins)
