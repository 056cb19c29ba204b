"""Dataset files: one declarative spec per file, locating, downloading, verifying, caching.

Every file a dataset reads is described by a :class:`FileSpec` (URL, size, checksums, licence,
where it lives under the data root, how to unpack it, or how to get it by hand when there is no
stable URL). URLs, sizes and checksums come from specs/datasets.md §2.

Downloads show a rich progress bar, resume partial ``.part`` files with HTTP ``Range`` requests,
retry with exponential backoff, verify size and checksums, and only then rename the file into
place. Caches built from dataset files are written to a temporary file and renamed
(:func:`atomic_save_npy`), so an interrupted build never leaves a half-written cache behind.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from disentkit.errors import UserError


class MissingDataError(UserError, FileNotFoundError):
    """A dataset file is not where disentkit looked; the message says how to get it."""


class DataFileError(UserError, ValueError):
    """A dataset file exists but is truncated, corrupt, or has the wrong checksum/content."""


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset, relative to the data root."""

    path: str
    url: str | None = None
    size: int | None = None
    #: algorithm -> hex digest (any of "sha256", "sha1", "md5")
    checksums: dict[str, str] = field(default_factory=dict)
    licence: str = ""
    #: "gunzip" (file.gz -> file) or "tar" (extract into the file's folder), applied after download
    extract: str | None = None
    #: path (relative to the data root) that exists once ``extract`` has run
    extracted: str | None = None
    #: how to obtain the file by hand when it cannot be downloaded automatically
    manual: str | None = None

    @property
    def final_path(self) -> str:
        return self.extracted or self.path


_DSPRITES = "https://github.com/deepmind/dsprites-dataset/raw/master/"
_NMA = (
    "https://raw.githubusercontent.com/colleenjg/neuromatch_ssl_tutorial/"
    "d2ed4d26eff61bd6126772a94f8d1d91032fe6bd/dsprites/"
)
_MPI3D = "https://huggingface.co/datasets/waleedgondal/mpi3d/resolve/main/"
_NORB = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
_NORB_GZ = {
    ("training", "dat"): (131896188, "5ffd6272a07d32695ee1082a26a41a93a37aab8c28da047f8c34ed348d214873"),
    ("training", "cat"): (348, "2784e542c1922060691090952b6cd6278879a216c90f81476f0f00256d42cdaa"),
    ("training", "info"): (71052, "de7eb932ebe7a4ee16217fead60660d0eb3d23632c2f4d1c51f88c501c17bf32"),
    ("testing", "dat"): (130799817, "cf7104eed3e51174d2f65b66d1e5878b9da233b886f161b0d88f4510ba2c7474"),
    ("testing", "cat"): (347, "ecaf6d5bb8c3bc5eab9cf0258f6d2198dd474e016e374836fc097f2e5ff509ff"),
    ("testing", "info"): (10428, "16adf314226327ee006d1a44db8cfef52773c06c829951d5653a9f6f310248a2"),
}


def _norb_file(split: str, kind: str) -> FileSpec:
    code = "46789" if split == "training" else "01235"
    name = f"smallnorb-5x{code}x9x18x6x2x96x96-{split}-{kind}.mat"
    size, sha = _NORB_GZ[(split, kind)]
    return FileSpec(
        path=f"smallnorb/{name}.gz",
        url=_NORB + name + ".gz",
        size=size,
        checksums={"sha256": sha},
        licence="smallNORB: free for research (NYU)",
        extract="gunzip",
        extracted=f"smallnorb/{name}",
    )


_CELEBA_MANUAL = (
    "CelebA needs a manual download (Google Drive, non-commercial licence, no redistribution): "
    "get img_align_celeba.zip and list_attr_celeba.txt from "
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html and unpack them into {root}/celeba/"
)
_DIFFAE_MANUAL = (
    "The Diff-AE LMDB files are shared through OneDrive/Google Drive links in the README of "
    "https://github.com/phizaz/diffae; download {name} and place the folder at {where}"
)

