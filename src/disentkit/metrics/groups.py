"""Group-code protocols for vector-valued concept codes (FDAE: wuancong/FDAE
``evaluate_diffusion.py``; DisDiff: ThomasMrY/DisDiff ``evaluate.py``).

* **DisDiff**: each latent chunk (group) is reduced to **one** dimension by PCA fitted on the
  evaluation codes (DisDiff: the whole data set encoded in index order), then the dlib metrics
  run unchanged on the (N, num_groups) representation.
* **FDAE**: each group is PCA-projected to ``dims`` components (``36 // num_groups`` in the
  paper) fitted on the metric's own training sample; MIG discretises each group with
  ``KMeans(num_clusters=20, random_state=0)`` into one label per group (histogram if ``dims ==
  1``); DCI uses ``GradientBoostingClassifier(learning_rate=0.1)`` (= the default) on the PCA dims.

``groups`` is either a length-D vector of group ids (FDAE's ``group_label``) or a list of index
lists; :func:`contiguous_groups` builds the common layout of consecutive equal chunks (what
``disentkit eval --groups K`` / ``--group-size S`` use). These reductions are explicit, recorded
pre-processing steps (``evaluate(protocol=...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

__all__ = ["GroupReducer", "contiguous_groups", "kmeans_discretize_groups", "normalize_groups",
           "reduce_groups"]


def contiguous_groups(num_codes: int, num_groups: int | None = None,
                      group_size: int | None = None) -> list[list[int]]:
    """Consecutive code dimensions as groups: ``num_groups`` equal chunks, or chunks of
    ``group_size`` dimensions (give exactly one). Raises :class:`~disentkit.config.ConfigError`
    when the code does not split evenly."""
    from disentkit.errors import ConfigError

    if (num_groups is None) == (group_size is None):
        raise ConfigError("give exactly one of num_groups and group_size for the group layout")
    by_count = num_groups is not None
    value = int(num_groups if by_count else group_size)  # type: ignore[arg-type]
    if value < 1 or num_codes % value:
        what = f"{value} equal groups" if by_count else f"groups of {value} dimensions"
        divisors = ", ".join(str(d) for d in range(1, num_codes + 1) if num_codes % d == 0)
        raise ConfigError(
            f"the code has {num_codes} dimensions, which do not split into {what}; choose a "
            f"{'number of groups' if by_count else 'group size'} that divides {num_codes} ({divisors})"
        )
    size = num_codes // value if by_count else value
    return [list(range(start, start + size)) for start in range(0, num_codes, size)]


def normalize_groups(groups: Any, num_codes: int | None = None) -> list[np.ndarray]:
    """Group specification -> list of index arrays (group ids are taken in sorted order)."""
    if isinstance(groups, np.ndarray) and groups.ndim == 1 and groups.dtype.kind in "iu":
        ids = groups
    elif len(groups) and np.isscalar(groups[0]):
        ids = np.asarray(groups)
    else:
        out = [np.asarray(g, dtype=np.int64) for g in groups]
        if not out or any(g.size == 0 for g in out):
            raise ValueError("groups must be non-empty index lists")
        return out
    if num_codes is not None and len(ids) != num_codes:
        raise ValueError(f"a group-id vector needs one id per code dimension ({num_codes}), got {len(ids)}")
    return [np.flatnonzero(ids == g) for g in np.unique(ids)]


class GroupReducer:
    """Per-group PCA fitted on ``fit_codes``; calling it maps (N, D) codes to (N, sum dims)."""

    def __init__(self, fit_codes: np.ndarray, groups: Any, dims: int = 1) -> None:
        fit_codes = np.asarray(fit_codes, dtype=np.float64)
        self.groups = normalize_groups(groups, fit_codes.shape[1])
        self.dims = int(dims)
        # random_state only matters if scikit-learn picks its randomized SVD (large, wide groups);
        # fixed so that no fit reads numpy's global generator (FDAE/DisDiff left it at None).
        self.pcas = [
            PCA(n_components=min(self.dims, len(g), fit_codes.shape[0]), random_state=0).fit(
                fit_codes[:, g])
            for g in self.groups
        ]

    def __call__(self, codes: Any) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.float64)
        return np.concatenate(
            [pca.transform(codes[:, g]) for pca, g in zip(self.pcas, self.groups, strict=True)],
            axis=1,
        )

    def group_slices(self) -> list[slice]:
        """Column ranges of each group in the reduced representation."""
        out, start = [], 0
        for pca in self.pcas:
            out.append(slice(start, start + pca.n_components_))
            start += pca.n_components_
        return out


def reduce_groups(
    codes: np.ndarray,
    groups: Any,
    method: str = "pca",
    dims: int = 1,
    fit_codes: np.ndarray | None = None,
) -> np.ndarray:
    """Reduce each code group to ``dims`` PCA components fitted on ``fit_codes`` (default: codes).

    ``method="pca"`` is the only reduction (FDAE and DisDiff both use PCA); ``"mean"`` averages
    each group, a simple non-fitted alternative.
    """
    codes = np.asarray(codes)
    if method == "pca":
        return GroupReducer(codes if fit_codes is None else fit_codes, groups, dims)(codes)
    if method == "mean":
        return np.stack([codes[:, g].mean(axis=1) for g in normalize_groups(groups, codes.shape[1])], 1)
    raise ValueError(f"unknown group reduction {method!r}; use 'pca' or 'mean'")


def kmeans_discretize_groups(
    reduced_codes: np.ndarray,
    group_slices: Sequence[slice],
    num_clusters: int = 20,
    random_state: int = 0,
    n_init: int = 10,
    num_bins: int = 20,
) -> np.ndarray:
    """FDAE's "cluster discretizer": one k-means label per group, (N, num_groups).

    Groups with a single column use the histogram rule instead (as FDAE does). ``n_init=10`` is
    scikit-learn's default at the time FDAE was written (newer versions default to 1).
    """
    from disentkit.metrics.utils import histogram_discretize

    labels = []
    for sl in group_slices:
        block = np.asarray(reduced_codes[:, sl])
        if block.shape[1] == 1:
            labels.append(histogram_discretize(block, num_bins)[:, 0].astype(np.int64))
        else:
            km = KMeans(n_clusters=num_clusters, random_state=random_state, n_init=n_init)
            labels.append(km.fit_predict(block))
    return np.stack(labels, axis=1)


def reducer_factory(groups: Any, dims: int) -> Callable[[np.ndarray], GroupReducer]:
    """A ``fit_transform`` hook: fit a :class:`GroupReducer` on the codes it is given."""
    return lambda codes: GroupReducer(codes, groups, dims)
