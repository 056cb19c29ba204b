"""Every file-backed dataset loaded through the registry and a run config from a tiny fixture
written in its real on-disk format.

Each test writes the files where the data root expects them (real names, keys, dtypes, headers,
image sizes and on-disk orderings), builds the dataset with ``build_dataset`` exactly as a run
does, and checks the factor names and order, shapes, dtypes, pixel values planted in the fixture,
the index <-> factor round trip and the float [0, 1] NHWC observations. Grids too large for a
test (dSprites 737,280 images, 3D Shapes 480,000, MPI3D 1,036,800, ...) get smaller factor sizes
on the registered class; everything else is the real format.
"""

from __future__ import annotations

import gzip
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from disentkit.builders import build_dataset
from disentkit.config import config_from_dict
from disentkit.data.cars3d import Cars3D
from disentkit.data.dsprites import DSprites, DSpritesSmall
from disentkit.data.files import DataFileError, MissingDataError
from disentkit.data.images import D2C_BOX
from disentkit.data.mpi3d import MPI3D
from disentkit.data.shapes3d import Shapes3D
from disentkit.data.smallnorb import SmallNORB

DSPRITES_NPZ = "dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
DSPRITES_HDF5 = "dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5"


def _build(root: Path, **data):
    """The dataset a run config ``data: {...}`` with ``data_root: root`` builds."""
    config = config_from_dict({"model": {"name": "betavae"}, "data": data, "data_root": str(root)})
    return build_dataset(config)


def _grid_classes(sizes) -> np.ndarray:
    """(N, K) class tuples in row-major order, last factor fastest."""
    n = math.prod(sizes)
    return np.stack(np.unravel_index(np.arange(n), sizes), 1).astype(np.int64)


def _check_grid(data, names, sizes, shape, value_max, read_planted) -> np.ndarray:
    """The GroundTruthData contract on the whole (small) grid; returns all uint8 images.

    ``read_planted(images)`` reads back the factor classes the fixture planted in the pixels.
    """
    assert tuple(data.factor_names) == tuple(names)
    assert tuple(data.factor_sizes) == tuple(sizes) and len(data) == math.prod(sizes)
    index = np.arange(len(data))
    factors = data.index_to_factors(index)
    np.testing.assert_array_equal(factors, _grid_classes(sizes))
    np.testing.assert_array_equal(data.factors_to_index(factors), index)
    images = data.uint8_from_indices(index)
    assert images.dtype == np.uint8 and images.shape == (len(data), *shape)
    assert tuple(data.observation_shape) == tuple(shape) and data.value_max == value_max
    np.testing.assert_array_equal(read_planted(images), factors)  # image i shows factors of i
    random_state = np.random.RandomState(0)
    drawn = data.sample_factors(30, random_state)
    obs = data.sample_observations_from_factors(drawn, random_state)
    assert obs.dtype == np.float32 and obs.shape == (30, *shape)
    assert obs.min() >= 0 and obs.max() <= 1
    np.testing.assert_allclose(obs, images[data.factors_to_index(drawn)] / value_max, rtol=1e-6)
    batch = data.uint8_batch(torch.tensor([len(data) - 1, 0]))
    assert batch.dtype == torch.uint8
    np.testing.assert_array_equal(batch.numpy(), images[[len(data) - 1, 0]])
    return images


# ---- dSprites: official npz and hdf5 -------------------------------------------------------------
SMALL_DSPRITES = (3, 2, 4, 3, 2)  # shape, scale, orientation, posX, posY (real: 3, 6, 40, 32, 32)


def _dsprites_images(classes: np.ndarray) -> np.ndarray:
    """Binary {0, 1} images with each factor's class written in bits: row k, columns 0..3."""
    images = np.zeros((len(classes), 64, 64), np.uint8)
    images[:, 20:40, 20:40] = 1  # a square sprite
    bits = (classes[:, :, None] >> np.arange(4)) & 1  # (N, K, 4)
    images[:, : classes.shape[1], :4] = bits
    return images


def _read_dsprites(images: np.ndarray) -> np.ndarray:
    return (images[:, :5, :4, 0].astype(np.int64) << np.arange(4)).sum(2)


