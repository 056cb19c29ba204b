"""Image datasets without ground-truth factors (diffusion methods, CelebA, FFHQ, Bedroom, Chairs, LFW).

They share the training path of every dataset: ``len(data)``, ``data.uint8_batch(indices)``
(uint8 NHWC), ``data.value_max`` (255) and ``data.observation_shape``. Files are decoded lazily,
batch by batch, with Pillow; crops and resizes use Pillow/numpy only. With ``cache: true`` each
decoded image is kept in a uint8 array, so every file is decoded at most once.

Layouts and crops (phizaz/diffae ``dataset.py``): CelebA ``img_align_celeba`` (178x218) with
``list_attr_celeba.txt`` (whitespace-split, ±1 -> int8), center crop 148 or the D2C crop
``img[57:185, 25:153]``; Diff-AE LMDBs (``length`` key; ``None-%07d`` WebP for CelebA,
``256-%05d`` JPEG for FFHQ, ``256-%07d`` WebP for Bedroom); ``rendered_chairs/<model>/renders/
image_NNN_pPPP_tTTT_r096.png`` with factors parsed from the file name; LFW
``<Name>/<Name>_NNNN.jpg`` joined with ``lfw_attributes.txt`` on (person, imagenum), 80 px crop
per side.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from disentkit.data.files import (
    FILES,
    DataFileError,
    MissingDataError,
    check_lmdb_size,
    explicit_path,
    open_image,
    plain_file_name,
    quote_error,
    read_text_file,
    refuse_path_name,
    require,
)
from disentkit.data.root import resolve_data_root
from disentkit.ranges import Count, NonNegInt
from disentkit.registry import DATASETS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
#: the D2C crop box (left, upper, right, lower) = img[57:185, 25:153] (Diff-AE ``d2c_crop``)
D2C_BOX = (25, 57, 153, 185)


def preprocess(image, crop: str, crop_size: int, image_size: int, margin: int = 0) -> np.ndarray:
    """Crop then resize one PIL image to uint8 (image_size, image_size, 3).

    ``crop``: "center" (a ``crop_size`` square, or the largest square when 0), "d2c" (the D2C
    box), "margin" (``margin`` pixels off every side), "resize_center" (torchvision's
    ``Resize(crop_size)`` + ``CenterCrop(image_size)``: the shorter side resized to ``crop_size``,
    bilinear, default ``round(1.1 * image_size)``, then the centred square; DiTi's LFW transform)
    or "none". Resizing uses Lanczos.
    """
    from PIL import Image

    image = image.convert("RGB")
    width, height = image.size
    if crop == "resize_center":
        side = crop_size or int(round(1.1 * image_size))
        scale = side / min(width, height)
        size = (side, int(height * scale)) if width <= height else (int(width * scale), side)
        image = image.resize(size, Image.Resampling.BILINEAR)
        left, top = int(round((size[0] - image_size) / 2)), int(round((size[1] - image_size) / 2))
        image = image.crop((left, top, left + image_size, top + image_size))
    elif crop == "center":
        side = crop_size or min(width, height)
        if side > min(width, height):
            raise ValueError(f"crop_size {side} is larger than the image ({width}x{height})")
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    elif crop == "d2c":
        image = image.crop(D2C_BOX)
    elif crop == "margin" and margin:
        image = image.crop((margin, margin, width - margin, height - margin))
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


class ImageData:
    """A list of images decoded on demand; subclasses implement :meth:`_open` and ``__len__``."""

    name = "images"
    value_max = 255
    crop: str = "center"
    crop_size: int = 0
    margin: int = 0
    image_size: int = 64

    def _setup(self, count: int, cache: bool) -> None:
        self._count = count
        self._cache = np.empty((count, *self.observation_shape), np.uint8) if cache else None
        self._decoded = np.zeros(count, dtype=bool) if cache else None
        self._device_images: torch.Tensor | None = None

    def __len__(self) -> int:
        return self._count

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    def _open(self, index: int):  # pragma: no cover - subclasses provide it
        raise NotImplementedError

    def _decode(self, index: int) -> np.ndarray:
        where = self.describe(index)
        try:
            with self._open(index) as image:
                return preprocess(image, self.crop, self.crop_size, self.image_size, self.margin)
        except DataFileError:
            raise
        except PermissionError as err:  # not damage: deleting the file would not help
            raise DataFileError(
                f"{self.name}: permission denied reading image {index} ({where}); make it "
                "readable for this user and run again"
            ) from err
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise DataFileError(
                f"{self.name}: cannot decode image {index} ({where}): {quote_error(err)}; expected "
                "a JPEG, PNG, WebP or BMP image: replace or remove the file"
            ) from err

    def describe(self, index: int) -> str:
        return f"item {index}"

    def uint8_from_indices(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"{self.name}: index out of range [0, {len(self)})")
        if self._cache is None or self._decoded is None:
            return np.stack([self._decode(int(i)) for i in indices]) if len(indices) else (
                np.empty((0, *self.observation_shape), np.uint8)
            )
        missing = np.unique(indices[~self._decoded[indices]])
        for i in missing:  # decoding is per file; each file is decoded once
            self._cache[i] = self._decode(int(i))
        self._decoded[missing] = True
        return self._cache[indices]

    def uint8_batch(self, indices: np.ndarray | torch.Tensor) -> torch.Tensor:
        if self._device_images is not None:
            index = torch.as_tensor(indices, dtype=torch.long, device=self._device_images.device)
            return self._device_images[index]
        if isinstance(indices, torch.Tensor):
            indices = indices.cpu().numpy()
        return torch.from_numpy(self.uint8_from_indices(indices))

    def to(self, device: str | torch.device) -> ImageData:
        """Decode everything once and keep it on ``device``; ``uint8_batch`` indexes it there."""
        everything = self.uint8_from_indices(np.arange(len(self)))
        self._device_images = torch.from_numpy(everything).to(device)
        return self


def _folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


class _FileImages(ImageData):
    files: list[Path]

    def _open(self, index: int):
        return open_image(self.files[index], str(self.files[index]))

    def describe(self, index: int) -> str:
        return str(self.files[index])


@DATASETS.register("image_folder")
class ImageFolder(_FileImages):
    """Every image under a folder (recursively, sorted by path)."""

    @dataclass
    class Config:
        #: the folder (absolute, or relative to the data root)
        path: str = ""
        image_size: Count = 64
        #: "center": largest centred square (or ``crop_size``); "none": resize only
        crop: Literal["center", "none"] = "center"
        crop_size: NonNegInt = 0
        cache: bool = False

    name = "image_folder"

    def __init__(self, config: Config | None = None, *, data_root: Path | None = None) -> None:
        config = config if config is not None else self.Config()
        if not config.path:
            raise ValueError("image_folder: set data.path to a folder of images")
        folder = resolve_data_root(data_root) / Path(config.path).expanduser()
        if not folder.is_dir():
            raise MissingDataError(f"image_folder: folder {folder} does not exist")
        self.files = _folder_files(folder)
        if not self.files:
            raise DataFileError(f"image_folder: no {'/'.join(IMAGE_SUFFIXES)} files under {folder}")
        self.image_size, self.crop, self.crop_size = config.image_size, config.crop, config.crop_size
        self._setup(len(self.files), config.cache)


def read_celeba_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(file names, attribute names, int8 (N, 40) matrix of ±1) from ``list_attr_celeba.txt``.

    Every file name must be a plain name (no separator, no ``..``): the images are read from the
    image folder only.
    """
    lines = read_text_file(path, "CelebA's attribute table (list_attr_celeba.txt)").splitlines()
    try:
        count = int(lines[0].strip())
    except (IndexError, ValueError) as err:
        raise DataFileError(f"{path}: line 1 should be the image count, found {lines[:1]}") from err
    names = lines[1].split() if len(lines) > 1 else []
    if not names:
        raise DataFileError(f"{path}: line 2 should list the attribute names, found none")
    numbered = [(number, line.split()) for number, line in enumerate(lines[2:], 3) if line.strip()]
    rows = [fields for _, fields in numbered]
    unsafe = next(((n, r[0]) for n, r in numbered if not plain_file_name(r[0])), None)
    if unsafe is not None:
        raise refuse_path_name(path, *unsafe, "img_align_celeba")
    if len(rows) != count:
        raise DataFileError(f"{path}: header says {count} rows, found {len(rows)}")
    bad = next((r for r in rows if len(r) != len(names) + 1), None)
    if bad is not None:
        raise DataFileError(
            f"{path}: expected a file name and {len(names)} values per row, found {len(bad)} "
            f"fields in row {bad[:2]}..."
        )
    try:
        values = np.array([r[1:] for r in rows], dtype=np.int64)
    except ValueError as err:
        raise DataFileError(f"{path}: attribute values should be integers -1 or 1 ({err})") from err
    if values.size and not np.isin(values, (-1, 1)).all():
        row, column = np.argwhere(~np.isin(values, (-1, 1)))[0]
        raise DataFileError(
            f"{path}: attribute values should be -1 or 1, found {values[row, column]} for "
            f"{names[column]} of {rows[row][0]}"
        )
    return [r[0] for r in rows], names, values.astype(np.int8)


@DATASETS.register("celeba")
class CelebA(_FileImages):
    """CelebA ``img_align_celeba`` with its 40 binary attributes (``attributes``: int8 ±1)."""

    @dataclass
    class Config:
        image_size: Count = 64
        #: "center": ``crop_size`` centred square (148 is the common 64x64 recipe); "d2c": Diff-AE
        crop: Literal["center", "d2c"] = "center"
        crop_size: NonNegInt = 148
        cache: bool = False

    name = "celeba"

    def __init__(self, config: Config | None = None, *, data_root: Path | None = None) -> None:
        config = config if config is not None else self.Config()
        root = resolve_data_root(data_root)
        folder = require("celeba", root, FILES["celeba"][0].path)
        attr_path = require("celeba", root, FILES["celeba"][1].path)
        names, self.attribute_names, self.attributes = read_celeba_attributes(attr_path)
        self.files = [folder / n for n in names]
        missing = next((f for f in self.files if not f.exists()), None)
        if missing is not None:
            raise DataFileError(f"celeba: {attr_path} lists {missing.name}, but {missing} is missing")
        self.image_size, self.crop, self.crop_size = config.image_size, config.crop, config.crop_size
        self._setup(len(self.files), config.cache)


_LMDB_ENVIRONMENTS: dict[Path, Any] = {}


def _open_lmdb(path: Path) -> Any:
    """A read-only LMDB environment, shared by every dataset reading ``path`` in this process
    (LMDB refuses to open the same environment twice in one process)."""
    import lmdb

    key = path.resolve()
    if key not in _LMDB_ENVIRONMENTS:
        check_lmdb_size(path)
        try:
            _LMDB_ENVIRONMENTS[key] = lmdb.open(
                str(path), readonly=True, lock=False, readahead=False, meminit=False,
                subdir=path.is_dir(),
            )
        except lmdb.Error as err:
            raise DataFileError(f"{path}: not a readable LMDB ({err})") from err
    return _LMDB_ENVIRONMENTS[key]


class _LMDBImages(ImageData):
    """Diff-AE's LMDB layout: ``b"length"`` and one encoded image per ``key_format % index``."""

    file_key: str = ""
    key_format: str = ""

    @dataclass
    class Config:
        #: explicit LMDB folder; empty: the dataset's default under the data root
        path: str = ""
        image_size: Count = 64
        crop: Literal["none", "center", "d2c"] = "none"
        crop_size: NonNegInt = 0
        cache: bool = False

    def __init__(self, config=None, *, data_root: Path | None = None) -> None:
        config = config if config is not None else self.Config()
        try:
            import lmdb  # noqa: F401  (fail early with the install hint)
        except ImportError as err:
            raise ImportError(
                f"{self.name} needs the 'lmdb' package: pip install 'disentkit[lmdb]'"
            ) from err
        self.path = explicit_path(self.name, config.path) or require(
            self.file_key, resolve_data_root(data_root)
        )
        self._env = _open_lmdb(self.path)
        with self._env.begin() as txn:
            raw = txn.get(b"length")
        if raw is None:
            raise DataFileError(f"{self.path}: expected a b'length' key (Diff-AE layout), none found")
        count = self._count_images(raw)
        self.image_size, self.crop, self.crop_size = config.image_size, config.crop, config.crop_size
        self._first, stop = self._index_range(config, count)
        self._setup(stop - self._first, config.cache)

    def _count_images(self, raw: bytes) -> int:
        """The image count ``b"length"`` stores: a positive integer, at most the number of the
        LMDB's other entries (so a bad length is refused before anything is allocated for it)."""
        stored = self._env.stat()["entries"] - 1
        try:
            count = int(raw.decode("utf-8"))
        except ValueError as err:
            raise DataFileError(
                f"{self.path}: b'length' should be an integer, found {raw[:40]!r}"
            ) from err
        if count < 1:
            raise DataFileError(
                f"{self.path}: b'length' says {count} images; expected a positive count: the LMDB "
                "is damaged or not a Diff-AE dataset"
            )
        if count > stored:
            raise DataFileError(
                f"{self.path}: b'length' says {count} images, but the LMDB holds only {stored} "
                "other entries: the LMDB is incomplete (copy it again) or not a Diff-AE dataset"
            )
        return count

    def _index_range(self, config: Any, count: int) -> tuple[int, int]:
        """The stored indices this dataset exposes: [start, stop) (all of them by default)."""
        return 0, count

    def key(self, index: int) -> bytes:
        return (self.key_format % (index + self._first)).encode("utf-8")

    def describe(self, index: int) -> str:
        return f"{self.path} key {self.key(index).decode()}"

    def _open(self, index: int):
        with self._env.begin() as txn:
            value = txn.get(self.key(index))
        if value is None:
            raise DataFileError(f"{self.path}: key {self.key(index)!r} missing (length says {len(self)})")
        return open_image(io.BytesIO(value), self.describe(index))


@DATASETS.register("celeba_lmdb")
class CelebALMDB(_LMDBImages):
    """Diff-AE ``celeba.lmdb``: WebP at 178x218, keys ``None-%07d``; D2C crop to 64 by default."""

    @dataclass
    class Config(_LMDBImages.Config):
        crop: Literal["none", "center", "d2c"] = "d2c"

    name, file_key, key_format = "celeba_lmdb", "celeba_lmdb", "None-%07d"


@DATASETS.register("ffhq_lmdb")
class FFHQLMDB(_LMDBImages):
    """Diff-AE ``ffhq256.lmdb``: JPEG 256x256, keys ``256-%05d``.

    ``split``: Diff-AE evaluates on the first ``test_size`` (10k) images and trains on the rest
    (``train``); ``all`` exposes every image.
    """

    @dataclass
    class Config(_LMDBImages.Config):
        split: Literal["all", "train", "test"] = "all"
        test_size: NonNegInt = 10000

    name, file_key, key_format = "ffhq_lmdb", "ffhq_lmdb", "256-%05d"

    def _index_range(self, config: Any, count: int) -> tuple[int, int]:
        if config.split == "all":
            return 0, count
        if not 0 < config.test_size < count:
            raise DataFileError(
                f"{self.path}: data.split={config.split} needs 0 < data.test_size < {count} "
                f"(the number of stored images), got test_size={config.test_size}"
            )
        return (0, config.test_size) if config.split == "test" else (config.test_size, count)


@DATASETS.register("bedroom_lmdb")
class BedroomLMDB(_LMDBImages):
    """Diff-AE ``bedroom256.lmdb``: WebP 256x256, keys ``256-%07d``."""

    name, file_key, key_format = "bedroom_lmdb", "bedroom_lmdb", "256-%07d"


CHAIR_PATTERN = re.compile(r"image_\d+_p(\d+)_t(\d+)_r\d+\.png$")


@DATASETS.register("chairs3d")
class Chairs3D(_FileImages):
    """3D Chairs renders; ``factors`` (N, 3) int64 = (chair, elevation, azimuth) class indices
    parsed from the directory and the ``pPPP``/``tTTT`` parts of the file name."""

    @dataclass
    class Config:
        #: explicit ``rendered_chairs`` folder; empty: ``<data root>/chairs3d/rendered_chairs``
        path: str = ""
        image_size: Count = 64
        crop: Literal["center", "none"] = "center"
        crop_size: NonNegInt = 0
        cache: bool = False

    name = "chairs3d"
    factor_names = ("chair", "elevation", "azimuth")

    def __init__(self, config: Config | None = None, *, data_root: Path | None = None) -> None:
        config = config if config is not None else self.Config()
        folder = explicit_path("chairs3d", config.path, folder=True) or require(
            "chairs3d", resolve_data_root(data_root)
        )
        entries = []
        for path in sorted(folder.glob("*/renders/*.png")):
            match = CHAIR_PATTERN.search(path.name)
            if match:
                entries.append((path.parent.parent.name, int(match[1]), int(match[2]), path))
        if not entries:
            raise DataFileError(
                f"chairs3d: no <model>/renders/image_NNN_pPPP_tTTT_rRRR.png files under {folder}"
            )
        self.files = [e[3] for e in entries]
        columns = []
        self.factor_values = []
        for k in range(3):
            values, classes = np.unique([e[k] for e in entries], return_inverse=True)
            self.factor_values.append(values)
            columns.append(classes)
        self.factors = np.stack(columns, axis=1).astype(np.int64)
        self.image_size, self.crop, self.crop_size = config.image_size, config.crop, config.crop_size
        self._setup(len(self.files), config.cache)


#: an LFW image stem ``<Name>_NNNN`` (the name itself may contain underscores)
LFW_PATTERN = re.compile(r"(.+)_(\d+)")


def read_lfw_attributes(path: Path) -> tuple[list[str], dict[tuple[str, int], np.ndarray]]:
    """Attribute names and {(person, imagenum): float32 scores} from ``lfw_attributes.txt``.

    Person names must be plain names (no separator, no ``..``); they are matched against the
    image folder's entries, never joined into a path.
    """
    header: list[str] | None = None
    table: dict[tuple[str, int], np.ndarray] = {}
    text = read_text_file(path, "LFW's attribute table (lfw_attributes.txt)")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            fields = [f.strip() for f in line.lstrip("#").split("\t") if f.strip()]
            if fields[:2] == ["person", "imagenum"]:
                header = fields
            continue
        if header is None:
            raise DataFileError(f"{path}: data before the '#\\tperson\\timagenum...' header line")
        fields = line.split("\t")
        if not plain_file_name(fields[0]):
            raise refuse_path_name(path, number, fields[0], "the LFW image folder")
        if len(fields) != len(header):
            raise DataFileError(
                f"{path}: expected {len(header)} tab-separated fields, found {len(fields)} in "
                f"{line[:60]!r}"
            )
        try:
            table[(fields[0], int(fields[1]))] = np.asarray(fields[2:], dtype=np.float32)
        except ValueError as err:
            raise DataFileError(
                f"{path}: expected a person name, an integer imagenum and {len(header) - 2} real "
                f"scores, found {line[:60]!r} ({err})"
            ) from err
    if header is None:
        raise DataFileError(f"{path}: no header line starting '#' with person, imagenum")
    return header[2:], table


def read_lfw_people(path: Path) -> list[tuple[str, int]]:
    """(person, number of images) from an LFW people list (``peopleDevTrain.txt`` /
    ``peopleDevTest.txt``: a count line, then ``Name<TAB>images`` lines; names with underscores)."""
    lines = [line for line in read_text_file(path, "an LFW people list").splitlines() if line.strip()]
    try:
        count = int(lines[0].strip()) if lines else -1
        people = [(fields[0], int(fields[1])) for fields in (line.split("\t") for line in lines[1:])]
    except (ValueError, IndexError) as err:
        raise DataFileError(f"{path}: expected a count line, then 'Name<TAB>number of images' lines "
                            f"({quote_error(err)})") from err
    if count != len(people):
        raise DataFileError(f"{path}: the first line announces {count} people, {len(people)} follow; "
                            "download the file again")
    for number, (name, _) in enumerate(people, 2):
        if not plain_file_name(name):
            raise refuse_path_name(path, number, name, "the LFW image folder")
    return people


#: DiTi's LFW splits (``peopleDevTrain.txt`` / ``peopleDevTest.txt``, torchvision's ``LFWPeople``)
LFW_DEV_SPLITS = ("peopleDevTrain.txt", "peopleDevTest.txt")
LFW_PEOPLE_URL = "https://vis-www.cs.umass.edu/lfw/"


def _lfw_dev_files(folder: Path, attr_dir: Path) -> list[tuple[Path, int]]:
    """(image path, part) of the dev-train (part 0) then dev-test (part 1) people, in file order."""
    files: list[tuple[Path, int]] = []
    for part, split in enumerate(LFW_DEV_SPLITS):
        path = attr_dir / split
        if not path.is_file():
            raise MissingDataError(f"lfw: split = dev needs {path}; download it from "
                                   f"{LFW_PEOPLE_URL}{split} and place it there")
        for person, num in read_lfw_people(path):
            files += [(folder / person / f"{person}_{k:04d}.jpg", part) for k in range(1, num + 1)]
    return files


@DATASETS.register("lfw")
class LFW(_FileImages):
    """LFW (deep-funneled by default) with Kumar et al.'s attributes joined on (person, imagenum).

    ``attributes`` is float32 (N, 73); images without attributes are dropped unless
    ``require_attributes`` is false (their rows are NaN then).
    """

    @dataclass
    class Config:
        #: explicit image folder; empty: ``<data root>/lfw/lfw-deepfunneled``
        path: str = ""
        image_size: Count = 64
        #: pixels cropped off every side before resizing
        margin: NonNegInt = 80
        #: "margin" (``margin`` pixels off every side, then resize) or "resize_center" (DiTi: the
        #: shorter side resized to round(1.1 * image_size), then the centred image_size square)
        crop: Literal["margin", "resize_center"] = "margin"
        #: "all": every image under the folder; "dev": DiTi's split, the people of
        #: peopleDevTrain.txt then those of peopleDevTest.txt (files beside lfw_attributes.txt);
        #: ``attribute_partition`` then names the two parts
        split: Literal["all", "dev"] = "all"
        require_attributes: bool = True
        cache: bool = False

    name = "lfw"

    def __init__(self, config: Config | None = None, *, data_root: Path | None = None) -> None:
        config = config if config is not None else self.Config()
        root = resolve_data_root(data_root)
        folder = explicit_path("lfw", config.path, folder=True) or require(
            "lfw", root, FILES["lfw"][0].final_path
        )
        attr_path = require("lfw", root, FILES["lfw"][1].path)
        self.attribute_names, table = read_lfw_attributes(attr_path)
        files, rows, parts = [], [], []
        dev = config.split == "dev"
        candidates = (_lfw_dev_files(folder, attr_path.parent) if dev
                      else [(path, 0) for path in sorted(folder.glob("*/*.jpg"))])
        for path, part in candidates:
            if dev and not path.is_file():
                continue  # listed but not in this copy of the image folder
            match = LFW_PATTERN.fullmatch(path.stem)
            if match is None:  # not an LFW image name (<Name>_NNNN): no (person, imagenum) key
                continue
            key = (match[1].replace("_", " "), int(match[2]))
            scores = table.get(key)
            if scores is None and config.require_attributes:
                continue
            files.append(path)
            parts.append(part)
            rows.append(scores if scores is not None else np.full(len(self.attribute_names), np.nan))
        if not files:
            raise DataFileError(f"lfw: no <Name>/<Name>_NNNN.jpg images with attributes under {folder}")
        self.files = files
        self.attributes = np.stack(rows).astype(np.float32)
        if dev:  # train people first, so each part is a contiguous range
            where = np.asarray(parts)
            #: {"train": indices, "test": indices} of DiTi's dev split
            self.attribute_partition = {"train": np.flatnonzero(where == 0),
                                        "test": np.flatnonzero(where == 1)}
        self.image_size, self.crop, self.margin = config.image_size, config.crop, config.margin
        self._setup(len(files), config.cache)
