"""smallNORB (LeCun et al. 2004; binary matrix files), as disentanglement_lib uses it.

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
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from disentkit.data._grid import RandomObservationGrid, resize_stack
from disentkit.data.base import unit_float
from disentkit.data.files import (
    FILES,
    DataFileError,
    atomic_save_npy,
    load_npy,
    quote_error,
    read_error,
    require,
)
from disentkit.data.root import resolve_data_root
from disentkit.ranges import Seed
from disentkit.registry import DATASETS

MAGIC = {
    0x1E3D4C55: np.dtype("<u1"),
    0x1E3D4C54: np.dtype("<i4"),
    0x1E3D4C51: np.dtype("<f4"),
    0x1E3D4C53: np.dtype("<f8"),
    0x1E3D4C56: np.dtype("<i2"),
}


#: (shape, dtype) of each file; ``None`` is the number of images (24,300 per split)
EXPECTED = {
    "dat": ((None, 2, 96, 96), MAGIC[0x1E3D4C55]),
    "cat": ((None,), MAGIC[0x1E3D4C54]),
    "info": ((None, 4), MAGIC[0x1E3D4C54]),
}
#: the most dimensions a NORB matrix header may declare (smallNORB's files have 1, 2 and 4)
MAX_DIMS = 8
_AGAIN = "delete it and run `disentkit data download smallnorb` again"


def _read_up_to(f, size: int, chunk: int = 64 << 20) -> bytes:
    """At most ``size`` bytes of ``f``, read in chunks (never allocating more than the file has)."""
    parts, left = [], size
    while left > 0 and (block := f.read(min(chunk, left))):
        parts.append(block)
        left -= len(block)
    return b"".join(parts)


def _read_header(path: Path, f) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, dims, header length) of a NORB matrix: a known magic, 1 to MAX_DIMS dimensions,
    none negative (so a bad header is refused before anything is allocated)."""
    head = f.read(8)
    if len(head) < 8:
        raise DataFileError(f"{path}: expected a NORB binary matrix header, found {len(head)} bytes")
    magic, ndim = (int(v) for v in np.frombuffer(head, "<i4"))
    if magic not in MAGIC:
        raise DataFileError(
            f"{path}: unknown magic {magic & 0xFFFFFFFF:#x}; expected one of "
            f"{[hex(m) for m in MAGIC]} (a NORB binary matrix)"
        )
    if not 1 <= ndim <= MAX_DIMS:
        raise DataFileError(f"{path}: header says {ndim} dimensions, expected 1 to {MAX_DIMS}; {_AGAIN}")
    raw = f.read(4 * max(3, ndim))  # fewer than 3 dimensions are padded to 3
    if len(raw) < 4 * max(3, ndim):
        raise DataFileError(f"{path}: the header is cut short ({8 + len(raw)} bytes); {_AGAIN}")
    dims = tuple(int(d) for d in np.frombuffer(raw, "<i4")[:ndim])
    if min(dims) < 0:
        raise DataFileError(f"{path}: header says dimensions {dims}, which cannot be negative; {_AGAIN}")
    return MAGIC[magic], dims, 8 + len(raw)


def _check_header(path: Path, dtype: np.dtype, dims: tuple[int, ...], expected: tuple,
                  max_rows: int | None) -> None:
    """``expected`` is (shape with ``None`` for any size, dtype); the first size is at most
    ``max_rows``."""
    shape, want_dtype = expected
    fits = len(dims) == len(shape) and all(e is None or e == d for e, d in zip(shape, dims))
    if not fits or dtype != want_dtype or (max_rows is not None and dims[0] > max_rows):
        want = tuple("*" if e is None else e for e in shape)
        rows = f" with at most {max_rows} rows" if max_rows is not None else ""
        raise DataFileError(
            f"{path}: header says {dtype} {dims}; expected {want_dtype} {want}{rows}; {_AGAIN}"
        )


def read_binary_matrix(path: Path, expected: tuple | None = None, max_rows: int | None = None) -> np.ndarray:
    """Read a NORB binary matrix (``.mat`` or ``.mat.gz``).

    The header is checked first (against ``expected`` = (shape, dtype) when given, see
    :data:`EXPECTED`); then exactly the data it declares is read, and it must end the file.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            dtype, dims, header = _read_header(path, f)
            if expected is not None:
                _check_header(path, dtype, dims, expected, max_rows)
            size = math.prod(dims) * dtype.itemsize
            raw = _read_up_to(f, size + 1)
    except (OSError, EOFError, zlib.error) as err:
        if isinstance(err, PermissionError) or path.is_dir():
            raise read_error(path, err, "NORB binary matrix", _AGAIN) from err
        raise DataFileError(
            f"{path}: cannot read ({quote_error(err)}); the file may be truncated: {_AGAIN}"
        ) from err
    if len(raw) != size:
        found = f"{header + len(raw)} bytes" if len(raw) < size else "more bytes"
        raise DataFileError(
            f"{path}: header says {dtype} {dims} ({header + size} bytes), found {found} "
            f"(truncated or corrupt); {_AGAIN}"
        )
    return np.frombuffer(raw, dtype).reshape(dims)


@DATASETS.register("smallnorb")
class SmallNORB(RandomObservationGrid):
    """smallNORB with disentanglement_lib's factors; the instance is a per-observation nuisance
    drawn from ``random_state``."""

    @dataclass
    class Config:
        #: seed of the generator drawing the instance in the training path
        seed: Seed = 0

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
                parts[kind] = read_binary_matrix(path, EXPECTED[kind], int(np.prod(self.grid_sizes)))
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
