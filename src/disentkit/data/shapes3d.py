"""3D Shapes (Burgess & Kim 2018; ``3dshapes.h5`` of deepmind/3d-shapes).

HDF5 datasets ``images`` (480000, 64, 64, 3) uint8 and ``labels`` (480000, 6) float64 holding
factor *values* whose ranges differ from the README; class indices are therefore derived from the
row index (row-major over floor_hue 10, wall_hue 10, object_hue 10, scale 8, shape 4,
orientation 15, orientation fastest), never from the float labels. The file is compressed, so
random per-item reads are slow: by default the whole array is read once into memory as uint8
(about 5.9 GB, never a float copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from disentkit.data.base import StoredGrid
from disentkit.data.files import (
    REDOWNLOAD,
    DataFileError,
    expect_array,
    explicit_path,
    h5_dataset,
    quote_error,
    read_error,
    require,
)
from disentkit.data.root import resolve_data_root
from disentkit.registry import DATASETS


@DATASETS.register("shapes3d")
class Shapes3D(StoredGrid):
    """3D Shapes: factors floor_hue, wall_hue, object_hue, scale, shape, orientation."""

    @dataclass
    class Config:
        #: explicit file; empty: ``<data root>/3dshapes/3dshapes.h5``
        path: str = ""
        #: read all images into memory (fast batches) instead of reading the HDF5 per batch
        in_memory: bool = True

    name = "shapes3d"
    factor_names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    factor_sizes = (10, 10, 10, 8, 4, 15)
    image_shape = (64, 64, 3)

    def __init__(self, config: Config | None = None, *, data_root: Path | None = None) -> None:
        import h5py

        config = config if config is not None else self.Config()
        self.path = explicit_path("shapes3d", config.path) or require(
            "shapes3d", resolve_data_root(data_root)
        )
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            raise read_error(
                self.path, err, "HDF5 file", "it may be truncated: delete it and run "
                "`disentkit data download shapes3d`"
            ) from err
        try:
            self._open_images(config.in_memory)
        except BaseException:
            self._file.close()
            raise

    def _open_images(self, in_memory: bool) -> None:
        missing = [k for k in ("images", "labels") if k not in self._file]
        if missing:
            raise DataFileError(
                f"{self.path}: expected datasets ['images', 'labels'], missing {missing}; found "
                f"{list(self._file.keys())[:10]}"
            )
        n = len(self)
        images = h5_dataset(self._file, "images", self.path)
        labels = h5_dataset(self._file, "labels", self.path)
        expect_array(self.path, "images", (n, *self.image_shape), np.uint8, images.shape, images.dtype)
        expect_array(self.path, "labels", (n, 6), np.float64, labels.shape, labels.dtype)
        if in_memory:
            self._images = np.empty(images.shape, dtype=np.uint8)
            step = 20000
            try:
                for start in range(0, n, step):
                    stop = min(start + step, n)
                    images.read_direct(self._images, np.s_[start:stop], np.s_[start:stop])
            except OSError as err:
                raise DataFileError(
                    f"{self.path}: cannot read 'images' ({quote_error(err)}); {REDOWNLOAD}"
                ) from err
            self._file.close()
        else:
            self._images = images

    def close(self) -> None:
        """Close the HDF5 file (only open when ``in_memory`` is false)."""
        self._file.close()

    def uint8_from_indices(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if isinstance(self._images, np.ndarray):
            return self._images[indices]
        # h5py needs increasing unique indices: read those once, then scatter back
        unique, inverse = np.unique(indices, return_inverse=True)
        return self._images[unique][inverse]
