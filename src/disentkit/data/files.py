"""Dataset files: one declarative spec per file, locating, downloading, verifying, caching.

Every file a dataset reads is described by a :class:`FileSpec` (URL, size, checksums, licence,
where it lives under the data root, how to unpack it, or how to get it by hand when there is no
stable URL). Each size and checksum carries a comment naming where it was published.

Downloads show a rich progress bar, resume partial ``.part`` files with HTTP ``Range`` requests,
retry with exponential backoff, and accept a file only once it passes every check known for it:
its size, its checksum and, where no checksum is known, the archive's own ending (zip central
directory, gzip trailer, tar end-of-archive block). A download that fails its checks is deleted;
an archive that was already on disk and fails them is moved aside to ``NAME.corrupt``, so the
next download fetches a fresh copy. Caches built from dataset files are written to a temporary
file and renamed (:func:`atomic_save_npy`), so an interrupted build never leaves a half-written
cache behind.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import http.client
import math
import os
import re
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from disentkit.errors import UserError
from disentkit.progress import say


class MissingDataError(UserError, FileNotFoundError):
    """A dataset file is not where disentkit looked; the message says how to get it."""


class DataFileError(UserError, ValueError):
    """A dataset file exists but is truncated, corrupt, or has the wrong checksum/content."""


class DownloadError(UserError):
    """A dataset file could not be downloaded (host unreachable, HTTP error, transfer cut)."""


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
# sizes and sha256 of the .mat.gz files: tensorflow/datasets, datasets/smallnorb/checksums.tsv
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
            # md5 and sha1 as recorded by public third-party loaders (several agree on the md5);
            # the exact size is not published (about 26 MB)
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
            # size and sha256: tensorflow/datasets dsprites checksums.tsv; md5: nmichlo/disent
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
            # measured on the file of the pinned commit above
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
            # size and sha256: tensorflow/datasets shapes3d checksums.tsv (the same sha256 is in
            # Git-LFS pointers of public copies); md5: nmichlo/disent
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
            # md5 of the file first published on Google Cloud Storage, as recorded by
            # nmichlo/disent; the size (about 12.7 GB) is not published
            checksums={"md5": "55889cb7c7dfc655d6e0277beee88868"},
            licence="CC BY 4.0 (rr-learning/disentanglement_dataset)",
        ),
    ),
    "mpi3d_realistic": (
        FileSpec(
            path="mpi3d/mpi3d_realistic.npz",
            url=_MPI3D + "mpi3d_realistic.npz",
            # md5: as for mpi3d_toy (nmichlo/disent)
            checksums={"md5": "59a6225b88b635365f70c91b3e52f70f"},
            licence="CC BY 4.0 (rr-learning/disentanglement_dataset)",
        ),
    ),
    "mpi3d_real": (
        # re-uploaded in 2025 ("Corrected corrupted mpi3d_real.npz", rr-learning/
        # disentanglement_dataset history), so the older md5 no longer applies and no size or
        # checksum of the new file is published: only the zip (npz) ending is checked
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
            # the host is not known to serve https; the md5 guards the content
            url="http://www.scottreed.info/files/nips2015-analogy-data.tar.gz",
            # md5 as recorded by nmichlo/disent (cars3d data file) and other public loaders
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
            # no size or checksum is published: only the tar end-of-archive blocks are checked
            licence="research use (Aubry et al. 2014)",
            extract="tar",
            extracted="chairs3d/rendered_chairs",
        ),
    ),
    "lfw": (
        FileSpec(
            path="lfw/lfw-deepfunneled.tgz",
            url="https://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz",
            # md5 published on the LFW page ("111MB, md5sum ...") and in torchvision's
            # datasets/lfw.py; the exact size is not published
            checksums={"md5": "68331da3eb755a505a502b5aacb3c201"},
            licence="research use (LFW, UMass Amherst)",
            extract="tar",
            extracted="lfw/lfw-deepfunneled",
        ),
        FileSpec(
            path="lfw/lfw_attributes.txt",
            url="https://www.cs.columbia.edu/CAVE/databases/pubfig/download/lfw_attributes.txt",
            # md5 as recorded by andersbll/datasetfetch (datasetfetch/lfw.py); size not published
            checksums={"md5": "a68c039ac854fd966fe4bdc36674b98f"},
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
    """Path of a dataset file under ``data_root`` (the first ``FileSpec``'s final path by default).

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


# ---- checksums and complete files -------------------------------------------------------------
#: strongest first; ``data list`` names the strongest one a file has
_ALGORITHMS = ("sha256", "sha1", "md5")


def checksum_state(spec: FileSpec) -> str:
    """How a copy of ``spec`` is verified: its strongest checksum, "size only" or "unverified"."""
    strongest = next((a for a in _ALGORITHMS if a in spec.checksums), None)
    if strongest:
        return strongest
    return "size only" if spec.size is not None else "unverified"


def archive_kind(spec: FileSpec) -> str | None:
    """The format ("zip", "gzip", "tar") whose ending can be checked for ``spec``'s file, if any."""
    name = spec.path.lower()
    if name.endswith((".npz", ".zip")):
        return "zip"
    if name.endswith((".gz", ".tgz")):
        return "gzip"
    if name.endswith(".tar"):
        return "tar"
    return None


def file_digests(path: Path, algorithms: tuple[str, ...], chunk: int = 1 << 20) -> dict[str, str]:
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as f:
        while block := f.read(chunk):
            for h in hashers.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashers.items()}


