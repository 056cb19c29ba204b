"""No dataset file can run code or make a loader read outside its dataset's folder, and every
damaged, foreign or unreadable dataset file is one clear :class:`~disentkit.errors.UserError`
naming the file.

Each fixture is written in the dataset's real on-disk format (npz/zip, NORB matrix, LMDB, PNG,
HDF5, the text tables), then damaged the way a bad download, a foreign file or a hostile file
would be, and loaded through the registry (or the loader) as a run does.
"""

from __future__ import annotations

import builtins
import errno
import math
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from disentkit.builders import build_dataset
from disentkit.cli import main
from disentkit.config import config_from_dict
from disentkit.data.cars3d import Cars3D
from disentkit.data.dsprites import DSprites, DSpritesSmall
from disentkit.data.files import load_npy
from disentkit.data.mpi3d import MPI3D
from disentkit.data.shapes3d import Shapes3D
from disentkit.data.smallnorb import SmallNORB, read_binary_matrix
from disentkit.errors import UserError

DSPRITES_NPZ = "dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
DSPRITES_SMALL = "dsprites/dsprites_downsampled.npz"
TINY_DSPRITES = (3, 2, 2, 2, 2)  # shape, scale, orientation, posX, posY


def _build(root: Path, **data):
    """The dataset a run config ``data: {...}`` with ``data_root: root`` builds."""
    config = config_from_dict({"model": {"name": "betavae"}, "data": data, "data_root": str(root)})
    return build_dataset(config)


def _refused(info: pytest.ExceptionInfo, *fragments: str) -> str:
    """The error is a UserError on one bounded line that contains every fragment."""
    err = info.value
    message = str(err)
    assert isinstance(err, UserError), f"{type(err).__name__}: {message[:300]}"
    assert "\n" not in message and len(message) < 600, message[:600]
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