def _write_dsprites_official(path: Path, sizes, fmt: str) -> np.ndarray:
    """The official layout: ``imgs``, 6 latent columns with a constant colour first, values,
    pickled metadata (npz) or ``latents/classes``/``latents/values`` groups (hdf5)."""
    classes = _grid_classes(sizes)
    n = len(classes)
    full = np.concatenate([np.zeros((n, 1), np.int64), classes], 1)
    values = np.concatenate([np.ones((n, 1)), classes + 1.0], 1)  # shape 1..3 as in the file
    images = _dsprites_images(classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        metadata = {"latents_sizes": np.array([1, *sizes]), "latents_names": ("color", "shape")}
        np.savez_compressed(path, imgs=images, latents_classes=full, latents_values=values,
                            metadata=np.array(metadata, dtype=object))
    else:
        import h5py

        with h5py.File(path, "w") as f:
            f.create_dataset("imgs", data=images, compression="gzip")
            f["latents/classes"] = full
            f["latents/values"] = values
    return images


@pytest.mark.parametrize("fmt", ["npz", "hdf5"])
def test_dsprites_official_file_through_the_registry(tmp_path: Path, monkeypatch, fmt: str) -> None:
    monkeypatch.setattr(DSprites, "factor_sizes", SMALL_DSPRITES)
    written = _write_dsprites_official(tmp_path / (DSPRITES_NPZ if fmt == "npz" else DSPRITES_HDF5),
                                       SMALL_DSPRITES, fmt)
    data = _build(tmp_path, name="dsprites")
    assert data.path.suffix == ("." + fmt)
    names = ("shape", "scale", "orientation", "posX", "posY")
    images = _check_grid(data, names, SMALL_DSPRITES, (64, 64, 1), 1, _read_dsprites)
    np.testing.assert_array_equal(images[..., 0], written)
    # an explicit data.path to the same file loads the same grid
    explicit = _build(tmp_path / "elsewhere", name="dsprites", path=str(data.path))
    np.testing.assert_array_equal(explicit.uint8_from_indices(np.arange(5)), images[:5])


def test_dsprites_npz_wins_over_hdf5_and_bad_hdf5_is_named(tmp_path: Path, monkeypatch) -> None:
    import h5py

    monkeypatch.setattr(DSprites, "factor_sizes", SMALL_DSPRITES)
    _write_dsprites_official(tmp_path / DSPRITES_HDF5, SMALL_DSPRITES, "hdf5")
    _write_dsprites_official(tmp_path / DSPRITES_NPZ, SMALL_DSPRITES, "npz")
    assert _build(tmp_path, name="dsprites").path.suffix == ".npz"
    (tmp_path / DSPRITES_NPZ).unlink()
    with h5py.File(tmp_path / DSPRITES_HDF5, "a") as f:
        del f["latents/classes"]
    with pytest.raises(DataFileError, match=r"\.hdf5: expected datasets 'imgs' and 'latents/classes'"):
        _build(tmp_path, name="dsprites")
    (tmp_path / DSPRITES_HDF5).write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    with pytest.raises(DataFileError, match=r"\.hdf5: not a readable HDF5 file"):
        _build(tmp_path, name="dsprites")
    _write_dsprites_official(tmp_path / DSPRITES_NPZ, (3, 2, 4, 3, 3), "npz")  # a different grid
    with pytest.raises(DataFileError, match=r"'imgs' should be uint8 of shape \(144, 64, 64\), found uint8 "
                                            r"of shape \(216, 64, 64\)"):
        _build(tmp_path, name="dsprites")


def test_dsprites_loaders_factor_order_matches_the_real_files(shared_data: Path) -> None:
    """Both dSprites loaders' flat index of the real images' factor classes is the image's row in
    the official 737,280-image file (``original_dataset_indices`` of the real NMA files)."""
    # the factor spaces of the two registered classes (their files are checked on load by
    # test_dsprites_loader_agrees_with_real_subset; the full 2.8 GiB file is not needed here)
    small = DSpritesSmall.__new__(DSpritesSmall)
    full = DSprites.__new__(DSprites)
    with np.load(shared_data / "dsprites_downsampled.npz", allow_pickle=True, encoding="latin1") as f:
        small_classes, small_original = f["latents_classes"], f["original_dataset_indices"]
    np.testing.assert_array_equal(small.factors_to_index(small_classes), np.arange(len(small)))
    # the sub-grid's classes are every 4th orientation and every 2nd position of the full grid
    np.testing.assert_array_equal(
        full.factors_to_index(small_classes * np.array([1, 1, 4, 2, 2])), small_original
    )
    with np.load(shared_data / "dsprites_subset.npz", allow_pickle=True, encoding="latin1") as f:
        subset_classes, subset_original = f["latents_classes"], f["original_dataset_indices"]
    np.testing.assert_array_equal(full.factors_to_index(subset_classes), subset_original)
    np.testing.assert_array_equal(full.index_to_factors(subset_original), subset_classes)
    assert full.factor_sizes == (3, 6, 40, 32, 32) and len(full) == 737280


# ---- dSprites variants on the official file ----------------------------------------------------
def test_variants_on_the_official_file(tmp_path: Path, monkeypatch) -> None:
    from PIL import Image

    monkeypatch.setattr(DSprites, "factor_sizes", SMALL_DSPRITES)
    _write_dsprites_official(tmp_path / DSPRITES_NPZ, SMALL_DSPRITES, "npz")
    factors = np.array([[2, 1, 3, 2, 1], [0, 0, 0, 0, 0]])
    binary = np.repeat(_dsprites_images(factors)[..., None], 3, axis=3).astype(np.float64)

    colour = _build(tmp_path, name="color_dsprites", base="dsprites")
    assert colour.factor_sizes == SMALL_DSPRITES and colour.observation_shape == (64, 64, 3)
    obs = colour.sample_observations_from_factors(factors, np.random.RandomState(7))
    expected = binary * np.random.RandomState(7).uniform(0.5, 1, [2, 1, 1, 3])
    assert obs.dtype == np.float32
    np.testing.assert_allclose(obs, expected, rtol=1e-6)
    batch = colour.uint8_batch(colour.factors_to_index(factors)).numpy()
    assert batch.dtype == np.uint8 and (batch[binary == 0] == 0).all() and (batch[binary == 1] >= 127).all()

    noisy = _build(tmp_path, name="noisy_dsprites", base="dsprites")
    obs = noisy.sample_observations_from_factors(factors, np.random.RandomState(7))
    noise = np.random.RandomState(7).uniform(0, 1, [2, 64, 64, 3])
    np.testing.assert_allclose(obs, np.minimum(binary + noise, 1), rtol=1e-6)

    with pytest.raises(MissingDataError, match=r"dsprites/scream\.jpg"):
        _build(tmp_path, name="scream_dsprites", base="dsprites")
    picture = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "dsprites" / "scream.jpg", quality=95)
    scream = _build(tmp_path, name="scream_dsprites", base="dsprites")
    assert scream.scream.shape[1] == 350 and scream.scream.shape[0] <= 274  # fitted into 350x274
    obs = scream.sample_observations_from_factors(factors, np.random.RandomState(7))
    assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.float32 and 0 <= obs.min() <= obs.max() <= 1
    # the sprite pixels are the inverted background: sprite + background pixel pairs sum to 1 only
    # where the crop is flat, so check the composite against the crop the reference draws
    rs = np.random.RandomState(7)
    r, c = rs.randint(0, scream.scream.shape[0] - 64), rs.randint(0, scream.scream.shape[1] - 64)
    background = (scream.scream[r : r + 64, c : c + 64] + rs.uniform(0, 1, size=3)) / 2
    np.testing.assert_allclose(obs[0], np.where(binary[0] == 1, 1 - background, background), rtol=1e-5)


