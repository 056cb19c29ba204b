"""``disentkit quickstart``: the main job on the built-in data, on a CPU, in minutes.

Trains the ``quickstart/sprites`` preset (a beta-TCVAE on the procedural dSprites-compatible
``sprites`` dataset at 32x32), evaluates it with the fast metric preset and writes the run's
HTML report. Extra ``key=value`` overrides apply as in ``disentkit train``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quickstart",
        help="train, evaluate and report a beta-TCVAE on the built-in sprites data (CPU, minutes)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides (e.g. train.steps=500)")
    parser.add_argument("--out", default="runs", help="where the run directory goes (default: runs)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import disentkit
    from disentkit.config import load_config
    from disentkit.evaluation import headline_scores

    config = load_config("quickstart/sprites", [f"out_dir={args.out}", *args.overrides])
    # A second quickstart goes into a fresh directory instead of refusing to overwrite the first.
    base, number = config.run_name, 1
    while (Path(config.out_dir) / config.run_name / "checkpoints").exists():
        number += 1
        config.name = f"{base}-{number}"
    run_dir = disentkit.train(config)
    print(f"\nrun directory: {run_dir}")
    results_path = run_dir / "results.json"
    if results_path.exists():
        scores = headline_scores(json.loads(results_path.read_text()))
        print("scores: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    report = run_dir / "report.html"
    if report.exists():
        print(f"report: {report} (open it in a browser)")
    return 0