class _Payload:
    """Unpickling this creates ``marker``: it stands for any code a pickle can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _live_pickle(marker: Path) -> bytes:
    payload = pickle.dumps(_Payload(marker), protocol=4)
    pickle.loads(payload)  # the fixture is live: loading it does run code
    assert marker.exists()
    marker.unlink()
    return payload


def _dsprites_npz(path: Path, sizes=TINY_DSPRITES, *, compressed: bool = False, **override) -> None:
    """The official npz layout on a small grid (colour column first, pickled ``metadata``)."""
    classes = np.stack(np.unravel_index(np.arange(math.prod(sizes)), sizes), 1).astype(np.int64)
    arrays = {
        "imgs": (np.arange(len(classes))[:, None, None] % 2 * np.ones((1, 64, 64))).astype(np.uint8),
        "latents_classes": np.concatenate([np.zeros((len(classes), 1), np.int64), classes], 1),
        "metadata": np.array({"title": "dSprites"}, dtype=object),
    }
    arrays.update(override)
    path.parent.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)


@pytest.fixture
def deny(monkeypatch):
    """``deny(path)``: opening ``path`` fails with EACCES, as for a file this user may not read
    (the tests may run as root, where ``chmod 000`` does not stop reads)."""
    denied: set[str] = set()
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) in denied:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    return lambda path: denied.add(os.fspath(path))


# ---- no dataset file runs code ------------------------------------------------------------------
@pytest.mark.parametrize("case", ["dsprites", "dsprites_small", "data.path", "object imgs"])
def test_a_pickle_under_a_dataset_name_is_refused_unrun(tmp_path: Path, monkeypatch, case: str) -> None:
    monkeypatch.setattr(DSprites, "factor_sizes", TINY_DSPRITES)
    monkeypatch.setattr(DSpritesSmall, "factor_sizes", TINY_DSPRITES)
    marker = tmp_path / "code-ran"
    payload = _live_pickle(marker)
    data = {"name": "dsprites_small" if case == "dsprites_small" else "dsprites"}
    path = tmp_path / (DSPRITES_SMALL if case == "dsprites_small" else DSPRITES_NPZ)
    if case == "data.path":
        path = tmp_path / "elsewhere" / "my_dsprites.npz"
        data["path"] = str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if case == "object imgs":  # a real npz whose imgs member is a pickled object array
        _dsprites_npz(path, imgs=np.array([_Payload(marker)], dtype=object))
        with np.load(path, allow_pickle=True) as f:  # what a pickling loader would do
            f["imgs"]
        assert marker.exists()
        marker.unlink()
        fragments = ("'imgs' should be uint8", "object (pickled Python objects)", "never loads")
    else:
        path.write_bytes(payload)
        fragments = ("expected an npz (zip) archive, found a Python pickle",)
    with pytest.raises(UserError) as info:
        _build(tmp_path / "root" if case == "data.path" else tmp_path, **data)
    assert not marker.exists()
    _refused(info, str(path), *fragments)


def test_cli_train_on_a_pickled_dsprites_file_prints_one_line(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "data" / DSPRITES_NPZ
    path.parent.mkdir(parents=True)
    path.write_bytes(_live_pickle(marker))
    code = main(["train", "preset=betavae/dsprites", f"data_root={tmp_path / 'data'}",
                 f"out_dir={tmp_path / 'runs'}", "train.steps=1", "log.progress=false"])
    err = capsys.readouterr().err
    assert code == 2 and not marker.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("disentkit train: error: "), err
    assert str(path) in lines[0] and "pickle" in lines[0] and "Traceback" not in err


# ---- no name read from a file leaves the dataset's folder ---------------------------------------
def _jpeg(path: Path, size=(178, 218)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 10, 10)).save(path)


@pytest.mark.parametrize("name", ["../../outside.jpg", "/abs/outside.jpg", "sub/000002.jpg", ".."])
def test_celeba_rows_naming_paths_are_refused(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "celeba" / "img_align_celeba"
    _jpeg(folder / "000001.jpg")
    _jpeg(tmp_path / "outside.jpg")  # what ../../outside.jpg reaches from the image folder
    _jpeg(folder / "sub" / "000002.jpg")
    table = tmp_path / "celeba" / "list_attr_celeba.txt"
    table.write_text(f"2\nSmiling Young\n000001.jpg 1 -1\n{name} -1 1\n")
    with pytest.raises(UserError) as info:
        _build(tmp_path, name="celeba")
    _refused(info, str(table), "line 4", repr(name), "not a plain file name")


def test_cars3d_list_entries_naming_paths_are_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Cars3D, "factor_sizes", (4, 24, 2))
    folder = tmp_path / "cars3d" / "data" / "cars"
    folder.mkdir(parents=True)
    (folder / "list.txt").write_text("car_001_mesh\n../../../secret\n")
    with pytest.raises(UserError) as info:
        _build(tmp_path, name="cars3d")
    _refused(info, str(folder / "list.txt"), "line 2", "'../../../secret'", "not a plain file name")


def test_lfw_attribute_rows_naming_paths_are_refused(tmp_path: Path) -> None:
    _jpeg(tmp_path / "lfw" / "lfw-deepfunneled" / "Ann_Smith" / "Ann_Smith_0001.jpg", (250, 250))
    table = tmp_path / "lfw" / "lfw_attributes.txt"
    table.write_text("# LFW attributes\n#\tperson\timagenum\tMale\n"
                     "Ann Smith\t1\t0.5\n../../etc\t1\t0.3\n")
    with pytest.raises(UserError) as info:
        _build(tmp_path, name="lfw")
    _refused(info, str(table), "line 4", "'../../etc'", "not a plain file name")


def test_hdf5_data_kept_in_other_files_is_refused(tmp_path: Path, monkeypatch) -> None:
    import h5py

    monkeypatch.setattr(Shapes3D, "factor_sizes", (1, 1, 1, 1, 2, 2))
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as f:
        f["images"] = np.zeros((4, 64, 64, 3), np.uint8)
    path = tmp_path / "3dshapes" / "3dshapes.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        f["images"] = h5py.ExternalLink(str(outside), "images")
        f["labels"] = np.zeros((4, 6))
    with pytest.raises(UserError) as info:
        _build(tmp_path, name="shapes3d")
    _refused(info, str(path), "'images' is a link to", "outside.h5")
    # external raw storage: the dataset's bytes are read from another file
    raw = tmp_path / "outside.bin"
    raw.write_bytes(bytes(4 * 64 * 64 * 3))
    with h5py.File(path, "w") as f:
        f.create_dataset("images", (4, 64, 64, 3), np.uint8, external=[(str(raw), 0, 4 * 64 * 64 * 3)])
        f["labels"] = np.zeros((4, 6))
    with pytest.raises(UserError) as info:
        _build(tmp_path, name="shapes3d")
    _refused(info, str(path), "'images' keeps its data in other files")


def test_an_eps_image_is_not_handed_to_ghostscript(tmp_path: Path, monkeypatch) -> None:
    from PIL import EpsImagePlugin

    ran = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *args, **kwargs: ran.append(args))
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    data = _build(tmp_path, name="image_folder", path=str(folder))
    with pytest.raises(UserError) as info:
        data.uint8_batch(np.array([0]))
    _refused(info, "a.png", "cannot decode image 0", "expected a JPEG, PNG, WebP or BMP image")
    assert not ran


# ---- damaged files are one clear error ----------------------------------------------------------
def _member_data_offset(path: Path, member: str) -> tuple[int, int]:
    """(offset, length) of a zip member's stored bytes inside the file."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