def _short(value: object, limit: int = 160) -> str:
    """``value`` as one bounded line (error texts can be long or span lines)."""
    text = " ".join(str(value).split()) or type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _zip_complete(path: Path) -> None:
    # the central directory is written last, so a cut file has none (or members past its end)
    size = path.stat().st_size
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.header_offset + info.compress_size > size:
                raise zipfile.BadZipFile(f"member {info.filename!r} runs past the end of the file")


def _gzip_complete(path: Path) -> None:
    # decompressing to the end checks the trailer (CRC-32 and length of every member)
    with gzip.open(path, "rb") as stream:
        while stream.read(1 << 20):
            pass


def _tar_complete(path: Path) -> None:
    # reading every header fails on a cut inside a member; a cut between members is only seen
    # in the missing end-of-archive (zero) blocks after the last member
    with tarfile.open(path, "r:") as archive:
        for _ in archive:
            pass
        end = archive.offset
    with open(path, "rb") as f:
        f.seek(end)
        marker = f.read(tarfile.BLOCKSIZE)
    if len(marker) < tarfile.BLOCKSIZE or marker.count(0) != len(marker):
        raise tarfile.ReadError(f"no end-of-archive block after the last member (byte {end})")


_COMPLETE = {"zip": _zip_complete, "gzip": _gzip_complete, "tar": _tar_complete}
_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def incomplete(spec: FileSpec, path: Path) -> str | None:
    """What shows that the archive at ``path`` is cut short or corrupt, or None if it is whole."""
    kind = archive_kind(spec)
    if kind is None:
        return None
    try:
        _COMPLETE[kind](path)
    except _CORRUPT as err:
        return f"{path}: not a complete {kind} file ({_short(err)})"
    return None


def file_problem(spec: FileSpec, path: Path) -> str | None:
    """What is wrong with ``path`` as a copy of ``spec`` (size, checksum, incomplete), or None.

    The archive's ending is checked only where no checksum is known (a checksum covers it).
    """
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return f"{path}: expected {spec.size} bytes, found {size} (truncated or a different file)"
    if not spec.checksums:
        return incomplete(spec, path)
    found = file_digests(path, tuple(spec.checksums))
    for algorithm, expected in spec.checksums.items():
        if found[algorithm] != expected.lower():
            return (
                f"{path}: {algorithm} checksum mismatch: expected {expected}, found "
                f"{found[algorithm]}"
            )
    return None


def check_file(spec: FileSpec, path: Path) -> None:
    """Raise :class:`DataFileError` when ``path`` is not a good copy of ``spec``."""
    problem = file_problem(spec, path)
    if problem:
        raise DataFileError(f"{problem}; delete it and download again")


