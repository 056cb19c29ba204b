"""The ground-truth data protocol (disentanglement_lib's ``GroundTruthData``) and an in-memory grid.

Every dataset with known factors of variation is a *complete factor grid*: one image per factor
tuple, stored row-major with the last factor varying fastest. Images stay ``uint8`` (N, H, W, C)
in memory (or memory-mapped); floats only exist for the batches that are asked for.

Conventions (disentanglement_lib ``data/ground_truth/ground_truth_data.py``, ``util.py``):

* factors are class *indices* ``0..size-1`` (int64), never physical values;
* ``sample_factors`` draws one ``random_state.randint(size, size=n)`` per factor, in factor order,
  which is exactly how disentanglement_lib's ``SplitDiscreteStateSpace`` consumes the legacy
  ``numpy.random.RandomState`` stream (so metric numbers match the reference bit for bit);
* ``sample_observations_from_factors`` returns float32 NHWC in [0, 1];
* the training path (``uint8_batch``) returns uint8 NHWC, converted on the device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def unit_float(images: np.ndarray, value_max: int = 255) -> np.ndarray:
    """uint8 images -> float32 in [0, 1] (``value_max`` is the uint8 value meaning 1.0), the
    disentanglement_lib observation convention."""
    return images.astype(np.float32) * np.float32(1.0 / value_max)

class GroundTruthData:
    """Base class for datasets whose images form a complete grid over discrete factors.

    Subclasses set ``factor_names``, ``factor_sizes`` and provide ``images_uint8`` (an array-like
    of shape (N, H, W, C) with ``N == prod(factor_sizes)``), or override ``uint8_from_indices``.
    """

    name: str = "ground_truth"
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    #: True when ``sample_observations_from_factors(f, rs)`` is a fixed function of ``f`` that
    #: draws nothing from ``rs`` (a plain stored or rendered grid). The metric suite then may
    #: encode the grid once and serve codes by flat index (``evaluate(code_cache=...)``). False
    #: by default, so subclasses that draw per-observation randomness (colour/noisy/scream
    #: dSprites, smallNORB's instance) are never cached; plain grids set it to True.
    deterministic_observations: bool = False

    # ---- factor space -------------------------------------------------------------------------
    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def factors_num_values(self) -> list[int]:
        """disentanglement_lib's name for ``factor_sizes``."""
        return list(self.factor_sizes)

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes, dtype=np.int64))

    @property
    def _strides(self) -> np.ndarray:
        sizes = np.asarray(self.factor_sizes, dtype=np.int64)
        return np.concatenate([np.cumprod(sizes[::-1])[::-1][1:], [1]]).astype(np.int64)

    def factors_to_index(self, factors: np.ndarray) -> np.ndarray:
        """Row-major flat index of each factor tuple (last factor fastest)."""
        factors = np.asarray(factors, dtype=np.int64)
        if factors.ndim != 2 or factors.shape[1] != self.num_factors:
            raise ValueError(
                f"{self.name}: expected factors of shape (n, {self.num_factors}) for factors "
                f"{list(self.factor_names)}, got shape {factors.shape}"
            )
        sizes = np.asarray(self.factor_sizes)
        if (factors < 0).any() or (factors >= sizes).any():
            bad = np.argwhere((factors < 0) | (factors >= sizes))[0]
            raise ValueError(
                f"{self.name}: factor '{self.factor_names[bad[1]]}' must be in "
                f"[0, {sizes[bad[1]] - 1}], got {factors[bad[0], bad[1]]} (row {bad[0]})"
            )
        return factors @ self._strides

    def index_to_factors(self, index: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`factors_to_index`: (n,) flat indices -> (n, K) int64 factors."""
        index = np.asarray(index, dtype=np.int64)
        if (index < 0).any() or (index >= len(self)).any():
            raise IndexError(f"{self.name}: index out of range [0, {len(self)})")
        return np.stack(np.unravel_index(index, self.factor_sizes), axis=-1).astype(np.int64)

    def sample_factors(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
        """Draw ``num`` factor tuples uniformly, one ``randint`` call per factor (dlib order)."""
        columns = [random_state.randint(size, size=num) for size in self.factor_sizes]
        return np.stack(columns, axis=1).astype(np.int64) if columns else np.zeros((num, 0), np.int64)

    # ---- observations -------------------------------------------------------------------------
    @property
    def observation_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one observation."""
        return tuple(self.uint8_from_indices(np.zeros(1, dtype=np.int64)).shape[1:])  # type: ignore[return-value]

    def uint8_from_indices(self, indices: np.ndarray) -> np.ndarray:
        """uint8 (n, H, W, C) images for flat indices. Default: fancy-index ``images_uint8``."""
        images = self.images_uint8
        indices = np.asarray(indices, dtype=np.int64)
        # Sorted reads are much faster on memory-mapped and HDF5 storage; restore order after.
        order = np.argsort(indices, kind="stable")
        out = np.empty((len(indices),) + tuple(images.shape[1:]), dtype=np.uint8)
        out[order] = images[indices[order]]
        return out

    @property
    def images_uint8(self) -> np.ndarray:  # pragma: no cover - subclasses provide it
        raise NotImplementedError(f"{type(self).__name__} must provide images_uint8")

    def sample_observations_from_factors(
        self, factors: np.ndarray, random_state: np.random.RandomState
    ) -> np.ndarray:
        """float32 NHWC observations in [0, 1] for the given factor tuples."""
        return unit_float(self.uint8_from_indices(self.factors_to_index(factors)), self.value_max)

    #: the uint8 value that means 1.0 (255 for photos; 1 for dSprites, which stores {0, 1}).
    value_max: int = 255

    def sample(self, num: int, random_state: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
        """Draw factors and their observations together (disentanglement_lib's ``sample``)."""
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)

    def sample_observations(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
        return self.sample(num, random_state)[1]

    # ---- training path ------------------------------------------------------------------------
    def uint8_batch(self, indices: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 NHWC tensor for flat indices (stays uint8 until it reaches the device)."""
        device_images = getattr(self, "_device_images", None)
        if device_images is not None:  # resident on a device after .to(device)
            return device_images[torch.as_tensor(indices, dtype=torch.long, device=device_images.device)]
        if isinstance(indices, torch.Tensor):
            indices = indices.cpu().numpy()
        return torch.from_numpy(self.uint8_from_indices(indices))

    def to(self, device: str | torch.device) -> GroundTruthData:
        """Keep the whole uint8 grid on ``device``; ``uint8_batch`` then indexes it there.

        Only for datasets whose ``images_uint8`` row ``i`` is flat index ``i`` (not for datasets
        that draw randomness per observation).
        """
        images = np.ascontiguousarray(self.uint8_from_indices(np.arange(len(self))))
        self._device_images = torch.from_numpy(images).to(device)
        return self


class StoredGrid(GroundTruthData):
    """A complete factor grid whose uint8 (N, H, W, C) images are an array or a memmap."""

    _images: np.ndarray
    deterministic_observations = True  # stored images: observation = images[flat index]

    @property
    def images_uint8(self) -> np.ndarray:
        return self._images

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return tuple(self._images.shape[1:])  # type: ignore[return-value]


class ArrayGroundTruthData(StoredGrid):
    """A complete factor grid held in a uint8 array (N, H, W, C) with ``N == prod(factor_sizes)``."""

    def __init__(
        self,
        images: np.ndarray,
        factor_names: Sequence[str],
        factor_sizes: Sequence[int],
        *,
        name: str = "array",
        value_max: int = 255,
    ) -> None:
        if images.dtype != np.uint8:
            raise TypeError(f"{name}: images must be uint8, got {images.dtype}")
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4:
            raise ValueError(f"{name}: images must be (N, H, W, C), got shape {images.shape}")
        if len(factor_names) != len(factor_sizes):
            raise ValueError(
                f"{name}: {len(factor_names)} factor names for {len(factor_sizes)} factor sizes"
            )
        expected = int(np.prod(factor_sizes, dtype=np.int64))
        if images.shape[0] != expected:
            raise ValueError(
                f"{name}: a complete grid over factor sizes {list(factor_sizes)} has {expected} "
                f"images, found {images.shape[0]}"
            )
        self._images = images
        self.name = name
        self.factor_names = tuple(factor_names)
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        self.value_max = value_max
