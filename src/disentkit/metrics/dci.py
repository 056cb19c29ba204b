"""DCI disentanglement / completeness / informativeness (Eastwood & Williams 2018) as in dlib
``dci.py``.

Study defaults (``dci.gin``): ``num_train=10000``, ``num_test=5000``, chunk ``batch_size=16``,
``GradientBoostingClassifier()`` with scikit-learn defaults per factor on the raw codes.
Result keys: ``informativeness_train``, ``informativeness_test`` (accuracies, as in dlib despite
the "err" names), ``disentanglement``, ``completeness``, plus ``importance_matrix`` (D, K).

dlib builds the GBTs without ``random_state`` (global generator, which only matters for split
tie-breaking); here each gets ``random_state=gbt_seed`` (default :func:`derived_seed` of the
metric stream after sampling, not consumed). The K per-factor fits run in parallel (joblib,
``n_jobs`` workers, ``backend`` "threading" or "loky" processes), dispatched largest first (most
classes = most trees per boosting stage) so two workers finish close together; results do not
depend on ``n_jobs``, ``backend`` or the dispatch order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.stats
from joblib import Parallel, delayed
from sklearn.ensemble import GradientBoostingClassifier

from disentkit.metrics.declare import declare_metric
from disentkit.metrics.sampling import DEFAULT_ENCODE_BATCH, RepresentationFunction, sample_draws
from disentkit.metrics.utils import derived_seed

__all__ = ["completeness", "dci", "dci_from_codes", "dci_from_importance", "disentanglement"]

#: joblib backend of the per-factor GBT fits (benchmarks/results/metrics_suite.md compares them)
DEFAULT_BACKEND = "threading"


def _fit_one(x_tr, y_tr, x_te, y_te, seed: int, gbt_params: dict[str, Any]):
    model = GradientBoostingClassifier(random_state=seed, **gbt_params)
    model.fit(x_tr, y_tr)
    importance = np.abs(model.feature_importances_)
    acc_tr = float(np.mean(model.predict(x_tr) == y_tr))
    acc_te = float(np.mean(model.predict(x_te) == y_te))
    return importance, acc_tr, acc_te


def disentanglement(importance_matrix: np.ndarray) -> float:
    """Importance-weighted mean over codes of 1 - H_K(row) (log base K = num factors)."""
    per_code = 1.0 - scipy.stats.entropy(importance_matrix.T + 1e-11, base=importance_matrix.shape[1])
    if importance_matrix.sum() == 0.0:
        importance_matrix = np.ones_like(importance_matrix)
    code_importance = importance_matrix.sum(axis=1) / importance_matrix.sum()
    return float(np.sum(per_code * code_importance))


def completeness(importance_matrix: np.ndarray) -> float:
    """Importance-weighted mean over factors of 1 - H_D(column) (log base D = num codes)."""
    per_factor = 1.0 - scipy.stats.entropy(importance_matrix + 1e-11, base=importance_matrix.shape[0])
    if importance_matrix.sum() == 0.0:
        importance_matrix = np.ones_like(importance_matrix)
    factor_importance = importance_matrix.sum(axis=0) / importance_matrix.sum()
    return float(np.sum(per_factor * factor_importance))


def dci_from_importance(importance_matrix: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) of a (D, K) importance matrix (dlib's algebra)."""
    importance_matrix = np.asarray(importance_matrix, dtype=np.float64)
    return disentanglement(importance_matrix), completeness(importance_matrix)


