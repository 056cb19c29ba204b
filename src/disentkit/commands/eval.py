"""``disentkit eval RUN_DIR [--metrics ...] [--preset study|fast] [--seed N] [--representation mean|sampled]``

Writes ``results.json`` (scores, parameters, protocol, library versions) into the run and prints
a table (:func:`disentkit.evaluation.evaluate_run`)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="score a trained run with the disentanglement metrics (writes results.json)"
    )
    parser.add_argument("run_dir")
    parser.add_argument("--metrics", nargs="+", help="metric names (default: the run's eval.metrics)")
    parser.add_argument("--preset", choices=["study", "fast"], help="sample sizes (default: the run's)")
    parser.add_argument("--seed", type=int, help="metric random seed (default: the run's eval.seed)")
    parser.add_argument("--representation", choices=["mean", "sampled"], default="mean",
                        help="posterior mean (default, dlib's headline) or one posterior sample")
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from disentkit.evaluation import evaluate_run

    try:
        evaluate_run(args.run_dir, args.metrics, args.preset, args.seed, device=args.device,
                     representation=args.representation)
    except (ValueError, LookupError) as err:  # bad metric names, datasets without labels, ...
        print(f"disentkit eval: error: {err}", file=sys.stderr)
        return 2
    return 0
