"""Shared numerics of the metric suite: histogram discretisation, exact vectorised MI, seeds.

Everything here reproduces disentanglement_lib's ``evaluation/metrics/utils.py`` semantics
without calling scikit-learn in a D x K double loop:

* :func:`histogram_discretize` -- per code dimension, ``np.histogram`` bin edges (computed by
  numpy itself, so they inherit the dtype of the codes), last edge dropped, ``np.digitize``.
* :func:`discrete_mutual_info` -- the (num_codes, num_factors) plug-in MI matrix in nats. All
  contingency tables come from a single ``np.bincount``; each entry is then evaluated with the
  same floating-point expression, on the same non-zero cells in the same order, as
  ``sklearn.metrics.mutual_info_score`` -- the result is bit-for-bit equal (tested).
* :func:`derived_seed` -- an integer seed for scikit-learn estimators that dlib builds without a
  ``random_state`` (they read numpy's *global* generator there); we derive it from a *copy* of the
  metric's stream so the stream itself is not consumed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "as_numpy",
    "derived_seed",
    "discrete_entropy",
    "discrete_mutual_info",
    "histogram_discretize",
    "mutual_info_score_exact",
    "to_jsonable",
]

_EPS64 = np.finfo(np.float64).eps


def as_numpy(x: Any) -> np.ndarray:
    """numpy view of a numpy array or a (possibly CUDA / grad-carrying) torch tensor."""
    if isinstance(x, np.ndarray):
        return x
    detach = getattr(x, "detach", None)
    if detach is not None:  # torch.Tensor without importing torch here
        return detach().cpu().numpy()
    return np.asarray(x)


def derived_seed(random_state: np.random.RandomState) -> int:
    """A seed in [0, 2**31 - 1) drawn from a *copy* of ``random_state`` (the stream is untouched).

    Used for the estimators dlib fits with global randomness (DCI's GBT, SAP's LinearSVC, the
    FDAE k-means): the result is deterministic for a given metric seed and stream position.
    """
    copy = np.random.RandomState()
    copy.set_state(random_state.get_state())
    return int(copy.randint(2**31 - 1))


def histogram_discretize(values: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """dlib's ``_histogram_discretize`` on points-first data: (N, D) -> (N, D) labels 1..num_bins.

    Bin edges are ``np.histogram``'s for each column (same function numpy's histogram uses, so
    float32 codes get float32 edges), the last edge is dropped and ``np.digitize`` assigns labels;
    the column maximum lands in bin ``num_bins``; a constant column gets a single label. The output
    keeps the input dtype, like dlib's ``np.zeros_like`` buffer.
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"histogram_discretize expects (N, D) data, got shape {values.shape}")
    out = np.zeros_like(values)
    for j in range(values.shape[1]):
        column = values[:, j]
        edges = np.histogram_bin_edges(column, num_bins)
        out[:, j] = np.digitize(column, edges[:-1])
    return out


def _compact_labels(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Class index 0..C-1 of each label (sorted order, like ``np.unique``) and C."""
    classes, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64), int(classes.shape[0])


def _mi_from_table(table: np.ndarray, n: int) -> float:
    """``mutual_info_score`` on a dense contingency table (rows: labels_true), same arithmetic."""
    pi = table.sum(axis=1)
    pj = table.sum(axis=0)
    pi_present = pi[pi > 0]
    pj_present = pj[pj > 0]
    if pi_present.size == 1 or pj_present.size == 1:
        return 0.0
    nzx, nzy = np.nonzero(table)
    nz_val = table[nzx, nzy]
    log_contingency_nm = np.log(nz_val)
    contingency_nm = nz_val / n
    outer = pi.take(nzx).astype(np.int64, copy=False) * pj.take(nzy).astype(np.int64, copy=False)
    log_outer = -np.log(outer) + math.log(int(pi.sum())) + math.log(int(pj.sum()))
    mi = contingency_nm * (log_contingency_nm - math.log(n)) + contingency_nm * log_outer
    mi = np.where(np.abs(mi) < _EPS64, 0.0, mi)
    return float(np.clip(mi.sum(), 0.0, None))


def mutual_info_score_exact(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """``sklearn.metrics.mutual_info_score(labels_true, labels_pred)`` via ``np.bincount``."""
    a, na = _compact_labels(np.asarray(labels_true))
    b, nb = _compact_labels(np.asarray(labels_pred))
    table = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb)
    return _mi_from_table(table, int(a.shape[0]))


def discrete_mutual_info(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """dlib's ``discrete_mutual_info`` on points-first arrays: (N, D), (N, K) -> (D, K) nats.

    Entry [i, j] equals ``mutual_info_score(factors[:, j], codes[:, i])`` exactly (sklearn's
    argument order, as in dlib). One ``np.bincount`` builds every contingency table at once.
    """
    codes = np.asarray(codes)
    factors = np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or codes.shape[0] != factors.shape[0]:
        raise ValueError(
            f"discrete_mutual_info expects (N, D) codes and (N, K) factors with the same N, got "
            f"{codes.shape} and {factors.shape}"
        )
    n, num_codes = codes.shape
    num_factors = factors.shape[1]
    code_idx, code_card = zip(*(_compact_labels(codes[:, i]) for i in range(num_codes)), strict=True)
    fac_idx, fac_card = zip(*(_compact_labels(factors[:, j]) for j in range(num_factors)), strict=True)
    sizes = np.array([[fac_card[j] * code_card[i] for j in range(num_factors)] for i in range(num_codes)])
    offsets = np.concatenate([[0], np.cumsum(sizes.reshape(-1))])
    flat = np.empty((num_codes * num_factors, n), dtype=np.int64)
    for i in range(num_codes):
        for j in range(num_factors):
            p = i * num_factors + j
            flat[p] = offsets[p] + fac_idx[j] * code_card[i] + code_idx[i]
    counts = np.bincount(flat.reshape(-1), minlength=int(offsets[-1]))
    out = np.zeros((num_codes, num_factors), dtype=np.float64)
    for i in range(num_codes):
        for j in range(num_factors):
            p = i * num_factors + j
            table = counts[offsets[p] : offsets[p + 1]].reshape(fac_card[j], code_card[i])
            out[i, j] = _mi_from_table(table, n)
    return out


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """dlib's ``discrete_entropy``: ``mutual_info_score(y, y)`` per column of (N, K) -> (K,)."""
    factors = np.asarray(factors)
    out = np.zeros(factors.shape[1], dtype=np.float64)
    for j in range(factors.shape[1]):
        idx, card = _compact_labels(factors[:, j])
        table = np.diag(np.bincount(idx, minlength=card))
        out[j] = _mi_from_table(table, int(idx.shape[0]))
    return out


def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy/torch scalars and arrays inside ``obj`` to plain Python."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "detach"):
        return as_numpy(obj).tolist()
    return obj