@pytest.mark.parametrize("compressed", [False, True])
def test_a_damaged_dsprites_member_is_one_error(tmp_path: Path, monkeypatch, compressed: bool) -> None:
    monkeypatch.setattr(DSpritesSmall, "factor_sizes", TINY_DSPRITES)
    path = tmp_path / DSPRITES_SMALL
    _dsprites_npz(path, compressed=compressed)
    assert len(_build(tmp_path, name="dsprites_small")) == math.prod(TINY_DSPRITES)
    start, length = _member_data_offset(path, "imgs.npy")
    raw = bytearray(path.read_bytes())
    raw[start + length // 2] ^= 0x5A  # one flipped byte: bad CRC (stored) or a bad deflate stream
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError) as info:
        _build(tmp_path, name="dsprites_small")
    _refused(info, str(path), "member 'imgs'", "delete it and download it again")


def test_a_non_npy_mpi3d_member_is_one_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(MPI3D, "sizes_by_variant", {"toy": (1, 1, 1, 1, 1, 2, 2)})
    path = tmp_path / "mpi3d" / "mpi3d_toy.npz"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", b"these are not the images you are looking for" * 10)
    with pytest.raises(UserError) as info:
        _build(tmp_path, name="mpi3d", variant="toy")
    _refused(info, str(path), "member 'images' should be a NumPy .npy array")


TEXT_FILES = {
    "celeba": ("celeba/list_attr_celeba.txt", "celeba/img_align_celeba"),
    "cars3d": ("cars3d/data/cars/list.txt", "cars3d/data/cars"),
    "lfw": ("lfw/lfw_attributes.txt", "lfw/lfw-deepfunneled"),
}


@pytest.mark.parametrize("content", ["binary", "undecodable", "directory", "denied"])
@pytest.mark.parametrize("name", sorted(TEXT_FILES))
def test_bad_list_and_attribute_files_are_one_error(tmp_path: Path, deny, name: str, content: str) -> None:
    relative, folder = TEXT_FILES[name]
    (tmp_path / folder).mkdir(parents=True)
    path = tmp_path / relative
    if content == "directory":
        path.mkdir(exist_ok=True)
    else:
        path.write_bytes({"binary": b"\x1f\x8b\x08\x00\x00\x00\x00\x00car",
                          "undecodable": b"car_001_mesh \xff\xfe\n"}.get(content, b"car_001_mesh\n"))
    if content == "denied":
        deny(path)
    expected = {"binary": "found binary data (a gzip file)", "undecodable": "not UTF-8 at offset 13",
                "directory": "found a directory", "denied": "permission denied"}[content]
    with pytest.raises(UserError) as info:
        _build(tmp_path, name=name)
    assert "delete" not in _refused(info, str(path), expected)


