"""BetaVAE score (Higgins et al. 2017) as in dlib ``beta_vae.py``.

Study defaults (``beta_vae_sklearn.gin``): ``batch_size=64``, ``num_train=10000``,
``num_eval=5000``. Result keys: ``train_accuracy``, ``eval_accuracy`` (the reported score).

The classifier is ``LogisticRegression(random_state=random_state)`` with scikit-learn defaults,
as in dlib. With scikit-learn >= 0.22 (lbfgs) the fit draws nothing from the stream (checked in
the tests); with <= 0.21 (liblinear, the 2019 study) it consumed one draw and shifted the
evaluation batch, so study numbers are scikit-learn-version dependent.

Fast and exact: both batches of every vote are drawn in dlib's order and encoded in large
batches; the features mean |z1 - z2| are one array operation (bit-identical, tested). With the
grid code cache (:mod:`disentkit.metrics.grid`) only the factor draws remain in the per-vote loop.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from disentkit.metrics.declare import declare_metric
from disentkit.metrics.grid import IndexedGrid
from disentkit.metrics.sampling import (
    DEFAULT_ENCODE_BATCH,
    BatchEncoder,
    RepresentationFunction,
    encode_observations,
)

__all__ = ["beta_vae", "beta_vae_features", "beta_vae_from_features"]


def beta_vae_features(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    batch_size: int,
    num_points: int,
    random_state: np.random.RandomState,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
) -> tuple[np.ndarray, np.ndarray]:
    """dlib ``_generate_training_batch``: features (num_points, D) and labels (num_points,)."""
    labels = np.empty(num_points, dtype=np.int64)
    num_factors = ground_truth_data.num_factors
    if isinstance(ground_truth_data, IndexedGrid):
        # Grid code cache: observations draw nothing, so only the factor draws stay in the
        # per-vote loop (same calls, same order); the shared factor is copied in one op.
        factors = np.empty((num_points, 2, batch_size, num_factors), dtype=np.int64)
        for v in range(num_points):
            labels[v] = random_state.randint(low=0, high=num_factors)
            factors[v, 0] = ground_truth_data.sample_factors(batch_size, random_state)
            factors[v, 1] = ground_truth_data.sample_factors(batch_size, random_state)
        rows = np.arange(num_points)
        factors[rows, 1, :, labels] = factors[rows, 0, :, labels]
        indices = ground_truth_data.sample_observations_from_factors(
            factors.reshape(-1, num_factors), random_state)
        codes = encode_observations(representation_function, indices, encode_batch_size)
    else:
        encoder = BatchEncoder(representation_function, max(encode_batch_size, 2 * batch_size))
        for v in range(num_points):
            index = random_state.randint(low=0, high=num_factors)
            factors1 = ground_truth_data.sample_factors(batch_size, random_state)
            factors2 = ground_truth_data.sample_factors(batch_size, random_state)
            factors2[:, index] = factors1[:, index]
            encoder.push(ground_truth_data.sample_observations_from_factors(factors1, random_state))
            encoder.push(ground_truth_data.sample_observations_from_factors(factors2, random_state))
            labels[v] = index
        codes = encoder.result()
    codes = codes.reshape(num_points, 2, batch_size, -1)
    features = np.mean(np.abs(codes[:, 0] - codes[:, 1]), axis=1)
    return features, labels


def beta_vae_from_features(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    eval_features: np.ndarray,
    eval_labels: np.ndarray,
    random_state: Any = 0,
) -> dict[str, Any]:
    """Array-level BetaVAE score: default ``LogisticRegression`` train/eval accuracy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(random_state=random_state)
        model.fit(train_features, train_labels)
    return {
        "train_accuracy": float(np.mean(model.predict(train_features) == train_labels)),
        "eval_accuracy": float(model.score(eval_features, eval_labels)),
    }


def _planned(p: dict[str, Any], num_factors: int) -> int:
    """Observations encoded: two images per vote, ``batch_size`` votes per point."""
    return 2 * p.get("batch_size", 64) * (p.get("num_train", 10000) + p.get("num_eval", 5000))


@declare_metric(
    "beta_vae", headline="eval_accuracy", order=10, planned=_planned,
    presets={"study": {"batch_size": 64, "num_train": 10000, "num_eval": 5000},
             "fast": {"batch_size": 64, "num_train": 1000, "num_eval": 500}},
)
def beta_vae(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    random_state: np.random.RandomState,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
) -> dict[str, Any]:
    """dlib ``compute_beta_vae_sklearn`` with the study defaults
    (``beta_vae_sklearn.gin``): ``batch_size=64`` observations per pair batch,
    ``num_train=10000`` training and ``num_eval=5000`` evaluation points, default
    ``LogisticRegression(random_state=random_state)`` on unscaled features. Returns
    ``train_accuracy`` and ``eval_accuracy`` (the reported score); :func:`beta_vae_from_features`
    scores given features."""
    train_x, train_y = beta_vae_features(
        ground_truth_data, representation_function, batch_size, num_train, random_state,
        encode_batch_size,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(random_state=random_state)
        model.fit(train_x, train_y)
    train_accuracy = float(np.mean(model.predict(train_x) == train_y))
    eval_x, eval_y = beta_vae_features(
        ground_truth_data, representation_function, batch_size, num_eval, random_state,
        encode_batch_size,
    )
    return {"train_accuracy": train_accuracy, "eval_accuracy": float(model.score(eval_x, eval_y))}
