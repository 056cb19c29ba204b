"""``disentkit data``: list known datasets and their files, download them, verify checksums.

All three honour ``--data-root`` (else ``DISENTKIT_DATA``, else the user cache folder). Errors a
user can fix (an unreachable host, a bad file, a manual download) reach the command line as
:class:`~disentkit.errors.UserError`, printed as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # disentkit.data imports numpy and torch: the handlers import it when they run
    from disentkit.data.files import FileSpec


class _NamesHelp(argparse.HelpFormatter):
    """Fills the known dataset names into a help text's ``{names}`` only when the help is shown,
    so that building the parser (every ``disentkit`` call) does not import disentkit.data."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text and "{names}" in text:
            from disentkit.data.files import FILES

            text = text.replace("{names}", ", ".join(sorted(FILES)))
        return text


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="list, download and verify dataset files")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    for name, help_text in (
        ("list", "known datasets, whether their files are present, and where"),
        ("download", "download a dataset's files (resumes, verifies checksums)"),
        ("verify", "check the size and checksums of a dataset's files"),
    ):
        sub = actions.add_parser(name, help=help_text, description=help_text, formatter_class=_NamesHelp)
        if name != "list":
            sub.add_argument("name", help="dataset file set, one of: {names}")
        sub.add_argument("--data-root", default=None, help="dataset folder (default: $DISENTKIT_DATA)")
        if name == "download":
            sub.add_argument("--no-progress", action="store_true", help="hide the progress bar")
            sub.add_argument("--retries", type=int, default=4, metavar="N",
                             help="retries of a failed network transfer, with backoff (default 4)")
        sub.set_defaults(handler=_handlers()[name])
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])


def _handlers():
    return {"list": _list, "download": _download, "verify": _verify}


def _list(args: argparse.Namespace) -> int:
    from disentkit.data.files import FILES, status
    from disentkit.data.root import resolve_data_root
    from disentkit.registry import DATASETS

    root = resolve_data_root(args.data_root)
    print(f"data root: {root}")
    for name in DATASETS.names():
        if not any(key == name or key.startswith(name + "_") for key in FILES):
            print(f"  {name:<20} no files of its own (procedural, data.path or data.base)")
    for key in sorted(FILES):
        rows = status(key, root)
        present = all(ok for _, ok in rows)
        how = "download" if all(spec.url for spec, _ in rows) else "manual"
        print(f"  {key:<20} {'present' if present else 'missing':<8} {how:<8} {root / rows[0][0].final_path}")
        for spec, ok in rows:
            print(f"      {_size(spec):>14}  {_checked(spec):<22} {'present' if ok else 'missing':<8}"
                  f" {spec.path}")
    return 0


def _size(spec: FileSpec) -> str:
    return f"{spec.size:,} B" if spec.size is not None else "size unknown"


def _checked(spec: FileSpec) -> str:
    """The checksum state, plus the archive-ending check where no checksum is known."""
    from disentkit.data.files import archive_kind, checksum_state

    state = checksum_state(spec)
    kind = archive_kind(spec)
    return f"{state} + {kind} end" if kind and state in ("size only", "unverified") and spec.url else state


def _download(args: argparse.Namespace) -> int:
    from disentkit.data.files import download
    from disentkit.data.root import resolve_data_root

    root = resolve_data_root(args.data_root)
    show = not args.no_progress and sys.stderr.isatty()
    try:
        paths = download(args.name, root, progress=show, retries=max(args.retries, 0))
    except KeyError as err:
        print(f"disentkit data download: error: {err.args[0]}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from disentkit.data.files import FILES, verify
    from disentkit.data.root import resolve_data_root

    if args.name not in FILES:
        print(f"disentkit data verify: unknown '{args.name}'; known: {', '.join(sorted(FILES))}",
              file=sys.stderr)
        return 2
    rows = verify(args.name, resolve_data_root(args.data_root))
    for path, verdict in rows:
        print(f"{verdict:<24} {path}" if not verdict.startswith("BAD") else f"{verdict}")
    return 1 if any(v.startswith(("BAD", "missing")) for _, v in rows) else 0