def dci_from_codes(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    gbt_seed: int = 0,
    n_jobs: int | None = -1,
    gbt_params: dict[str, Any] | None = None,
    backend: str = DEFAULT_BACKEND,
) -> dict[str, Any]:
    """Array-level DCI on points-first arrays; ``gbt_params`` extends the GBT defaults
    (e.g. FDAE's ``{"learning_rate": 0.1}`` is the default anyway)."""
    codes_train = np.asarray(codes_train)
    factors_train = np.asarray(factors_train)
    codes_test = np.asarray(codes_test)
    factors_test = np.asarray(factors_test)
    num_factors = factors_train.shape[1]
    params = dict(gbt_params or {})
    if backend not in ("threading", "loky"):
        raise ValueError(f"backend must be 'threading' or 'loky', got {backend!r}")
    # GBT cost grows with the number of classes (one tree per class per stage): largest first.
    classes = [len(np.unique(factors_train[:, j])) for j in range(num_factors)]
    order = sorted(range(num_factors), key=lambda j: -classes[j])
    sequential = n_jobs in (None, 1) or num_factors == 1
    done = Parallel(n_jobs=1 if sequential else n_jobs, backend=backend)(
        delayed(_fit_one)(codes_train, factors_train[:, j], codes_test, factors_test[:, j],
                          gbt_seed, params)
        for j in order
    )
    fits = [None] * num_factors
    for j, fit in zip(order, done, strict=True):
        fits[j] = fit
    importance = np.stack([f[0] for f in fits], axis=1).astype(np.float64)
    d, c = dci_from_importance(importance)
    return {
        "informativeness_train": float(np.mean([f[1] for f in fits])),
        "informativeness_test": float(np.mean([f[2] for f in fits])),
        "disentanglement": d,
        "completeness": c,
        "importance_matrix": importance,
    }


#: dci's draws per preset; dci_fast declares the same ones so the two share one code cache
SIZES = {"study": {"num_train": 10000, "num_test": 5000, "batch_size": 16},
         "fast": {"num_train": 2000, "num_test": 1000, "batch_size": 16}}


def _fdae_score(reduced_draws: list, reducer: Any, random_state: np.random.RandomState,
                params: dict[str, Any]) -> dict[str, Any]:
    """FDAE's DCI (wuancong/FDAE): the per-group PCA codes, GBT learning rate 0.1 unless given."""
    gbt = {"learning_rate": 0.1, **(params.get("gbt_params") or {})}
    return score_draws(reduced_draws, random_state, **{**params, "gbt_params": gbt})


@declare_metric("dci", headline="disentanglement", order=50, shared_code=True, fdae=_fdae_score,
                parallel=True, presets=SIZES)
def dci(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    random_state: np.random.RandomState,
    num_train: int = 10000,
    num_test: int = 5000,
    batch_size: int = 16,
    gbt_seed: int | None = None,
    n_jobs: int | None = -1,
    gbt_params: dict[str, Any] | None = None,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
    backend: str = DEFAULT_BACKEND,
) -> dict[str, Any]:
    """dlib ``compute_dci`` with the study defaults (``dci.gin``).

    ``num_train=10000`` then ``num_test=5000`` points (chunks of ``batch_size=16``), one
    ``GradientBoostingClassifier()`` (scikit-learn defaults; ``gbt_params`` overrides) per factor
    on the raw codes, ``random_state=gbt_seed`` (None: derived from the stream, not consumed).
    ``n_jobs``/``backend`` parallelise the per-factor fits without changing the numbers.
    """
    draws = sample_draws(ground_truth_data, representation_function, (num_train, num_test),
                         random_state, batch_size, encode_batch_size)
    return score_draws(draws, random_state, gbt_seed, n_jobs, gbt_params, backend)


def draw_sizes(num_train: int = 10000, num_test: int = 5000, **_: Any) -> list[int]:
    """The consecutive ``sample_codes`` draws this metric makes (for code sharing)."""
    return [num_train, num_test]


def score_draws(
    draws: list[tuple[np.ndarray, np.ndarray]],
    random_state: np.random.RandomState,
    gbt_seed: int | None = None,
    n_jobs: int | None = -1,
    gbt_params: dict[str, Any] | None = None,
    backend: str = DEFAULT_BACKEND,
    **_: Any,
) -> dict[str, Any]:
    """Score (train, test) draws; ``random_state`` is the metric stream after sampling."""
    (codes, factors), (codes_te, factors_te) = draws
    seed = derived_seed(random_state) if gbt_seed is None else gbt_seed
    return dci_from_codes(codes, factors, codes_te, factors_te, seed, n_jobs, gbt_params, backend)
