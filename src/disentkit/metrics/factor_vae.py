"""FactorVAE score (Kim & Mnih 2018) as in dlib ``factor_vae.py``.

Study defaults (``factor_vae_metric.gin``): ``batch_size=64``, ``num_train=10000``,
``num_eval=5000``, ``num_variance_estimate=10000``, ``prune_threshold=0.05``
(``prune_dims.threshold``; dlib's code default is 0). Result keys: ``train_accuracy``,
``eval_accuracy`` (the reported score), ``num_active_dims``.

Fast and exact: every vote's randomness is drawn in dlib's order (``randint(num_factors)``,
``sample_factors(64)``, ``sample_observations_from_factors``) but the observations of many votes
are encoded together (``encode_batch_size``), and the per-vote variances / argmins are one array
operation (bit-identical to the per-vote numpy calls; tested). With the grid code cache
(:mod:`disentkit.metrics.grid`) only the factor draws remain in the per-vote loop.

dlib quirk kept by default: ``num_active_dims`` is the total number of codes (the length of the
boolean mask); ``fix_num_active_dims=True`` reports the number of active codes instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from disentkit.metrics.declare import declare_metric
from disentkit.metrics.grid import IndexedGrid
from disentkit.metrics.sampling import (
    DEFAULT_ENCODE_BATCH,
    BatchEncoder,
    RepresentationFunction,
    encode_observations,
)

__all__ = ["accuracies_from_votes", "compute_variances", "factor_vae", "factor_vae_from_codes",
           "factor_vae_votes", "prune_dims", "votes_from_codes"]


def compute_variances(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    num_variance_estimate: int,
    random_state: np.random.RandomState,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
) -> np.ndarray:
    """Per-code variance (ddof=1) over ``num_variance_estimate`` observations (one ``sample``)."""
    observations = ground_truth_data.sample_observations(num_variance_estimate, random_state)
    codes = encode_observations(representation_function, observations, encode_batch_size)
    return np.var(codes, axis=0, ddof=1)


def prune_dims(variances: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Active codes: standard deviation >= ``threshold``."""
    return np.sqrt(variances) >= threshold


def factor_vae_votes(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    batch_size: int,
    num_points: int,
    random_state: np.random.RandomState,
    global_variances: np.ndarray,
    active_dims: np.ndarray,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
    transform: Any = None,
) -> np.ndarray:
    """(num_factors, num_codes) vote counts of ``num_points`` votes (dlib's training batch).

    ``transform`` (optional) maps raw codes to the evaluated representation (group PCA of the
    FDAE protocol); it is applied after encoding and does not touch the stream.
    """
    labels = np.empty(num_points, dtype=np.int64)
    num_factors = ground_truth_data.num_factors
    if isinstance(ground_truth_data, IndexedGrid):
        # Grid code cache: observations draw nothing, so only the factor draws stay in the
        # per-vote loop (same calls, same order); fixing the factor and indexing are one op each.
        factors = np.empty((num_points, batch_size, num_factors), dtype=np.int64)
        for v in range(num_points):
            labels[v] = random_state.randint(num_factors)
            factors[v] = ground_truth_data.sample_factors(batch_size, random_state)
        rows = np.arange(num_points)
        factors[rows, :, labels] = factors[rows, 0, labels][:, None]
        indices = ground_truth_data.sample_observations_from_factors(
            factors.reshape(-1, num_factors), random_state)
        codes = encode_observations(representation_function, indices, encode_batch_size)
    else:
        encoder = BatchEncoder(representation_function, max(encode_batch_size, batch_size))
        for v in range(num_points):
            factor_index = random_state.randint(num_factors)
            f = ground_truth_data.sample_factors(batch_size, random_state)
            f[:, factor_index] = f[0, factor_index]
            encoder.push(ground_truth_data.sample_observations_from_factors(f, random_state))
            labels[v] = factor_index
        codes = encoder.result()
    if transform is not None:
        codes = transform(codes)
    return votes_from_codes(codes.reshape(num_points, batch_size, -1), labels, global_variances,
                            active_dims, num_factors)


