"""``disentkit compare RUN RUN ... [--json]``: the runs' differing config keys and their scores
side by side."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="two or more runs side by side: config differences and scores",
        description=(
            "Show the flattened config keys whose values differ between the runs, then every "
            "score in their results.json (headline scores marked *). Example: disentkit compare "
            "runs/sweep1/000-beta=1-seed=0 runs/sweep1/002-beta=4-seed=0"
        ),
    )
    parser.add_argument("runs", nargs="*", metavar="RUN", help="run folders (two or more)")
    parser.add_argument("--json", action="store_true",
                        help="print the comparison as JSON instead of tables")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from disentkit.experiments.runs_table import compare_runs, format_comparison, to_json

    comparison = compare_runs(args.runs)
    sys.stdout.write(to_json(comparison.to_dict()) + "\n" if args.json else format_comparison(comparison))
    return 0
