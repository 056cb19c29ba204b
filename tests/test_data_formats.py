"""Dataset loaders on small fixtures written in the real file formats.

Fixed-size grids (3D Shapes, MPI3D, Cars3D, smallNORB) are exercised through subclasses with
smaller factor sizes; the parsing, ordering and validation code is the one the real files use.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from disentkit.data.cars3d import Cars3D
from disentkit.data.dsprites import ColorDSprites, DSprites, DSpritesSmall, NoisyDSprites, ScreamDSprites
from disentkit.data.files import DataFileError, MissingDataError
from disentkit.data.images import (
    D2C_BOX,
    FFHQLMDB,
    LFW,
    CelebA,
    CelebALMDB,
    Chairs3D,
    ImageFolder,
    read_celeba_attributes,
)
from disentkit.data.mpi3d import MPI3D
from disentkit.data.shapes3d import Shapes3D
from disentkit.data.smallnorb import SmallNORB, read_binary_matrix

RNG = np.random.default_rng(0)


# ---- dSprites --------------------------------------------------------------------------------
def _write_dsprites_npz(path: Path, sizes, colour_column=True, images=None, order=None):
    n = int(np.prod(sizes))
    classes = np.stack(np.unravel_index(np.arange(n), sizes), 1)
    if colour_column:
        classes = np.concatenate([np.zeros((n, 1), np.int64), classes], 1)
    if images is None:
        # encode the flat index in the pixels so the order can be checked
        images = np.zeros((n, 64, 64), np.uint8)
        bits = (np.arange(n)[:, None] >> np.arange(16)[None]) & 1
        images[:, 0, :16] = bits
    if order is not None:
        images, classes = images[order], classes[order]
    metadata = {"latents_sizes": np.array(([1] if colour_column else []) + list(sizes))}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, imgs=images, latents_classes=classes, metadata=metadata)


def _decode_index(images: np.ndarray) -> np.ndarray:
    return (images[:, 0, :16, 0].astype(np.int64) << np.arange(16)).sum(1)


def test_dsprites_small_npz_order_and_values(tmp_path: Path) -> None:
    path = tmp_path / "dsprites" / "dsprites_downsampled.npz"
    _write_dsprites_npz(path, (3, 6, 10, 16, 16), colour_column=False)
    data = DSpritesSmall(data_root=tmp_path)
    assert data.factor_sizes == (3, 6, 10, 16, 16) and data.value_max == 1
    factors = data.sample_factors(50, np.random.RandomState(0))
    index = data.factors_to_index(factors)
    np.testing.assert_array_equal(_decode_index(data.uint8_from_indices(index)), index)
    np.testing.assert_array_equal(data.index_to_factors(index), factors)
    obs = data.sample_observations_from_factors(factors, np.random.RandomState(0))
    assert obs.dtype == np.float32 and obs.max() == 1.0


def test_dsprites_bad_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "dsprites" / "dsprites_downsampled.npz"
    sizes = (3, 6, 10, 16, 16)
    n = int(np.prod(sizes))
    _write_dsprites_npz(path, sizes, order=np.roll(np.arange(n), 1))
    with pytest.raises(DataFileError, match="not in dSprites order"):
        DSpritesSmall(data_root=tmp_path)
    _write_dsprites_npz(path, sizes, images=np.full((n, 64, 64), 255, np.uint8))
    with pytest.raises(DataFileError, match=r"\{0, 1\}.*255"):
        DSpritesSmall(data_root=tmp_path)
    np.savez(path, imgs=np.zeros((5, 64, 64), np.uint8))
    with pytest.raises(DataFileError, match="missing \\['latents_classes'\\]"):
        DSpritesSmall(data_root=tmp_path)
    _write_dsprites_npz(path, sizes)
    path.write_bytes(path.read_bytes()[:5000])  # truncated download
    with pytest.raises(DataFileError, match=str(path.name)):
        DSpritesSmall(data_root=tmp_path)
    with pytest.raises(MissingDataError, match="disentkit data download dsprites"):
        DSprites(data_root=tmp_path / "empty")


def test_dsprites_hdf5_layout_errors(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5"
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        f["imgs"] = np.zeros((10, 64, 64), np.uint8)
        f["latents/classes"] = np.zeros((10, 6), np.int64)
    with pytest.raises(DataFileError, match=r"'imgs' should be uint8 of shape \(737280, 64, 64\)"):
        DSprites(data_root=tmp_path)


def test_dsprites_loader_agrees_with_real_subset(shared_data: Path) -> None:
    data = DSpritesSmall(DSpritesSmall.Config(path=str(shared_data / "dsprites_downsampled.npz")))
    with np.load(shared_data / "dsprites_subset.npz", allow_pickle=True, encoding="latin1") as f:
        classes, images = f["latents_classes"], f["imgs"]
    # subset images on the reduced grid (orientation % 4 == 0, positions even) must be identical
    keep = (classes[:, 2] % 4 == 0) & (classes[:, 3] % 2 == 0) & (classes[:, 4] % 2 == 0)
    reduced = classes[keep] // np.array([1, 1, 4, 2, 2])
    assert keep.sum() > 50
    loaded = data.uint8_from_indices(data.factors_to_index(reduced))[..., 0]
    np.testing.assert_array_equal(loaded, images[keep])


def test_colour_variants_follow_the_reference_draws() -> None:
    colour = ColorDSprites(ColorDSprites.Config(base="sprites"))
    factors = np.array([[0, 5, 0, 0, 0], [2, 3, 4, 16, 16]])
    binary = colour.base.uint8_from_indices(colour.factors_to_index(factors)).astype(np.float64)
    obs = colour.sample_observations_from_factors(factors, np.random.RandomState(5))
    expected_colour = np.random.RandomState(5).uniform(0.5, 1, [2, 1, 1, 3])
    np.testing.assert_allclose(obs, binary * expected_colour, rtol=1e-6)
    noisy = NoisyDSprites(NoisyDSprites.Config(base="sprites"))
    obs = noisy.sample_observations_from_factors(factors, np.random.RandomState(5))
    noise = np.random.RandomState(5).uniform(0, 1, [2, 64, 64, 3])
    np.testing.assert_allclose(obs, np.minimum(binary + noise, 1), rtol=1e-6)
    batch = colour.uint8_batch(np.array([0, 1]))
    assert batch.shape == (2, 64, 64, 3) and colour.value_max == 255
    # fresh randomness per read: never code-cached by the metric suite nor device-resident
    assert not colour.deterministic_observations and not noisy.deterministic_observations
    with pytest.raises(NotImplementedError, match="color_dsprites draws randomness per observation"):
        colour.to("cpu")


def test_scream_needs_an_image_and_inverts_the_sprite(tmp_path: Path) -> None:
    from PIL import Image

    with pytest.raises(MissingDataError, match="scream.jpg"):
        ScreamDSprites(ScreamDSprites.Config(base="sprites"), data_root=tmp_path)
    picture = RNG.integers(0, 256, (274, 350, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "s.png")
    data = ScreamDSprites(ScreamDSprites.Config(base="sprites", scream_path=str(tmp_path / "s.png")))
    factors = np.array([[0, 5, 0, 0, 0]])
    obs = data.sample_observations_from_factors(factors, np.random.RandomState(3))
    rs = np.random.RandomState(3)
    r, c = rs.randint(0, 274 - 64), rs.randint(0, 350 - 64)
    background = (picture[r : r + 64, c : c + 64] / 255.0 + rs.uniform(0, 1, size=3)) / 2
    sprite = np.zeros((64, 64), bool)
    sprite[6:26, 6:26] = True
    np.testing.assert_allclose(obs[0][~sprite], background[~sprite], rtol=1e-6)
    np.testing.assert_allclose(obs[0][sprite], 1 - background[sprite], rtol=1e-6)


# ---- 3D Shapes --------------------------------------------------------------------------------
class TinyShapes3D(Shapes3D):
    factor_sizes = (2, 2, 2, 2, 2, 3)
    image_shape = (4, 4, 3)


def test_shapes3d_h5(tmp_path: Path) -> None:
    import h5py

    n = 96
    path = tmp_path / "3dshapes" / "3dshapes.h5"
    path.parent.mkdir()
    images = RNG.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, compression="gzip")
        f["labels"] = RNG.random((n, 6))  # float values: must not be used as classes
    for in_memory in (True, False):
        data = TinyShapes3D(TinyShapes3D.Config(in_memory=in_memory), data_root=tmp_path)
        idx = np.array([95, 3, 3, 50])
        np.testing.assert_array_equal(data.uint8_from_indices(idx), images[idx])
    data.close()
    np.testing.assert_array_equal(data.index_to_factors(np.array([95]))[0], [1, 1, 1, 1, 1, 2])
    with h5py.File(path, "w") as f:
        f["images"] = images.astype(np.float32)
        f["labels"] = np.zeros((n, 6))
    with pytest.raises(DataFileError, match=r"'images' should be uint8 .* found float32"):
        TinyShapes3D(data_root=tmp_path)
    path.write_bytes(b"not hdf5")
    with pytest.raises(DataFileError, match="not a readable HDF5"):
        TinyShapes3D(data_root=tmp_path)


# ---- MPI3D ------------------------------------------------------------------------------------
class TinyMPI3D(MPI3D):
    image_shape = (4, 4, 3)
    sizes_by_variant = {"toy": (2, 2, 1, 1, 1, 3, 2), "realistic": (1,) * 7, "real": (1,) * 7,
                        "real_complex": (1,) * 7}


@pytest.mark.parametrize("compressed", [False, True])
def test_mpi3d_npz_is_memory_mapped(tmp_path: Path, compressed: bool) -> None:
    images = RNG.integers(0, 256, (24, 4, 4, 3), dtype=np.uint8)
    path = tmp_path / "mpi3d" / "mpi3d_toy.npz"
    path.parent.mkdir()
    (np.savez_compressed if compressed else np.savez)(path, images=images)
    data = TinyMPI3D(data_root=tmp_path)
    assert isinstance(data.images_uint8, np.memmap)
    assert path.with_suffix(".images.npy").exists() == compressed
    idx = np.array([23, 0, 7])
    np.testing.assert_array_equal(data.uint8_from_indices(idx), images[idx])
    np.testing.assert_array_equal(data.index_to_factors(np.array([23]))[0], [1, 1, 0, 0, 0, 2, 1])
    assert TinyMPI3D(data_root=tmp_path).uint8_from_indices(idx).tolist() == images[idx].tolist()


def test_mpi3d_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "mpi3d" / "mpi3d_toy.npz"
    path.parent.mkdir()
    np.savez(path, images=np.zeros((23, 4, 4, 3), np.uint8))
    with pytest.raises(DataFileError, match=r"should be uint8 .*\(24, 4, 4, 3\), found uint8 of shape \(23"):
        TinyMPI3D(data_root=tmp_path)
    np.savez(path, pixels=np.zeros((24, 4, 4, 3), np.uint8))
    with pytest.raises(DataFileError, match="expected key 'images'"):
        TinyMPI3D(data_root=tmp_path)
    np.savez_compressed(path, images=RNG.integers(0, 256, (24, 4, 4, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataFileError, match="mpi3d_toy.npz"):
        TinyMPI3D(data_root=tmp_path)
    assert not path.with_suffix(".images.npy").exists()  # no half-written cache
    with pytest.raises(MissingDataError, match="disentkit data download mpi3d_toy"):
        MPI3D(data_root=tmp_path / "none")


def test_mpi3d_real_sizes() -> None:
    assert MPI3D.sizes_by_variant["real"] == (6, 6, 2, 3, 3, 40, 40)
    assert MPI3D.sizes_by_variant["real_complex"] == (4, 4, 2, 3, 3, 40, 40)


# ---- Cars3D -----------------------------------------------------------------------------------
class TinyCars3D(Cars3D):
    factor_sizes = (4, 24, 2)


def test_cars3d_mat_and_list_order(tmp_path: Path) -> None:
    import scipy.io

    folder = tmp_path / "cars3d" / "data" / "cars"
    folder.mkdir(parents=True)
    # each view is a flat colour encoding (object, azimuth, elevation)
    for number in (7, 3):
        im = np.zeros((128, 128, 3, 24, 4), np.uint8)
        im[:, :, 0] = number * 10
        im[:, :, 1] = np.arange(24)[None, None, :, None] * 10
        im[:, :, 2] = np.arange(4)[None, None, None, :] * 50
        scipy.io.savemat(folder / f"car_{number:03d}_mesh.mat", {"im": im})
    (folder / "list.txt").write_text("car_007_mesh\ncar_003_mesh\n")  # list order, not sorted
    data = TinyCars3D(data_root=tmp_path)
    assert data.observation_shape == (64, 64, 3)
    e, a, o = 3, 17, 1
    image = data.uint8_from_indices(np.array([e * 24 * 2 + a * 2 + o]))[0]
    np.testing.assert_array_equal(image[32, 32], [30, a * 10, e * 50])
    assert (folder / "cars3d_64.npy").exists()
    (folder / "cars3d_64.npy").unlink()
    scipy.io.savemat(folder / "car_003_mesh.mat", {"im": np.zeros((64, 64, 3, 24, 4), np.uint8)})
    expected = r"car_003_mesh.mat: 'im' should be uint8 of shape \(128, 128, 3, 24, 4\)"
    with pytest.raises(DataFileError, match=expected):
        TinyCars3D(data_root=tmp_path)
    (folder / "list.txt").write_text("car_007_mesh\n")
    with pytest.raises(DataFileError, match="expected 2 car names, found 1"):
        TinyCars3D(data_root=tmp_path)


# ---- smallNORB --------------------------------------------------------------------------------
def _norb_matrix(array: np.ndarray, magic: int) -> bytes:
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    header = np.array([magic, array.ndim, *dims], dtype="<i4").tobytes()
    return header + array.tobytes()


class TinyNORB(SmallNORB):
    factor_sizes = (2, 2, 3, 2)
    grid_sizes = (2, 2, 2, 3, 2)


def test_smallnorb_binary_matrix(tmp_path: Path) -> None:
    import gzip

    folder = tmp_path / "smallnorb"
    folder.mkdir()
    grid = np.stack(np.unravel_index(np.arange(48), (2, 2, 2, 3, 2)), 1)
    for split, instance in (("training", 1), ("testing", 0)):
        rows = grid[grid[:, 1] == instance][::-1]  # any order in the file
        m = len(rows)
        dat = np.zeros((m, 2, 96, 96), np.uint8)
        dat[:, 0] = (rows @ np.array([100, 50, 20, 5, 1]))[:, None, None]
        dat[:, 1] = 255  # camera 1 must be ignored
        info = np.stack([rows[:, 1], rows[:, 2], rows[:, 3] * 2, rows[:, 4]], 1).astype("<i4")
        code = "46789" if split == "training" else "01235"
        stem = f"smallnorb-5x{code}x9x18x6x2x96x96-{split}"
        files = {
            "dat": _norb_matrix(dat, 0x1E3D4C55),
            "cat": _norb_matrix(rows[:, 0].astype("<i4"), 0x1E3D4C54),
            "info": _norb_matrix(info, 0x1E3D4C54),
        }
        assert len(files["cat"]) == 20 + 4 * m and len(files["dat"]) == 24 + m * 2 * 96 * 96
        for kind, raw in files.items():
            if kind == "dat" and split == "testing":  # the .gz form is read too
                (folder / f"{stem}-{kind}.mat.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / f"{stem}-{kind}.mat").write_bytes(raw)
    data = TinyNORB(data_root=tmp_path)
    assert data.factor_names == ("category", "elevation", "azimuth", "lighting")
    factors = np.array([[1, 1, 2, 0]] * 40)
    obs = data.sample_observations_from_factors(factors, np.random.RandomState(0))
    instances = np.random.RandomState(0).randint(2, size=40)
    expected = (100 + 50 * instances + 20 + 10) / 255
    np.testing.assert_allclose(obs[:, 32, 32, 0], expected, atol=1e-6)
    values = data.uint8_from_indices(np.repeat(data.factors_to_index(factors[:1]), 40))[:, 32, 32, 0]
    assert set(values) == {130, 180}  # both instances drawn by the training path
    assert not data.deterministic_observations
    with pytest.raises(NotImplementedError, match="smallnorb draws randomness per observation"):
        data.to("cpu")
    raw = (folder / "smallnorb-5x46789x9x18x6x2x96x96-training-info.mat").read_bytes()
    (folder / "bad.mat").write_bytes(raw[:-4])
    with pytest.raises(DataFileError, match="header says int32 .* found .* bytes"):
        read_binary_matrix(folder / "bad.mat")
    (folder / "bad.mat").write_bytes(b"\x00" * 24)
    with pytest.raises(DataFileError, match="unknown magic"):
        read_binary_matrix(folder / "bad.mat")


# ---- image datasets ---------------------------------------------------------------------------
def _jpeg(path: Path, size=(178, 218), colour=(200, 10, 10)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=95)


def test_celeba_folder_and_attributes(tmp_path: Path) -> None:
    folder = tmp_path / "celeba" / "img_align_celeba"
    for i in range(1, 4):
        _jpeg(folder / f"{i:06d}.jpg", colour=(10 * i, 0, 0))
    names = "5_o_Clock_Shadow Arched_Eyebrows Attractive "
    rows = ["000001.jpg  1 -1  1", "000002.jpg -1 -1  1", "000003.jpg  1  1 -1"]
    (tmp_path / "celeba" / "list_attr_celeba.txt").write_text("3\n" + names + "\n" + "\n".join(rows) + "\n")
    data = CelebA(CelebA.Config(cache=True), data_root=tmp_path)
    assert len(data) == 3 and data.attributes.dtype == np.int8
    np.testing.assert_array_equal(data.attributes[1], [-1, -1, 1])
    batch = data.uint8_batch(np.array([2, 0]))
    assert tuple(batch.shape) == (2, 64, 64, 3)
    assert abs(int(batch[0, 32, 32, 0]) - 30) <= 3 and abs(int(batch[1, 32, 32, 0]) - 10) <= 3
    assert data._decoded.tolist() == [True, False, True]
    (tmp_path / "celeba" / "list_attr_celeba.txt").write_text("3\n" + names + "\n" + rows[0] + "\n")
    with pytest.raises(DataFileError, match="header says 3 rows, found 1"):
        read_celeba_attributes(tmp_path / "celeba" / "list_attr_celeba.txt")
    with pytest.raises(MissingDataError, match="manual download"):
        CelebA(data_root=tmp_path / "none")


def test_d2c_crop_box() -> None:
    from PIL import Image

    from disentkit.data.images import preprocess

    image = np.zeros((218, 178, 3), np.uint8)
    image[57:185, 25:153] = 255  # exactly the D2C region
    out = preprocess(Image.fromarray(image), "d2c", 0, 128)
    assert D2C_BOX == (25, 57, 153, 185) and out.min() == 255


def _lmdb(path: Path, key_format: str, count: int, fmt: str) -> None:
    import lmdb
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(count):
            buffer = io.BytesIO()
            Image.new("RGB", (178, 218) if fmt == "webp" else (256, 256), (i * 40, 0, 0)).save(
                buffer, format=fmt, quality=100
            )
            txn.put((key_format % i).encode(), buffer.getvalue())
        txn.put(b"length", str(count).encode())
    env.close()


def test_diffae_lmdb_layouts(tmp_path: Path) -> None:
    _lmdb(tmp_path / "celeba_lmdb" / "celeba.lmdb", "None-%07d", 3, "webp")
    data = CelebALMDB(data_root=tmp_path)
    assert len(data) == 3 and data.key(2) == b"None-0000002"
    assert abs(int(data.uint8_batch(np.array([2]))[0, 32, 32, 0]) - 80) <= 2
    _lmdb(tmp_path / "ffhq" / "ffhq256.lmdb", "256-%05d", 2, "jpeg")
    ffhq = FFHQLMDB(FFHQLMDB.Config(image_size=32), data_root=tmp_path)
    assert ffhq.key(1) == b"256-00001" and ffhq.uint8_batch(np.array([0, 1])).shape == (2, 32, 32, 3)
    _lmdb(tmp_path / "bad.lmdb", "%d", 1, "jpeg")
    import lmdb

    env = lmdb.open(str(tmp_path / "bad.lmdb"))
    with env.begin(write=True) as txn:
        txn.delete(b"length")
    env.close()
    with pytest.raises(DataFileError, match="b'length'"):
        CelebALMDB(CelebALMDB.Config(path=str(tmp_path / "bad.lmdb")))


def test_image_folder_chairs_and_lfw(tmp_path: Path) -> None:
    _jpeg(tmp_path / "imgs" / "b.jpg", (40, 30))
    _jpeg(tmp_path / "imgs" / "sub" / "a.png", (30, 40))
    (tmp_path / "imgs" / "notes.txt").write_text("x")
    folder = ImageFolder(ImageFolder.Config(path="imgs", image_size=16), data_root=tmp_path)
    assert len(folder) == 2 and folder.uint8_batch(np.array([0, 1])).shape == (2, 16, 16, 3)

    chairs = tmp_path / "chairs3d" / "rendered_chairs"
    for model in ("b2", "a1"):
        for p in (20, 30):
            for t in (0, 11, 23):
                _jpeg(chairs / model / "renders" / f"image_{t:03d}_p{p:03d}_t{t:03d}_r096.png", (60, 60))
    data = Chairs3D(data_root=tmp_path)
    assert len(data) == 12
    row = [f.name for f in data.files].index("image_011_p030_t011_r096.png")
    assert data.factors[row].tolist() == [0, 1, 1] and data.files[row].parts[-3] == "a1"

    lfw = tmp_path / "lfw" / "lfw-deepfunneled"
    _jpeg(lfw / "Ann_Lee" / "Ann_Lee_0002.jpg", (250, 250))
    _jpeg(lfw / "Bo_Li" / "Bo_Li_0001.jpg", (250, 250))
    (tmp_path / "lfw" / "lfw_attributes.txt").write_text(
        "# comment\n#\tperson\timagenum\tMale\tSmiling\nAnn Lee\t2\t-1.5\t0.25\n"
    )
    faces = LFW(data_root=tmp_path)
    assert len(faces) == 1 and faces.attributes.tolist() == [[-1.5, 0.25]]
    everyone = LFW(LFW.Config(require_attributes=False), data_root=tmp_path)
    assert len(everyone) == 2 and np.isnan(everyone.attributes[1]).all()


def test_npz_member_offset_handles_zip64_extra(tmp_path: Path) -> None:
    # np.savez may add extra fields to the local header; the in-place memmap must skip them
    path = tmp_path / "mpi3d" / "mpi3d_toy.npz"
    path.parent.mkdir()
    images = RNG.integers(0, 256, (24, 4, 4, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    np.save(buffer, images)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        info = zipfile.ZipInfo("images.npy")
        info.extra = b"\xfe\xca\x04\x00abcd"  # an arbitrary extra field
        archive.writestr(info, buffer.getvalue())
    data = TinyMPI3D(data_root=tmp_path)
    np.testing.assert_array_equal(np.asarray(data.images_uint8), images)


def test_ffhq_lmdb_train_and_test_splits(tmp_path: Path) -> None:
    """Diff-AE's FFHQ split: the first test_size images are the test set, the rest train."""
    _lmdb(tmp_path / "ffhq" / "ffhq256.lmdb", "256-%05d", 5, "jpeg")
    test = FFHQLMDB(FFHQLMDB.Config(image_size=32, split="test", test_size=2), data_root=tmp_path)
    train = FFHQLMDB(FFHQLMDB.Config(image_size=32, split="train", test_size=2), data_root=tmp_path)
    assert len(test) == 2 and len(train) == 3
    assert test.key(1) == b"256-00001" and train.key(0) == b"256-00002"
    # Image i is filled with red = 40 * i (JPEG, so allow a little error).
    assert abs(int(train.uint8_batch(np.array([0]))[0, 16, 16, 0]) - 80) <= 3
    assert abs(int(test.uint8_batch(np.array([1]))[0, 16, 16, 0]) - 40) <= 3
    with pytest.raises(DataFileError, match="test_size < 5"):
        FFHQLMDB(FFHQLMDB.Config(split="train", test_size=5), data_root=tmp_path)
