"""Run files that a kill, a damaged disk or a full disk cannot leave broken.

* Every file is written to a temporary file beside its target, fsynced, then renamed, so a run
  killed at any moment leaves either the old or the new file, never a truncated one. Temporary
  files are created with mode 0666 less the umask, like every other file of the run.
* A checkpoint file is a short header (format line, then the sha256 and length of the payload)
  followed by the ``torch.save`` payload. Every load checks both, so a truncated, empty or
  bit-flipped file is reported instead of being loaded. Loading uses ``weights_only=True``: no
  pickled code is executed.
* A run keeps two checkpoints, ``checkpoints/last.pt`` and the one before it, ``prev.pt``;
  :func:`load_latest` falls back on ``prev.pt`` (with a warning) when ``last.pt`` is missing or
  damaged.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import secrets
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import torch

from disentkit.errors import UserError

#: the checkpoint folder of a run directory and the two files kept in it
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
PREVIOUS = "prev.pt"

_MAGIC = b"disentkit-checkpoint 1\n"
_ZIP_MAGIC = b"PK\x03\x04"  # a plain torch.save file (written before checksums existed)
_MAX_HEADER = 200


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, damaged or does not fit the run's config. ``reason`` is the
    message without the file's path (for messages that name several files)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


def _damaged(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} {reason}", reason)


class DiskFullError(UserError):
    """The device holding the run filled up while the run was written."""


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` is the operating system's "no space left" (or "quota exceeded")."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


# ---- atomic writes ----------------------------------------------------------------------------
def _temporary_beside(path: Path) -> tuple[int, Path]:
    """Create ``.NAME.<random>.tmp`` beside ``path``; the mode 0o666 is reduced by the umask
    (``mkstemp`` would make it 0600, unlike the rest of the run)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def _write_atomic(path: Path, mode: str, write: Callable[[IO[Any]], None],
                  replace: Callable[[Path, Path], None] = os.replace) -> None:
    """Write through ``write`` into a temporary file beside ``path``, fsync, then ``replace``
    (rename) it onto ``path``; the temporary file is removed if anything fails, so ``path`` is
    always old or complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary_beside(path)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and not err.filename:
            err.filename = str(path)  # a failed write names no file otherwise
        raise


def write_text_atomic(path: Path, text: str) -> None:
    _write_atomic(path, "w", lambda handle: handle.write(text))


def write_text_best_effort(path: Path, text: str) -> bool:
    """Write ``text`` atomically or, when that fails (a full disk has no room for the temporary
    file), over the existing file in place, which needs no new space for a small file. Returns
    whether it was written; never raises an ``OSError``."""
    try:
        write_text_atomic(path, text)
        return True
    except OSError:
        pass
    try:
        data = text.encode()
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, data)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
        return True
    except OSError:
        return False


def remove_orphaned_temporaries(run_dir: Path) -> list[Path]:
    """Remove temporary files that a process killed while writing left behind (checkpoints,
    summary, config, metrics log); returns them. Call only while holding the run."""
    run_dir = Path(run_dir)
    patterns = [(run_dir / CHECKPOINT_DIR, f".{name}.*.tmp") for name in (LAST, PREVIOUS)]
    patterns += [(run_dir, f".{name}.*.tmp") for name in ("summary.json", "config.yaml", "metrics.jsonl")]
    removed = []
    for folder, pattern in patterns:
        for path in folder.glob(pattern) if folder.is_dir() else ():
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
    return removed


# ---- checkpoint files -------------------------------------------------------------------------
def encode_checkpoint(state: dict[str, Any]) -> list[bytes]:
    """The bytes of a checkpoint file holding ``state``: header (with the payload's sha256 and
    length) and payload, as chunks to write one after the other."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    return [_MAGIC + f"sha256 {digest} {len(payload)}\n".encode(), payload]