def _verdict(spec: FileSpec) -> str:
    state = checksum_state(spec)
    if state != "unverified":
        return f"ok ({state})"
    kind = archive_kind(spec)
    return f"unverified ({kind} complete)" if kind else "present (unverified)"


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
        problem = file_problem(spec, path)
        verdict = f"BAD: {problem}; delete it and download again" if problem else _verdict(spec)
        rows.append((str(path), verdict))
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


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _range_total(content_range: str | None) -> int | None:
    """The full length in ``Content-Range: bytes a-b/N`` (or ``bytes */N``), if given."""
    match = re.search(r"/(\d+)\s*$", content_range or "")
    return int(match.group(1)) if match else None


def _foreign(url: str, offered: int | None, size: int | None) -> None:
    # the server names the file's full length; a different one is a different file
    if size is not None and offered is not None and offered != size:
        raise DataFileError(f"{url} offers {offered} bytes, expected {size} (a different file)")


def _resume_start(response, have: int, part: Path) -> int:
    """Where the body of ``response`` starts: ``have`` for a matching 206, else 0."""
    if not have or response.status != 206:
        return 0  # no Range asked, or the server ignored it: start over
    match = re.match(r"\s*bytes\s+(\d+)-", response.headers.get("Content-Range") or "")
    if not match or int(match.group(1)) != have:
        part.unlink()
        raise ConnectionError(f"the server resumed at a different byte than {have}; starting over")
    return have


def _blocks(response) -> Iterator[bytes]:
    """The body of ``response`` block by block. A chunked body cut before its last chunk raises
    http.client.IncompleteRead, after yielding the bytes that did arrive (the next attempt
    resumes after them)."""
    while True:
        try:
            block = response.read(1 << 16)
        except http.client.IncompleteRead as err:
            if err.partial:
                yield err.partial
            raise
        if not block:
            return
        yield block


def _fetch(url: str, part: Path, timeout: float, show: bool, label: str, size: int | None) -> None:
    """Append the rest of ``url`` to ``part`` (HTTP Range when ``part`` is non-empty).

    When the server cannot resume (HTTP 416: the ``.part`` is not shorter than the remote file)
    the ``.part`` is kept if it has exactly the remote length and otherwise discarded and the
    file fetched again from the start, once.
    """
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "disentkit"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not have:
            raise
        remote = _range_total(err.headers.get("Content-Range"))
        err.close()
        _foreign(url, remote, size)
        if remote == have:
            return  # the .part already holds the whole file; the checks that follow judge it
        part.unlink()  # a stale .part, longer than (or unlike) the remote file
        return _fetch(url, part, timeout, show, label, size)
    with response:
        start = _resume_start(response, have, part)
        length = _int_header(response.headers.get("Content-Length"))
        total = start + length if length is not None else None
        _foreign(url, _range_total(response.headers.get("Content-Range")) or total, size)
        with open(part, "ab" if start else "wb") as out, _progress(total, label, show) as progress:
            task = progress.add_task(label, total=total, completed=start)
            received = 0
            for block in _blocks(response):
                out.write(block)
                received += len(block)
                progress.update(task, advance=len(block))
        if length is not None and received < length:
            raise ConnectionError(f"the connection closed after {received} of {length} bytes")
    if size is not None and part.stat().st_size < size:
        # no Content-Length and the connection closed early: resume like any other cut
        raise ConnectionError(f"the transfer ended after {part.stat().st_size} of {size} bytes")


#: errors of the local disk that another attempt does not fix (the CLI reports them as they are)
_LOCAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {_short(err.reason)}"
    if isinstance(err, urllib.error.URLError):
        return _short(err.reason)
    return _short(err)


def _failure(err: BaseException | None, url: str) -> str:
    """The reason of a failed transfer; one that never reached the server names the host."""
    reason = _reason(err) if err is not None else "unknown error"
    # urlopen wraps the errors of connecting (DNS, refused, unreachable, timed out) in a URLError
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        host = _short(urllib.parse.urlsplit(url).netloc, 80)
        return f"host {host} unreachable: {reason}"
    return reason


def _never_connected(err: BaseException) -> bool:
    """True when the request never reached a server: the host name does not resolve, the
    connection is refused or the network is unreachable (what an offline machine sees).
    Time-outs and cut transfers are not among them; those are retried."""
    if not isinstance(err, urllib.error.URLError) or isinstance(err, urllib.error.HTTPError):
        return False
    reason = err.reason
    return isinstance(reason, (socket.gaierror, ConnectionRefusedError)) or (
        isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH))


