"""``--trust-imports`` for the commands that open a run folder (eval, report, traverse, analyze,
train --resume).

A run's ``config.yaml`` may list modules under ``imports`` (user code that registers a model or a
dataset). Opening a run folder never imports them on its own, since a shared folder could ship a
module of that name next to its config; the user allows it for a folder they trust with this flag.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

HELP = ("import the modules the run's config.yaml lists under imports (this runs their code: only "
        "for run folders you trust)")


def add_trust_imports(parser: argparse.ArgumentParser) -> None:
    """Add the ``--trust-imports`` flag to a command that opens run folders."""
    parser.add_argument("--trust-imports", action="store_true", help=HELP)


def prepare_runs(run_dirs: Iterable[str | Path], args: argparse.Namespace) -> None:
    """Before a command reads the runs: import their ``imports`` when ``--trust-imports`` was
    given, else fail with one line naming the modules (:class:`UntrustedImportsError`)."""
    from disentkit.config import import_run_modules

    for run_dir in run_dirs:
        import_run_modules(run_dir, trusted=bool(getattr(args, "trust_imports", False)))
