"""The ``disentkit`` console script. Each subcommand lives in ``disentkit.commands.<name>`` and
registers itself through ``register(subparsers)``, so adding a command means adding one file."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from disentkit import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="disentkit",
        description="Train, evaluate and inspect disentangled representation learning models.",
    )
    parser.add_argument("--version", action="version", version=f"disentkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import disentkit.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"disentkit.commands.{info.name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from disentkit.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, FileNotFoundError) as err:
        print(f"disentkit {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
