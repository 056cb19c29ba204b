"""Multi-factor FactorVAE metric (mFVM) of CFASL (GIST-IRR/CFASL ``src/disent_metrics/mfvm.py``).

For k fixed factors: fix k distinct factors across a batch, encode, take the k codes with the
smallest (local variance / global variance) among the active codes; the vote maps the sorted
factor tuple to the sorted code tuple. Accuracy = unweighted mean, over the factor tuples that
occurred, of (count of its most frequent code tuple) / (its total count).

Two named variants:

* :func:`mfvm` -- **CFASL protocol** defaults: ``batch_size=100`` images per sample drawn as
  *distinct dataset indices* from ``0..N-2`` (CFASL's off-by-one: the last image is never drawn;
  ``cfasl_index_range=False`` uses ``0..N-1``), ``num_train=800`` samples per k, global variance
  over ``num_variance_estimate=100`` images, active codes std >= ``prune_threshold=0.06``, no
  held-out set (training accuracy reported), k from 2 to K-1 (``num_fixed``). CFASL used torch's
  RNG; here one ``np.random.RandomState`` drives everything, so numbers match CFASL's protocol,
  not its exact draws. CFASL evaluates the *sampled* z; pass such a representation to match.
  Result keys: ``mfvm_{k}`` (accuracy), ``mfvm_mean``, ``num_active_dims``.
* :func:`mfvm_dlib` -- dlib-style variant: fresh stream, factors via ``sample_factors`` (64 per
  batch), 10000 variance points, threshold 0.05, 10000 training / 5000 evaluation samples per k;
  the factor-tuple -> code-tuple classifier is learned on training votes and scored on held-out
  votes. Keys: ``mfvm_{k}`` (eval accuracy), ``mfvm_{k}_train``, ``mfvm_mean``, ``num_active_dims``.

Draw order per sample (both variants): the k fixed factors (``random_state.choice(K, k,
replace=False)``), then the batch (indices or factors), then the observations.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from disentkit.metrics.declare import declare_metric
from disentkit.metrics.sampling import (
    DEFAULT_ENCODE_BATCH,
    BatchEncoder,
    RepresentationFunction,
    encode_observations,
)

__all__ = ["mfvm", "mfvm_dlib", "mfvm_votes", "mfvm_accuracy"]


def mfvm_votes(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    random_state: np.random.RandomState,
    num_fixed: int,
    num_points: int,
    batch_size: int,
    global_variances: np.ndarray,
    active_dims: np.ndarray,
    index_sampling: str = "factors",
    cfasl_index_range: bool = True,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
) -> tuple[np.ndarray, np.ndarray]:
    """(num_points, k) sorted fixed-factor tuples and (num_points, k) sorted active-code tuples.

    ``index_sampling="indices"`` draws distinct dataset indices (CFASL), ``"factors"`` uses
    ``sample_factors`` (dlib).
    """
    num_factors = ground_truth_data.num_factors
    if not 1 <= num_fixed <= num_factors:
        raise ValueError(f"num_fixed must be in [1, {num_factors}], got {num_fixed}")
    if int(active_dims.sum()) < num_fixed:
        raise ValueError(
            f"mFVM with k={num_fixed} needs at least {num_fixed} active codes, "
            f"found {int(active_dims.sum())}"
        )
    fixed_sets = np.empty((num_points, num_fixed), dtype=np.int64)
    encoder = BatchEncoder(representation_function, max(encode_batch_size, batch_size))
    high = len(ground_truth_data) - 1 if cfasl_index_range else len(ground_truth_data)
    if index_sampling == "indices" and batch_size > high:
        raise ValueError(
            f"mFVM (CFASL protocol) draws {batch_size} distinct images per sample but only {high} "
            "can be drawn; lower batch_size"
        )
    for v in range(num_points):
        fixed = np.sort(random_state.choice(num_factors, num_fixed, replace=False))
        if index_sampling == "indices":
            idx = random_state.choice(high, batch_size, replace=False)
            factors = ground_truth_data.index_to_factors(idx)
        elif index_sampling == "factors":
            factors = ground_truth_data.sample_factors(batch_size, random_state)
        else:
            raise ValueError(f"index_sampling must be 'indices' or 'factors', got {index_sampling!r}")
        factors[:, fixed] = factors[0, fixed]
        encoder.push(ground_truth_data.sample_observations_from_factors(factors, random_state))
        fixed_sets[v] = fixed
    codes = encoder.result().reshape(num_points, batch_size, -1)
    local = np.var(codes, axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = local[:, active_dims] / global_variances[active_dims]
    code_sets = np.sort(np.argsort(ratios, axis=1, kind="stable")[:, :num_fixed], axis=1)
    return fixed_sets, code_sets


def _classifier(fixed_sets: np.ndarray, code_sets: np.ndarray) -> dict[tuple, tuple]:
    counts: dict[tuple, Counter] = defaultdict(Counter)
    for f, c in zip(map(tuple, fixed_sets), map(tuple, code_sets), strict=True):
        counts[f][c] += 1
    # most frequent code tuple; ties broken by the smallest tuple (deterministic)
    return {f: min(cnt.items(), key=lambda kv: (-kv[1], kv[0]))[0] for f, cnt in counts.items()}


def mfvm_accuracy(
    fixed_sets: np.ndarray, code_sets: np.ndarray, classifier: dict[tuple, tuple] | None = None
) -> float:
    """Unweighted mean over observed factor tuples of the fraction of votes the classifier gets.

    Without ``classifier`` it is learned on the same votes (CFASL: count of the most frequent
    code tuple / total count per factor tuple).
    """
    if classifier is None:
        classifier = _classifier(fixed_sets, code_sets)
    hits: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for f, c in zip(map(tuple, fixed_sets), map(tuple, code_sets), strict=True):
        hits[f][0] += int(classifier.get(f) == c)
        hits[f][1] += 1
    return float(np.mean([h / n for h, n in hits.values()]))


def _global(ground_truth_data, representation_function, random_state, num_variance_estimate,
            prune_threshold, encode_batch_size):
    observations = ground_truth_data.sample_observations(num_variance_estimate, random_state)
    codes = encode_observations(representation_function, observations, encode_batch_size)
    variances = np.var(codes, axis=0, ddof=1)
    return variances, np.sqrt(variances) >= prune_threshold


def _num_ks(p: dict[str, Any], num_factors: int) -> int:
    ks = p.get("num_fixed")
    return len(list(ks)) if ks is not None else max(0, num_factors - 2)


def _planned(p: dict[str, Any], num_factors: int) -> int:
    """Observations encoded: the variance sample, then ``batch_size`` images per sample per k."""
    return p.get("num_variance_estimate", 100) + _num_ks(p, num_factors) * p.get(
        "batch_size", 100) * p.get("num_train", 800)


def _planned_dlib(p: dict[str, Any], num_factors: int) -> int:
    """As :func:`_planned`, with training and evaluation samples per k."""
    return p.get("num_variance_estimate", 10000) + _num_ks(p, num_factors) * p.get(
        "batch_size", 64) * (p.get("num_train", 10000) + p.get("num_eval", 5000))


# CFASL's defaults (not a Locatello et al. study metric); not part of FDAE's protocol
@declare_metric(
    "mfvm", headline="mfvm_mean", order=90, planned=_planned,
    presets={"study": {"batch_size": 100, "num_train": 800, "num_variance_estimate": 100,
                       "prune_threshold": 0.06},
             "fast": {"batch_size": 100, "num_train": 200, "num_variance_estimate": 100,
                      "prune_threshold": 0.06}},
)
def mfvm(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    random_state: np.random.RandomState,
    num_fixed: Sequence[int] | None = None,
    batch_size: int = 100,
    num_train: int = 800,
    num_variance_estimate: int = 100,
    prune_threshold: float = 0.06,
    cfasl_index_range: bool = True,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
) -> dict[str, Any]:
    """mFVM under the CFASL protocol (GIST-IRR/CFASL ``src/disent_metrics/eval.py``).

    Defaults: ``num_fixed`` = 2..K-1, ``batch_size=100`` distinct images per sample,
    ``num_train=800`` samples per k (training accuracy, no held-out set),
    ``num_variance_estimate=100``, ``prune_threshold=0.06``, ``cfasl_index_range=True`` (indices
    from 0..N-2, CFASL's off-by-one; False draws from 0..N-1). A k larger than the number of
    active codes scores 0.
    """
    ks = list(range(2, ground_truth_data.num_factors)) if num_fixed is None else list(num_fixed)
    variances, active = _global(ground_truth_data, representation_function, random_state,
                                num_variance_estimate, prune_threshold, encode_batch_size)
    out: dict[str, Any] = {"num_active_dims": int(active.sum())}
    for k in ks:
        if int(active.sum()) < k:
            out[f"mfvm_{k}"] = 0.0
            continue
        f, c = mfvm_votes(ground_truth_data, representation_function, random_state, k, num_train,
                          batch_size, variances, active, "indices", cfasl_index_range,
                          encode_batch_size)
        out[f"mfvm_{k}"] = mfvm_accuracy(f, c)
    out["mfvm_mean"] = float(np.mean([out[f"mfvm_{k}"] for k in ks])) if ks else float("nan")
    return out


@declare_metric(
    "mfvm_dlib", headline="mfvm_mean", order=91, planned=_planned_dlib,
    presets={"study": {"batch_size": 64, "num_train": 10000, "num_eval": 5000,
                       "num_variance_estimate": 10000, "prune_threshold": 0.05},
             "fast": {"batch_size": 64, "num_train": 1000, "num_eval": 500,
                      "num_variance_estimate": 2000, "prune_threshold": 0.05}},
)
def mfvm_dlib(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    random_state: np.random.RandomState,
    num_fixed: Sequence[int] | None = None,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_threshold: float = 0.05,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
) -> dict[str, Any]:
    """dlib-style mFVM: fresh stream, ``batch_size=64`` factor tuples per sample via
    ``sample_factors``, ``num_variance_estimate=10000``, ``prune_threshold=0.05``,
    ``num_train=10000`` training and ``num_eval=5000`` evaluation samples per k (k = 2..K-1 by
    default); the factor-tuple -> code-tuple classifier is learned on the training votes."""
    ks = list(range(2, ground_truth_data.num_factors)) if num_fixed is None else list(num_fixed)
    variances, active = _global(ground_truth_data, representation_function, random_state,
                                num_variance_estimate, prune_threshold, encode_batch_size)
    out: dict[str, Any] = {"num_active_dims": int(active.sum())}
    for k in ks:
        if int(active.sum()) < k:
            out[f"mfvm_{k}"] = out[f"mfvm_{k}_train"] = 0.0
            continue
        args = (batch_size, variances, active, "factors", False, encode_batch_size)
        f_tr, c_tr = mfvm_votes(ground_truth_data, representation_function, random_state, k,
                                num_train, *args)
        classifier = _classifier(f_tr, c_tr)
        f_ev, c_ev = mfvm_votes(ground_truth_data, representation_function, random_state, k,
                                num_eval, *args)
        out[f"mfvm_{k}_train"] = mfvm_accuracy(f_tr, c_tr, classifier)
        out[f"mfvm_{k}"] = mfvm_accuracy(f_ev, c_ev, classifier)
    out["mfvm_mean"] = float(np.mean([out[f"mfvm_{k}"] for k in ks])) if ks else float("nan")
    return out