def votes_from_codes(
    vote_codes: np.ndarray,
    labels: np.ndarray,
    global_variances: np.ndarray,
    active_dims: np.ndarray,
    num_factors: int,
) -> np.ndarray:
    """(num_factors, num_codes) vote counts from the codes of each vote's batch (dlib ``factor_vae.py``).

    ``vote_codes`` is (V, B, D): the B codes of each of V votes (one factor fixed per vote),
    ``labels`` (V,) the fixed factor. Per vote: variance within the batch (ddof=1) divided by
    the global variance, argmin over the *active* codes. As in dlib, the vote's column is the
    argmin's position among the active codes in a matrix sized by all codes (accuracy is
    unaffected; with pruned codes the columns no longer name code dimensions).
    """
    vote_codes = np.asarray(vote_codes)
    labels = np.asarray(labels, dtype=np.int64)
    if vote_codes.ndim != 3 or len(labels) != vote_codes.shape[0]:
        raise ValueError(
            f"votes_from_codes expects (V, B, D) codes and V labels, got {vote_codes.shape} "
            f"and {labels.shape}"
        )
    local_variances = np.var(vote_codes, axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = local_variances[:, active_dims] / global_variances[active_dims]
    argmins = np.argmin(ratios, axis=1)
    votes = np.zeros((num_factors, global_variances.shape[0]), dtype=np.int64)
    np.add.at(votes, (labels, argmins), 1)
    return votes


def accuracies_from_votes(train_votes: np.ndarray, eval_votes: np.ndarray) -> tuple[float, float]:
    """Majority-vote classifier (code -> factor that voted for it most, ties: lowest factor)
    learned on ``train_votes``; (train accuracy, eval accuracy) as in dlib ``compute_factor_vae``."""
    classifier = np.argmax(train_votes, axis=0)
    other_index = np.arange(train_votes.shape[1])
    train_accuracy = np.sum(train_votes[classifier, other_index]) * 1.0 / np.sum(train_votes)
    eval_accuracy = np.sum(eval_votes[classifier, other_index]) * 1.0 / np.sum(eval_votes)
    return float(train_accuracy), float(eval_accuracy)


def _scores(train_votes: np.ndarray, eval_votes: np.ndarray, active_dims: np.ndarray,
            fix_num_active_dims: bool) -> dict[str, Any]:
    """The FactorVAE result from the two vote matrices (shared by the sampling and array paths)."""
    train_accuracy, eval_accuracy = accuracies_from_votes(train_votes, eval_votes)
    return {
        "train_accuracy": train_accuracy,
        "eval_accuracy": eval_accuracy,
        "num_active_dims": int(active_dims.sum()) if fix_num_active_dims else len(active_dims),
        "votes_train": train_votes,
        "votes_eval": eval_votes,
    }


def factor_vae_from_codes(
    variance_codes: np.ndarray,
    train_codes: np.ndarray,
    train_labels: np.ndarray,
    eval_codes: np.ndarray,
    eval_labels: np.ndarray,
    num_factors: int,
    prune_threshold: float = 0.05,
    fix_num_active_dims: bool = False,
) -> dict[str, Any]:
    """Array-level FactorVAE score.

    Args:
        variance_codes: (N, D) codes of the global-variance sample (ddof=1 variances).
        train_codes, eval_codes: (V, B, D) codes of the training / evaluation votes' batches.
        train_labels, eval_labels: (V,) index of the factor fixed in each vote.
        num_factors: K (rows of the vote matrices).
        prune_threshold: active codes have std >= threshold (study 0.05).
        fix_num_active_dims: report the number of active codes instead of dlib's total count.
    """
    global_variances = np.var(np.asarray(variance_codes), axis=0, ddof=1)
    active_dims = prune_dims(global_variances, prune_threshold)
    if not active_dims.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    train_votes = votes_from_codes(train_codes, train_labels, global_variances, active_dims,
                                   num_factors)
    eval_votes = votes_from_codes(eval_codes, eval_labels, global_variances, active_dims,
                                  num_factors)
    return _scores(train_votes, eval_votes, active_dims, fix_num_active_dims)


def _planned(p: dict[str, Any], num_factors: int) -> int:
    """Observations encoded: the variance sample, then ``batch_size`` images per vote."""
    return p.get("num_variance_estimate", 10000) + p.get("batch_size", 64) * (
        p.get("num_train", 10000) + p.get("num_eval", 5000))


# FDAE: the per-group reduction is fitted on this metric's own variance sample (fit_transform)
@declare_metric(
    "factor_vae", headline="eval_accuracy", order=20, planned=_planned, fdae="fit_transform",
    presets={"study": {"batch_size": 64, "num_train": 10000, "num_eval": 5000,
                       "num_variance_estimate": 10000, "prune_threshold": 0.05},
             "fast": {"batch_size": 64, "num_train": 1000, "num_eval": 500,
                      "num_variance_estimate": 2000, "prune_threshold": 0.05}},
)
def factor_vae(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    random_state: np.random.RandomState,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_threshold: float = 0.05,
    fix_num_active_dims: bool = False,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
    fit_transform: Any = None,
) -> dict[str, Any]:
    """dlib ``compute_factor_vae`` with the study defaults (``factor_vae_metric.gin``).

    Args:
        batch_size: observations per vote (64).
        num_train, num_eval: training / evaluation votes (10000 / 5000).
        num_variance_estimate: observations of the global-variance sample, drawn with one
            ``sample`` call (10000).
        prune_threshold: active codes have std >= threshold (study 0.05; dlib's code default 0).
        fix_num_active_dims: False (default) reports dlib's ``num_active_dims`` = total number of
            codes (bug kept); True reports the number of active codes.
        encode_batch_size: observations per representation call (no effect on the numbers).
        fit_transform: optional protocol hook, called with the variance-estimate codes; returns a
            function applied to every later batch of codes (the FDAE protocol's group PCA).

    Returns ``train_accuracy``, ``eval_accuracy`` (the reported score), ``num_active_dims``,
    ``votes_train``, ``votes_eval``. :func:`factor_vae_from_codes` scores given codes.
    """
    observations = ground_truth_data.sample_observations(num_variance_estimate, random_state)
    codes = encode_observations(representation_function, observations, encode_batch_size)
    transform = None
    if fit_transform is not None:
        transform = fit_transform(codes)
        codes = transform(codes)
    global_variances = np.var(codes, axis=0, ddof=1)
    active_dims = prune_dims(global_variances, prune_threshold)
    if not active_dims.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    train_votes = factor_vae_votes(
        ground_truth_data, representation_function, batch_size, num_train, random_state,
        global_variances, active_dims, encode_batch_size, transform,
    )
    eval_votes = factor_vae_votes(
        ground_truth_data, representation_function, batch_size, num_eval, random_state,
        global_variances, active_dims, encode_batch_size, transform,
    )
    return _scores(train_votes, eval_votes, active_dims, fix_num_active_dims)