def _write_chunks(chunks: Iterable[bytes]) -> Callable[[IO[Any]], None]:
    def write(handle: IO[Any]) -> None:
        for chunk in chunks:
            handle.write(chunk)
    return write


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` as one checksummed checkpoint file at ``path`` (atomically)."""
    _write_atomic(path, "wb", _write_chunks(encode_checkpoint(state)))


def _keep_as_previous(tmp: Path, last: Path) -> None:
    """Rename ``tmp`` onto ``last`` after keeping the current ``last`` as ``prev.pt``. A hard link
    keeps ``last`` in place until the final rename; where links are not supported, ``last`` is
    moved (a kill in between leaves ``prev.pt``, which :func:`load_latest` falls back on)."""
    previous = last.with_name(PREVIOUS)
    if last.exists():
        link = previous.with_name(f".{PREVIOUS}.{secrets.token_hex(6)}.tmp")
        try:
            os.link(last, link)
            os.replace(link, previous)
        except OSError:
            if link.exists():
                link.unlink()
            os.replace(last, previous)
    os.replace(tmp, last)


def write_checkpoint(chunks: list[bytes], directory: Path) -> Path:
    """Write encoded checkpoint ``chunks`` as ``directory/last.pt``, the former one kept as
    ``prev.pt``; returns the path written."""
    last = Path(directory) / LAST
    _write_atomic(last, "wb", _write_chunks(chunks), replace=_keep_as_previous)
    return last


def _decode(path: Path, data: bytes) -> bytes:
    """The verified payload of checkpoint file bytes ``data`` (CheckpointError if damaged)."""
    if data.startswith(_ZIP_MAGIC):
        return data  # written before checksums: nothing to verify
    if not data:
        raise _damaged(path, "is empty (0 bytes)")
    if not data.startswith(_MAGIC):
        raise _damaged(path, "is not a disentkit checkpoint (unknown header)")
    end = data.find(b"\n", len(_MAGIC), len(_MAGIC) + _MAX_HEADER)
    fields = data[len(_MAGIC):end].decode("ascii", "replace").split() if end > 0 else []
    if len(fields) != 3 or fields[0] != "sha256" or not fields[2].isdigit():
        raise _damaged(path, "is damaged (its header is unreadable)")
    payload = data[end + 1:]
    if len(payload) != int(fields[2]):
        raise _damaged(path, f"is truncated or damaged ({len(payload)} of {fields[2]} bytes)")
    if hashlib.sha256(payload).hexdigest() != fields[1]:
        raise _damaged(path, "is damaged (its sha256 checksum does not match)")
    return payload


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load one checkpoint file, verifying its checksum (CheckpointError when missing or damaged)."""
    return load_checkpoint_with_digest(path, map_location)[0]


def load_checkpoint_with_digest(
    path: Path, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], str]:
    """:func:`load_checkpoint` and the sha256 the file's header records (verified against the
    payload); for a file written before checksums, the sha256 of the whole file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; a run directory keeps its checkpoints in {CHECKPOINT_DIR}/"
        )
    data = path.read_bytes()
    payload = _decode(path, data)
    digest = hashlib.sha256(data).hexdigest() if payload is data else \
        data[len(_MAGIC):].split(b"\n", 1)[0].split()[1].decode("ascii")
    return _load_payload(path, payload, map_location), digest


def _load_payload(path: Path, payload: bytes, map_location: str | torch.device) -> dict[str, Any]:
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # a damaged legacy file or a foreign one
        raise _damaged(path, f"cannot be read ({str(err)[:200]})") from err
    if not isinstance(state, dict):
        raise _damaged(path, "holds no disentkit training state")
    return state


def warn(message: str) -> None:
    """Print ``warning: MESSAGE`` on standard error (from the main process only)."""
    from disentkit.training.distributed import is_global_zero

    if is_global_zero():
        print(f"warning: {message}", file=sys.stderr, flush=True)


def load_latest(directory: Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path]:
    """The newest intact checkpoint of a run's checkpoint ``directory`` and its path: ``last.pt``,
    or ``prev.pt`` (with a warning naming both) when ``last.pt`` is missing or damaged.
    CheckpointError when neither is intact."""
    directory = Path(directory)
    problems: list[str] = []
    for name in (LAST, PREVIOUS):
        path = directory / name
        if not path.exists():
            problems.append(f"{name} is missing")
            continue
        try:
            state = load_checkpoint(path, map_location)
        except CheckpointError as err:
            problems.append(f"{name} {err.reason}")
            continue
        if name != LAST:
            warn(f"{directory / problems[0]}; using {path} (step {state.get('step', '?')}) instead")
        return state, path
    if all(problem.endswith(" is missing") for problem in problems):
        raise CheckpointError(
            f"no checkpoint in {directory} (neither {LAST} nor {PREVIOUS} exists): the run has not "
            "saved one yet; train it without --resume to write one"
        )
    raise CheckpointError(
        f"no intact checkpoint in {directory} ({'; '.join(problems)}); the run cannot be loaded "
        f"or resumed: move {directory} aside and train the run again without --resume"
    )
