"""Run logging: ``metrics.jsonl`` always, TensorBoard when asked for.

A line of ``metrics.jsonl`` is appended with one unbuffered write and cut off again when that
write fails (a full disk), so the file holds whole lines only. A torn line that a kill still left
behind is dropped with a warning by the reader and by the truncation on resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from disentkit.training.checkpoint import warn, write_text_atomic


def _parse(data: bytes) -> list[tuple[int, dict[str, Any] | None]]:
    """``(end offset, record or None when not a JSON object)`` for each non-blank line."""
    lines, start = [], 0
    while start < len(data):
        newline = data.find(b"\n", start)
        end = len(data) if newline < 0 else newline + 1
        text = data[start:end].strip()
        if text:
            try:
                record = json.loads(text)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            lines.append((end, record if isinstance(record, dict) else None))
        start = end
    return lines


def _warn_dropped(path: Path, lines: list[tuple[int, dict[str, Any] | None]]) -> None:
    bad = [number for number, (_, record) in enumerate(lines, 1) if record is None]
    if not bad:
        return
    if bad == [len(lines)]:
        warn(f"{path}: dropped its torn last line {bad[0]} (a write cut short by a kill or a full disk)")
    else:
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        warn(f"{path}: dropped {len(bad)} line(s) that are not JSON records (line {shown})")


def _truncate_after(path: Path, step: int) -> None:
    """Drop the records logged after ``step`` (and torn lines) so the file reads as if the run had
    stopped at ``step``. Cut in place when the kept lines are a prefix (a full disk cannot stop
    that), otherwise rewritten atomically."""
    data = path.read_bytes()
    lines = _parse(data)
    _warn_dropped(path, lines)
    keep = [r is not None and r.get("step", 0) <= step for _, r in lines]
    kept_prefix = keep.index(False) if False in keep else len(keep)
    if not any(keep[kept_prefix:]):
        size = lines[kept_prefix - 1][0] if kept_prefix else 0
        with path.open("r+b") as handle:
            handle.truncate(size)
            if size and data[size - 1:size] != b"\n":  # a whole last record without its newline
                handle.seek(size)
                handle.write(b"\n")
        return
    records = [r for (_, r), k in zip(lines, keep) if k]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


class JsonlLogger:
    """Writes one JSON object per logged step. A fresh run (``resume_step`` None) starts an empty
    file; on resume, lines past the checkpoint's step are dropped so the file reads as if the run
    had never stopped."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            _truncate_after(self.path, resume_step)
        # Unbuffered: each record is one write, rolled back by size if the write fails.
        self._handle = self.path.open("ab" if resume_step is not None else "wb", buffering=0)
        self._size = self._handle.seek(0, os.SEEK_END)

    def log(self, record: dict[str, Any]) -> None:
        data = memoryview((json.dumps(record) + "\n").encode())
        try:
            while data:
                written = self._handle.write(data)
                data = data[written or 0:]
        except OSError as err:
            self._roll_back()
            err.filename = err.filename or str(self.path)
            raise
        self._size = self._handle.tell()

    def _roll_back(self) -> None:
        """Cut a partly written record off again (best effort: truncating needs no space)."""
        try:
            os.ftruncate(self._handle.fileno(), self._size)
        except OSError:
            pass

    def close(self) -> None:
        self._handle.close()


class TensorBoardLogger:
    def __init__(self, directory: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # pragma: no cover - depends on the optional extra
            raise ImportError(
                "log.tensorboard=true needs the tensorboard package: pip install 'disentkit[tensorboard]'"
            ) from err
        self.writer = SummaryWriter(str(directory))

    def log(self, record: dict[str, Any]) -> None:
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; torn or foreign lines are dropped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    lines = _parse(path.read_bytes())
    _warn_dropped(path, lines)
    return [record for _, record in lines if record is not None]
