"""Shared pieces of the ground-truth datasets: a rendered grid with a lazy uint8 cache, a grid
whose observations draw randomness, and Pillow resizing of uint8 stacks (a grid held as a uint8
array is :class:`~disentkit.data.base.StoredGrid`)."""

from __future__ import annotations

import math

import numpy as np
import torch

from disentkit.data.base import GroundTruthData


class RenderedGrid(GroundTruthData):
    """A complete factor grid whose uint8 images come from ``render_indices``, with a lazy cache.

    When the whole grid is at most ``cache_mib`` MiB, rendered images are kept in chunks of
    ``CACHE_CHUNK`` consecutive indices, each chunk rendered on its first use.
    """

    CACHE_CHUNK = 4096
    _image_shape: tuple[int, int, int]
    deterministic_observations = True  # images are a fixed function of the factors

    def _setup_cache(self, image_shape: tuple[int, int, int], cache_mib: int) -> None:
        """Set the (H, W, C) of one image; keep a cache when the grid fits in ``cache_mib``."""
        self._image_shape = image_shape
        self._cache: np.ndarray | None = None
        self._rendered: np.ndarray | None = None
        self._cache_chunk = self.CACHE_CHUNK
        if len(self) * math.prod(image_shape) <= cache_mib * 2**20:
            self._cache = np.empty((len(self), *image_shape), dtype=np.uint8)
            self._rendered = np.zeros(math.ceil(len(self) / self._cache_chunk), dtype=bool)

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return self._image_shape

    def render_indices(self, indices: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Render (without the cache) uint8 (n, H, W, C) images for flat indices."""
        raise NotImplementedError

    def uint8_from_indices(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self._cache is None or self._rendered is None:
            return self.render_indices(indices)
        if (indices < 0).any() or (indices >= len(self)).any():
            raise IndexError(f"{self.name}: index out of range [0, {len(self)})")
        chunks = np.unique(indices // self._cache_chunk)
        for chunk in chunks[~self._rendered[chunks]]:
            start = int(chunk) * self._cache_chunk
            stop = min(start + self._cache_chunk, len(self))
            self._cache[start:stop] = self.render_indices(np.arange(start, stop))
            self._rendered[chunk] = True
        return self._cache[indices]

    @property
    def images_uint8(self) -> np.ndarray:
        """The whole grid (renders everything; only sensible for small grids)."""
        if self._cache is None or self._rendered is None:
            return self.render_indices(np.arange(len(self)))
        if not self._rendered.all():
            self.uint8_from_indices(np.arange(len(self)))
        return self._cache


class RandomObservationGrid(GroundTruthData):
    """A factor grid whose observations draw fresh randomness from ``random_state`` on every read,
    so they are never code-cached by the metric suite nor made device-resident."""

    deterministic_observations = False

    def to(self, device: str | torch.device) -> GroundTruthData:
        """Not supported: observations draw fresh randomness every time they are read."""
        raise NotImplementedError(
            f"{self.name} draws randomness per observation and cannot be made device-resident"
        )


def resize_stack(images: np.ndarray, size: int, method: str = "lanczos") -> np.ndarray:
    """Resize uint8 (n, H, W[, C]) images to (n, size, size[, C]) with Pillow (Lanczos default)."""
    from PIL import Image

    resample = {"lanczos": Image.Resampling.LANCZOS, "bilinear": Image.Resampling.BILINEAR}[method]
    out = np.empty((len(images), size, size) + images.shape[3:], dtype=np.uint8)
    for i, image in enumerate(images):  # Pillow resizes one image at a time (cache build only)
        out[i] = np.asarray(Image.fromarray(image).resize((size, size), resample))
    return out
