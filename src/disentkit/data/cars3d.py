"""Cars3D (``nips2015-analogy-data.tar.gz`` -> ``data/cars``; specs/datasets.md §1).

Each ``car_XXX_mesh.mat`` has ``im`` uint8 (128, 128, 3, 24, 4): (H, W, C, azimuth, elevation).
Objects are ordered by ``list.txt`` (not by directory listing). Factors elevation 4, azimuth 24,
object 183, flat index ``e*24*183 + a*183 + o`` (object fastest). Images are resized once to 64x64
with Pillow Lanczos (disentanglement_lib's ``thumbnail``) and cached as ``cars3d_64.npy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from disentkit.data._grid import resize_stack
from disentkit.data.base import StoredGrid
from disentkit.data.files import DataFileError, MissingDataError, atomic_save_npy, load_npy, require
from disentkit.data.root import resolve_data_root
from disentkit.registry import DATASETS


def read_mesh(path: Path, azimuths: int, elevations: int) -> np.ndarray:
    """``im`` of one Cars3D ``.mat`` file as uint8 (elevation, azimuth, 128, 128, 3)."""
    import scipy.io
    from scipy.io.matlab import MatReadError

    try:
        im = scipy.io.loadmat(str(path), variable_names=["im"]).get("im")
    # scipy reports a truncated or foreign file with any of these (IndexError for a short header)
    except (MatReadError, ValueError, OSError, TypeError, IndexError, EOFError) as err:
        raise DataFileError(f"{path}: not a readable MATLAB file ({err})") from err
    expected = (128, 128, 3, azimuths, elevations)
    if im is None or im.shape != expected or im.dtype != np.uint8:
        found = "no 'im' variable" if im is None else f"{im.dtype} of shape {im.shape}"
        raise DataFileError(f"{path}: 'im' should be uint8 of shape {expected}, found {found}")
    return np.ascontiguousarray(np.einsum("abcde->edabc", im))


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
            stems = [s.strip() for s in (folder / "list.txt").read_text().split() if s.strip()]
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