#: dataset name -> the files it reads (paths relative to the data root)
FILES: dict[str, tuple[FileSpec, ...]] = {
    "dsprites": (
        FileSpec(
            path="dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
            url=_DSPRITES + "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
            checksums={
                "md5": "7da33b31b13a06f4b04a70402ce90c2e",
                "sha1": "3e0a46a9238e425f46a6ef9e9bdfd7cedb35d50f",
            },
            licence="Apache-2.0 (deepmind/dsprites-dataset)",
        ),
    ),
    "dsprites_hdf5": (
        FileSpec(
            path="dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5",
            url=_DSPRITES + "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5",
            size=28024106,
            checksums={
                "sha256": "729fa22e884c9c500e1f17415d580746b4c5894fbbb780a1319bbcfa39a745bb",
                "md5": "b331c4447a651c44bf5e8ae09022e230",
            },
            licence="Apache-2.0 (deepmind/dsprites-dataset)",
        ),
    ),
    "dsprites_small": (
        FileSpec(
            path="dsprites/dsprites_downsampled.npz",
            url=_NMA + "dsprites_downsampled.npz",
            size=1341726,
            checksums={
                "sha256": "8a632f70c0dbd279dd771854981a3de945b2448eddbd9b2af59fb83e8728f871"
            },
            licence="Apache-2.0 (cut from deepmind/dsprites-dataset by Neuromatch Academy)",
        ),
    ),
    "scream_dsprites": (
        FileSpec(
            path="dsprites/scream.jpg",
            manual=(
                "scream_dsprites needs a background photograph (disentanglement_lib uses "
                "Munch's 'The Scream', public domain, e.g. from Wikimedia Commons); save a JPEG "
                "of at least 350x274 pixels as {where} or set data.scream_path"
            ),
        ),
    ),
    "shapes3d": (
        FileSpec(
            path="3dshapes/3dshapes.h5",
            url="https://storage.googleapis.com/3d-shapes/3dshapes.h5",
            size=267573662,
            checksums={
                "sha256": "0a0f6ed98baff276a50f3a081a7434d788da63cb135a98189b2a5b5769be1785",
                "md5": "099a2078d58cec4daad0702c55d06868",
            },
            licence="Apache-2.0 (deepmind/3d-shapes)",
        ),
    ),
    "mpi3d_toy": (
        FileSpec(
            path="mpi3d/mpi3d_toy.npz",
            url=_MPI3D + "mpi3d_toy.npz",
            checksums={"md5": "55889cb7c7dfc655d6e0277beee88868"},
            licence="CC BY 4.0 (rr-learning/disentanglement_dataset)",
        ),
    ),
    "mpi3d_realistic": (
        FileSpec(
            path="mpi3d/mpi3d_realistic.npz",
            url=_MPI3D + "mpi3d_realistic.npz",
            checksums={"md5": "59a6225b88b635365f70c91b3e52f70f"},
            licence="CC BY 4.0 (rr-learning/disentanglement_dataset)",
        ),
    ),
    "mpi3d_real": (
        # re-uploaded in 2025 ("corrected corrupted"), so the older md5 no longer applies
        FileSpec(
            path="mpi3d/mpi3d_real.npz",
            url=_MPI3D + "mpi3d_real.npz",
            licence="CC BY 4.0 (rr-learning/disentanglement_dataset)",
        ),
    ),
    "mpi3d_real_complex": (
        FileSpec(
            path="mpi3d/real3d_complicated_shapes_ordered.npz",
            manual=(
                "mpi3d real_complex is on Google Drive (file id "
                "1Tp8eTdHxgUMtsZv5uAoYAbJR1BOa_OQm, linked from "
                "https://github.com/rr-learning/disentanglement_dataset); save it as {where}"
            ),
            licence="CC BY 4.0 (rr-learning/disentanglement_dataset)",
        ),
    ),
    "cars3d": (
        FileSpec(
            path="cars3d/nips2015-analogy-data.tar.gz",
            url="http://www.scottreed.info/files/nips2015-analogy-data.tar.gz",
            checksums={"md5": "4e866a7919c1beedf53964e6f7a23686"},
            licence="research use (Reed et al. 2015, Fidler et al. 2012 CAD models)",
            extract="tar",
            extracted="cars3d/data/cars/list.txt",
        ),
    ),
    "smallnorb": tuple(
        _norb_file(split, kind) for split in ("training", "testing") for kind in ("dat", "cat", "info")
    ),
    "celeba": (
        FileSpec(path="celeba/img_align_celeba", manual=_CELEBA_MANUAL),
        FileSpec(path="celeba/list_attr_celeba.txt", manual=_CELEBA_MANUAL),
    ),
    "celeba_lmdb": (
        FileSpec(path="celeba_lmdb/celeba.lmdb", manual=_DIFFAE_MANUAL.replace("{name}", "celeba.lmdb")),
    ),
    "ffhq_lmdb": (
        FileSpec(path="ffhq/ffhq256.lmdb", manual=_DIFFAE_MANUAL.replace("{name}", "ffhq256.lmdb")),
    ),
    "bedroom_lmdb": (
        FileSpec(
            path="bedroom/bedroom256.lmdb",
            manual=_DIFFAE_MANUAL.replace("{name}", "bedroom256.lmdb"),
        ),
    ),
    "chairs3d": (
        FileSpec(
            path="chairs3d/rendered_chairs.tar",
            url="https://www.di.ens.fr/willow/research/seeing3Dchairs/data/rendered_chairs.tar",
            licence="research use (Aubry et al. 2014)",
            extract="tar",
            extracted="chairs3d/rendered_chairs",
        ),
    ),
    "lfw": (
        FileSpec(
            path="lfw/lfw-deepfunneled.tgz",
            url="http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz",
            licence="research use (LFW, UMass Amherst)",
            extract="tar",
            extracted="lfw/lfw-deepfunneled",
        ),
        FileSpec(
            path="lfw/lfw_attributes.txt",
            url="http://www.cs.columbia.edu/CAVE/databases/pubfig/download/lfw_attributes.txt",
            licence="research use (Kumar et al., Columbia PubFig)",
        ),
    ),
}


