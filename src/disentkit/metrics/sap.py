"""Separated Attribute Predictability (Kumar et al. 2018) as in dlib ``sap_score.py``.

Study defaults (``sap_score.gin``): ``num_train=10000``, ``num_test=5000``, chunk ``batch_size=16``,
``continuous_factors=False``. Result key: ``SAP_score``.

dlib builds ``LinearSVC(C=0.01, class_weight="balanced")`` without ``random_state`` (numpy's
global generator); here every fit gets ``random_state=svc_seed`` (default: :func:`derived_seed`
of the metric stream after sampling, which does not consume it). The D x K one-dimensional fits
run in parallel threads (liblinear releases the GIL) with ``n_jobs``.

Solver: dlib's code takes scikit-learn's default ``dual``. That is ``dual="auto"`` from
scikit-learn 1.5 on (the primal solver for these n_samples > n_features fits: deterministic, no
use of ``random_state``), and it was ``dual=True`` (dual coordinate descent, random order) in the
scikit-learn of the 2019 study. ``dual="auto"`` (default) is what dlib's code computes with the
installed scikit-learn; ``dual=True`` selects the study-era solver (same optimum up to its
tolerance, accuracies agree to ~1e-4, 3-40x slower). The version is recorded by ``evaluate``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from disentkit.metrics.declare import declare_metric
from disentkit.metrics.sampling import DEFAULT_ENCODE_BATCH, RepresentationFunction, sample_draws
from disentkit.metrics.utils import derived_seed

__all__ = ["sap", "sap_from_codes", "sap_score_matrix"]


def _svc_accuracy(x_tr, y_tr, x_te, y_te, C: float, seed: int, dual: bool | str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LinearSVC(C=C, class_weight="balanced", random_state=seed, dual=dual)
        clf.fit(x_tr[:, np.newaxis], y_tr)
    return float(np.mean(clf.predict(x_te[:, np.newaxis]) == y_te))


def sap_score_matrix(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    continuous_factors: bool = False,
    C: float = 0.01,
    svc_seed: int = 0,
    n_jobs: int | None = 1,
    dual: bool | str = "auto",
) -> np.ndarray:
    """(D, K) SAP score matrix (dlib ``compute_score_matrix``), points-first inputs.

    Discrete: test accuracy of a 1-D ``LinearSVC`` per (code, factor). Continuous: squared
    correlation cov^2 / (var_code var_factor) from ``np.cov`` (ddof=1), 0 when var_code <= 1e-12.
    """
    codes_train = np.asarray(codes_train)
    factors_train = np.asarray(factors_train)
    num_codes, num_factors = codes_train.shape[1], factors_train.shape[1]
    out = np.zeros((num_codes, num_factors))
    if continuous_factors:
        for i in range(num_codes):
            for j in range(num_factors):
                cov = np.cov(codes_train[:, i], factors_train[:, j], ddof=1)
                var_mu, var_y = cov[0, 0], cov[1, 1]
                out[i, j] = cov[0, 1] ** 2 * 1.0 / (var_mu * var_y) if var_mu > 1e-12 else 0.0
        return out
    if codes_test is None or factors_test is None:
        raise ValueError("discrete SAP needs test codes and factors")
    codes_test = np.asarray(codes_test)
    factors_test = np.asarray(factors_test)
    pairs = [(i, j) for i in range(num_codes) for j in range(num_factors)]
    accs = Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(_svc_accuracy)(
            codes_train[:, i], factors_train[:, j], codes_test[:, i], factors_test[:, j], C, svc_seed,
            dual,
        )
        for i, j in pairs
    )
    for (i, j), acc in zip(pairs, accs, strict=True):
        out[i, j] = acc
    return out


def sap_from_codes(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    continuous_factors: bool = False,
    C: float = 0.01,
    svc_seed: int = 0,
    n_jobs: int | None = 1,
    dual: bool | str = "auto",
) -> dict[str, Any]:
    """Array-level SAP: mean over factors of (best - second best) score over codes.

    ``continuous_factors=True`` scores the training arrays only (squared correlations; the test
    arrays may be omitted), ``False`` (study) needs the test arrays (1-D LinearSVC accuracies).
    """
    matrix = sap_score_matrix(
        codes_train, factors_train, codes_test, factors_test, continuous_factors, C, svc_seed, n_jobs,
        dual,
    )
    if matrix.shape[0] < 2:
        raise ValueError(f"SAP needs at least 2 code dimensions, got {matrix.shape[0]}")
    sorted_matrix = np.sort(matrix, axis=0)
    return {
        "SAP_score": float(np.mean(sorted_matrix[-1, :] - sorted_matrix[-2, :])),
        "score_matrix": matrix,
    }


@declare_metric(
    "sap", headline="SAP_score", order=40, shared_code=True, fdae="reduced", parallel=True,
    presets={"study": {"num_train": 10000, "num_test": 5000, "batch_size": 16,
                       "continuous_factors": False},
             "fast": {"num_train": 2000, "num_test": 1000, "batch_size": 16,
                      "continuous_factors": False}},
)
def sap(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    random_state: np.random.RandomState,
    num_train: int = 10000,
    num_test: int = 5000,
    batch_size: int = 16,
    continuous_factors: bool = False,
    C: float = 0.01,
    svc_seed: int | None = None,
    n_jobs: int | None = 1,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
    dual: bool | str = "auto",
) -> dict[str, Any]:
    """dlib ``compute_sap``: train then test draw (chunks of ``batch_size``), then score.

    Defaults (study, ``sap_score.gin``): ``num_train=10000``, ``num_test=5000``,
    ``batch_size=16``, ``continuous_factors=False``, ``C=0.01``. The test set is drawn in both
    modes (as dlib does, so the stream is the same); continuous mode scores the training set only.
    ``svc_seed=None`` derives the LinearSVC seed from the stream (not consumed); dlib used numpy's
    global generator there. ``dual``: LinearSVC solver (module docstring).
    """
    draws = sample_draws(ground_truth_data, representation_function, (num_train, num_test),
                         random_state, batch_size, encode_batch_size)
    return score_draws(draws, random_state, continuous_factors, C, svc_seed, n_jobs, dual)


def draw_sizes(num_train: int = 10000, num_test: int = 5000, **_: Any) -> list[int]:
    """The consecutive ``sample_codes`` draws this metric makes (for code sharing)."""
    return [num_train, num_test]


def score_draws(
    draws: list[tuple[np.ndarray, np.ndarray]],
    random_state: np.random.RandomState,
    continuous_factors: bool = False,
    C: float = 0.01,
    svc_seed: int | None = None,
    n_jobs: int | None = 1,
    dual: bool | str = "auto",
    **_: Any,
) -> dict[str, Any]:
    """Score (train, test) draws; ``random_state`` is the metric stream after sampling."""
    (codes, factors), (codes_te, factors_te) = draws
    seed = derived_seed(random_state) if svc_seed is None else svc_seed
    return sap_from_codes(codes, factors, codes_te, factors_te, continuous_factors, C, seed, n_jobs,
                          dual)
