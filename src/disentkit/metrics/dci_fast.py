"""``dci_fast``: a fast *approximation* of DCI -- a different estimator, NOT the reference DCI.

Do not report its numbers as DCI (Eastwood & Williams 2018 / disentanglement_lib ``dci.py``):
the reference is :func:`disentkit.metrics.dci.dci`, which fits scikit-learn's exact
``GradientBoostingClassifier()`` per factor. ``dci_fast`` keeps everything else of that metric --
the same draws (``num_train=10000`` then ``num_test=5000`` points in chunks of ``batch_size=16``,
shared with the other metrics through :func:`~disentkit.metrics.suite.evaluate`'s code cache),
the same (codes x factors) importance-matrix algebra for disentanglement and completeness
(:func:`~disentkit.metrics.dci.dci_from_importance`) and the same informativeness (train/test
*accuracy*, as in dlib) -- but swaps the classifier and its importances:

* classifier: ``HistGradientBoostingClassifier`` with the reference's tree shape (depth 3, one tree
  per class per stage, ``min_samples_leaf=1``, no early stopping) on codes binned into at most
  255 quantile bins, with ``max_iter=50`` stages at ``learning_rate=0.2`` instead of 100 at 0.1
  (half the trees for the same total step length);
* importances: per factor, the split gains (second-order loss reduction) summed per code over
  every split of every tree and normalised to sum 1 -- the histogram-boosting counterpart of
  ``GradientBoostingClassifier.feature_importances_`` (summed first-order impurity decrease of the
  same splits). scikit-learn's histogram trees have no public importance attribute; the gains
  are read from the fitted trees' node arrays (``_predictors[i][k].nodes``, stable since
  scikit-learn 0.21), and a scikit-learn without them raises :class:`EstimatorUnavailableError`.
  Permutation importance was tried and rejected: it scores a code by the accuracy lost without it,
  so duplicated or redundant codes get ~0 and an entangled code's D rose by 0.2-0.3 over dci.

Measured agreement and speed: ``benchmarks/results/dci_fast_agreement.md``. Binning is the main
source of disagreement: a class boundary that falls inside a bin cannot be split exactly, so a
perfect code scores ~0.98 rather than 1.0. Each fit runs on one OpenMP thread, so the numbers
depend only on the inputs and the seed (not on ``n_jobs`` or the machine's core count).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from disentkit.errors import UserError
from disentkit.metrics.dci import SIZES as DCI_SIZES
from disentkit.metrics.dci import dci_from_importance
from disentkit.metrics.dci import draw_sizes as draw_sizes  # dci's draws: the codes are shared
from disentkit.metrics.declare import declare_metric
from disentkit.metrics.sampling import DEFAULT_ENCODE_BATCH, RepresentationFunction, sample_draws
from disentkit.metrics.utils import derived_seed

__all__ = ["DEFAULT_HGB_PARAMS", "ESTIMATOR", "EstimatorUnavailableError", "dci_fast",
           "dci_fast_from_codes", "split_gain_importance"]

#: recorded in every result so a dci_fast number is never mistaken for the reference DCI
ESTIMATOR = ("dci_fast: HistGradientBoostingClassifier split-gain importances (an approximation "
             "of DCI, not the reference dci)")

#: the reference GBT's tree shape; 50 stages at 0.2 instead of 100 at 0.1 (half the trees)
DEFAULT_HGB_PARAMS: dict[str, Any] = {
    "max_iter": 50, "learning_rate": 0.2, "max_depth": 3, "max_leaf_nodes": None,
    "min_samples_leaf": 1, "l2_regularization": 0.0, "max_bins": 255, "early_stopping": False,
}


class EstimatorUnavailableError(UserError, RuntimeError):
    """The installed scikit-learn's histogram trees do not expose the split gains dci_fast reads."""


def split_gain_importance(model: HistGradientBoostingClassifier, num_codes: int) -> np.ndarray:
    """Per-code sum of split gains over every tree of a fitted model, normalised to sum 1
    (all zeros when no tree split, as ``feature_importances_`` of a GBT that never split)."""
    import sklearn

    try:
        trees = [tree.nodes for stage in model._predictors for tree in stage]
        gains = np.zeros(num_codes, dtype=np.float64)
        for nodes in trees:
            inner = nodes["is_leaf"] == 0
            np.add.at(gains, nodes["feature_idx"][inner], nodes["gain"][inner])
    except (AttributeError, KeyError, ValueError, TypeError) as err:
        raise EstimatorUnavailableError(
            f"dci_fast reads split gains from HistGradientBoostingClassifier's fitted trees, which "
            f"scikit-learn {sklearn.__version__} does not expose ({type(err).__name__}); install "
            "a scikit-learn the package supports or use the reference metric dci") from None
    total = gains.sum()
    return gains / total if total > 0 else gains