# ---- 3D Shapes: 3dshapes.h5 ----------------------------------------------------------------------
SMALL_SHAPES = (2, 2, 2, 2, 2, 3)  # real: 10, 10, 10, 8, 4, 15


@pytest.mark.parametrize("in_memory", [True, False])
def test_shapes3d_h5_through_the_registry(tmp_path: Path, monkeypatch, in_memory: bool) -> None:
    import h5py

    monkeypatch.setattr(Shapes3D, "factor_sizes", SMALL_SHAPES)
    classes = _grid_classes(SMALL_SHAPES)
    images = np.random.default_rng(1).integers(0, 256, (len(classes), 64, 64, 3), dtype=np.uint8)
    images[:, 0, :6, 0] = classes
    # stored label values (not classes): hue k/10, scale 0.75.., shape k, orientation -30..
    labels = np.stack([classes[:, 0] / 10, classes[:, 1] / 10, classes[:, 2] / 10,
                       0.75 + classes[:, 3] / 14, classes[:, 4] * 1.0, -30 + 60 * classes[:, 5] / 14], 1)
    path = tmp_path / "3dshapes" / "3dshapes.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(1, 64, 64, 3), compression="gzip")
        f.create_dataset("labels", data=labels)
    data = _build(tmp_path, name="shapes3d", in_memory=in_memory)
    names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    loaded = _check_grid(data, names, SMALL_SHAPES, (64, 64, 3), 255,
                         lambda x: x[:, 0, :6, 0].astype(np.int64))
    np.testing.assert_array_equal(loaded, images)
    assert isinstance(data.images_uint8, np.ndarray) == in_memory
    if not in_memory:
        data.close()


def test_shapes3d_bad_files(tmp_path: Path, monkeypatch) -> None:
    import h5py

    monkeypatch.setattr(Shapes3D, "factor_sizes", SMALL_SHAPES)
    path = tmp_path / "3dshapes" / "3dshapes.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((96, 64, 64, 3), np.uint8)
    with pytest.raises(DataFileError, match=r"3dshapes\.h5: expected datasets \['images', 'labels'\], "
                                            r"missing \['labels'\]"):
        _build(tmp_path, name="shapes3d")
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((96, 64, 64, 3), np.uint8)
        f["labels"] = np.zeros((96, 6), np.float32)
    with pytest.raises(DataFileError, match=r"'labels' should be float64 .* found float32"):
        _build(tmp_path, name="shapes3d")
    with pytest.raises(MissingDataError, match=r"3dshapes/3dshapes\.h5.*disentkit data download shapes3d"):
        _build(tmp_path / "none", name="shapes3d")


# ---- MPI3D: every variant's npz, in place or through the .npy cache ------------------------------
MPI3D_FILES = {
    "toy": ("mpi3d_toy.npz", False),
    "realistic": ("mpi3d_realistic.npz", True),
    "real": ("mpi3d_real.npz", False),
    "real_complex": ("real3d_complicated_shapes_ordered.npz", True),
}


