"""Self-MIG: an unsupervised score for choosing FDAE's number of concepts N (Wu & Zheng,
"Factorized Diffusion Autoencoder for Unsupervised Disentangled Representation Learning",
AAAI 2024, Eq. 13 and Table 1). It is not in the authors' code (wuancong/FDAE); this is our
implementation of the paper's description.

Each of the 2N code groups (N content codes, N mask codes) is quantised into one discrete code
``q_i`` exactly as FDAE's MIG does it (per-group PCA to ``d_r`` components, then
``KMeans(20, random_state=0)``). With no ground-truth factors, every code plays the factor's
part: its most informative code is itself (``I(q_i; q_i) = H(q_i)``), so the gap to the
second-best one is ``H(q_i) - max_{j != i} I(q_i; q_j)``, divided by ``H(q_i)``:

    s_i = (H(q_i) - max_{j != i} I(q_i; q_j)) / H(q_i)

The paper's score takes the maximum of ``s_i`` over the codes (``reduction="max"``, the default);
``reduction="mean"`` averages them, the direct analogue of MIG's mean over factors. Both and the
per-code ``s_i`` are always returned, so a sweep can be read either way. A constant code (one
k-means cluster, ``H = 0``) carries no information and scores 0.

Values of the paper (Table 1, N = 2, 4, 6, 8, 10): Shapes3D .86 .88 .92 .89 .78; MPI3D .85 .86
.88 .87 .56; Cars3D .76 .62 .74 .67 .71 (the N with the highest score was chosen).

As a suite metric (``self_mig``, headline ``self_mig``) it shares MIG's draws (``num_train``
points, the factors unused): under ``protocol="fdae"`` it quantises the per-group PCA codes with
k-means as above; under ``"dlib"`` every code dimension is one code, histogram-discretised
(``num_bins``), as dlib's MIG does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from disentkit.metrics.declare import declare_metric
from disentkit.metrics.groups import GroupReducer, kmeans_discretize_groups, normalize_groups
from disentkit.metrics.sampling import DEFAULT_ENCODE_BATCH, RepresentationFunction, sample_codes
from disentkit.metrics.utils import discrete_mutual_info, histogram_discretize

__all__ = ["REDUCTIONS", "self_mig", "self_mig_from_discrete", "self_mig_metric"]

#: how the per-code gaps become one score
REDUCTIONS = ("max", "mean")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        from disentkit.errors import ConfigError

        raise ConfigError(f"self-MIG reduction must be one of {', '.join(REDUCTIONS)}, got "
                          f"{str(reduction)[:40]!r}")


def self_mig_from_discrete(labels: np.ndarray, reduction: str = "max") -> dict[str, Any]:
    """Self-MIG of already discretised codes ``labels`` (N points, K >= 2 codes).

    Returns ``{"self_mig": score, "self_mig_max", "self_mig_mean", "per_code": (K,),
    "code_entropy": (K,), "mutual_info": (K, K)}`` (nats; the diagonal of ``mutual_info`` is
    each code's entropy). ``self_mig`` is ``self_mig_max`` or ``self_mig_mean`` by ``reduction``.
    """
    _check_reduction(reduction)
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] < 2:
        raise ValueError(f"self-MIG needs (N, K) discrete codes with K >= 2 (a gap to the second "
                         f"most informative code), got shape {labels.shape}")
    mi = discrete_mutual_info(labels, labels)
    mi = (mi + mi.T) / 2  # symmetric up to rounding; make it exactly so
    entropy = np.diag(mi).copy()
    others = mi.copy()
    np.fill_diagonal(others, -np.inf)
    best_other = others.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_code = np.where(entropy > 0, (entropy - best_other) / np.where(entropy > 0, entropy, 1), 0.0)
    per_code = np.clip(per_code, 0.0, 1.0)  # I(q_i; q_j) <= H(q_i); clip rounding only
    out = {"self_mig_max": float(per_code.max()), "self_mig_mean": float(per_code.mean()),
           "per_code": per_code, "code_entropy": entropy, "mutual_info": mi, "reduction": reduction}
    out["self_mig"] = out[f"self_mig_{reduction}"]
    return out


def self_mig(
    codes: np.ndarray,
    groups: Any,
    group_dims: int | None = None,
    num_clusters: int = 20,
    kmeans_seed: int = 0,
    reduction: str = "max",
    num_bins: int = 20,
) -> dict[str, Any]:
    """Self-MIG of (N, D) codes laid out in ``groups`` (FDAE: the 2N content and mask groups).

    Each group is PCA-projected to ``group_dims`` components (default ``36 // len(groups)``, as
    FDAE's evaluation; the paper's N-sweep fixes 3) fitted on ``codes`` and quantised with
    ``KMeans(num_clusters, random_state=kmeans_seed)`` (a one-column group uses the ``num_bins``
    histogram, as FDAE's discretiser does); then :func:`self_mig_from_discrete`. The result
    also holds ``group_dims``, ``num_clusters`` and ``num_points``.
    """
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2:
        raise ValueError(f"self-MIG expects (N, D) codes, got shape {codes.shape}")
    group_list = normalize_groups(groups, codes.shape[1])
    dims = int(group_dims) if group_dims is not None else max(1, 36 // len(group_list))
    _check_reduction(reduction)
    reducer = GroupReducer(codes, group_list, dims)
    labels = kmeans_discretize_groups(reducer(codes), reducer.group_slices(), num_clusters,
                                      kmeans_seed, num_bins=num_bins)
    out = self_mig_from_discrete(labels, reduction)
    out.update(group_dims=dims, num_clusters=int(num_clusters), num_points=int(codes.shape[0]))
    return out


def draw_sizes(num_train: int = 10000, **_: Any) -> list[int]:
    """One draw of ``num_train`` points, MIG's (so the two share their codes)."""
    return [num_train]


def score_draws(draws: list, random_state: np.random.RandomState, num_bins: int = 20,
                reduction: str = "max", **_: Any) -> dict[str, Any]:
    """dlib protocol: every code dimension one code, histogram-discretised (``random_state`` unused)."""
    (codes, _factors), = draws
    return self_mig_from_discrete(histogram_discretize(np.asarray(codes), num_bins), reduction)


def _fdae_score(reduced_draws: list, reducer: Any, random_state: np.random.RandomState,
                params: dict[str, Any]) -> dict[str, Any]:
    """FDAE protocol: each group's PCA codes quantised by k-means, as FDAE's MIG does."""
    (codes, _factors), = reduced_draws
    labels = kmeans_discretize_groups(codes, reducer.group_slices(), params.get("num_clusters", 20),
                                      params.get("kmeans_seed", 0), num_bins=params.get("num_bins", 20))
    out = self_mig_from_discrete(labels, params.get("reduction", "max"))
    out.update(group_dims=reducer.dims, num_clusters=int(params.get("num_clusters", 20)),
               num_points=int(codes.shape[0]))
    return out


@declare_metric(
    "self_mig", headline="self_mig", order=85, shared_code=True, fdae=_fdae_score,
    presets={"study": {"num_train": 10000, "batch_size": 16, "num_bins": 20, "reduction": "max"},
             "fast": {"num_train": 2000, "batch_size": 16, "num_bins": 20, "reduction": "max"}},
)
def self_mig_metric(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    random_state: np.random.RandomState,
    num_train: int = 10000,
    batch_size: int = 16,
    num_bins: int = 20,
    reduction: str = "max",
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
) -> dict[str, Any]:
    """Self-MIG of ``num_train`` sampled codes (dlib protocol: one code per dimension); the
    factors are drawn but not used, so no ground truth enters the score."""
    codes, _factors = sample_codes(ground_truth_data, representation_function, num_train, random_state,
                                   batch_size, encode_batch_size)
    return score_draws([(codes, _factors)], random_state, num_bins=num_bins, reduction=reduction)