def _by_hand(spec: FileSpec, target: Path) -> str:
    """Where a file downloaded by hand goes and what it must match (size and checksum)."""
    facts = [f"{spec.size:,} bytes" if spec.size is not None else "size not published"]
    for algorithm in ("sha256", "sha1", "md5"):  # the strongest one recorded
        if algorithm in spec.checksums:
            facts.append(f"{algorithm} {spec.checksums[algorithm]}")
            break
    else:
        facts.append("no checksum published")
    return f"download the file by hand to {target.absolute()} ({', '.join(facts)})"


def _transfer(name: str, spec: FileSpec, target: Path, part: Path, options: dict) -> None:
    """Fetch ``spec.url`` into ``part``, retrying network failures with exponential backoff."""
    retries, sleep = options["retries"], options["sleep"] or time.sleep
    failure: BaseException | None = None
    for attempt in range(retries + 1):
        try:
            _fetch(spec.url, part, options["timeout"], options["progress"], f"{name}: {target.name}",
                   spec.size)
            return
        except DataFileError as err:
            part.unlink(missing_ok=True)
            raise DataFileError(
                f"{name}: {err}; nothing was kept; if the dataset's page lists a new file, "
                f"download it by hand to {target}"
            ) from err
        except urllib.error.HTTPError as err:
            if 400 <= err.code < 500:
                raise DownloadError(
                    f"{name}: {spec.url} answered HTTP {err.code} ({_short(err.reason)}); the file "
                    f"may have moved: {_by_hand(spec, target)}"
                ) from err
            failure = err
        except (OSError, http.client.HTTPException) as err:
            if isinstance(err, OSError) and err.errno in _LOCAL_ERRNOS:
                raise
            failure = err
            if _never_connected(err):
                break  # offline, or no such host: waiting and asking again would not change that
        if attempt < retries:
            delay = options["backoff"] * 2**attempt
            say(f"{name}: {_failure(failure, spec.url)}; retry {attempt + 1} of {retries} in {delay:g} s")
            sleep(delay)
    kept = part.exists() and part.stat().st_size > 0
    resume = f"the partial file {part.absolute()} is kept and the next download resumes it; " if kept else ""
    tries = attempt + 1
    attempts = f"{tries} attempt{'s' if tries > 1 else ''}"
    raise DownloadError(
        f"{name}: download of {spec.url} failed after {attempts} ({_failure(failure, spec.url)}); "
        f"{resume}check the network and run `disentkit data download {name}` again, or "
        f"{_by_hand(spec, target)}"
    ) from failure


def _discard(path: Path, downloaded: bool) -> str:
    """Remove a bad file so the next download fetches it again; says what was done."""
    if downloaded:
        path.unlink(missing_ok=True)
        return f"deleted {path.name}"
    # it was there before this download (maybe copied by hand): keep it, out of the way
    moved = path.with_name(path.name + ".corrupt")
    os.replace(path, moved)
    return f"moved it to {moved}"


def download_file(
    name: str,
    spec: FileSpec,
    data_root: Path,
    *,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
    sleep: Callable[[float], None] | None = None,
) -> Path:
    """Download one file into ``data_root`` (resume, retry, verify, rename; then unpack).

    A download that fails its size, checksum or completeness check is deleted. An archive that
    fails its checks or does not unpack is deleted when this call downloaded it, and moved aside
    to ``NAME.corrupt`` when it was already there; either way the next call downloads it again.
    Network failures raise :class:`DownloadError`; bad files :class:`DataFileError`.
    """
    data_root = Path(data_root)
    final = data_root / spec.final_path
    if final.exists():
        return final
    target = data_root / spec.path
    downloaded = not target.exists()
    if downloaded:
        if not spec.url:
            raise MissingDataError(f"{name}: {target} is missing; {how_to_get(name, spec, data_root)}")
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        options = dict(retries=retries, backoff=backoff, timeout=timeout, progress=progress, sleep=sleep)
        _transfer(name, spec, target, part, options)
        problem = file_problem(spec, part)
        if problem:
            part.unlink()
            raise DataFileError(
                f"{name}: {problem}; deleted the download; run `disentkit data download {name}` "
                f"again (if it fails the same way, {spec.url} is not the file disentkit knows)"
            )
        os.replace(part, target)
    elif not target.is_dir() and (problem := file_problem(spec, target)):
        raise DataFileError(
            f"{name}: {problem}; {_discard(target, False)}; run `disentkit data download {name}` "
            "again to fetch a fresh copy"
        )
    if spec.extract:
        try:
            extract(spec, target, data_root)
        except DataFileError as err:
            raise DataFileError(
                f"{name}: {err}; {_discard(target, downloaded)}; run `disentkit data download "
                f"{name}` again to fetch a fresh copy"
            ) from err
    return final