@pytest.mark.parametrize("variant", list(MPI3D_FILES))
def test_mpi3d_every_variant_through_the_registry(tmp_path: Path, monkeypatch, variant: str) -> None:
    # the real sizes differ in the colour/shape counts (6, 6 vs 4, 4 for real_complex)
    sizes = {"toy": (3, 2, 1, 1, 1, 2, 2), "realistic": (3, 2, 1, 1, 1, 2, 2),
             "real": (3, 2, 1, 1, 1, 2, 2), "real_complex": (2, 2, 1, 1, 1, 2, 2)}
    monkeypatch.setattr(MPI3D, "sizes_by_variant", sizes)
    name, compressed = MPI3D_FILES[variant]
    classes = _grid_classes(sizes[variant])
    images = np.random.default_rng(2).integers(0, 256, (len(classes), 64, 64, 3), dtype=np.uint8)
    images[:, 0, :7, 0] = classes
    path = tmp_path / "mpi3d" / name
    path.parent.mkdir()
    (np.savez_compressed if compressed else np.savez)(path, images=images)
    data = _build(tmp_path, name="mpi3d", variant=variant)
    names = ("object_color", "object_shape", "object_size", "camera_height", "background_color",
             "horizontal_axis", "vertical_axis")
    loaded = _check_grid(data, names, sizes[variant], (64, 64, 3), 255,
                         lambda x: x[:, 0, :7, 0].astype(np.int64))
    np.testing.assert_array_equal(loaded, images)
    # memory-mapped either way: in place inside a stored zip, else from a one-off .npy cache
    assert isinstance(data.images_uint8, np.memmap)
    cache = path.with_suffix(".images.npy")
    assert cache.exists() == compressed
    expected_files = sorted([name] + ([cache.name] if compressed else []))
    assert sorted(p.name for p in path.parent.iterdir()) == expected_files  # no temporary leftovers
    if compressed:
        stamp = cache.stat().st_mtime_ns
        again = _build(tmp_path, name="mpi3d", variant=variant)
        assert cache.stat().st_mtime_ns == stamp  # the cache is reused, not rebuilt
        np.testing.assert_array_equal(np.asarray(again.images_uint8), images)


def test_mpi3d_missing_variant_files_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match=r"mpi3d/mpi3d_realistic\.npz.*download mpi3d_realistic"):
        _build(tmp_path, name="mpi3d", variant="realistic")
    with pytest.raises(MissingDataError, match=r"Google Drive.*real3d_complicated_shapes_ordered\.npz"):
        _build(tmp_path, name="mpi3d", variant="real_complex")


# ---- Cars3D: .mat files + list.txt, 64x64 cache --------------------------------------------------
def write_cars(folder: Path, numbers: list[int]) -> None:
    """``car_NNN_mesh.mat`` with ``im`` (128, 128, 3, 24, 4) and ``mask`` (128, 128, 24, 4); each view
    is a flat colour (red 40 * position in list.txt, green 10 * azimuth, blue 50 * elevation)."""
    import scipy.io

    folder.mkdir(parents=True, exist_ok=True)
    for position, number in enumerate(numbers):
        im = np.zeros((128, 128, 3, 24, 4), np.uint8)
        im[:, :, 0] = 40 * position
        im[:, :, 1] = np.arange(24)[None, None, :, None] * 10
        im[:, :, 2] = np.arange(4)[None, None, None, :] * 50
        mask = np.ones((128, 128, 24, 4), np.uint8)
        scipy.io.savemat(folder / f"car_{number:03d}_mesh.mat", {"im": im, "mask": mask})
    (folder / "list.txt").write_text("".join(f"car_{n:03d}_mesh\n" for n in numbers))