# ---- locating ---------------------------------------------------------------------------------
def how_to_get(name: str, spec: FileSpec, data_root: Path) -> str:
    """A one-line instruction for obtaining ``spec`` (the download command or the manual steps)."""
    where = data_root / spec.path
    if spec.url:
        return f"run `disentkit data download {name} --data-root {data_root}` (from {spec.url})"
    if spec.manual:
        return spec.manual.replace("{where}", str(where)).replace("{root}", str(data_root))
    return f"place the file at {where}"


def require(name: str, data_root: Path, relative: str | None = None) -> Path:
    """Path of a dataset file under ``data_root`` (the first spec's final path by default).

    Raises :class:`MissingDataError` naming where it looked and how to get the file.
    """
    specs = FILES.get(name, ())
    if relative is None:
        if not specs:
            raise KeyError(f"no file specs for dataset '{name}'")
        relative = specs[0].final_path
    path = Path(data_root) / relative
    if path.exists():
        return path
    spec = next((s for s in specs if relative in (s.path, s.final_path)), specs[0] if specs else None)
    hint = how_to_get(name, spec, Path(data_root)) if spec else "place the file there"
    raise MissingDataError(
        f"{name}: dataset file not found: looked for {path} (data root {data_root}, set with "
        f"--data-root, the run config's data_root or DISENTKIT_DATA); to get it, {hint}"
    )


def explicit_path(name: str, path: str, *, folder: bool = False) -> Path | None:
    """The file (with ``folder``: the folder) a dataset's ``data.path`` names; None when empty.

    Raises :class:`MissingDataError` when ``data.path`` is set but nothing (no folder) is there,
    so ``explicit_path(...) or require(...)`` falls back to the data root only when it is unset.
    """
    if not path:
        return None
    found = Path(path).expanduser()
    if not (found.is_dir() if folder else found.exists()):
        raise MissingDataError(f"{name}: data.path {found} does not exist")
    return found


