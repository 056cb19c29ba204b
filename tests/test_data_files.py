"""Downloads against a loopback HTTP server: checksums, interrupted transfers, Range resume,
archive extraction, and the ``disentkit data`` command."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from disentkit.cli import main
from disentkit.data import files
from disentkit.data.files import DataFileError, FileSpec, MissingDataError, atomic_save_npy, download_file

PAYLOAD = bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8))


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD; honours ``Range``; the first ``fail_first`` requests stop halfway."""

    state = {"fail_first": 0, "requests": [], "range": True, "body": PAYLOAD, "status": 200}

    def do_GET(self) -> None:  # noqa: N802
        body = self.state["body"]
        self.state["requests"].append(self.headers.get("Range"))
        if self.state["status"] != 200:
            self.send_error(self.state["status"])
            return
        start = 0
        header = self.headers.get("Range")
        if header and self.state["range"]:
            start = int(header.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.state["fail_first"] > 0:
            self.state["fail_first"] -= 1
            self.wfile.write(body[start : start + (len(body) - start) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # drop the connection mid-transfer
            return
        self.wfile.write(body[start:])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    _Handler.state.update(fail_first=0, requests=[], range=True, body=PAYLOAD, status=200)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    # a short poll interval keeps shutdown (each test's teardown) fast
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.state
    httpd.shutdown()
    httpd.server_close()


def _spec(url: str, **kw) -> FileSpec:
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    kw.setdefault("checksums", {"sha256": sha, "md5": hashlib.md5(PAYLOAD).hexdigest()})
    return FileSpec(path="x/file.bin", url=url + "/file.bin", size=len(PAYLOAD), **kw)


def test_download_verifies_and_renames(server, tmp_path: Path) -> None:
    url, state = server
    path = download_file("x", _spec(url), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD and not (tmp_path / "x" / "file.bin.part").exists()
    assert state["requests"] == [None]
    download_file("x", _spec(url), tmp_path, progress=False)  # present: no new request
    assert len(state["requests"]) == 1


def test_checksum_mismatch_is_reported_and_nothing_kept(server, tmp_path: Path) -> None:
    url, _ = server
    spec = _spec(url, checksums={"sha256": "0" * 64})
    with pytest.raises(DataFileError, match="sha256 checksum mismatch: expected 0000.*found"):
        download_file("x", spec, tmp_path, progress=False)
    assert not (tmp_path / "x" / "file.bin").exists()
    assert not (tmp_path / "x" / "file.bin.part").exists()


def test_interrupted_transfer_resumes_with_range(server, tmp_path: Path) -> None:
    url, state = server
    state["fail_first"] = 1
    waits = []
    path = download_file("x", _spec(url), tmp_path, progress=False, sleep=waits.append)
    assert path.read_bytes() == PAYLOAD
    assert state["requests"][0] is None and state["requests"][1] == f"bytes={len(PAYLOAD) // 2}-"
    assert waits == [1.0]


def test_partial_file_kept_after_retries_then_resumed(server, tmp_path: Path) -> None:
    url, state = server
    state["fail_first"] = 10
    waits = []
    with pytest.raises(DataFileError, match="failed after 3 attempts.*resumes"):
        download_file("x", _spec(url), tmp_path, progress=False, retries=2, sleep=waits.append)
    assert waits == [1.0, 2.0]  # exponential backoff
    part = tmp_path / "x" / "file.bin.part"
    assert 0 < part.stat().st_size < len(PAYLOAD)
    state["fail_first"] = 0
    download_file("x", _spec(url), tmp_path, progress=False)
    assert (tmp_path / "x" / "file.bin").read_bytes() == PAYLOAD


def test_server_without_range_restarts_cleanly(server, tmp_path: Path) -> None:
    url, state = server
    state["range"] = False
    part = tmp_path / "x" / "file.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage")
    assert download_file("x", _spec(url), tmp_path, progress=False).read_bytes() == PAYLOAD


def test_gzip_extraction(server, tmp_path: Path) -> None:
    url, state = server
    inner = b"NORB" * 1000
    state["body"] = gzip.compress(inner)
    spec = FileSpec(path="n/a.mat.gz", url=url + "/a.mat.gz", extract="gunzip", extracted="n/a.mat")
    assert download_file("n", spec, tmp_path, progress=False).read_bytes() == inner


def test_missing_manual_file_explains_how(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="manual download"):
        files.require("celeba", tmp_path)
    with pytest.raises(MissingDataError, match=str(tmp_path / "3dshapes" / "3dshapes.h5")):
        files.require("shapes3d", tmp_path)


def test_atomic_cache_and_bad_cache(tmp_path: Path) -> None:
    path = tmp_path / "c" / "cache.npy"
    atomic_save_npy(path, np.ones((2, 3), np.uint8))
    assert files.load_npy(path, (2, 3)).sum() == 6
    assert list(path.parent.iterdir()) == [path]
    with pytest.raises(DataFileError, match=r"expected a uint8 cache of shape \(4, 3\)"):
        files.load_npy(path, (4, 3))


def test_cli_list_download_verify(server, tmp_path: Path, monkeypatch, capsys) -> None:
    url, _ = server
    monkeypatch.setitem(files.FILES, "toy_file", (_spec(url),))
    monkeypatch.setenv("DISENTKIT_DATA", str(tmp_path))
    assert main(["data", "verify", "toy_file"]) == 1  # missing
    assert main(["data", "download", "toy_file", "--no-progress"]) == 0
    assert main(["data", "verify", "toy_file"]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and str(tmp_path / "x" / "file.bin") in out
    (tmp_path / "x" / "file.bin").write_bytes(PAYLOAD[:-1] + b"\x00")
    assert main(["data", "verify", "toy_file"]) == 1
    assert "BAD" in capsys.readouterr().out
    assert main(["data", "list", "--data-root", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "sprites" in listing and "shapes3d" in listing and f"data root: {tmp_path}" in listing
    assert main(["data", "download", "celeba", "--data-root", str(tmp_path)]) == 1
    assert "manual download" in capsys.readouterr().err


def test_explicit_data_path_wins_and_must_exist(tmp_path: Path) -> None:
    from disentkit.data.dsprites import DSpritesSmall
    from disentkit.data.images import Chairs3D

    assert files.explicit_path("shapes3d", "") is None
    present = tmp_path / "x.h5"
    present.write_bytes(b"")
    assert files.explicit_path("shapes3d", str(present)) == present
    with pytest.raises(MissingDataError, match="chairs3d: data.path .* does not exist"):
        files.explicit_path("chairs3d", str(present), folder=True)  # a file, not a folder
    assert files.explicit_path("chairs3d", str(tmp_path), folder=True) == tmp_path
    # a data.path that is set but absent is reported as such, never replaced by the data root
    missing = tmp_path / "nowhere.npz"
    with pytest.raises(MissingDataError, match=f"dsprites_small: data.path {missing} does not"):
        DSpritesSmall(DSpritesSmall.Config(path=str(missing)), data_root=tmp_path)
    with pytest.raises(MissingDataError, match="looked for"):  # unset: the data root's file
        DSpritesSmall(data_root=tmp_path)
    with pytest.raises(MissingDataError, match="chairs3d: data.path"):
        Chairs3D(Chairs3D.Config(path=str(present)), data_root=tmp_path)


# ---- more download paths: HTTP errors, sizes, progress, archives, manual sources ----------------
def test_http_error_is_reported_without_retrying(server, tmp_path: Path) -> None:
    url, state = server
    state["status"] = 404
    waits = []
    with pytest.raises(DataFileError, match=r"x: http://127\.0\.0\.1:\d+/file\.bin answered HTTP 404"):
        download_file("x", _spec(url), tmp_path, progress=False, sleep=waits.append)
    assert waits == [] and len(state["requests"]) == 1
    assert not (tmp_path / "x" / "file.bin").exists()


def test_server_errors_are_retried(server, tmp_path: Path) -> None:
    url, state = server
    state["status"] = 503
    waits = []
    with pytest.raises(DataFileError, match="failed after 2 attempts"):
        download_file("x", _spec(url), tmp_path, progress=False, retries=1, sleep=waits.append)
    assert waits == [1.0] and len(state["requests"]) == 2
    state["status"] = 200
    assert download_file("x", _spec(url), tmp_path, progress=False).read_bytes() == PAYLOAD


def test_wrong_size_is_reported_before_any_checksum(server, tmp_path: Path) -> None:
    url, _ = server
    spec = FileSpec(path="x/file.bin", url=url + "/file.bin", size=len(PAYLOAD) + 1,
                    checksums={"sha256": hashlib.sha256(PAYLOAD).hexdigest()})
    with pytest.raises(DataFileError, match=rf"expected {len(PAYLOAD) + 1} bytes, found {len(PAYLOAD)}"):
        download_file("x", spec, tmp_path, progress=False)
    assert not list((tmp_path / "x").iterdir())  # the bad .part is removed, nothing renamed


class _RecordingProgress:
    """Stands in for the rich progress bar and records what it is told."""

    def __init__(self, log: list) -> None:
        self.log = log

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def add_task(self, label: str, total, completed: int) -> int:
        self.log.append(("task", label, total, completed))
        return 0

    def update(self, task: int, advance: int) -> None:
        self.log.append(("advance", advance))


def test_progress_bar_counts_resumed_bytes(server, tmp_path: Path, monkeypatch) -> None:
    url, state = server
    log: list = []
    monkeypatch.setattr(files, "_progress", lambda total, label, enabled: _RecordingProgress(log))
    state["fail_first"] = 1
    download_file("x", _spec(url), tmp_path, progress=True, sleep=lambda s: None)
    tasks = [entry for entry in log if entry[0] == "task"]
    half = len(PAYLOAD) // 2
    # first attempt: the whole file, from 0; the resumed one starts at the bytes already there
    assert tasks == [("task", "x: file.bin", len(PAYLOAD), 0), ("task", "x: file.bin", len(PAYLOAD), half)]
    assert sum(entry[1] for entry in log if entry[0] == "advance") == len(PAYLOAD)


def test_real_progress_bar_runs(server, tmp_path: Path) -> None:
    url, _ = server
    assert download_file("x", _spec(url), tmp_path, progress=True).read_bytes() == PAYLOAD


def test_archive_download_unpacks_and_loads(server, tmp_path: Path, monkeypatch) -> None:
    """Cars3D end to end: the tar.gz is downloaded, checked (md5), unpacked, and loaded."""
    import dataclasses
    import io
    import tarfile

    from disentkit.data.cars3d import Cars3D
    from test_data_real_formats import write_cars

    url, state = server
    write_cars(tmp_path / "src" / "data" / "cars", [5, 2])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / "data", arcname="data")
    state["body"] = buffer.getvalue()
    spec = dataclasses.replace(files.FILES["cars3d"][0], url=url + "/nips2015-analogy-data.tar.gz",
                               checksums={"md5": hashlib.md5(state["body"]).hexdigest()})
    monkeypatch.setitem(files.FILES, "cars3d", (spec,))
    root = tmp_path / "root"
    assert files.download("cars3d", root, progress=False) == [root / "cars3d/data/cars/list.txt"]
    assert not (root / "cars3d" / "nips2015-analogy-data.tar.gz.extracting").exists()
    assert files.verify("cars3d", root) == [(str(root / spec.path), "ok")]
    monkeypatch.setattr(Cars3D, "factor_sizes", (4, 24, 2))
    data = Cars3D(data_root=root)
    assert data.uint8_from_indices(np.array([3 * 24 * 2 + 7 * 2 + 1]))[0, 9, 9].tolist() == [40, 70, 150]


def test_bad_archives_are_reported(tmp_path: Path) -> None:
    import io
    import tarfile

    gz = tmp_path / "n" / "a.mat.gz"
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress(b"NORB" * 1000)[:-12])
    spec = FileSpec(path="n/a.mat.gz", extract="gunzip", extracted="n/a.mat")
    with pytest.raises(DataFileError, match=r"a\.mat\.gz: not a complete gzip file"):
        files.extract(spec, gz, tmp_path)
    assert sorted(p.name for p in gz.parent.iterdir()) == ["a.mat.gz"]  # no partial a.mat
    tar_path = tmp_path / "t" / "x.tar"
    tar_path.parent.mkdir()
    tar_path.write_bytes(b"not a tar archive" * 40)
    spec = FileSpec(path="t/x.tar", extract="tar", extracted="t/inner/list.txt")
    with pytest.raises(DataFileError, match=r"x\.tar: cannot unpack the tar archive"):
        files.extract(spec, tar_path, tmp_path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("other/readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    tar_path.write_bytes(buffer.getvalue())
    with pytest.raises(DataFileError, match=r"unpacked, but .*t/inner/list\.txt is not in it"):
        files.extract(spec, tar_path, tmp_path)


def test_manual_sources_print_their_instructions(tmp_path: Path) -> None:
    where = tmp_path / "mpi3d" / "real3d_complicated_shapes_ordered.npz"
    with pytest.raises(MissingDataError, match=rf"Google Drive .*; save it as {where}"):
        files.download("mpi3d_real_complex", tmp_path, progress=False)
    with pytest.raises(MissingDataError, match=r"save a JPEG .* as .*dsprites/scream\.jpg"):
        files.download("scream_dsprites", tmp_path, progress=False)
    with pytest.raises(MissingDataError, match=r"phizaz/diffae.*place the folder at .*ffhq/ffhq256\.lmdb"):
        files.download("ffhq_lmdb", tmp_path, progress=False)
    with pytest.raises(KeyError, match="no downloadable files for 'nope'"):
        files.download("nope", tmp_path)
