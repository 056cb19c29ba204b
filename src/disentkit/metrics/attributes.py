"""Metrics for data sets with attribute labels instead of a factor grid (CelebA, LFW).

* :func:`tad` -- TAD ("Total AUROC Difference", Yeats et al. 2022, NashAE), in the form used by
  InfoDiffusion and quoted by DisDiff for CelebA (ThomasMrY/DisDiff). What is
  implemented, exactly:

  1. AUROC matrix (A attributes x D codes): ``max(AUROC(y_a, z_d), AUROC(y_a, -z_d))`` = the
     AUROC of the better sign; computed for all pairs at once from average ranks (the
     Mann-Whitney form, ties count 1/2), equal to ``sklearn.metrics.roc_auc_score`` up to
     floating-point rounding (tested). A constant code gives 0.5.
  2. Per attribute: gap = best AUROC - second best AUROC over codes.
  3. Attribute filter: the best AUROC is >= ``auroc_threshold`` (0.75) **and** the attribute is
     not largely explained by another attribute: max_{b != a} I(y_a; y_b) / H(y_a) <=
     ``entropy_reduction_threshold`` (0.2), plug-in MI of the binary labels in nats.
  4. TAD = sum of the gaps of the attributes that pass; ``num_attributes`` = how many passed.

  :func:`tad_protocol` is InfoDiffusion's evaluation loop: the first ``max_points`` (10000)
  codes, ``KFold(5, shuffle=True, random_state=0)``, TAD on each training fold (after
  standardisation, which does not change AUROC), mean and std over folds.

* :func:`attribute_probe_ap` -- linear-probe attribute classification, mean average precision
  (PDAE/DiTi CelebA protocol, yue-zhongqi/diti): standardised codes, one ``LogisticRegression`` per
  attribute, ``average_precision_score`` on the test split. DiTi trained a ``Linear`` layer with
  Adam for 15 epochs and chose the epoch on validation; this closed-form probe is a documented
  substitute.
* :func:`attribute_regression` -- linear regression of continuous attributes (LFW): least squares
  (or ridge, ``alpha``) on standardised codes; mean Pearson r and mean MSE on the test split.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import average_precision_score
from sklearn.model_selection import KFold

from disentkit.metrics.declare import declare_metric

__all__ = ["attribute_probe_ap", "attribute_regression", "auroc_matrix", "tad", "tad_protocol"]


def _binary(attributes: np.ndarray) -> np.ndarray:
    """{-1, 1} or {0, 1} labels -> {0, 1} int (positive means > 0)."""
    return (np.asarray(attributes) > 0).astype(np.int64)


def auroc_matrix(codes: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    """(A, D) AUROC of each code for each binary attribute, taking the better sign."""
    codes = np.asarray(codes, dtype=np.float64)
    y = _binary(attributes)
    ranks = scipy.stats.rankdata(codes, axis=0)  # average ranks for ties
    n_pos = y.sum(axis=0).astype(np.float64)
    n_neg = y.shape[0] - n_pos
    rank_sum = y.T.astype(np.float64) @ ranks  # (A, D)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - (n_pos * (n_pos + 1) / 2)[:, None]) / (n_pos * n_neg)[:, None]
    auc = np.where(np.isfinite(auc), auc, 0.5)
    return np.maximum(auc, 1.0 - auc)


def _label_mi_matrix(y: np.ndarray) -> np.ndarray:
    """(A, A) plug-in MI (nats) between binary label columns; diagonal = entropies."""
    n = y.shape[0]
    yf = y.astype(np.float64)
    p11 = yf.T @ yf / n
    p1 = yf.mean(axis=0)
    p10 = p1[:, None] - p11
    p01 = p1[None, :] - p11
    p00 = 1.0 - p11 - p10 - p01
    out = np.zeros_like(p11)
    for joint, pa, pb in ((p11, p1[:, None], p1[None, :]), (p10, p1[:, None], 1 - p1[None, :]),
                          (p01, 1 - p1[:, None], p1[None, :]),
                          (p00, 1 - p1[:, None], 1 - p1[None, :])):
        with np.errstate(divide="ignore", invalid="ignore"):
            term = joint * np.log(joint / (pa * pb))
        out += np.where((joint > 0) & (pa > 0) & (pb > 0), term, 0.0)
    return out


def tad(
    codes: np.ndarray,
    attributes: np.ndarray,
    auroc_threshold: float = 0.75,
    entropy_reduction_threshold: float = 0.2,
) -> dict[str, Any]:
    """TAD of (N, D) codes against (N, A) binary attributes (see module docstring)."""
    codes = np.asarray(codes)
    y = _binary(attributes)
    if codes.shape[1] < 2:
        raise ValueError("TAD needs at least 2 code dimensions")
    auc = auroc_matrix(codes, y)
    order = np.sort(auc, axis=1)
    gaps = order[:, -1] - order[:, -2]
    mi = _label_mi_matrix(y)
    entropy = np.diag(mi).copy()
    off = mi * (1 - np.eye(mi.shape[0]))
    with np.errstate(divide="ignore", invalid="ignore"):
        reduction = off.max(axis=1) / entropy if mi.shape[0] > 1 else np.zeros_like(entropy)
    captured = (order[:, -1] >= auroc_threshold) & (reduction <= entropy_reduction_threshold)
    return {
        "tad": float(gaps[captured].sum()),
        "num_attributes": int(captured.sum()),
        "captured": captured,
        "auroc_gap": gaps,
        "auroc": auc,
        "best_code": auc.argmax(axis=1),
    }


# attribute metrics are scored by evaluate_attributes (split sizes per preset), not METRICS
@declare_metric(
    "tad", headline="tad", order=100, kind="attributes",
    presets={"study": {"num_points": 10000, "n_splits": 5, "auroc_threshold": 0.75,
                       "entropy_reduction_threshold": 0.2},
             "fast": {"num_points": 2000, "n_splits": 5, "auroc_threshold": 0.75,
                      "entropy_reduction_threshold": 0.2}},
)
def tad_protocol(
    codes: np.ndarray,
    attributes: np.ndarray,
    n_splits: int = 5,
    seed: int = 0,
    max_points: int | None = 10000,
    **tad_params: Any,
) -> dict[str, Any]:
    """InfoDiffusion's TAD loop: first ``max_points`` codes, K-fold, TAD on each training fold."""
    codes = np.asarray(codes)[:max_points]
    attributes = np.asarray(attributes)[:max_points]
    scores, counts = [], []
    for train_idx, _ in KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(codes):
        result = tad(codes[train_idx], attributes[train_idx], **tad_params)
        scores.append(result["tad"])
        counts.append(result["num_attributes"])
    return {
        "tad": float(np.mean(scores)),
        "tad_std": float(np.std(scores)),
        "num_attributes": float(np.mean(counts)),
        "num_attributes_std": float(np.std(counts)),
        "tad_per_fold": scores,
    }


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


