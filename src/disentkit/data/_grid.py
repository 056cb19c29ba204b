"""Shared pieces of the file-backed ground-truth datasets: a grid held as a uint8 array (in memory
or memory-mapped) and Pillow resizing of uint8 stacks."""

from __future__ import annotations

import numpy as np

from disentkit.data.base import GroundTruthData


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


def resize_stack(images: np.ndarray, size: int, method: str = "lanczos") -> np.ndarray:
    """Resize uint8 (n, H, W[, C]) images to (n, size, size[, C]) with Pillow (Lanczos default)."""
    from PIL import Image

    resample = {"lanczos": Image.Resampling.LANCZOS, "bilinear": Image.Resampling.BILINEAR}[method]
    out = np.empty((len(images), size, size) + images.shape[3:], dtype=np.uint8)
    for i, image in enumerate(images):  # Pillow resizes one image at a time (cache build only)
        out[i] = np.asarray(Image.fromarray(image).resize((size, size), resample))
    return out
