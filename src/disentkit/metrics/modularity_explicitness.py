"""Modularity and Explicitness (Ridgeway & Mozer 2018) as in dlib
``modularity_explicitness.py``.

Study defaults (``modularity_explicitness.gin``): ``num_train=10000``, ``num_test=5000``, chunk
``batch_size=16``, 20 histogram bins. Result keys: ``modularity_score``,
``explicitness_score_train``, ``explicitness_score_test``.

dlib crashes (NaN from a zero standard deviation) when a code is exactly constant over the
training sample; here that raises a clear ``ValueError`` unless ``drop_constant_codes=True``,
which leaves those codes out of the explicitness classifiers only (documented deviation).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import MultiLabelBinarizer

from disentkit.metrics.declare import declare_metric
from disentkit.metrics.sampling import DEFAULT_ENCODE_BATCH, RepresentationFunction, sample_draws
from disentkit.metrics.utils import discrete_mutual_info, histogram_discretize

__all__ = ["explicitness_per_factor", "modularity", "modularity_explicitness",
           "modularity_explicitness_from_codes"]


def modularity(mutual_information: np.ndarray) -> float:
    """Mean over codes of 1 - (sum m^2 - max m^2) / (max m^2 (K - 1)); zero-MI codes score 0."""
    squared_mi = np.square(mutual_information)
    max_squared_mi = np.max(squared_mi, axis=1)
    numerator = np.sum(squared_mi, axis=1) - max_squared_mi
    denominator = max_squared_mi * (squared_mi.shape[1] - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = numerator / denominator
    score = 1.0 - delta
    score[max_squared_mi == 0.0] = 0.0
    return float(np.mean(score))


def explicitness_per_factor(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> tuple[float, float]:
    """One-vs-rest ROC-AUC of a default ``LogisticRegression`` on standardised codes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression().fit(x_train, y_train)
    mlb = MultiLabelBinarizer()
    roc_train = roc_auc_score(mlb.fit_transform(np.expand_dims(y_train, 1)), clf.predict_proba(x_train))
    roc_test = roc_auc_score(mlb.fit_transform(np.expand_dims(y_test, 1)), clf.predict_proba(x_test))
    return float(roc_train), float(roc_test)


def modularity_explicitness_from_codes(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    num_bins: int = 20,
    drop_constant_codes: bool = False,
) -> dict[str, Any]:
    """Array-level Modularity (training MI) and Explicitness (train/test ROC-AUC)."""
    codes_train = np.asarray(codes_train)
    codes_test = np.asarray(codes_test)
    factors_train = np.asarray(factors_train)
    factors_test = np.asarray(factors_test)
    mi = discrete_mutual_info(histogram_discretize(codes_train, num_bins), factors_train)
    mean = np.mean(codes_train, axis=0)
    std = np.std(codes_train, axis=0)
    keep = np.ones(codes_train.shape[1], dtype=bool)
    if (std == 0).any():
        if not drop_constant_codes:
            raise ValueError(
                f"explicitness: code dimension(s) {np.flatnonzero(std == 0).tolist()} are constant "
                "over the training sample; dlib crashes here (standardisation divides by zero). "
                "Pass drop_constant_codes=True to leave them out of the explicitness classifiers."
            )
        keep = std > 0
        if not keep.any():
            raise ValueError("explicitness: every code dimension is constant")
    x_train = ((codes_train - mean) / np.where(keep, std, 1))[:, keep]
    x_test = ((codes_test - mean) / np.where(keep, std, 1))[:, keep]
    train, test = zip(
        *(explicitness_per_factor(x_train, factors_train[:, i], x_test, factors_test[:, i])
          for i in range(factors_train.shape[1])),
        strict=True,
    )
    return {
        "modularity_score": modularity(mi),
        "explicitness_score_train": float(np.mean(train)),
        "explicitness_score_test": float(np.mean(test)),
        "mutual_info": mi,
    }


@declare_metric(
    "modularity_explicitness", headline="modularity_score", order=60, shared_code=True,
    fdae="reduced",
    presets={"study": {"num_train": 10000, "num_test": 5000, "batch_size": 16, "num_bins": 20},
             "fast": {"num_train": 2000, "num_test": 1000, "batch_size": 16, "num_bins": 20}},
)
def modularity_explicitness(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    random_state: np.random.RandomState,
    num_train: int = 10000,
    num_test: int = 5000,
    batch_size: int = 16,
    num_bins: int = 20,
    drop_constant_codes: bool = False,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
) -> dict[str, Any]:
    """dlib ``compute_modularity_explicitness`` with the study defaults
    (``modularity_explicitness.gin``): ``num_train=10000`` then ``num_test=5000``
    points in chunks of ``batch_size=16``, ``num_bins=20``. ``drop_constant_codes=False`` raises
    on an exactly constant code (dlib crashes); True leaves it out of the classifiers."""
    draws = sample_draws(ground_truth_data, representation_function, (num_train, num_test),
                         random_state, batch_size, encode_batch_size)
    return score_draws(draws, random_state, num_bins, drop_constant_codes)


def draw_sizes(num_train: int = 10000, num_test: int = 5000, **_: Any) -> list[int]:
    """The consecutive ``sample_codes`` draws this metric makes (for code sharing)."""
    return [num_train, num_test]


def score_draws(
    draws: list[tuple[np.ndarray, np.ndarray]],
    random_state: np.random.RandomState,
    num_bins: int = 20,
    drop_constant_codes: bool = False,
    **_: Any,
) -> dict[str, Any]:
    """Score (train, test) draws (``random_state`` unused: lbfgs does not draw from it)."""
    (codes, factors), (codes_te, factors_te) = draws
    return modularity_explicitness_from_codes(codes, factors, codes_te, factors_te, num_bins,
                                              drop_constant_codes)