def _norb_header(magic: int, dims: list[int], ndim: int | None = None) -> bytes:
    return np.array([magic, len(dims) if ndim is None else ndim, *dims], dtype="<i4").tobytes()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (_norb_header(0x1E3D4C55, [-5, 2, 96, 96]), "cannot be negative"),
        (_norb_header(0x1E3D4C55, [7] * 69000), "header says 69000 dimensions, expected 1 to 8"),
        (_norb_header(0x1E3D4C55, [1], ndim=-3), "header says -3 dimensions"),
    ],
    ids=["negative", "69000 dims", "negative ndim"],
)
def test_smallnorb_bad_header_dims_are_one_short_error(tmp_path: Path, header: bytes, expected: str) -> None:
    path = tmp_path / "m.mat"
    path.write_bytes(header + bytes(64))
    with pytest.raises(UserError) as info:
        read_binary_matrix(path)
    message = _refused(info, str(path), expected)
    assert len(message) < 400


def test_smallnorb_dims_are_checked_against_the_grid_before_reading(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(SmallNORB, "grid_sizes", (2, 2, 2, 3, 2))
    monkeypatch.setattr(SmallNORB, "factor_sizes", (2, 2, 3, 2))
    path = tmp_path / "smallnorb" / "smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat"
    path.parent.mkdir()
    path.write_bytes(_norb_header(0x1E3D4C55, [10**9, 2, 96, 96]) + bytes(100))
    with pytest.raises(UserError) as info:
        _build(tmp_path, name="smallnorb")
    _refused(info, str(path), "header says uint8 (1000000000, 2, 96, 96)", "at most 48 rows")
    path.write_bytes(_norb_header(0x1E3D4C55, [48, 2, 64, 64]) + bytes(48 * 2 * 64 * 64))
    with pytest.raises(UserError) as info:
        _build(tmp_path, name="smallnorb")
    _refused(info, str(path), "expected uint8 ('*', 2, 96, 96)")


def _lmdb(path: Path, entries: dict[bytes, bytes]) -> None:
    lmdb = pytest.importorskip("lmdb")
    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, value in entries.items():
            txn.put(key, value)
    env.close()


def _png_bytes(pixels: np.ndarray | None = None) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8) if pixels is None else pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("length", "expected"),
    [(b"0", "says 0 images; expected a positive count"), (b"-3", "says -3 images"),
     (b"9" * 5000, "b'length' should be an integer")],
    ids=["0", "-3", "5000 digits"],
)
def test_lmdb_bad_lengths_are_one_error(tmp_path: Path, length: bytes, expected: str) -> None:
    path = tmp_path / "bedroom" / "bedroom256.lmdb"
    _lmdb(path, {b"length": length, b"256-0000000": _png_bytes()})
    with pytest.raises(UserError) as info:
        _build(tmp_path, name="bedroom_lmdb")
    _refused(info, str(path), expected)


def test_a_truncated_lmdb_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "bedroom" / "bedroom256.lmdb"
    noise = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    _lmdb(path, {b"length": b"20", **{b"256-%07d" % i: _png_bytes(image) for i, image in enumerate(noise)}})
    data_file = path / "data.mdb"
    data_file.write_bytes(data_file.read_bytes()[: 6 * 4096])
    # in a child process: a regression would kill it with SIGBUS, not the test session
    script = (
        "import sys\nimport numpy as np\nfrom disentkit.errors import UserError\n"
        "from disentkit.data.images import BedroomLMDB\n"
        "try:\n    data = BedroomLMDB(BedroomLMDB.Config(path=sys.argv[1]))\n"
        "except UserError as err:\n    print(err)\n    sys.exit(3)\n"
        "data.uint8_from_indices(np.arange(len(data)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3, (done.returncode, done.stderr[-2000:])
    message = done.stdout.strip()
    assert "\n" not in message and str(data_file) in message and "truncated LMDB" in message


def _png_header(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR (8-bit grey), no pixel data: enough for Pillow to open it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("width", "expected"), [(20000, "exceeds limit"), (9000, "it is 9000x9000")])
def test_huge_images_are_refused_before_decoding(tmp_path: Path, width: int, expected: str) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "huge.png").write_bytes(_png_header(width, width))
    data = _build(tmp_path, name="image_folder", path=str(folder))
    with pytest.raises(UserError) as info:
        data.uint8_batch(np.array([0]))
    _refused(info, str(folder / "huge.png"), "larger than disentkit decodes", expected)


