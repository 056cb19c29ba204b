"""Downloads against a loopback HTTP server: checksums, interrupted transfers (with and without
Content-Length, chunked), Range resume, stale ``.part`` files, archives cut short, extraction,
network errors, and the ``disentkit data`` command."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from disentkit.cli import main
from disentkit.data import files
from disentkit.data.files import (
    DataFileError,
    DownloadError,
    FileSpec,
    MissingDataError,
    atomic_save_npy,
    download_file,
)

PAYLOAD = bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8))


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``body``; honours ``Range`` (416 past the end); the first ``fail_first`` requests
    stop halfway and drop the connection. ``length`` off: no Content-Length (the end of the
    body is the closed connection); ``chunked`` on: HTTP/1.1 chunked transfer encoding."""

    state = {"fail_first": 0, "requests": [], "range": True, "body": PAYLOAD, "status": 200,
             "length": True, "chunked": False}

    def do_GET(self) -> None:  # noqa: N802
        body, state = self.state["body"], self.state
        header = self.headers.get("Range")
        state["requests"].append(header)
        if state["status"] != 200:
            self.send_error(state["status"])
            return
        start = int(header.split("=")[1].split("-")[0]) if header and state["range"] else 0
        if start >= len(body) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        cut = state["fail_first"] > 0
        state["fail_first"] -= cut
        rest = body[start:]
        sent = rest[: len(rest) // 2] if cut else rest
        if state["chunked"]:
            self.protocol_version = "HTTP/1.1"
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        if state["chunked"]:
            self.send_header("Transfer-Encoding", "chunked")
        elif state["length"]:
            self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        if state["chunked"]:
            for i in range(0, len(sent), 4096):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(sent[i : i + 4096]), sent[i : i + 4096]))
            if not cut:
                self.wfile.write(b"0\r\n\r\n")  # the last chunk: the body is complete
        else:
            self.wfile.write(sent)
        if cut:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # drop the connection mid-transfer
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    _Handler.state.update(fail_first=0, requests=[], range=True, body=PAYLOAD, status=200,
                          length=True, chunked=False)
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
    with pytest.raises(DownloadError, match="failed after 3 attempts.*resumes"):
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
    assert main(["data", "download", "celeba", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("disentkit data: error: ") and "manual download" in err
    assert len(err.strip().splitlines()) == 1


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
    with pytest.raises(DownloadError, match=r"x: http://127\.0\.0\.1:\d+/file\.bin answered HTTP 404"):
        download_file("x", _spec(url), tmp_path, progress=False, sleep=waits.append)
    assert waits == [] and len(state["requests"]) == 1
    assert not (tmp_path / "x" / "file.bin").exists()


def test_server_errors_are_retried(server, tmp_path: Path) -> None:
    url, state = server
    state["status"] = 503
    waits = []
    with pytest.raises(DownloadError, match="failed after 2 attempts"):
        download_file("x", _spec(url), tmp_path, progress=False, retries=1, sleep=waits.append)
    assert waits == [1.0] and len(state["requests"]) == 2
    state["status"] = 200
    assert download_file("x", _spec(url), tmp_path, progress=False).read_bytes() == PAYLOAD


def test_wrong_size_is_reported_before_any_checksum(server, tmp_path: Path) -> None:
    url, _ = server
    spec = FileSpec(path="x/file.bin", url=url + "/file.bin", size=len(PAYLOAD) + 1,
                    checksums={"sha256": hashlib.sha256(PAYLOAD).hexdigest()})
    # the Content-Length already shows a different file: nothing is kept, nothing retried
    with pytest.raises(DataFileError, match=rf"offers {len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 1}"):
        download_file("x", spec, tmp_path, progress=False, sleep=_no_retry)
    assert not list((tmp_path / "x").iterdir())
    spec = FileSpec(path="x/file.bin", url=url + "/file.bin", size=len(PAYLOAD) - 1)
    with pytest.raises(DataFileError, match=rf"offers {len(PAYLOAD)} bytes, expected {len(PAYLOAD) - 1}"):
        download_file("x", spec, tmp_path, progress=False, sleep=_no_retry)
    assert not list((tmp_path / "x").iterdir())


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
    assert files.verify("cars3d", root) == [(str(root / spec.path), "ok (md5)")]
    monkeypatch.setattr(Cars3D, "factor_sizes", (4, 24, 2))
    data = Cars3D(data_root=root)
    assert data.uint8_from_indices(np.array([3 * 24 * 2 + 7 * 2 + 1]))[0, 9, 9].tolist() == [40, 70, 150]


def test_bad_archives_are_reported(tmp_path: Path) -> None:
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


# ---- transfers that cannot be silently wrong -----------------------------------------------------
def _no_retry(seconds: float) -> None:
    pytest.fail(f"the download was retried (backoff {seconds}s) where it should have stopped")


def _npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, images=np.arange(30_000, dtype=np.uint8).reshape(-1, 3))
    return buffer.getvalue()


def _tar_bytes() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for i in range(3):
            info = tarfile.TarInfo(f"inner/f{i}.bin")
            info.size = 1500
            tar.addfile(info, io.BytesIO(bytes([i]) * 1500))
    return buffer.getvalue()


# each archive kind, cut where its reader alone would not notice: the zip in the middle, the tar
# between two members (a header boundary), the gzip in its trailer
_CUT_ARCHIVES = {
    "zip": ("m/x.npz", _npz_bytes, lambda raw: raw[: len(raw) // 2]),
    "tar": ("t/x.tar", _tar_bytes, lambda raw: raw[: 2 * 2048]),
    "gzip": ("g/x.gz", lambda: gzip.compress(PAYLOAD), lambda raw: raw[:-4]),
}


@pytest.mark.parametrize("kind", sorted(_CUT_ARCHIVES))
def test_unverified_archive_cut_without_length_is_not_stored(server, tmp_path: Path, kind: str) -> None:
    """No size, no checksum, no Content-Length: the archive's own ending tells a cut transfer."""
    url, state = server
    path, make, cut = _CUT_ARCHIVES[kind]
    good = make()
    state.update(length=False, body=cut(good))
    spec = FileSpec(path=path, url=f"{url}/{path}")
    with pytest.raises(DataFileError, match=rf"not a complete {kind} file.*deleted the download"):
        download_file("u", spec, tmp_path, progress=False, sleep=_no_retry)
    assert not list((tmp_path / path).parent.iterdir())  # neither the file nor a .part is kept
    state["body"] = good  # once the server has the whole file, the next run gets it
    assert download_file("u", spec, tmp_path, progress=False).read_bytes() == good
    assert files.incomplete(spec, tmp_path / path) is None


def test_cut_without_length_resumes_when_the_size_is_known(server, tmp_path: Path) -> None:
    url, state = server
    state.update(length=False, fail_first=1)
    waits = []
    path = download_file("x", _spec(url), tmp_path, progress=False, sleep=waits.append)
    assert path.read_bytes() == PAYLOAD
    assert state["requests"] == [None, f"bytes={len(PAYLOAD) // 2}-"] and waits == [1.0]


def test_chunked_transfer_cut_before_its_last_chunk_is_resumed(server, tmp_path: Path) -> None:
    url, state = server
    state.update(chunked=True, fail_first=1)
    path = download_file("x", _spec(url), tmp_path, progress=False, sleep=lambda s: None)
    assert path.read_bytes() == PAYLOAD
    assert state["requests"] == [None, f"bytes={len(PAYLOAD) // 2}-"]  # what arrived is kept
    # a chunked body that keeps being cut is a DownloadError naming the cut, the .part kept
    state.update(fail_first=10, requests=[])
    spec = FileSpec(path="c/file.bin", url=url + "/c/file.bin")
    with pytest.raises(DownloadError, match=r"failed after 2 attempts \(IncompleteRead.*resumes it"):
        download_file("c", spec, tmp_path, progress=False, retries=1, sleep=lambda s: None)
    assert 0 < (tmp_path / "c" / "file.bin.part").stat().st_size < len(PAYLOAD)


def test_stale_part_longer_than_the_remote_file_is_discarded_once(server, tmp_path: Path) -> None:
    url, state = server
    part = tmp_path / "x" / "file.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes" * 5000)  # 55,000 bytes: more than the remote 50,000
    assert download_file("x", _spec(url), tmp_path, progress=False, sleep=_no_retry).read_bytes() == PAYLOAD
    assert state["requests"] == ["bytes=55000-", None]  # HTTP 416, then one fresh download


def test_part_holding_the_whole_file_is_accepted_on_416(server, tmp_path: Path) -> None:
    url, state = server
    part = tmp_path / "x" / "file.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD)
    assert download_file("x", _spec(url), tmp_path, progress=False).read_bytes() == PAYLOAD
    assert state["requests"] == [f"bytes={len(PAYLOAD)}-"] and not part.exists()
    # the same length but other bytes: the checksum fails and the .part is deleted
    (tmp_path / "x" / "file.bin").unlink()
    part.write_bytes(bytes(len(PAYLOAD)))
    with pytest.raises(DataFileError, match="sha256 checksum mismatch.*deleted the download"):
        download_file("x", _spec(url), tmp_path, progress=False)
    assert not list(part.parent.iterdir())


def _tgz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_truncated_archive_on_disk_is_moved_aside_and_the_rerun_downloads(server, tmp_path: Path) -> None:
    """An archive left cut short (an older run, a copy by hand) no longer fails every rerun."""
    url, state = server
    good = _tgz({"pack/list.txt": b"a\nb\n", "pack/data.bin": PAYLOAD})
    state["body"] = good
    spec = FileSpec(path="p/pack.tgz", url=url + "/pack.tgz", extract="tar", extracted="p/pack/list.txt")
    archive = tmp_path / "p" / "pack.tgz"
    archive.parent.mkdir()
    archive.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataFileError, match=r"not a complete gzip file.*moved it to .*pack\.tgz\.corrupt"):
        download_file("p", spec, tmp_path, progress=False)
    assert not archive.exists() and (tmp_path / "p" / "pack.tgz.corrupt").exists()
    assert state["requests"] == []  # nothing was fetched for a file already on disk
    assert download_file("p", spec, tmp_path, progress=False).read_text() == "a\nb\n"
    assert (tmp_path / "p" / "pack" / "data.bin").read_bytes() == PAYLOAD


def test_downloaded_archive_that_does_not_unpack_is_deleted(server, tmp_path: Path) -> None:
    url, state = server
    state["body"] = _tgz({"other/readme.txt": b"hi"})
    spec = FileSpec(path="p/pack.tgz", url=url + "/pack.tgz", extract="tar", extracted="p/pack/list.txt",
                    checksums={"md5": hashlib.md5(state["body"]).hexdigest()})
    with pytest.raises(DataFileError, match=r"pack/list\.txt is not in it; deleted pack\.tgz; run"):
        download_file("p", spec, tmp_path, progress=False)
    assert not (tmp_path / "p" / "pack.tgz").exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def test_unreachable_host_is_one_line_through_the_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setitem(files.FILES, "toy_file", (_spec(url),))
    assert main(["data", "download", "toy_file", "--no-progress", "--retries", "0",
                 "--data-root", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith(f"disentkit data: error: toy_file: download of {url}/file.bin "
                                   "failed after 1 attempt (")
    assert "refused" in captured.err and f"by hand to {tmp_path / 'x' / 'file.bin'}" in captured.err


def test_http_error_is_one_line_through_the_cli(server, tmp_path: Path, monkeypatch, capsys) -> None:
    url, state = server
    state["status"] = 404
    monkeypatch.setitem(files.FILES, "toy_file", (_spec(url),))
    assert main(["data", "download", "toy_file", "--no-progress", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"error: toy_file: {url}/file.bin answered HTTP 404 (Not Found); the file may have moved" in err


def test_cli_list_shows_each_files_size_and_checksum_state(tmp_path: Path, monkeypatch, capsys) -> None:
    url = "http://127.0.0.1:9"
    monkeypatch.setitem(files.FILES, "toy_files", (
        FileSpec(path="t/hashed.bin", url=url, size=1234567, checksums={"sha256": "0" * 64, "md5": "0" * 32}),
        FileSpec(path="t/sized.bin", url=url, size=42),
        FileSpec(path="t/cut.tar", url=url),
        FileSpec(path="t/notes.txt", url=url),
    ))
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "sized.bin").write_bytes(b"x" * 42)
    assert main(["data", "list", "--data-root", str(tmp_path)]) == 0
    rows = {line.split()[-1]: line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith("      ")}
    assert rows["t/hashed.bin"][:4] == ["1,234,567", "B", "sha256", "missing"]
    assert rows["t/sized.bin"][:5] == ["42", "B", "size", "only", "present"]
    assert rows["t/cut.tar"][:7] == ["size", "unknown", "unverified", "+", "tar", "end", "missing"]
    assert rows["t/notes.txt"][:4] == ["size", "unknown", "unverified", "missing"]
    assert rows["smallnorb/smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat.gz"][:3] == [
        "131,896,188", "B", "sha256"]
    assert rows["mpi3d/mpi3d_real.npz"][2:5] == ["unverified", "+", "zip"]
