"""``disentkit aggregate DIR... [--by KEY] [--metric M] [--out DIR]``: mean ± std (ddof=1) and n
per setting over seeds, as Markdown (printed), CSV and JSON, plus error-bar and violin plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "aggregate",
        help="mean ± std tables and plots over seeds from evaluated runs",
        description=(
            "Collect config.yaml + results.json of every run below DIR and summarise each setting "
            "over seeds. Example: disentkit aggregate runs/sweep1 --by model.beta --metric "
            "mig.discrete_mig --out runs/sweep1/summary"
        ),
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                        help="run directories or folders of runs")
    parser.add_argument("--by", action="append", default=None,
                        help="config key to group by (repeatable or comma list); default: every "
                             "key that varies across runs except the seed")
    parser.add_argument("--metric", action="append", default=None,
                        help="metric key (mig.discrete_mig) or prefix (mig); repeatable; default all")
    parser.add_argument("--out", type=Path, default=None,
                        help="write summary.md/.csv/.json and plots here")
    parser.add_argument("--x", default=None, help="hyperparameter on the x axis of the error-bar plots")
    parser.add_argument("--violin-by", default=None,
                        help="one violin per value of this key (e.g. model.name); default per setting")
    parser.add_argument("--no-plots", action="store_true",
                        help="write the tables only, no error-bar or violin plots")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from disentkit.experiments.aggregate import aggregate, collect_runs, to_markdown, write_outputs

    runs, skipped = collect_runs(args.dirs)
    for path, why in skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    if not runs:
        print("disentkit aggregate: error: no evaluated runs found", file=sys.stderr)
        return 2
    by = [k for text in args.by for k in text.split(",") if k] if args.by else None
    try:
        by, metrics, groups = aggregate(runs, by=by, metrics=args.metric)
    except KeyError as err:
        print(f"disentkit aggregate: error: {err.args[0]}", file=sys.stderr)
        return 2
    print(f"{len(runs)} runs, {len(groups)} settings")
    print(to_markdown(by, metrics, groups))
    if args.out:
        for path in write_outputs(by, metrics, groups, args.out, plots=not args.no_plots,
                                  x=args.x, violin_by=args.violin_by):
            print(path)
    return 0
