"""Grid code cache: encode a deterministic ground-truth grid once, serve codes by flat index.

At study size dlib's BetaVAE and FactorVAE encode 1.92 M and 0.97 M observations, far
more than a grid holds (46 080 images for the dSprites sub-grid, 737 280 for dSprites). When the
observation of a factor tuple is a fixed image (``deterministic_observations`` on the dataset:
stored or rendered grids, not colour/noisy/scream dSprites or smallNORB, which draw
per-observation randomness from ``random_state``), every code a metric needs is a row of the
codes of the whole grid. :class:`GridCodes` encodes the grid in index order, ``encode_batch_size``
images per representation call, and provides

* :meth:`GridCodes.index_data` -- a stand-in dataset whose ``sample_factors`` is the real one
  (every random number is drawn exactly as before, in the same order) and whose
  ``sample_observations_from_factors`` returns flat indices (``factors_to_index``) instead of
  images (the real one draws nothing from the stream either, which is checked);
* :meth:`GridCodes.lookup` -- the matching representation function: flat indices -> codes.

Any metric run with ``(grid.index_data(), grid.lookup)`` gives the numbers it gives with
``(data, representation)`` provided the representation maps an image to the same code whatever
batch it is in (true for row-wise code; batched BLAS/GPU kernels may differ in the last bits
between batch sizes). Tests compare both against the item-by-item reference.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from disentkit.metrics.sampling import DEFAULT_ENCODE_BATCH, RepresentationFunction, call_representation

__all__ = ["GridCacheTooLarge", "GridCodes", "IndexedGrid", "check_deterministic_observations"]


class GridCacheTooLarge(MemoryError):
    """The codes of the whole grid would exceed the allowed memory (``max_bytes``)."""


def _same_state(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and tuple(a[2:]) == tuple(b[2:])


def check_deterministic_observations(ground_truth_data: Any, num_probe: int = 4) -> None:
    """Raise ``ValueError`` unless ``ground_truth_data`` may be served from a grid code cache.

    Requires the ``deterministic_observations`` class attribute to be True and probes it: two
    calls of ``sample_observations_from_factors`` on the same ``num_probe`` factor tuples must
    return identical observations and leave the ``RandomState`` untouched.
    """
    name = getattr(ground_truth_data, "name", type(ground_truth_data).__name__)
    if not getattr(ground_truth_data, "deterministic_observations", False):
        raise ValueError(
            f"{name} ({type(ground_truth_data).__name__}) does not declare "
            "deterministic_observations = True: its observations may draw per-observation "
            "randomness from random_state (e.g. colour/noisy/scream dSprites, smallNORB), so codes "
            "cannot be served from a grid encoded once; use code_cache='off' (or 'auto')"
        )
    probe = np.random.RandomState(0).randint(len(ground_truth_data), size=num_probe)
    factors = ground_truth_data.index_to_factors(probe)
    rs = np.random.RandomState(1)
    before = rs.get_state()
    first = ground_truth_data.sample_observations_from_factors(factors.copy(), rs)
    second = ground_truth_data.sample_observations_from_factors(factors.copy(), rs)
    if not _same_state(before, rs.get_state()):
        raise ValueError(
            f"{name} declares deterministic_observations = True but sample_observations_from_factors "
            "consumed random numbers from random_state; fix the dataset's flag or use "
            "code_cache='off'"
        )
    if not np.array_equal(np.asarray(first), np.asarray(second)):
        raise ValueError(
            f"{name} declares deterministic_observations = True but returned different observations "
            "for the same factors; fix the dataset's flag or use code_cache='off'"
        )


class IndexedGrid:
    """Stand-in ground-truth dataset whose observations are flat grid indices (int64, shape (n,)).

    ``sample_factors`` and every other attribute are the wrapped dataset's, so a metric draws the
    same random numbers in the same order; pair it with :meth:`GridCodes.lookup`.
    """

    deterministic_observations = True

    def __init__(self, base: Any) -> None:
        self.base = base
        sizes = np.asarray(base.factor_sizes, dtype=np.int64)
        self._sizes = sizes
        self._strides = np.concatenate([np.cumprod(sizes[::-1])[::-1][1:], [1]]).astype(np.int64)

    def __getattr__(self, name: str) -> Any:
        if name == "base":  # not yet set (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.base, name)

    def __len__(self) -> int:
        return len(self.base)

    def sample_factors(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
        return self.base.sample_factors(num, random_state)

    def sample_observations_from_factors(
        self, factors: np.ndarray, random_state: np.random.RandomState
    ) -> np.ndarray:
        """Flat indices of ``factors`` (row-major, last factor fastest); draws nothing."""
        factors = np.asarray(factors)
        if (
            factors.ndim != 2
            or factors.shape[1] != len(self._sizes)
            or (factors < 0).any()
            or (factors >= self._sizes).any()
        ):
            return self.base.factors_to_index(factors)  # raises its descriptive error
        return factors.astype(np.int64, copy=False) @ self._strides

    def sample(self, num: int, random_state: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)

    def sample_observations(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
        return self.sample(num, random_state)[1]


class GridCodes:
    """The codes of every image of a deterministic ground-truth grid, encoded once.

    Args:
        ground_truth_data: a dataset with ``deterministic_observations = True`` (checked).
        representation_function: float32 NHWC [0, 1] -> (n, D) codes.
        encode_batch_size: images per representation call while encoding the grid.
        max_bytes: refuse (:class:`GridCacheTooLarge`, raised after the first batch) when the
            codes of the whole grid would need more memory; None: no limit.
    """

    def __init__(
        self,
        ground_truth_data: Any,
        representation_function: RepresentationFunction,
        encode_batch_size: int = DEFAULT_ENCODE_BATCH,
        max_bytes: int | None = None,
    ) -> None:
        if encode_batch_size < 1:
            raise ValueError(f"encode_batch_size must be >= 1, got {encode_batch_size}")
        check_deterministic_observations(ground_truth_data)
        self.data = ground_truth_data
        self.representation_function = representation_function
        self.encode_batch_size = int(encode_batch_size)
        self.max_bytes = max_bytes
        self._codes: np.ndarray | None = None
        self.num_calls = 0
        self.encode_seconds = 0.0

    @property
    def codes(self) -> np.ndarray:
        """(len(data), D) codes in flat-index order (encodes the grid on first access)."""
        if self._codes is None:
            self.encode()
        assert self._codes is not None
        return self._codes

    def encode(self) -> np.ndarray:
        """Encode the whole grid (index order) if not done yet; returns the codes."""
        if self._codes is not None:
            return self._codes
        t0 = time.perf_counter()
        n = len(self.data)
        rs = np.random.RandomState(0)  # never drawn from (checked in __init__)
        out: np.ndarray | None = None
        for start in range(0, n, self.encode_batch_size):
            index = np.arange(start, min(start + self.encode_batch_size, n))
            obs = self.data.sample_observations_from_factors(self.data.index_to_factors(index), rs)
            codes = call_representation(self.representation_function, obs)
            self.num_calls += 1
            if out is None:
                need = n * codes.shape[1] * codes.dtype.itemsize
                if self.max_bytes is not None and need > self.max_bytes:
                    raise GridCacheTooLarge(
                        f"codes of the whole grid need {need / 2**20:.0f} MiB "
                        f"({n} x {codes.shape[1]} {codes.dtype}), more than the "
                        f"{self.max_bytes / 2**20:.0f} MiB allowed"
                    )
                out = np.empty((n, codes.shape[1]), dtype=codes.dtype)
            out[start : start + len(index)] = codes
        if out is None:
            raise ValueError("the dataset has no images to encode")
        self._codes = out
        self.encode_seconds = time.perf_counter() - t0
        return out

    def lookup(self, indices: Any) -> np.ndarray:
        """Representation function of :meth:`index_data`: flat indices (n,) -> codes (n, D)."""
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu" or indices.ndim != 1:
            raise TypeError(
                "GridCodes.lookup takes the 1-D integer flat indices produced by "
                f"GridCodes.index_data(), got an array of dtype {indices.dtype} and shape "
                f"{indices.shape}; call the representation function directly on images"
            )
        return self.codes[indices]

    def index_data(self) -> IndexedGrid:
        """The stand-in dataset whose observations are flat indices (use with :meth:`lookup`)."""
        return IndexedGrid(self.data)
