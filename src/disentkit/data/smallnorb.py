"""smallNORB (binary matrix files; specs/datasets.md §1), as disentanglement_lib uses it.

File format: little-endian int32 magic (0x1E3D4C55 uint8, 0x1E3D4C54 int32, 0x1E3D4C51 float32,
0x1E3D4C53 float64, 0x1E3D4C56 int16), int32 ndim, then max(3, ndim) int32 dims (unused ones
padded), then the data. ``dat`` is (24300, 2, 96, 96) uint8 (camera 0 is used), ``cat`` (24300,)
the category, ``info`` (24300, 4): instance, elevation, azimuth (0, 2, ..., 34: halved), lighting.

Train and test are concatenated (48,600 images) into the grid category 5 x instance 10 x
elevation 9 x azimuth 18 x lighting 6. Factors are (category, elevation, azimuth, lighting);
the instance is a nuisance drawn at random for every observation (one ``randint(10, size=n)``
from the passed ``random_state``; the training path uses a generator seeded with
``Config.seed``). Images are resized to 64x64 with Pillow Lanczos and cached as ``smallnorb_64.npy``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from disentkit.data._grid import RandomObservationGrid, resize_stack
from disentkit.data.base import unit_float
from disentkit.data.files import FILES, DataFileError, atomic_save_npy, load_npy, require
from disentkit.data.root import resolve_data_root
from disentkit.registry import DATASETS

MAGIC = {
    0x1E3D4C55: np.dtype("<u1"),
    0x1E3D4C54: np.dtype("<i4"),
    0x1E3D4C51: np.dtype("<f4"),
    0x1E3D4C53: np.dtype("<f8"),
    0x1E3D4C56: np.dtype("<i2"),
}


def read_binary_matrix(path: Path) -> np.ndarray:
    """Read a NORB binary matrix (``.mat`` or ``.mat.gz``); checks magic and length."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataFileError(f"{path}: cannot read ({err}); the file may be truncated") from err
    if len(raw) < 20:
        raise DataFileError(f"{path}: expected a NORB binary matrix header, found {len(raw)} bytes")
    magic, ndim = np.frombuffer(raw[:8], "<i4")
    if int(magic) not in MAGIC:
        raise DataFileError(
            f"{path}: unknown magic {int(magic):#x}; expected one of {[hex(m) for m in MAGIC]}"
        )
    header = 8 + 4 * max(3, int(ndim))
    dims = tuple(int(d) for d in np.frombuffer(raw[8 : 8 + 4 * int(ndim)], "<i4"))
    dtype = MAGIC[int(magic)]
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DataFileError(
            f"{path}: header says {dtype} {dims} ({expected} bytes), found {len(raw)} bytes "
            "(truncated or corrupt)"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims)


@DATASETS.register("smallnorb")
class SmallNORB(RandomObservationGrid):
    """smallNORB with disentanglement_lib's factors; the instance is a per-observation nuisance
    drawn from ``random_state``."""

    @dataclass
    class Config:
        #: seed of the generator drawing the instance in the training path
        seed: int = 0

    name = "smallnorb"
    factor_names = ("category", "elevation", "azimuth", "lighting")
    factor_sizes = (5, 9, 18, 6)
    #: the full stored grid: category, instance, elevation, azimuth, lighting
    grid_sizes = (5, 10, 9, 18, 6)

    def __init__(self, config: Config | None = None, *, data_root: Path | None = None) -> None:
        config = config if config is not None else self.Config()
        root = resolve_data_root(data_root)
        self.folder = root / "smallnorb"
        cache = self.folder / "smallnorb_64.npy"
        n = int(np.prod(self.grid_sizes))
        if not cache.exists():
            atomic_save_npy(cache, self._build(root))
        self._images = load_npy(cache, (n, 64, 64, 1))
        self._generator = np.random.default_rng(config.seed)

    def _build(self, root: Path) -> np.ndarray:
        images, labels = [], []
        specs = {Path(s.final_path).name: s for s in FILES["smallnorb"]}
        for split in ("training", "testing"):
            parts = {}
            for kind in ("dat", "cat", "info"):
                name = next(k for k in specs if f"-{split}-{kind}" in k)
                final = root / specs[name].final_path
                path = final if final.exists() else require("smallnorb", root, specs[name].path)
                parts[kind] = read_binary_matrix(path)
            dat, cat, info = parts["dat"], parts["cat"], parts["info"]
            m = len(cat)
            if dat.ndim != 4 or dat.shape[:2] != (m, 2) or info.shape != (m, 4):
                raise DataFileError(
                    f"smallnorb {split}: expected dat (N, 2, 96, 96), cat (N,), info (N, 4), found "
                    f"{dat.shape}, {cat.shape}, {info.shape}"
                )
            images.append(resize_stack(np.ascontiguousarray(dat[:, 0]), 64))
            info = info.astype(np.int64)
            labels.append(
                np.stack([cat, info[:, 0], info[:, 1], info[:, 2] // 2, info[:, 3]], 1).astype(
                    np.int64
                )
            )
        images_all, factors = np.concatenate(images), np.concatenate(labels)
        sizes = np.asarray(self.grid_sizes)
        if (factors < 0).any() or (factors >= sizes).any():
            raise DataFileError(f"smallnorb: labels outside the grid {list(self.grid_sizes)}")
        index = np.ravel_multi_index(factors.T, self.grid_sizes)
        if len(index) != sizes.prod() or len(np.unique(index)) != len(index):
            raise DataFileError(
                f"smallnorb: train+test should cover the grid {list(self.grid_sizes)} exactly once "
                f"({sizes.prod()} images), found {len(index)} images / {len(np.unique(index))} "
                "distinct factor tuples"
            )
        out = np.empty_like(images_all)
        out[index] = images_all
        return out[..., None]

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return (64, 64, 1)

    def _grid_index(self, factors: np.ndarray, instance: np.ndarray) -> np.ndarray:
        full = np.insert(np.asarray(factors, dtype=np.int64), 1, instance, axis=1)
        return np.ravel_multi_index(full.T, self.grid_sizes)

    def sample_observations_from_factors(
        self, factors: np.ndarray, random_state: np.random.RandomState
    ) -> np.ndarray:
        factors = np.asarray(factors, dtype=np.int64)
        self.factors_to_index(factors)  # validates shape and ranges
        instance = random_state.randint(self.grid_sizes[1], size=len(factors))
        images = self._images[self._grid_index(factors, instance)]
        return unit_float(images)

    def uint8_from_indices(self, indices: np.ndarray) -> np.ndarray:
        factors = self.index_to_factors(indices)
        instance = self._generator.integers(0, self.grid_sizes[1], len(factors))
        return self._images[self._grid_index(factors, instance)]

    @property
    def images_uint8(self) -> np.ndarray:
        """All 48,600 stored images in (category, instance, elevation, azimuth, lighting) order."""
        return self._images