def test_a_damaged_scream_photo_is_one_error(tmp_path: Path) -> None:
    photo = tmp_path / "dsprites" / "scream.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    with pytest.raises(UserError) as info:
        _build(tmp_path, name="scream_dsprites", base="sprites")
    _refused(info, str(photo), "expected a JPEG, PNG, WebP or BMP photograph")


def test_a_folder_given_as_a_dataset_file_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(UserError) as info:
        _build(tmp_path, name="dsprites", path=str(tmp_path / "folder.npz"))
    _refused(info, "folder.npz", "expected a file (npz (zip) archive), found a directory")


# ---- permission denied is not reported as damage ------------------------------------------------
def _denied_dsprites(root: Path) -> tuple[Path, dict]:
    _dsprites_npz(root / DSPRITES_NPZ)
    return root / DSPRITES_NPZ, {"name": "dsprites"}


def _denied_norb(root: Path) -> tuple[Path, dict]:
    path = root / "smallnorb" / "smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x1f\x8b")
    return path, {"name": "smallnorb"}


def _denied_lmdb(root: Path) -> tuple[Path, dict]:
    _lmdb(root / "bedroom" / "bedroom256.lmdb", {b"length": b"1", b"256-0000000": _png_bytes()})
    return root / "bedroom" / "bedroom256.lmdb" / "data.mdb", {"name": "bedroom_lmdb"}


def _denied_cache(root: Path) -> tuple[Path, dict]:
    folder = root / "cars3d" / "data" / "cars"
    folder.mkdir(parents=True)
    (folder / "list.txt").write_text("car_001_mesh\n")
    np.save(folder / "cars3d_64.npy", np.zeros((4 * 24 * 183, 1, 1, 1), np.uint8))
    return folder / "cars3d_64.npy", {"name": "cars3d"}


@pytest.mark.parametrize("setup", [_denied_dsprites, _denied_norb, _denied_lmdb, _denied_cache])
def test_permission_denied_is_reported_as_such(tmp_path: Path, deny, monkeypatch, setup) -> None:
    monkeypatch.setattr(DSprites, "factor_sizes", TINY_DSPRITES)
    path, data = setup(tmp_path)
    deny(path)
    with pytest.raises(UserError) as info:
        _build(tmp_path, **data)
    message = _refused(info, str(path), "permission denied")
    assert "delete" not in message and "truncated" not in message


def test_permission_denied_on_an_image_is_reported_as_such(tmp_path: Path, deny) -> None:
    folder = tmp_path / "images"
    _jpeg(folder / "a.jpg", (16, 16))
    data = _build(tmp_path, name="image_folder", path=str(folder))
    deny(folder / "a.jpg")
    with pytest.raises(UserError) as info:
        data.uint8_batch(np.array([0]))
    _refused(info, str(folder / "a.jpg"), "permission denied reading image 0")


def test_a_cache_that_is_not_npy_says_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "cache.npy"
    np.savez(path.with_suffix(""), a=np.zeros(3, np.uint8))  # an npz under the cache's name
    os.replace(tmp_path / "cache.npz", path)
    with pytest.raises(UserError) as info:
        load_npy(path, (3,))
    _refused(info, str(path), "should be a NumPy .npy array", "delete it to rebuild")