@declare_metric(
    "attribute_probe_ap", headline="mean_ap", order=110, kind="attributes",
    presets={"study": {"num_train": None, "num_test": None, "C": 1.0, "max_iter": 1000},
             "fast": {"num_train": 2000, "num_test": 1000, "C": 1.0, "max_iter": 1000}},
)
def attribute_probe_ap(
    codes_train: np.ndarray,
    attributes_train: np.ndarray,
    codes_test: np.ndarray,
    attributes_test: np.ndarray,
    C: float = 1.0,
    max_iter: int = 1000,
) -> dict[str, Any]:
    """Linear-probe average precision per binary attribute; key ``mean_ap``."""
    x_tr, x_te = _standardise(np.asarray(codes_train, np.float64), np.asarray(codes_test, np.float64))
    y_tr, y_te = _binary(attributes_train), _binary(attributes_test)
    aps = np.full(y_tr.shape[1], np.nan)
    for a in range(y_tr.shape[1]):
        if len(np.unique(y_tr[:, a])) < 2 or y_te[:, a].sum() == 0:
            continue  # no classifier / AP undefined for this attribute
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(C=C, max_iter=max_iter).fit(x_tr, y_tr[:, a])
        aps[a] = average_precision_score(y_te[:, a], clf.decision_function(x_te))
    return {"mean_ap": float(np.nanmean(aps)), "ap_per_attribute": aps}


@declare_metric(
    "attribute_regression", headline="mean_pearson_r", order=120, kind="attributes",
    presets={"study": {"num_train": None, "num_test": None, "alpha": 0.0},
             "fast": {"num_train": 2000, "num_test": 1000, "alpha": 0.0}},
)
def attribute_regression(
    codes_train: np.ndarray,
    targets_train: np.ndarray,
    codes_test: np.ndarray,
    targets_test: np.ndarray,
    alpha: float = 0.0,
) -> dict[str, Any]:
    """Linear regression of continuous targets; keys ``mean_pearson_r``, ``mean_mse``.

    Codes are standardised with the training mean/std; ``alpha > 0`` uses ridge regression.
    Rows whose targets contain NaN (LFW images without attribute scores) are left out; their
    count is ``num_dropped``.
    """
    codes_train = np.asarray(codes_train, np.float64)
    codes_test = np.asarray(codes_test, np.float64)
    t_tr = np.asarray(targets_train, np.float64)
    t_te = np.asarray(targets_test, np.float64)
    if t_tr.ndim == 1:
        t_tr, t_te = t_tr[:, None], t_te[:, None]
    keep_tr = ~np.isnan(t_tr).any(axis=1)
    keep_te = ~np.isnan(t_te).any(axis=1)
    if keep_tr.sum() < 2 or keep_te.sum() < 2:
        raise ValueError(
            f"attribute_regression needs at least 2 labelled rows per split, found "
            f"{int(keep_tr.sum())} train / {int(keep_te.sum())} test without NaN targets"
        )
    num_dropped = int((~keep_tr).sum() + (~keep_te).sum())
    t_tr, t_te = t_tr[keep_tr], t_te[keep_te]
    x_tr, x_te = _standardise(codes_train[keep_tr], codes_test[keep_te])
    model = Ridge(alpha=alpha) if alpha > 0 else LinearRegression()
    pred = model.fit(x_tr, t_tr).predict(x_te)
    mse = np.mean((pred - t_te) ** 2, axis=0)
    pc = pred - pred.mean(axis=0)
    tc = t_te - t_te.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (pc * tc).sum(axis=0) / np.sqrt((pc**2).sum(axis=0) * (tc**2).sum(axis=0))
    return {"mean_pearson_r": float(np.nanmean(r)), "mean_mse": float(np.mean(mse)),
            "pearson_r": r, "mse": mse, "num_dropped": num_dropped}