def _read_cars(images: np.ndarray) -> np.ndarray:
    centre = images[:, 32, 32].astype(np.int64)
    return np.stack([centre[:, 2] // 50, centre[:, 1] // 10, centre[:, 0] // 40], 1)


def test_cars3d_through_the_registry_and_its_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Cars3D, "factor_sizes", (4, 24, 3))  # real: 183 objects
    folder = tmp_path / "cars3d" / "data" / "cars"
    write_cars(folder, [12, 3, 199])  # list order, not sorted order
    data = _build(tmp_path, name="cars3d")
    images = _check_grid(data, ("elevation", "azimuth", "object"), (4, 24, 3), (64, 64, 3), 255, _read_cars)
    assert (images == images[:, :1, :1]).all()  # flat views stay flat through the Lanczos resize
    cache = folder / "cars3d_64.npy"
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".mat")) == [
        "cars3d_64.npy", "list.txt"]  # no temporary leftovers
    for mat in folder.glob("*.mat"):
        mat.unlink()
    again = _build(tmp_path, name="cars3d")  # from the cache alone
    np.testing.assert_array_equal(again.uint8_from_indices(np.arange(len(again))), images)
    cache.unlink()
    missing = r"list\.txt names car_012_mesh, but .*car_012_mesh\.mat is missing"
    with pytest.raises(DataFileError, match=missing):
        _build(tmp_path, name="cars3d")
    (folder / "car_012_mesh.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(DataFileError, match=r"car_012_mesh\.mat: not a readable MATLAB file"):
        _build(tmp_path, name="cars3d")
    assert not cache.exists()
    with pytest.raises(MissingDataError, match=r"cars3d/data/cars/list\.txt.*download cars3d"):
        _build(tmp_path / "none", name="cars3d")


# ---- smallNORB: binary matrices ----------------------------------------------------------------
NORB_GRID = (2, 10, 2, 3, 2)  # category, instance, elevation, azimuth, lighting (real: 5, 10, 9, 18, 6)
NORB_INSTANCES = {"training": (4, 6, 7, 8, 9), "testing": (0, 1, 2, 3, 5)}


def norb_matrix(array: np.ndarray, magic: int) -> bytes:
    """int32 magic, int32 ndim, max(3, ndim) int32 dims (unused ones 1), then the data."""
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    return np.array([magic, array.ndim, *dims], dtype="<i4").tobytes() + array.tobytes()


def write_norb(folder: Path, rows_by_split: dict[str, np.ndarray], gz_split: str = "training") -> None:
    """smallNORB's dat/cat/info files; camera 0 of each image is the flat grid index of its row."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in rows_by_split.items():
        m = len(rows)
        dat = np.empty((m, 2, 96, 96), np.uint8)
        dat[:, 0] = np.ravel_multi_index(rows.T, NORB_GRID, mode="clip")[:, None, None]
        dat[:, 1] = 255 - dat[:, 0]  # camera 1 is never used
        cat = rows[:, 0].astype("<i4")
        info = np.stack([rows[:, 1], rows[:, 2], 2 * rows[:, 3], rows[:, 4]], 1).astype("<i4")
        code = "46789" if split == "training" else "01235"
        stem = f"smallnorb-5x{code}x9x18x6x2x96x96-{split}"
        raw = {"dat": norb_matrix(dat, 0x1E3D4C55), "cat": norb_matrix(cat, 0x1E3D4C54),
               "info": norb_matrix(info, 0x1E3D4C54)}
        # header sizes of the real files: 24 B for dat (ndim 4), 20 B for cat and info
        assert len(raw["dat"]) == 24 + m * 2 * 96 * 96
        assert len(raw["cat"]) == 20 + 4 * m and len(raw["info"]) == 20 + 16 * m
        for kind, data in raw.items():
            if split == gz_split:  # as downloaded (.mat.gz); the other split as unpacked (.mat)
                (folder / f"{stem}-{kind}.mat.gz").write_bytes(gzip.compress(data, compresslevel=1))
            else:
                (folder / f"{stem}-{kind}.mat").write_bytes(data)


def _norb_rows(split: str, shuffle: int = 0) -> np.ndarray:
    grid = _grid_classes(NORB_GRID)
    rows = grid[np.isin(grid[:, 1], NORB_INSTANCES[split])]
    return rows[np.random.default_rng(shuffle).permutation(len(rows))]  # any order in the file


def test_smallnorb_through_the_registry(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(SmallNORB, "grid_sizes", NORB_GRID)
    monkeypatch.setattr(SmallNORB, "factor_sizes", (2, 2, 3, 2))
    folder = tmp_path / "smallnorb"
    write_norb(folder, {s: _norb_rows(s) for s in NORB_INSTANCES})
    data = _build(tmp_path, name="smallnorb", seed=3)
    assert data.factor_names == ("category", "elevation", "azimuth", "lighting")
    assert len(data) == 24 and data.observation_shape == (64, 64, 1) and data.value_max == 255
    index = np.arange(len(data))
    factors = data.index_to_factors(index)
    np.testing.assert_array_equal(factors, _grid_classes((2, 2, 3, 2)))
    np.testing.assert_array_equal(data.factors_to_index(factors), index)
    # stored grid: every image sits at its (category, instance, elevation, azimuth, lighting) index
    stored = data.images_uint8
    assert stored.shape == (240, 64, 64, 1) and stored.dtype == np.uint8
    np.testing.assert_array_equal(stored[:, 32, 32, 0], np.arange(240))
    assert (stored == stored[:, :1, :1]).all()  # camera 0 only, flat through the 96 -> 64 resize
    # observations: the instance is drawn from the passed random state after the factors
    drawn = np.repeat(factors, 4, axis=0)
    obs = data.sample_observations_from_factors(drawn, np.random.RandomState(11))
    instance = np.random.RandomState(11).randint(10, size=len(drawn))
    expected = np.ravel_multi_index(np.insert(drawn, 1, instance, axis=1).T, NORB_GRID)
    assert obs.dtype == np.float32 and obs.shape == (len(drawn), 64, 64, 1)
    np.testing.assert_allclose(obs[:, 10, 50, 0], expected / 255, rtol=1e-6)
    batch = data.uint8_batch(np.full(200, 5)).numpy()[:, 0, 0, 0].astype(np.int64)
    category, instances = np.unravel_index(batch, NORB_GRID)[:2]
    assert (category == factors[5, 0]).all() and len(set(instances)) > 5  # instance varies
    cache = folder / "smallnorb_64.npy"
    for raw in folder.glob("smallnorb-5x*"):
        raw.unlink()
    np.testing.assert_array_equal(_build(tmp_path, name="smallnorb").images_uint8, stored)  # cache
    assert cache.exists()


def test_smallnorb_bad_labels_and_headers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(SmallNORB, "grid_sizes", NORB_GRID)
    monkeypatch.setattr(SmallNORB, "factor_sizes", (2, 2, 3, 2))
    folder = tmp_path / "smallnorb"
    training = _norb_rows("training")
    write_norb(folder, {"training": training, "testing": training})  # the same images twice
    with pytest.raises(DataFileError, match=r"cover the grid \[2, 10, 2, 3, 2\] exactly once .* 120 "
                                            r"distinct"):
        _build(tmp_path, name="smallnorb")
    outside = _norb_rows("testing").copy()
    outside[0, 3] = 3  # azimuth class 3 (stored 6) is outside the 3 azimuths of the grid
    write_norb(folder, {"training": training, "testing": outside})
    with pytest.raises(DataFileError, match=r"labels outside the grid"):
        _build(tmp_path, name="smallnorb")
    stem = folder / "smallnorb-5x01235x9x18x6x2x96x96-testing-dat.mat"
    raw = stem.read_bytes()
    stem.write_bytes(raw[: len(raw) // 2])  # an interrupted unpack
    with pytest.raises(DataFileError, match=r"testing-dat\.mat: header says uint8 \(120, 2, 96, 96\)"):
        _build(tmp_path, name="smallnorb")
    gz = folder / "smallnorb-5x46789x9x18x6x2x96x96-training-cat.mat.gz"
    gz.write_bytes(gz.read_bytes()[:-10])  # a truncated download
    with pytest.raises(DataFileError, match=r"training-cat\.mat\.gz: cannot read"):
        _build(tmp_path, name="smallnorb")
    assert not (folder / "smallnorb_64.npy").exists()  # nothing half-written
    how = r"smallnorb-5x46789.*training-dat\.mat\.gz.*download smallnorb"
    with pytest.raises(MissingDataError, match=how):
        _build(tmp_path / "none", name="smallnorb")


# ---- image folders and CelebA --------------------------------------------------------------------
def _save(path: Path, array: np.ndarray, **kw) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)


def _framed(height: int, width: int, box: tuple[int, int, int, int], inside, outside) -> np.ndarray:
    """An RGB image of colour ``outside`` with the (left, upper, right, lower) box ``inside``."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = outside
    left, upper, right, lower = box
    image[upper:lower, left:right] = inside
    return image


def test_image_folder_order_crop_and_pixels(tmp_path: Path) -> None:
    colours = {"b.png": (10, 20, 30), "a/z.png": (40, 50, 60), "a/c.bmp": (70, 80, 90)}
    for name, colour in colours.items():  # 40x30 (W x H): the centred 30x30 square is the colour
        _save(tmp_path / "faces" / name, _framed(30, 40, (5, 0, 35, 30), colour, (255, 0, 255)))
    (tmp_path / "faces" / "README.txt").write_text("not an image")
    data = _build(tmp_path, name="image_folder", path="faces", image_size=30)
    names = [p.relative_to(tmp_path / "faces").as_posix() for p in data.files]
    assert names == ["a/c.bmp", "a/z.png", "b.png"]  # recursive, sorted by path
    batch = data.uint8_batch(torch.tensor([2, 0, 1]))
    assert batch.dtype == torch.uint8 and tuple(batch.shape) == (3, 30, 30, 3)
    for image, name in zip(batch.numpy(), ["b.png", "a/c.bmp", "a/z.png"]):
        assert (image == colours[name]).all()  # the magenta sides were cropped off exactly
    resized = _build(tmp_path, name="image_folder", path=str(tmp_path / "faces"), crop="none", image_size=8)
    assert resized.observation_shape == (8, 8, 3) and resized.uint8_batch(np.array([0])).shape == (1, 8, 8, 3)
    (tmp_path / "faces" / "b.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataFileError, match=r"image_folder: cannot decode image 2 \(.*b\.png\)"):
        data.uint8_batch(np.array([2]))
    with pytest.raises(MissingDataError, match="image_folder: folder .*nowhere does not exist"):
        _build(tmp_path, name="image_folder", path="nowhere")


CELEBA_NAMES = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes"]


def _write_celeba(root: Path, count: int) -> np.ndarray:
    """``img_align_celeba/NNNNNN.jpg`` (178x218) and ``list_attr_celeba.txt`` as published: the
    count, the names with a trailing space, rows separated by one or two spaces."""
    attributes = np.where(np.random.default_rng(3).random((count, len(CELEBA_NAMES))) < 0.5, -1, 1)
    lines = [str(count), " ".join(CELEBA_NAMES) + " "]
    for i in range(count):
        inside = (0, 40 * i + 40, 0)  # D2C box green, the rest red
        _save(root / "celeba" / "img_align_celeba" / f"{i + 1:06d}.jpg",
              _framed(218, 178, D2C_BOX, inside, (200, 0, 0)), quality=95)
        lines.append(f"{i + 1:06d}.jpg " + " ".join(f"{v:2d}" for v in attributes[i]))
    (root / "celeba" / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    return attributes


def test_celeba_folder_and_attribute_file_through_the_registry(tmp_path: Path) -> None:
    attributes = _write_celeba(tmp_path, 3)
    assert "  1" in (tmp_path / "celeba" / "list_attr_celeba.txt").read_text()  # two-space gaps
    data = _build(tmp_path, name="celeba", crop="d2c", image_size=32, cache=True)
    assert len(data) == 3 and data.attribute_names == CELEBA_NAMES
    assert data.attributes.dtype == np.int8
    np.testing.assert_array_equal(data.attributes, attributes)
    batch = data.uint8_batch(np.array([2, 0])).numpy().astype(int)
    assert batch.shape == (2, 32, 32, 3) and data.observation_shape == (32, 32, 3)
    # the D2C crop keeps exactly the green box: no red left (JPEG chroma bleeds into the border)
    inner = batch[:, 2:-2, 2:-2]
    assert inner[..., 0].max() <= 12 and batch[..., 0].mean() < 8
    np.testing.assert_allclose(inner[..., 1].mean(axis=(1, 2)), [120, 40], atol=4)
    centred = _build(tmp_path, name="celeba")  # the common recipe: centre 148, resize 64
    assert centred.uint8_batch(np.array([0])).shape == (1, 64, 64, 3)

    attr = tmp_path / "celeba" / "list_attr_celeba.txt"
    text = attr.read_text()
    attr.write_text(text.replace("000002.jpg", "000009.jpg"))
    with pytest.raises(DataFileError, match=r"lists 000009\.jpg, but .*000009\.jpg is missing"):
        _build(tmp_path, name="celeba")
    attr.write_text(text.replace(f"000003.jpg {attributes[2, 0]:2d}", "000003.jpg  0"))
    bad_value = r"should be -1 or 1, found 0 for 5_o_Clock_Shadow of 000003\.jpg"
    with pytest.raises(DataFileError, match=bad_value):
        _build(tmp_path, name="celeba")
    attr.write_text("3\n")
    with pytest.raises(DataFileError, match="line 2 should list the attribute names"):
        _build(tmp_path, name="celeba")


# ---- Diff-AE LMDBs -------------------------------------------------------------------------------
def _write_lmdb(path: Path, key_format: str, images: list[np.ndarray], fmt: str, quality: int,
                length: int | None = None) -> None:
    """Diff-AE's writer: ``b"length"`` as ASCII and one encoded image per ``key_format % i``."""
    lmdb = pytest.importorskip("lmdb")
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=1 << 25)
    with env.begin(write=True) as txn:
        for i, image in enumerate(images):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format=fmt, quality=quality)
            txn.put((key_format % i).encode("utf-8"), buffer.getvalue())
        txn.put(b"length", str(len(images) if length is None else length).encode("utf-8"))
    env.close()


def _flat(size: tuple[int, int], colour) -> np.ndarray:
    return np.full((size[1], size[0], 3), colour, np.uint8)


def test_diffae_celeba_lmdb_keys_and_d2c_crop(tmp_path: Path) -> None:
    images = [_framed(218, 178, D2C_BOX, (0, 60 * i + 60, 0), (200, 0, 0)) for i in range(3)]
    _write_lmdb(tmp_path / "celeba_lmdb" / "celeba.lmdb", "None-%07d", images, "WEBP", 100)
    data = _build(tmp_path, name="celeba_lmdb")
    assert len(data) == 3 and data.key(0) == b"None-0000000" and data.observation_shape == (64, 64, 3)
    batch = data.uint8_batch(np.array([1, 2, 0])).numpy().astype(int)
    inner = batch[:, 2:-2, 2:-2]  # WebP chroma bleeds across the box edge by a pixel
    assert batch.shape == (3, 64, 64, 3) and inner[..., 0].max() <= 12  # only the D2C box is kept
    np.testing.assert_allclose(inner[..., 1].mean(axis=(1, 2)), [120, 180, 60], atol=4)


def test_diffae_ffhq_and_bedroom_lmdbs(tmp_path: Path) -> None:
    ffhq = [_flat((256, 256), (30 * i, 0, 0)) for i in range(4)]
    _write_lmdb(tmp_path / "ffhq" / "ffhq256.lmdb", "256-%05d", ffhq, "JPEG", 100)
    data = _build(tmp_path, name="ffhq_lmdb", image_size=64)
    assert len(data) == 4 and data.key(3) == b"256-00003"
    np.testing.assert_allclose(data.uint8_batch(np.arange(4)).numpy()[:, 5, 5, 0], [0, 30, 60, 90], atol=3)
    train = _build(tmp_path, name="ffhq_lmdb", split="train", test_size=1, image_size=16)
    assert len(train) == 3 and train.key(0) == b"256-00001"

    bedroom = [_flat((256, 256), (0, 0, 50 * i + 50)) for i in range(3)]
    _write_lmdb(tmp_path / "bedroom" / "bedroom256.lmdb", "256-%07d", bedroom, "WEBP", 90)
    rooms = _build(tmp_path, name="bedroom_lmdb", image_size=128)
    assert len(rooms) == 3 and rooms.key(2) == b"256-0000002" and rooms.observation_shape == (128, 128, 3)
    batch = rooms.uint8_batch(torch.tensor([2, 0])).numpy().astype(int)
    assert batch.shape == (2, 128, 128, 3)
    np.testing.assert_allclose(batch[..., 2].mean(axis=(1, 2)), [150, 50], atol=4)

    _write_lmdb(tmp_path / "short.lmdb", "256-%07d", bedroom[:2], "WEBP", 90, length=3)
    # a length larger than the LMDB's entries is refused when the dataset is built
    with pytest.raises(DataFileError, match=r"short\.lmdb: b'length' says 3 images, but .* only 2 "):
        _build(tmp_path, name="bedroom_lmdb", path=str(tmp_path / "short.lmdb"))
    _write_lmdb(tmp_path / "gap.lmdb", "256-%07d", bedroom, "WEBP", 90)
    env = pytest.importorskip("lmdb").open(str(tmp_path / "gap.lmdb"))
    with env.begin(write=True) as txn:  # a key missing with the entry count intact
        txn.delete(b"256-0000002")
        txn.put(b"extra", b"")
    env.close()
    gap = _build(tmp_path, name="bedroom_lmdb", path=str(tmp_path / "gap.lmdb"))
    with pytest.raises(DataFileError, match=r"gap\.lmdb: key b'256-0000002' missing \(length says 3\)"):
        gap.uint8_batch(np.array([2]))
    with pytest.raises(MissingDataError, match=r"bedroom/bedroom256\.lmdb.*github\.com/phizaz/diffae"):
        _build(tmp_path / "none", name="bedroom_lmdb")


# ---- 3D Chairs and LFW ---------------------------------------------------------------------------
def test_chairs3d_renders_through_the_registry(tmp_path: Path) -> None:
    root = tmp_path / "chairs3d" / "rendered_chairs"
    models = ["f2a3c1", "0b9d4e"]
    number = 0
    for model in models:
        for p in (20, 30):
            for t in (0, 11, 348):
                number += 1  # NNN is a running number, unrelated to the view: never parsed
                colour = (100 * models.index(model), p * 4, t // 2)
                _save(root / model / "renders" / f"image_{number:03d}_p{p:03d}_t{t:03d}_r096.png",
                      _flat((60, 60), colour))
    (root / "all_chair_names.mat").write_bytes(b"not a render")
    data = _build(tmp_path, name="chairs3d", image_size=32)
    assert len(data) == 12 and data.factor_names == ("chair", "elevation", "azimuth")
    assert data.factors.dtype == np.int64 and data.factors.shape == (12, 3)
    assert [v.tolist() for v in data.factor_values] == [sorted(models), [20, 30], [0, 11, 348]]
    pixels = data.uint8_batch(np.arange(12)).numpy()[:, 16, 16].astype(int)
    chair = np.array([models.index(data.factor_values[0][c]) for c in data.factors[:, 0]])
    np.testing.assert_array_equal(pixels[:, 0], 100 * chair)
    np.testing.assert_array_equal(pixels[:, 1], 4 * data.factor_values[1][data.factors[:, 1]])
    np.testing.assert_array_equal(pixels[:, 2], data.factor_values[2][data.factors[:, 2]] // 2)


def test_lfw_images_joined_with_the_attribute_file(tmp_path: Path) -> None:
    folder = tmp_path / "lfw" / "lfw-deepfunneled"
    people = [("Mary_Jo_Smith", 2, (0, 200, 0)), ("Bo_Li", 1, (0, 0, 200)), ("Bo_Li", 3, (0, 100, 0))]
    for name, number, colour in people:  # the central 90x90 (80 px off each side) is the colour
        _save(folder / name / f"{name}_{number:04d}.jpg",
              _framed(250, 250, (80, 80, 170, 170), colour, (250, 0, 0)), quality=95)
    _save(folder / "Bo_Li" / "Thumbs.jpg", _flat((8, 8), (0, 0, 0)))  # not <Name>_NNNN: skipped
    (tmp_path / "lfw" / "lfw_attributes.txt").write_text(
        "# Attributes for the LFW database, Kumar et al.\n"
        "#\tperson\timagenum\tMale\tAsian\tSmiling\n"
        "Bo Li\t1\t1.5\t2.25\t-0.5\n"
        "Mary Jo Smith\t2\t-1.0\t0.5\t0.75\n"
    )
    data = _build(tmp_path, name="lfw")
    assert data.attribute_names == ["Male", "Asian", "Smiling"] and len(data) == 2
    assert [p.name for p in data.files] == ["Bo_Li_0001.jpg", "Mary_Jo_Smith_0002.jpg"]
    assert data.attributes.dtype == np.float32
    np.testing.assert_array_equal(data.attributes, [[1.5, 2.25, -0.5], [-1.0, 0.5, 0.75]])
    batch = data.uint8_batch(np.array([0, 1])).numpy().astype(int)
    inner = batch[:, 2:-2, 2:-2]  # JPEG chroma bleeds across the frame's edge by a pixel
    assert batch.shape == (2, 64, 64, 3) and inner[..., 0].max() <= 12  # the red frame is cropped off
    np.testing.assert_allclose(inner[..., 1:].mean(axis=(1, 2)), [[0, 200], [200, 0]], atol=4)
    everyone = _build(tmp_path, name="lfw", require_attributes=False)
    assert len(everyone) == 3 and np.isnan(everyone.attributes[1]).all()
    (tmp_path / "lfw" / "lfw_attributes.txt").write_text("#\tperson\timagenum\tMale\nBo Li\tone\t1.0\n")
    with pytest.raises(DataFileError, match=r"lfw_attributes\.txt: expected a person name, an integer "
                                            r"imagenum and 1 real scores, found 'Bo Li\\tone"):
        _build(tmp_path, name="lfw")
