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

    state = {"fail_first": 0, "requests": [], "range": True, "body": PAYLOAD}

    def do_GET(self) -> None:  # noqa: N802
        body = self.state["body"]
        self.state["requests"].append(self.headers.get("Range"))
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
    _Handler.state.update(fail_first=0, requests=[], range=True, body=PAYLOAD)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
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