def status(name: str, data_root: Path) -> list[tuple[FileSpec, bool]]:
    """Each file of ``name`` and whether its final (extracted) form is present."""
    return [(spec, (Path(data_root) / spec.final_path).exists()) for spec in FILES.get(name, ())]


# ---- checksums --------------------------------------------------------------------------------
def file_digests(path: Path, algorithms: tuple[str, ...], chunk: int = 1 << 20) -> dict[str, str]:
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as f:
        while block := f.read(chunk):
            for h in hashers.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashers.items()}


def check_file(spec: FileSpec, path: Path) -> None:
    """Raise :class:`DataFileError` when ``path`` has the wrong size or checksum for ``spec``."""
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        raise DataFileError(
            f"{path}: expected {spec.size} bytes, found {size} (truncated or a different file); "
            "delete it and download again"
        )
    if spec.checksums:
        found = file_digests(path, tuple(spec.checksums))
        for algorithm, expected in spec.checksums.items():
            if found[algorithm] != expected.lower():
                raise DataFileError(
                    f"{path}: {algorithm} checksum mismatch: expected {expected}, found "
                    f"{found[algorithm]}; delete it and download again"
                )


def verify(name: str, data_root: Path) -> list[tuple[str, str]]:
    """Check every file of ``name`` that is present: returns (path, verdict) rows."""
    rows = []
    for spec in FILES.get(name, ()):
        path = Path(data_root) / spec.path
        if not path.exists():
            final = Path(data_root) / spec.final_path
            rows.append((str(path), "extracted, archive removed" if final.exists() else "missing"))
            continue
        if path.is_dir():
            rows.append((str(path), "present (folder)"))
            continue
        try:
            check_file(spec, path)
        except DataFileError as err:
            rows.append((str(path), f"BAD: {err}"))
            continue
        rows.append((str(path), "ok" if spec.checksums or spec.size else "present (no checksum)"))
    return rows


# ---- downloading ------------------------------------------------------------------------------
def _progress(total: int | None, description: str, enabled: bool):
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=True,
    )
    return progress


def _fetch(url: str, part: Path, timeout: float, show: bool, label: str) -> None:
    """Append the rest of ``url`` to ``part`` (HTTP Range when ``part`` is non-empty)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "disentkit"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # range not satisfiable: the part file is already complete
            return
        raise
    with response:
        if have and response.status != 206:
            have = 0  # server ignored the Range header: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        mode = "ab" if have else "wb"
        with open(part, mode) as out, _progress(total, label, show) as progress:
            task = progress.add_task(label, total=total, completed=have)
            received = 0
            while block := response.read(1 << 16):
                out.write(block)
                received += len(block)
                progress.update(task, advance=len(block))
        if length is not None and received < int(length):
            raise ConnectionError(f"connection closed after {received} of {length} bytes")


def download_file(
    name: str,
    spec: FileSpec,
    data_root: Path,
    *,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download one file into ``data_root`` (resume, retry, verify, rename; then unpack)."""
    data_root = Path(data_root)
    final = data_root / spec.final_path
    if final.exists():
        return final
    target = data_root / spec.path
    if not target.exists():
        if not spec.url:
            raise MissingDataError(f"{name}: {target} is missing; {how_to_get(name, spec, data_root)}")
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        for attempt in range(retries + 1):
            try:
                _fetch(spec.url, part, timeout, progress, f"{name}: {target.name}")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
                if isinstance(err, urllib.error.HTTPError) and 400 <= err.code < 500:
                    raise DataFileError(f"{name}: {spec.url} answered HTTP {err.code}") from err
                if attempt == retries:
                    raise DataFileError(
                        f"{name}: download of {spec.url} failed after {retries + 1} attempts "
                        f"({err}); the partial file {part} is kept and the next download resumes it"
                    ) from err
                sleep(backoff * 2**attempt)
        try:
            check_file(spec, part)
        except DataFileError:
            part.unlink()
            raise
        os.replace(part, target)
    if spec.extract:
        extract(spec, target, data_root)
    return final