def extract(spec: FileSpec, archive: Path, data_root: Path) -> None:
    """Unpack ``archive`` next to itself (gunzip to a file, or a tar into its folder), atomically.

    A corrupt or cut archive raises :class:`DataFileError`; errors writing the unpacked files
    (a full disk) are raised as they are.
    """
    final = data_root / spec.final_path
    if spec.extract == "gunzip":
        with temporary_path(final) as tmp, gzip.open(archive, "rb") as src, open(tmp, "wb") as dst:
            try:
                shutil.copyfileobj(src, dst, 1 << 20)
            except _CORRUPT as err:
                raise DataFileError(f"{archive}: not a complete gzip file ({_short(err)})") from err
    elif spec.extract == "tar":
        staging = archive.parent / (archive.name + ".extracting")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
        except BaseException as err:
            shutil.rmtree(staging, ignore_errors=True)  # never leave half an archive behind
            if isinstance(err, _CORRUPT):
                raise DataFileError(f"{archive}: cannot unpack the tar archive ({_short(err)})") from err
            raise
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
    """Load a uint8 cache, checking its header first; a bad cache says so and how to rebuild it."""
    path = Path(path)
    rebuild = "delete it to rebuild"
    try:
        with open(path, "rb") as f:
            found_shape, _, found_dtype = read_npy_header(f, str(path), rebuild)
    except OSError as err:
        raise read_error(path, err, ".npy cache", rebuild) from err
    if np.dtype(found_dtype) != np.uint8 or tuple(found_shape) != tuple(shape):
        raise DataFileError(
            f"{path}: expected a uint8 cache of shape {tuple(shape)}, found {_dtype_name(found_dtype)} "
            f"{_shape_text(found_shape)}; {rebuild}"
        )
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise read_error(path, err, ".npy cache", rebuild) from err


# ---- reading dataset files safely ---------------------------------------------------------------
# No dataset file can run code or make disentkit read outside the dataset's folder, and a damaged
# one is one clear error: npz members are read with pickling off, each npy header (dtype, shape) is
# checked before any data is read or allocated, text files must be text, names read from files
# must be plain file names, images go only through Pillow's JPEG/PNG/WebP/BMP decoders and up to
# MAX_IMAGE_PIXELS, HDF5 data must be stored in the file itself, and an LMDB data file is checked
# against its own header before it is memory-mapped.

#: the longest excerpt of a library's error message quoted in a disentkit message
_QUOTE = 160
REDOWNLOAD = "the file is damaged: delete it and download it again"


