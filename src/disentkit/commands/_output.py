"""Printing a command's output to a pipe that may close early (``disentkit runs | head``)."""

from __future__ import annotations

import os
import sys


def write_stdout(text: str) -> None:
    """Write ``text`` to standard output; when the reader has closed the pipe, stop quietly like
    other Unix tools instead of ending with a BrokenPipeError traceback."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at devnull so that flush cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