def extract(spec: FileSpec, archive: Path, data_root: Path) -> None:
    """Unpack ``archive`` next to itself (gunzip to a file, or a tar into its folder), atomically."""
    final = data_root / spec.final_path
    if spec.extract == "gunzip":
        with temporary_path(final) as tmp, gzip.open(archive, "rb") as src, open(tmp, "wb") as dst:
            try:
                shutil.copyfileobj(src, dst, 1 << 20)
            except (OSError, EOFError) as err:
                raise DataFileError(f"{archive}: not a complete gzip file ({err})") from err
    elif spec.extract == "tar":
        staging = archive.parent / (archive.name + ".extracting")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError, EOFError) as err:
            shutil.rmtree(staging, ignore_errors=True)
            raise DataFileError(f"{archive}: cannot unpack the tar archive ({err})") from err
        for entry in staging.iterdir():
            destination = archive.parent / entry.name
            if not destination.exists():
                os.replace(entry, destination)
        shutil.rmtree(staging, ignore_errors=True)
        if not final.exists():
            raise DataFileError(f"{archive}: unpacked, but {final} is not in it")
    else:
        raise ValueError(f"unknown extraction '{spec.extract}'")


def download(name: str, data_root: Path, **kwargs) -> list[Path]:
    """Download every file of dataset ``name``; manual files raise with their instructions."""
    if name not in FILES:
        raise KeyError(f"no downloadable files for '{name}'; known: {', '.join(sorted(FILES))}")
    return [download_file(name, spec, data_root, **kwargs) for spec in FILES[name]]


# ---- caches -----------------------------------------------------------------------------------
@contextmanager
def temporary_path(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; rename it onto ``final`` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` through a temporary file and a rename."""
    with temporary_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def load_npy(path: Path, shape: tuple[int, ...], mmap: bool = False) -> np.ndarray:
    """Load a uint8 cache, checking its shape; a bad cache says so and how to rebuild it."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as err:
        raise DataFileError(f"{path}: unreadable cache ({err}); delete it to rebuild") from err
    if array.dtype != np.uint8 or tuple(array.shape) != tuple(shape):
        raise DataFileError(
            f"{path}: expected a uint8 cache of shape {tuple(shape)}, found {array.dtype} "
            f"{tuple(array.shape)}; delete it to rebuild"
        )
    return array


# ---- validating file contents -----------------------------------------------------------------
def open_npz(path: Path, keys: tuple[str, ...], pickled: bool = False):
    """Open an npz file, checking that it is readable and has ``keys``."""
    import zipfile

    try:
        archive = np.load(path, allow_pickle=pickled, encoding="latin1")
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise DataFileError(
            f"{path}: not a readable npz file ({err}); it may be truncated, delete it and "
            "download again"
        ) from err
    if not hasattr(archive, "files"):
        raise DataFileError(f"{path}: expected an npz archive with keys {list(keys)}, found a .npy")
    missing = [k for k in keys if k not in archive.files]
    if missing:
        found = list(archive.files)
        archive.close()
        raise DataFileError(f"{path}: expected keys {list(keys)}, missing {missing}; found {found}")
    return archive


def expect_array(
    path: Path | str, key: str, shape: tuple, dtype: type | np.dtype, found_shape, found_dtype
) -> None:
    """Raise :class:`DataFileError` unless (found_shape, found_dtype) match; ``None`` = any size."""
    shape_ok = len(shape) == len(found_shape) and all(
        e is None or e == f for e, f in zip(shape, found_shape)
    )
    if not shape_ok or np.dtype(found_dtype) != np.dtype(dtype):
        want = tuple("*" if e is None else e for e in shape)
        raise DataFileError(
            f"{path}: '{key}' should be {np.dtype(dtype)} of shape {want}, found "
            f"{np.dtype(found_dtype)} of shape {tuple(found_shape)}"
        )
