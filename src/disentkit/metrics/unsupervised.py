"""Unsupervised scores as in dlib ``unsupervised_metrics.py``.

Study defaults (``unsupervised.gin``): ``num_train=10000``, chunk ``batch_size=16``, 20 bins.
Result keys: ``gaussian_total_correlation``, ``gaussian_wasserstein_correlation``,
``gaussian_wasserstein_correlation_norm``, ``mutual_info_score``. A constant code gives
log 0 -> nan total correlation, exactly as in dlib (not an error); the corrected
behaviour, ``drop_constant_codes=True``, scores the non-constant codes only (a constant code is
independent of every other code, so it adds nothing to any of the dependence measures, and the
mutual-information average is then taken over the remaining pairs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from disentkit.metrics.declare import declare_metric
from disentkit.metrics.sampling import DEFAULT_ENCODE_BATCH, RepresentationFunction, sample_codes
from disentkit.metrics.utils import discrete_mutual_info, histogram_discretize

__all__ = ["gaussian_total_correlation", "gaussian_wasserstein_correlation", "unsupervised",
           "unsupervised_from_codes"]


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """0.5 (sum log diag cov - log det cov)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1]))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """2 tr cov - 2 tr sqrtm(cov scaled row-wise by diag cov)."""
    sqrtm = scipy.linalg.sqrtm(cov * np.expand_dims(np.diag(cov), axis=1))
    return float(np.real(2 * np.trace(cov) - 2 * np.trace(sqrtm)))


def unsupervised_from_codes(
    codes: np.ndarray, num_bins: int = 20, drop_constant_codes: bool = False
) -> dict[str, Any]:
    """Array-level unsupervised scores of (N, D) codes (D >= 2), dlib's formulas.

    Covariance ``np.cov`` (ddof=1) of the codes; total correlation
    ``0.5 (sum log diag - log det)``; Wasserstein ``2 tr C - 2 tr sqrtm(C * diag(C)[:, None])``
    and that divided by ``tr C``; mean off-diagonal MI between the 20-bin discretised codes.
    ``drop_constant_codes=True`` leaves exactly constant codes out (dlib: nan total
    correlation); ``num_dropped_codes`` is reported then.
    """
    codes = np.asarray(codes)
    out_extra: dict[str, Any] = {}
    if drop_constant_codes:
        keep = np.ptp(codes, axis=0) > 0
        out_extra["num_dropped_codes"] = int((~keep).sum())
        codes = codes[:, keep]
    num_codes = codes.shape[1]
    if num_codes < 2:
        raise ValueError(f"unsupervised scores need at least 2 code dimensions, got {num_codes}")
    cov = np.atleast_2d(np.cov(codes.T))
    wc = gaussian_wasserstein_correlation(cov)
    discrete = histogram_discretize(codes, num_bins)
    mi = discrete_mutual_info(discrete, discrete)  # m[i, j] = MI(labels_true=j, pred=i) as dlib
    np.fill_diagonal(mi, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        wc_norm = wc / np.sum(np.diag(cov))
    return {
        "gaussian_total_correlation": gaussian_total_correlation(cov),
        "gaussian_wasserstein_correlation": wc,
        "gaussian_wasserstein_correlation_norm": float(wc_norm),
        "mutual_info_score": float(np.sum(mi) / (num_codes**2 - num_codes)),
        **out_extra,
    }


@declare_metric(
    "unsupervised", headline="gaussian_total_correlation", order=80, shared_code=True,
    fdae="reduced",
    presets={"study": {"num_train": 10000, "batch_size": 16, "num_bins": 20},
             "fast": {"num_train": 2000, "batch_size": 16, "num_bins": 20}},
)
def unsupervised(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    random_state: np.random.RandomState,
    num_train: int = 10000,
    batch_size: int = 16,
    num_bins: int = 20,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
    drop_constant_codes: bool = False,
) -> dict[str, Any]:
    """dlib ``unsupervised_metrics`` with the study defaults (``unsupervised.gin``,
    Locatello et al. 2019): ``num_train=10000`` points in chunks of ``batch_size=16``, ``num_bins=20``.
    ``drop_constant_codes``: see the module docstring (False = dlib)."""
    codes, factors = sample_codes(
        ground_truth_data, representation_function, num_train, random_state, batch_size,
        encode_batch_size,
    )
    return unsupervised_from_codes(codes, num_bins, drop_constant_codes)


def draw_sizes(num_train: int = 10000, **_: Any) -> list[int]:
    """The consecutive ``sample_codes`` draws this metric makes (for code sharing)."""
    return [num_train]


def score_draws(
    draws: list[tuple[np.ndarray, np.ndarray]],
    random_state: np.random.RandomState,
    num_bins: int = 20,
    drop_constant_codes: bool = False,
    **_: Any,
) -> dict[str, Any]:
    """Score the training draw."""
    (codes, _factors), = draws
    return unsupervised_from_codes(codes, num_bins, drop_constant_codes)
