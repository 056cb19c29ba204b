"""``disentkit runs [DIR] [--sort KEY] [--reverse] [--json]``: every run folder below DIR with
its status, method, dataset, seed, progress and headline metrics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "runs",
        help="list run folders: status, method, dataset, seed, steps, headline metrics",
        description=(
            "List every run folder (a folder holding config.yaml) at or below DIR as a table. "
            "Example: disentkit runs runs/sweep1 --sort=-mig"
        ),
    )
    parser.add_argument("dir", nargs="?", type=Path, default=Path("runs"), metavar="DIR",
                        help="folder of runs, searched recursively (default: runs)")
    parser.add_argument("--sort", default=None, metavar="KEY",
                        help="sort by a column: run, status, method, dataset, seed, step, steps or "
                             "a metric (mig, dci, ...); numbers sort numerically; --sort=-KEY "
                             "sorts descending")
    parser.add_argument("--reverse", action="store_true", help="sort descending")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of rows instead of the table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from disentkit.experiments.runs_table import (
        format_runs,
        list_runs,
        row_notes,
        sort_rows,
        to_json,
    )

    rows = sort_rows(list_runs(args.dir), args.sort, reverse=args.reverse)
    if args.json:
        sys.stdout.write(to_json(rows) + "\n")
        return 0
    if not rows:
        sys.stdout.write(f"no run folders (holding config.yaml) below {args.dir}\n")
        return 0
    sys.stdout.write(format_runs(rows))
    for note in row_notes(rows):  # why a folder is unreadable or unknown, off the table
        print(note, file=sys.stderr)
    return 0
