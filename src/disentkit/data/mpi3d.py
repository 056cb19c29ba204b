"""MPI3D (Gondal et al. 2019; toy, realistic, real, real_complex).

The npz holds only ``images`` (N, 64, 64, 3) uint8, factors come from the row index: object_color,
object_shape, object_size, camera_height, background_color, horizontal_axis, vertical_axis with
sizes (6, 6, 2, 3, 3, 40, 40) for toy/realistic/real and (4, 4, 2, 3, 3, 40, 40) for real_complex
(N = 1,036,800 or 460,800; about 12.7 GB of pixels). ``np.load(mmap_mode=...)`` ignores npz
members, so: an uncompressed (stored) member is memory-mapped in place at its offset inside the
zip; a compressed one is converted once, streaming in chunks, to ``<file>.images.npy`` (temporary
file, then rename), which is memory-mapped.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from disentkit.data.base import StoredGrid
from disentkit.data.files import (
    FILES,
    REDOWNLOAD,
    DataFileError,
    NpzArchive,
    expect_array,
    explicit_path,
    load_npy,
    require,
    temporary_path,
)
from disentkit.data.root import resolve_data_root
from disentkit.registry import DATASETS

SIZES = {
    "toy": (6, 6, 2, 3, 3, 40, 40),
    "realistic": (6, 6, 2, 3, 3, 40, 40),
    "real": (6, 6, 2, 3, 3, 40, 40),
    "real_complex": (4, 4, 2, 3, 3, 40, 40),
}


def _in_place(path: Path, archive: NpzArchive, key: str, data_start: int, expected) -> np.ndarray:
    """A read-only memmap of a stored (uncompressed) member, in place inside the zip file: its
    data begins after the local file header, its name and extra fields, and the npy header."""
    info = archive.info(key)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise DataFileError(f"{path}: the zip entry of '{key}' is damaged; {REDOWNLOAD}")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    offset = info.header_offset + 30 + name_len + extra_len + data_start
    if offset + int(np.prod(expected)) > path.stat().st_size:
        raise DataFileError(f"{path}: truncated: the images end past the end of the file; {REDOWNLOAD}")
    return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=expected)


def _convert(archive: NpzArchive, key: str, stream, expected, cache: Path) -> np.ndarray:
    """Stream a compressed member once into the ``.npy`` cache (temporary file, then rename)."""
    with temporary_path(cache) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=expected)
        archive.fill(stream, key, out)
        out.flush()
        del out
    return load_npy(cache, expected, mmap=True)


def open_npz_member(path: Path, key: str, expected: tuple[int, ...], cache: Path) -> np.ndarray:
    """A read-only memmap of npz member ``key`` (in place if stored, else via an npy cache),
    read with pickling off; its npy header must say uint8, C order, ``expected`` shape."""
    if cache.exists():
        return load_npy(cache, expected, mmap=True)
    with NpzArchive(path, (key,)) as archive:
        with archive.member(key) as (stream, shape, fortran, dtype):
            expect_array(path, key, expected, np.uint8, shape, dtype)
            if fortran:
                raise DataFileError(
                    f"{path}: '{key}' is stored in Fortran order; expected C order (the published "
                    "files are): download the original file"
                )
            if archive.info(key).compress_type != zipfile.ZIP_STORED:
                return _convert(archive, key, stream, expected, cache)
            data_start = stream.tell()
        return _in_place(path, archive, key, data_start, expected)


@DATASETS.register("mpi3d")
class MPI3D(StoredGrid):
    """MPI3D; ``variant`` picks the file. Images are memory-mapped, never loaded whole."""

    @dataclass
    class Config:
        variant: Literal["toy", "realistic", "real", "real_complex"] = "toy"
        #: explicit npz file; empty: ``<data root>/mpi3d/<file of the variant>``
        path: str = ""

    name = "mpi3d"
    factor_names = (
        "object_color",
        "object_shape",
        "object_size",
        "camera_height",
        "background_color",
        "horizontal_axis",
        "vertical_axis",
    )
    image_shape = (64, 64, 3)
    sizes_by_variant = SIZES

    def __init__(self, config: Config | None = None, *, data_root: Path | None = None) -> None:
        config = config if config is not None else self.Config()
        self.variant = config.variant
        self.factor_sizes = tuple(self.sizes_by_variant[config.variant])
        key = f"mpi3d_{config.variant}"
        self.path = path = explicit_path("mpi3d", config.path) or require(
            key, resolve_data_root(data_root), FILES[key][0].path
        )
        expected = (len(self), *self.image_shape)
        self._images = open_npz_member(path, "images", expected, path.with_suffix(".images.npy"))
