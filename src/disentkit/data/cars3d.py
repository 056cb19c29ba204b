"""Cars3D (Reed et al. 2015; ``nips2015-analogy-data.tar.gz`` -> ``data/cars``).

Each ``car_XXX_mesh.mat`` has ``im`` uint8 (128, 128, 3, 24, 4): (H, W, C, azimuth, elevation).
Objects are ordered by ``list.txt`` (not by directory listing). Factors elevation 4, azimuth 24,
object 183, flat index ``e*24*183 + a*183 + o`` (object fastest). Images are resized once to 64x64
with Pillow Lanczos (disentanglement_lib's ``thumbnail``) and cached as ``cars3d_64.npy``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from disentkit.data._grid import resize_stack
from disentkit.data.base import StoredGrid
from disentkit.data.files import (
    DataFileError,
    MissingDataError,
    atomic_save_npy,
    load_npy,
    plain_file_name,
    quote_error,
    read_error,
    read_text_file,
    refuse_path_name,
    require,
)
from disentkit.data.root import resolve_data_root
from disentkit.registry import DATASETS


def read_mesh(path: Path, azimuths: int, elevations: int) -> np.ndarray:
    """``im`` of one Cars3D ``.mat`` file as uint8 (elevation, azimuth, 128, 128, 3).

    The variable's header (``whosmat``) is checked before its data is read, so a file declaring
    a huge or non-numeric ``im`` is refused without decompressing it.
    """
    import scipy.io
    from scipy.io.matlab import MatReadError

    expected = (128, 128, 3, azimuths, elevations)
    again = "unpack the Cars3D archive again"
    try:
        declared = {name: (tuple(shape), kind) for name, shape, kind in scipy.io.whosmat(str(path))}
        if declared.get("im") != (expected, "uint8"):
            shape, kind = declared.get("im", (None, None))
            found = "no 'im' variable" if kind is None else f"{kind} of shape {shape}"
            raise DataFileError(f"{path}: 'im' should be uint8 of shape {expected}, found {found}")
        im = scipy.io.loadmat(str(path), variable_names=["im"]).get("im")
    except PermissionError as err:
        raise read_error(path, err, "MATLAB file", again) from err
    # scipy reports a truncated or foreign file with any of these (IndexError for a short header,
    # NotImplementedError for a v7.3 HDF5-based file)
    except (MatReadError, ValueError, OSError, TypeError, IndexError, EOFError, NotImplementedError,
            zlib.error) as err:
        if isinstance(err, DataFileError):
            raise
        raise DataFileError(
            f"{path}: not a readable MATLAB file ({quote_error(err)}); {again}"
        ) from err
    if im is None or im.shape != expected or im.dtype != np.uint8:
        found = "no 'im' variable" if im is None else f"{im.dtype} of shape {im.shape}"
        raise DataFileError(f"{path}: 'im' should be uint8 of shape {expected}, found {found}")
    return np.ascontiguousarray(np.einsum("abcde->edabc", im))


def read_car_list(path: Path) -> list[str]:
    """The car names of ``list.txt`` (one per line, ``<name>.mat`` beside it); every name must
    be a plain file name, so only files inside the Cars3D folder are read."""
    stems = []
    for number, line in enumerate(read_text_file(path, "Cars3D's list of car names").splitlines(), 1):
        for stem in line.split():
            if not plain_file_name(stem):
                raise refuse_path_name(path, number, stem, path.parent)
            stems.append(stem)
    return stems


@DATASETS.register("cars3d")
class Cars3D(StoredGrid):
    """Cars3D: factors elevation (4), azimuth (24), object (183)."""

    @dataclass
    class Config:
        #: folder holding ``list.txt`` and the ``.mat`` files; empty: ``<data root>/cars3d/data/cars``
        path: str = ""

    name = "cars3d"
    factor_names = ("elevation", "azimuth", "object")
    factor_sizes = (4, 24, 183)

    def __init__(self, config: Config | None = None, *, data_root: Path | None = None) -> None:
        config = config if config is not None else self.Config()
        if config.path:
            folder = Path(config.path).expanduser()
            if not (folder / "list.txt").exists():
                raise MissingDataError(f"cars3d: {folder / 'list.txt'} does not exist")
        else:
            folder = require("cars3d", resolve_data_root(data_root)).parent
        self.folder = folder
        elevations, azimuths, objects = self.factor_sizes
        cache = folder / "cars3d_64.npy"
        if not cache.exists():
            stems = read_car_list(folder / "list.txt")
            if len(stems) != objects:
                raise DataFileError(
                    f"{folder / 'list.txt'}: expected {objects} car names, found {len(stems)}"
                )
            grid = np.empty((elevations, azimuths, objects, 64, 64, 3), dtype=np.uint8)
            for o, stem in enumerate(stems):
                path = folder / f"{stem}.mat"
                if not path.exists():
                    raise DataFileError(f"{folder / 'list.txt'} names {stem}, but {path} is missing")
                views = read_mesh(path, azimuths, elevations).reshape(-1, 128, 128, 3)
                grid[:, :, o] = resize_stack(views, 64).reshape(elevations, azimuths, 64, 64, 3)
            atomic_save_npy(cache, grid.reshape(-1, 64, 64, 3))
        self._images = load_npy(cache, (len(self), 64, 64, 3))
