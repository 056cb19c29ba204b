"""dSprites from the official files, the bundled real sub-grid, and disentanglement_lib's variants.

Facts (deepmind/dsprites-dataset): ``imgs`` is (737280, 64, 64) uint8 with values {0, 1}
(``value_max = 1``); six latent columns with a constant colour first; factors as disentanglement_lib's
``dsprites_full``: shape 3, scale 6, orientation 40, posX 32, posY 32, row-major, posY fastest.
The hdf5 release stores ``imgs`` and ``latents/classes``. The npz also holds ``metadata``, a
Python-2 pickle; it is never read (the npz is opened with pickling off, see
:class:`~disentkit.data.files.NpzArchive`), so a pickle under a dataset's name cannot run code.

Variants (disentanglement_lib ``dsprites.py``), each drawing its randomness from the
``random_state`` passed to ``sample_observations_from_factors`` in the reference order:

* ``color_dsprites``: sprite times a colour ``random_state.uniform(0.5, 1, (n, 1, 1, 3))``;
* ``noisy_dsprites``: ``min(sprite + random_state.uniform(0, 1, (n, 64, 64, 3)), 1)``;
* ``scream_dsprites``: per image ``randint`` row and column of a 64x64 crop of the background
  photo, ``uniform(0, 1, 3)`` colour shift, crop averaged with it, sprite pixels inverted.

For training (``uint8_batch``) the variants draw from their own ``numpy.random.Generator``
seeded with ``Config.seed`` (same distributions, vectorised), and return 0..255 uint8.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from disentkit.data._grid import RandomObservationGrid
from disentkit.data.base import GroundTruthData, StoredGrid
from disentkit.data.files import (
    FILES,
    REDOWNLOAD,
    DataFileError,
    MissingDataError,
    NpzArchive,
    expect_array,
    explicit_path,
    h5_dataset,
    how_to_get,
    open_image,
    quote_error,
    read_error,
    require,
)
from disentkit.data.root import resolve_data_root
from disentkit.ranges import Seed
from disentkit.registry import DATASETS

FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FULL_SIZES = (3, 6, 40, 32, 32)
SMALL_SIZES = (3, 6, 10, 16, 16)


def _check_grid(path: Path, classes: np.ndarray, sizes: tuple[int, ...]) -> None:
    """The latent classes must enumerate the grid row-major (posY fastest)."""
    if classes.shape[1] == len(sizes) + 1:  # official layout: constant colour column first
        classes = classes[:, 1:]
    if classes.shape != (int(np.prod(sizes)), len(sizes)):
        raise DataFileError(
            f"{path}: expected latents_classes of shape ({int(np.prod(sizes))}, {len(sizes)}) "
            f"(or with a leading colour column), found {classes.shape}"
        )
    strides = np.concatenate([np.cumprod(np.asarray(sizes)[::-1])[::-1][1:], [1]])
    if not np.array_equal(classes @ strides, np.arange(len(classes))):
        raise DataFileError(
            f"{path}: images are not in dSprites order (row-major over {list(sizes)}, posY "
            "fastest); the file was reordered or is not a dSprites grid"
        )


def _check_binary(path: Path, images: np.ndarray) -> None:
    probe = images[:: max(1, len(images) // 512)]
    if probe.max() > 1:
        raise DataFileError(
            f"{path}: expected dSprites pixels in {{0, 1}}, found values up to {probe.max()} "
            "(a 0/255 re-export?)"
        )


def _classes_shape(path: Path, found_shape, found_dtype, sizes: tuple[int, ...]) -> tuple:
    """The (N, K) ``latents_classes`` shape to read: K factors, or K + 1 with the colour column;
    checked (with an integer dtype) before anything is read."""
    n, k = int(np.prod(sizes)), len(sizes)
    columns = found_shape[1] if len(found_shape) == 2 and found_shape[1] in (k, k + 1) else k + 1
    dtype = found_dtype if np.dtype(found_dtype).kind in "iu" else np.int64
    expect_array(path, "latents_classes", (n, columns), dtype, found_shape, found_dtype)
    return (n, columns), dtype


def load_dsprites_npz(path: Path, sizes: tuple[int, ...]) -> np.ndarray:
    """uint8 (N, 64, 64) images of a dSprites-format npz, validated against ``sizes``; read
    with pickling off (``metadata`` is never touched)."""
    n = int(np.prod(sizes))
    with NpzArchive(path, ("imgs", "latents_classes")) as archive:
        images = archive.read("imgs", (n, 64, 64), np.uint8)
        with archive.member("latents_classes") as (_, found_shape, _, found_dtype):
            shape, dtype = _classes_shape(path, found_shape, found_dtype, sizes)
        classes = archive.read("latents_classes", shape, dtype)
    _check_grid(path, np.asarray(classes, dtype=np.int64), sizes)
    _check_binary(path, images)
    return images


def load_dsprites_hdf5(path: Path, sizes: tuple[int, ...] = FULL_SIZES) -> np.ndarray:
    """uint8 (N, 64, 64) images of the hdf5 release (``imgs``, ``latents/classes``), validated."""
    import h5py

    n = int(np.prod(sizes))
    try:
        with h5py.File(path, "r") as f:
            if "imgs" not in f or "latents/classes" not in f:
                raise DataFileError(
                    f"{path}: expected datasets 'imgs' and 'latents/classes', found "
                    f"{list(f.keys())[:10]}"
                )
            d = h5_dataset(f, "imgs", path)
            expect_array(path, "imgs", (n, 64, 64), np.uint8, d.shape, d.dtype)
            c = h5_dataset(f, "latents/classes", path)
            _classes_shape(path, c.shape, c.dtype, sizes)
            images = np.empty(d.shape, np.uint8)
            d.read_direct(images)
            classes = c[()]
    except OSError as err:
        raise read_error(path, err, "HDF5 file", REDOWNLOAD) from err
    _check_grid(path, np.asarray(classes, dtype=np.int64), sizes)
    _check_binary(path, images)
    return images


class _DSpritesGrid(StoredGrid):
    factor_names = FACTOR_NAMES
    value_max = 1

    def _set_images(self, images: np.ndarray) -> None:
        self._images = images[..., None]  # (N, 64, 64, 1) view, no copy


@DATASETS.register("dsprites")
class DSprites(_DSpritesGrid):
    """The official dSprites file (npz, or the hdf5 release), 737,280 images held as uint8."""

    @dataclass
    class Config:
        #: explicit file (npz or hdf5); empty: ``<data root>/dsprites/`` (npz first, then hdf5)
        path: str = ""

    name = "dsprites"
    factor_sizes = FULL_SIZES

    def __init__(self, config: Config | None = None, *, data_root: Path | None = None) -> None:
        config = config if config is not None else self.Config()
        root = resolve_data_root(data_root)
        path = explicit_path("dsprites", config.path)
        if path is None:
            npz = root / FILES["dsprites"][0].path
            hdf5 = root / FILES["dsprites_hdf5"][0].path
            path = npz if npz.exists() or not hdf5.exists() else hdf5
            if not path.exists():
                raise MissingDataError(
                    f"dsprites: dataset file not found: looked for {npz} and {hdf5} (data root "
                    f"{root}, set with --data-root or DISENTKIT_DATA); to get it, "
                    f"{how_to_get('dsprites', FILES['dsprites'][0], root)}; or use the "
                    "procedural 'sprites' dataset, which needs no file"
                )
        self.path = path
        # validated against the class's factor sizes (the official grid)
        if path.suffix in (".hdf5", ".h5"):
            self._set_images(load_dsprites_hdf5(path, self.factor_sizes))
        else:
            self._set_images(load_dsprites_npz(path, self.factor_sizes))


@DATASETS.register("dsprites_small")
class DSpritesSmall(_DSpritesGrid):
    """The real sub-grid ``dsprites_downsampled.npz`` (3, 6, 10, 16, 16): every 4th orientation
    and every 2nd position of the official file, 46,080 real images (colleenjg/neuromatch_ssl_tutorial)."""

    @dataclass
    class Config:
        #: explicit file; empty: ``<data root>/dsprites/dsprites_downsampled.npz``
        path: str = ""

    name = "dsprites_small"
    factor_sizes = SMALL_SIZES

    def __init__(self, config: Config | None = None, *, data_root: Path | None = None) -> None:
        config = config if config is not None else self.Config()
        self.path = explicit_path("dsprites_small", config.path) or require(
            "dsprites_small", resolve_data_root(data_root)
        )
        self._set_images(load_dsprites_npz(self.path, self.factor_sizes))


# ---- disentanglement_lib's variants -----------------------------------------------------------
def _base_dataset(base: str, data_root: Path | None) -> GroundTruthData:
    if base == "sprites":
        from disentkit.data.procedural import ProceduralSprites

        return ProceduralSprites(data_root=data_root)
    return DATASETS.get(base)(data_root=data_root)


class _DSpritesVariant(RandomObservationGrid):
    """A colour (3-channel) variant drawn on top of a binary dSprites grid; its colour, noise or
    background crop is drawn from ``random_state`` per observation."""

    @dataclass
    class Config:
        #: the binary grid underneath: the official file, its real sub-grid, or the generator
        base: Literal["dsprites", "dsprites_small", "sprites"] = "dsprites"
        #: seed of the generator used by the training path (``uint8_batch``)
        seed: Seed = 0

    value_max = 255

    def __init__(self, config=None, *, data_root: Path | None = None) -> None:
        self.config = config = config if config is not None else self.Config()
        self.base = _base_dataset(config.base, data_root)
        if self.base.value_max != 1:
            raise ValueError(f"{self.name}: the base dataset must have binary images (value_max 1)")
        self.factor_names = self.base.factor_names
        self.factor_sizes = self.base.factor_sizes
        self._generator = np.random.default_rng(config.seed)

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return (64, 64, 3)

    def _binary(self, indices: np.ndarray) -> np.ndarray:
        return self.base.uint8_from_indices(indices)  # (n, 64, 64, 1) in {0, 1}

    def sample_observations_from_factors(
        self, factors: np.ndarray, random_state: np.random.RandomState
    ) -> np.ndarray:
        binary = self._binary(self.factors_to_index(factors)).astype(np.float32)
        return self._colourise(np.repeat(binary, 3, axis=3), random_state).astype(np.float32)

    def uint8_from_indices(self, indices: np.ndarray) -> np.ndarray:
        binary = self._binary(np.asarray(indices, dtype=np.int64)).astype(np.float32)
        floats = self._colourise_batch(np.repeat(binary, 3, axis=3), self._generator)
        return np.rint(floats * 255).astype(np.uint8)

    def _colourise(self, obs: np.ndarray, random_state: np.random.RandomState) -> np.ndarray:
        raise NotImplementedError

    def _colourise_batch(self, obs: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


@DATASETS.register("color_dsprites")
class ColorDSprites(_DSpritesVariant):
    """dSprites with a random per-image sprite colour, each channel ~ U(0.5, 1)."""

    name = "color_dsprites"

    def _colourise(self, obs, random_state):
        colour = random_state.uniform(0.5, 1, [obs.shape[0], 1, 1, 3])
        return obs * colour

    def _colourise_batch(self, obs, generator):
        return obs * generator.uniform(0.5, 1, (obs.shape[0], 1, 1, 3)).astype(np.float32)


@DATASETS.register("noisy_dsprites")
class NoisyDSprites(_DSpritesVariant):
    """dSprites (white sprite) on uniform per-pixel, per-channel noise in [0, 1)."""

    name = "noisy_dsprites"

    def _colourise(self, obs, random_state):
        noise = random_state.uniform(0, 1, [obs.shape[0], 64, 64, 3])
        return np.minimum(obs + noise, 1.0)

    def _colourise_batch(self, obs, generator):
        return np.minimum(obs + generator.random(obs.shape, dtype=np.float32), 1.0)


def _background(path: Path) -> np.ndarray:
    """The scream_dsprites photograph as float64 (H, W, 3) in [0, 1], shrunk to fit in 350x274
    (``PIL.Image.thumbnail``, as disentanglement_lib does)."""
    try:
        with open_image(path, str(path)) as image:
            image = image.convert("RGB")
            image.thumbnail((350, 274))
            return np.asarray(image, dtype=np.float64) / 255.0
    except DataFileError:
        raise
    except PermissionError as err:
        raise read_error(path, err, "photograph", "save it again") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise DataFileError(
            f"{path}: expected a JPEG, PNG, WebP or BMP photograph, but it cannot be decoded "
            f"({quote_error(err)}); save the background image again"
        ) from err


@DATASETS.register("scream_dsprites")
class ScreamDSprites(_DSpritesVariant):
    """dSprites on random 64x64 crops of a photograph, sprite pixels inverted.

    The photograph (disentanglement_lib uses ``scream.jpg``) is shrunk to fit in 350x274 as
    ``PIL.Image.thumbnail`` does, then scaled to [0, 1].
    """

    @dataclass
    class Config(_DSpritesVariant.Config):
        #: background image; empty: ``<data root>/dsprites/scream.jpg``
        scream_path: str = ""

    name = "scream_dsprites"

    def __init__(self, config=None, *, data_root: Path | None = None) -> None:
        config = config if config is not None else self.Config()
        root = resolve_data_root(data_root)
        if config.scream_path:
            path = Path(config.scream_path).expanduser()
            if not path.exists():
                raise MissingDataError(f"scream_dsprites: data.scream_path {path} does not exist")
        else:
            path = require("scream_dsprites", root)
        self.scream = _background(path)
        if self.scream.shape[0] <= 64 or self.scream.shape[1] <= 64:
            raise DataFileError(
                f"{path}: the background must be larger than 64x64 after fitting into 350x274, "
                f"found {self.scream.shape[1]}x{self.scream.shape[0]}"
            )
        super().__init__(config, data_root=data_root)

    def _colourise(self, obs, random_state):
        # the reference draws row, column and colour shift image by image, in this order
        out = np.empty(obs.shape, dtype=np.float64)
        rows, cols, shifts = [], [], []
        for _ in range(obs.shape[0]):
            rows.append(random_state.randint(0, self.scream.shape[0] - 64))
            cols.append(random_state.randint(0, self.scream.shape[1] - 64))
            shifts.append(random_state.uniform(0, 1, size=3))
        out[:] = self._composite(obs, np.array(rows), np.array(cols), np.array(shifts))
        return out

    def _colourise_batch(self, obs, generator):
        n = obs.shape[0]
        rows = generator.integers(0, self.scream.shape[0] - 64, n)
        cols = generator.integers(0, self.scream.shape[1] - 64, n)
        return self._composite(obs, rows, cols, generator.uniform(0, 1, (n, 3)))

    def _composite(self, obs, rows, cols, shifts) -> np.ndarray:
        offsets = np.arange(64)
        crops = self.scream[
            rows[:, None, None] + offsets[None, :, None], cols[:, None, None] + offsets[None, None, :]
        ]
        background = (crops + shifts[:, None, None, :]) / 2.0
        return np.where(obs == 1, 1 - background, background)
