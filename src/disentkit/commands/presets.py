"""``disentkit presets``: list the packaged presets with their sources."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("presets", help="list packaged presets")
    parser.add_argument("filter", nargs="?", default="", help="only names containing this text")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from importlib import resources

    import yaml

    from disentkit.config import preset_names

    for name in preset_names():
        if args.filter not in name:
            continue
        text = (resources.files("disentkit") / "configs" / f"{name}.yaml").read_text()
        source = (yaml.safe_load(text) or {}).get("source", "")
        print(f"{name:40s} {source}")
    return 0