def _fit_one(x_tr, y_tr, x_te, y_te, seed: int, params: dict[str, Any]):
    # One OpenMP thread per fit (set in the thread that fits): the trees are small, so on a busy
    # CPU OpenMP's thread teams cost more than they save, and one thread makes the histogram sums
    # (and so the numbers) the same on every machine; parallelism comes from fitting factors at once.
    with threadpool_limits(limits=1, user_api="openmp"):
        model = HistGradientBoostingClassifier(random_state=seed, **params)
        model.fit(x_tr, y_tr)
        acc_tr = float(np.mean(model.predict(x_tr) == y_tr))
        acc_te = float(np.mean(model.predict(x_te) == y_te))
    return split_gain_importance(model, x_tr.shape[1]), acc_tr, acc_te


def dci_fast_from_codes(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    hgb_seed: int = 0,
    n_jobs: int | None = -1,
    hgb_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Array-level ``dci_fast`` on points-first arrays; ``hgb_params`` extends
    :data:`DEFAULT_HGB_PARAMS`. The K per-factor fits run on ``n_jobs`` threads (largest factor
    first); the numbers do not depend on ``n_jobs``."""
    codes_train = np.asarray(codes_train, dtype=np.float64)
    factors_train = np.asarray(factors_train)
    codes_test = np.asarray(codes_test, dtype=np.float64)
    factors_test = np.asarray(factors_test)
    num_factors = factors_train.shape[1]
    params = {**DEFAULT_HGB_PARAMS, **(hgb_params or {})}
    # one tree per class per stage: the many-class factors take longest, start them first
    classes = [len(np.unique(factors_train[:, j])) for j in range(num_factors)]
    order = sorted(range(num_factors), key=lambda j: -classes[j])
    sequential = n_jobs in (None, 1) or num_factors == 1
    done = Parallel(n_jobs=1 if sequential else n_jobs, backend="threading")(
        delayed(_fit_one)(codes_train, factors_train[:, j], codes_test, factors_test[:, j],
                          hgb_seed, params)
        for j in order
    )
    fits: list[Any] = [None] * num_factors
    for j, fit in zip(order, done, strict=True):
        fits[j] = fit
    importance = np.stack([f[0] for f in fits], axis=1)
    d, c = dci_from_importance(importance)
    return {
        "informativeness_train": float(np.mean([f[1] for f in fits])),
        "informativeness_test": float(np.mean([f[2] for f in fits])),
        "disentanglement": d,
        "completeness": c,
        "importance_matrix": importance,
        "estimator": ESTIMATOR,
    }


# not a study metric (asked for by name): dci's draws and headline, a faster estimator
@declare_metric("dci_fast", headline="disentanglement", order=51, shared_code=True, parallel=True,
                presets=DCI_SIZES)
def dci_fast(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    random_state: np.random.RandomState,
    num_train: int = 10000,
    num_test: int = 5000,
    batch_size: int = 16,
    hgb_seed: int | None = None,
    n_jobs: int | None = -1,
    hgb_params: dict[str, Any] | None = None,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
) -> dict[str, Any]:
    """Fast approximation of :func:`~disentkit.metrics.dci.dci` -- NOT the reference DCI number.

    Same draws, keys and D/C/I algebra as ``dci`` (so the two share codes in ``evaluate``), with
    a ``HistGradientBoostingClassifier`` per factor (:data:`DEFAULT_HGB_PARAMS`, ``hgb_params``
    overrides) and split-gain importances instead of the exact GBT's ``feature_importances_``.
    ``hgb_seed=None`` derives the seed from the stream without consuming it. The result's
    ``estimator`` entry says which estimator made it.
    """
    draws = sample_draws(ground_truth_data, representation_function, (num_train, num_test),
                         random_state, batch_size, encode_batch_size)
    return score_draws(draws, random_state, hgb_seed, n_jobs, hgb_params)


def score_draws(
    draws: list[tuple[np.ndarray, np.ndarray]],
    random_state: np.random.RandomState,
    hgb_seed: int | None = None,
    n_jobs: int | None = -1,
    hgb_params: dict[str, Any] | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Score (train, test) draws; ``random_state`` is the metric stream after sampling."""
    (codes, factors), (codes_te, factors_te) = draws
    seed = derived_seed(random_state) if hgb_seed is None else hgb_seed
    return dci_fast_from_codes(codes, factors, codes_te, factors_te, seed, n_jobs, hgb_params)
