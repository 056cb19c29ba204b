"""MPI3D (toy, realistic, real, real_complex; specs/datasets.md §1).

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
    DataFileError,
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


def _npy_header(stream) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    return np.lib.format.read_array_header_2_0(stream)


def _check_header(path: Path, shape, fortran, dtype, expected: tuple[int, ...]) -> None:
    if tuple(shape) != expected or np.dtype(dtype) != np.uint8 or fortran:
        raise DataFileError(
            f"{path}: 'images' should be uint8 C-ordered of shape {expected}, found "
            f"{np.dtype(dtype)} of shape {tuple(shape)}{' (Fortran order)' if fortran else ''}"
        )


def open_npz_member(path: Path, key: str, expected: tuple[int, ...], cache: Path) -> np.ndarray:
    """A read-only memmap of npz member ``key`` (in place if stored, else via an npy cache)."""
    if cache.exists():
        return load_npy(cache, expected, mmap=True)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataFileError(f"{path}: not a readable npz/zip file ({err}); download it again") from err
    with archive:
        name = f"{key}.npy"
        if name not in archive.namelist():
            raise DataFileError(f"{path}: expected key '{key}', found {archive.namelist()}")
        info = archive.getinfo(name)
        with archive.open(info) as member:
            shape, fortran, dtype = _npy_header(member)
            _check_header(path, shape, fortran, dtype, expected)
            header_bytes = member.tell() if info.compress_type == zipfile.ZIP_STORED else None
            if header_bytes is None:
                total = int(np.prod(expected))
                with temporary_path(cache) as tmp:
                    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=expected)
                    flat = out.reshape(-1)
                    done, chunk = 0, 64 << 20
                    try:
                        while done < total:
                            block = member.read(min(chunk, total - done))
                            if not block:
                                break
                            flat[done : done + len(block)] = np.frombuffer(block, np.uint8)
                            done += len(block)
                    except (zipfile.BadZipFile, OSError, EOFError) as err:
                        raise DataFileError(f"{path}: corrupt member '{name}' ({err})") from err
                    if done != total:
                        raise DataFileError(f"{path}: '{name}' is truncated ({done} of {total} bytes)")
                    out.flush()
                    del out, flat
                return load_npy(cache, expected, mmap=True)
    # stored member: data begins after the local file header, its name/extra fields, the npy header
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        name_len, extra_len = struct.unpack("<HH", local[26:30])
    offset = info.header_offset + 30 + name_len + extra_len + header_bytes
    if offset + int(np.prod(expected)) > path.stat().st_size:
        raise DataFileError(f"{path}: truncated: the images end past the end of the file")
    return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=expected)


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