def quote_error(err: BaseException) -> str:
    """A library's error message on one line of at most 160 characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= _QUOTE else text[: _QUOTE - 3] + "..."


def _shape_text(shape) -> str:
    shape = tuple(shape)
    return str(shape) if len(shape) <= 8 else f"({', '.join(map(str, shape[:8]))}, ...) ({len(shape)} dims)"


def _dtype_name(dtype) -> str:
    dtype = np.dtype(dtype)
    return "object (pickled Python objects)" if dtype.hasobject else str(dtype)


def _names(names, limit: int = 10) -> str:
    """A bounded listing of names read from a file."""
    shown = [n if len(n) <= 40 else n[:37] + "..." for n in list(names)[:limit]]
    more = len(names) - len(shown)
    return f"{shown}" + (f" (and {more} more)" if more > 0 else "")


def read_error(path: Path, err: BaseException, what: str, fix: str) -> DataFileError:
    """The error for ``path`` that could not be read as a ``what`` (e.g. "HDF5 file").

    A permission problem or a folder says so (deleting the file would not help); anything else
    is damaged content, with ``fix`` saying what to do.
    """
    if isinstance(err, PermissionError):
        return DataFileError(
            f"{path}: permission denied reading this {what}; make it readable for this user "
            "(e.g. chmod u+r) and run again"
        )
    if isinstance(err, IsADirectoryError) or Path(path).is_dir():
        return DataFileError(f"{path}: expected a file ({what}), found a directory")
    return DataFileError(f"{path}: not a readable {what} ({quote_error(err)}); {fix}")


def describe_content(head: bytes) -> str:
    """What a file whose first bytes are ``head`` looks like, for 'expected X, found Y'."""
    if not head:
        return "an empty file"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "a Python pickle (never loaded: unpickling can run code)"
    known = (
        (b"PK\x03\x04", "a zip archive"), (b"PK\x05\x06", "an empty zip archive"),
        (b"\x93NUMPY", "a single .npy array"), (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
        (b"\x1f\x8b", "a gzip file"),
    )
    return next((what for magic, what in known if head.startswith(magic)), f"other data {head[:8]!r}...")


def read_head(path: Path, size: int, what: str, fix: str) -> bytes:
    """The first ``size`` bytes of ``path`` (a permission problem or a folder is one clear error)."""
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as err:
        raise read_error(path, err, what, fix) from err


def read_npy_header(stream, where: str, fix: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) of the .npy data in ``stream``, left at the first data byte.

    NumPy parses the header with ``ast.literal_eval`` (no code runs); nothing is read past it.
    """
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(stream)
        return np.lib.format.read_array_header_2_0(stream)
    except (ValueError, SyntaxError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataFileError(
            f"{where} should be a NumPy .npy array, but its header cannot be read "
            f"({quote_error(err)}); {fix}"
        ) from err


class NpzArchive:
    """An ``.npz`` file read member by member with pickling off.

    A file that is not a zip archive (a pickle, a lone ``.npy``) is refused from its first bytes.
    Each member's npy header is checked against the expected dtype and shape before any of its
    data is read, so an object array or a member declaring a huge shape is refused without being
    decompressed, and a member is read to its end so that zip's CRC check runs.
    """

    def __init__(self, path: Path, keys: tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        head = read_head(self.path, 8, "npz (zip) archive", REDOWNLOAD)
        if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            raise DataFileError(
                f"{self.path}: expected an npz (zip) archive, found {describe_content(head)}; "
                "replace it with the dataset's original .npz file"
            )
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            raise read_error(
                self.path, err, "npz (zip) archive", "it may be truncated: delete it and download it again"
            ) from err
        self.files = [n[: -len(".npy")] for n in self._zip.namelist() if n.endswith(".npy")]
        missing = [k for k in keys if k not in self.files]
        if missing:
            self.close()
            wanted = ", ".join(f"'{k}'" for k in keys)
            raise DataFileError(
                f"{self.path}: expected key{'s' if len(keys) > 1 else ''} {wanted}, missing "
                f"{missing}; found {_names(self.files)}"
            )

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def info(self, key: str) -> zipfile.ZipInfo:
        """The zip entry of member ``key`` (compression type, offset of its local header)."""
        return self._zip.getinfo(f"{key}.npy")

    @contextmanager
    def member(self, key: str) -> Iterator[tuple]:
        """Yield (stream at the first data byte, shape, Fortran order, dtype) of member ``key``."""
        try:
            stream = self._zip.open(f"{key}.npy")
        # RuntimeError: encrypted; NotImplementedError: a compression zipfile does not know
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as err:
            raise DataFileError(
                f"{self.path}: member '{key}' cannot be opened ({quote_error(err)}); {REDOWNLOAD}"
            ) from err
        with stream:
            yield (stream, *read_npy_header(stream, f"{self.path}: member '{key}'", REDOWNLOAD))

    def fill(self, stream, key: str, out: np.ndarray, chunk: int = 64 << 20) -> None:
        """Read exactly ``out.nbytes`` bytes of member ``key`` into the C-contiguous ``out``; the
        member must end there (reaching its end is what makes zip check its CRC)."""
        view = memoryview(out.reshape(-1).view(np.uint8))
        done = 0
        try:
            while done < len(view):
                got = stream.readinto(view[done : done + chunk])
                if not got:
                    break
                done += got
            extra = stream.read(1)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as err:
            raise DataFileError(
                f"{self.path}: member '{key}' is corrupt ({quote_error(err)}); {REDOWNLOAD}"
            ) from err
        if done < len(view):
            raise DataFileError(
                f"{self.path}: member '{key}' is truncated ({done} of {len(view)} bytes); {REDOWNLOAD}"
            )
        if extra:
            raise DataFileError(
                f"{self.path}: member '{key}' holds more data than its header's shape; {REDOWNLOAD}"
            )

    def read(self, key: str, shape: tuple, dtype) -> np.ndarray:
        """Member ``key`` as a new array; it must be ``dtype`` of ``shape`` (``None``: any size),
        which is checked on its header before anything is allocated."""
        with self.member(key) as (stream, found_shape, fortran, found_dtype):
            expect_array(self.path, key, shape, dtype, found_shape, found_dtype)
            flat = np.empty(math.prod(found_shape), found_dtype)
            self.fill(stream, key, flat)
        return flat.reshape(found_shape, order="F" if fortran else "C")


def expect_array(
    path: Path | str, key: str, shape: tuple, dtype: type | np.dtype, found_shape, found_dtype
) -> None:
    """Raise :class:`DataFileError` unless (found_shape, found_dtype) match; ``None`` = any size."""
    shape_ok = len(shape) == len(found_shape) and all(
        e is None or e == f for e, f in zip(shape, found_shape)
    )
    if not shape_ok or np.dtype(found_dtype) != np.dtype(dtype):
        want = tuple("*" if e is None else e for e in shape)
        refused = "; disentkit never loads pickled objects" if np.dtype(found_dtype).hasobject else ""
        raise DataFileError(
            f"{path}: '{key}' should be {np.dtype(dtype)} of shape {want}, found "
            f"{_dtype_name(found_dtype)} of shape {_shape_text(found_shape)}{refused}"
        )


def read_text_file(path: Path, expected: str, max_bytes: int = 256 << 20) -> str:
    """The UTF-8 text of a dataset's list or attribute file; a binary, undecodable, oversized
    or unreadable file, or a folder, is one clear error."""
    fix = "replace it with the dataset's original text file"
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as err:
        raise read_error(path, err, "text file", fix) from err
    if len(raw) > max_bytes:
        raise DataFileError(
            f"{path}: expected {expected} of at most {max_bytes >> 20} MiB, found a larger file; {fix}"
        )
    if b"\0" in raw:
        raise DataFileError(
            f"{path}: expected {expected}, found binary data ({describe_content(raw[:8])}); {fix}"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFileError(
            f"{path}: expected {expected} as UTF-8 text, found a byte that is not UTF-8 at offset "
            f"{err.start}; {fix}"
        ) from err


def plain_file_name(name: str) -> bool:
    """Whether ``name``, read from a dataset file, names an entry directly inside a folder: no
    path separator, no parent reference, not absolute."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def refuse_path_name(path: Path, line: int, name: str, folder: Path | str) -> DataFileError:
    """The error for a name read from ``path`` (line ``line``) that would leave ``folder``."""
    return DataFileError(
        f"{path}: line {line} names {name[:60]!r}, which is not a plain file name inside {folder}; "
        "disentkit reads only files inside the dataset's folder: fix or remove that line"
    )


#: the most pixels disentkit decodes from one image file (8192x8192, far above every dataset's
#: images); checked on the header before decoding, so a decompression bomb is refused unread
MAX_IMAGE_PIXELS = 8192 * 8192
#: the only Pillow decoders used (Pillow's EPS plugin, for one, runs Ghostscript)
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")


def open_image(source, where: str):
    """Open an image file (a path or a binary stream) with Pillow, lazily: only the JPEG, PNG,
    WebP and BMP decoders, and at most :data:`MAX_IMAGE_PIXELS` pixels.

    Raises OSError (from Pillow) for a file none of those decoders recognises, and
    :class:`DataFileError` for an image that is too large.
    """
    import warnings

    from PIL import Image

    too_large = (
        f"{where}: the image is larger than disentkit decodes (at most {MAX_IMAGE_PIXELS} pixels, "
        "e.g. 8192x8192): {}; resize it or remove it from the dataset"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is lower
        try:
            image = Image.open(source, formats=IMAGE_FORMATS)
        except Image.DecompressionBombError as err:
            raise DataFileError(too_large.format(f"Pillow says {quote_error(err)}")) from err
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        image.close()
        raise DataFileError(too_large.format(f"it is {width}x{height}"))
    return image


def h5_dataset(file, name: str, path: Path):
    """Dataset ``name`` of the open h5py ``file``, refused when HDF5 would read it from another
    file: through an external (or soft) link, external raw storage, or a virtual dataset."""
    import h5py

    parts = name.split("/")
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        link = file.get(prefix, getlink=True)
        if link is None:
            raise DataFileError(f"{path}: expected a dataset '{name}', found no '{prefix}'")
        if not isinstance(link, h5py.HardLink):
            target = str(getattr(link, "filename", "") or getattr(link, "path", ""))
            if len(target) > 80:  # keep the end: the linked file's own name
                target = "..." + target[-77:]
            raise DataFileError(
                f"{path}: '{prefix}' is a link to {target!r}, not data stored in the file; "
                "disentkit reads only data inside the dataset's own file: use the original file"
            )
    dataset = file[name]
    if not isinstance(dataset, h5py.Dataset):
        raise DataFileError(f"{path}: '{name}' should be a dataset, found a group")
    if dataset.external or dataset.is_virtual:
        raise DataFileError(
            f"{path}: '{name}' keeps its data in other files (HDF5 external or virtual storage); "
            "disentkit reads only data inside the dataset's own file: use the original file"
        )
    return dataset


def _lmdb_meta(raw: bytes) -> tuple[int, int, int] | None:
    """(page size, last page number, transaction id) of an LMDB meta page, None if it is not one.

    Layout of LMDB 0.9's ``MDB_meta`` on 64-bit hosts (lmdb/libraries/liblmdb/mdb.c): after the
    16-byte page header, ``mm_magic`` 0xBEEFC0DE and ``mm_version`` 1 (uint32 each), address and
    map size, two ``MDB_db`` records of 48 bytes (the first one's ``md_pad`` is the page size),
    then ``mm_last_pg`` and ``mm_txnid`` (uint64 each).
    """
    import struct

    if len(raw) < 152 or struct.unpack_from("<II", raw, 16) != (0xBEEFC0DE, 1):
        return None
    (page,) = struct.unpack_from("<I", raw, 40)
    last, txnid = struct.unpack_from("<QQ", raw, 136)
    return (page, last, txnid) if page >= 512 and page & (page - 1) == 0 else None


def check_lmdb_size(path: Path) -> None:
    """Refuse an LMDB whose data file is shorter than its header says.

    LMDB memory-maps the data file; reading a page past the end of a truncated file kills the
    process with SIGBUS instead of raising. The current meta page (the one with the larger
    transaction id, as LMDB picks it) says how many pages the database uses.
    """
    data = path / "data.mdb" if path.is_dir() else path
    if path.is_dir() and not data.exists():
        raise DataFileError(f"{path}: expected an LMDB folder holding data.mdb, found no data.mdb")
    fix = "copy or download it again"
    try:
        with open(data, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(152)
            first = _lmdb_meta(head)
            f.seek(first[0] if first else 0)
            second = _lmdb_meta(f.read(152)) if first else None
    except OSError as err:
        raise read_error(data, err, "LMDB data file", fix) from err
    if first is None:
        raise DataFileError(f"{data}: expected an LMDB data file, found {describe_content(head[:8])}; {fix}")
    page, last, _ = max((m for m in (first, second) if m is not None), key=lambda m: m[2])
    needed = (last + 1) * page
    if size < needed:
        raise DataFileError(
            f"{data}: truncated LMDB: its header says {needed} bytes ({last + 1} pages of {page}), "
            f"the file has {size}; {fix} (reading it as it is would crash the process)"
        )
