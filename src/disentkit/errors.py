"""The one base class of every error a user can cause (a bad config value, a broken data file, a
run folder that cannot be resumed, a full disk, a missing launcher). The command line prints such
an error as one line and exits with status 2; ``--debug`` (or ``DISENTKIT_DEBUG=1``) shows the
traceback instead. Messages say what was expected, what was found and what to do."""

from __future__ import annotations

import errno


class UserError(Exception):
    """An error caused by the user's input or environment, reported as one line (exit status 2)."""


class ConfigError(UserError, ValueError):
    """A config value or key that cannot be used; the message says which and what is allowed.
    (Defined here so that networks, samplers and metrics can raise it without importing the
    config layer; ``disentkit.config.ConfigError`` is the same class.)"""


class UnscorableDataError(UserError, ValueError):
    """No metric can score this data: it has neither ground-truth factors nor attribute labels,
    or one of its factors never changes (a property of the data, not a failure of the run).
    ``disentkit.evaluation.UnscorableDataError`` is the same class."""


def describe_os_error(err: OSError) -> str | None:
    """One line for an operating-system error a user can fix (full disk, no permission, not
    found), or None when the error is not one of those (then it is a bug and keeps its traceback)."""
    where = f" {err.filename}" if getattr(err, "filename", None) else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device writing{where}; free some space (or choose another " \
               "out_dir / data root) and run the command again"
    if isinstance(err, PermissionError) or err.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied:{where}; make the file readable/writable for this user or " \
               "choose another location"
    if isinstance(err, FileNotFoundError):
        return str(err) if not where else f"no such file or directory:{where}"
    if isinstance(err, IsADirectoryError):
        return f"expected a file but found a directory:{where}"
    if err.errno == errno.EROFS:
        return f"read-only file system:{where}; choose a writable location"
    return None
