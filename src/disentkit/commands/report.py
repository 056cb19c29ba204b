"""``disentkit report RUN_DIR``: a self-contained HTML page per run (:mod:`disentkit.viz.report`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from disentkit.commands._trust import add_trust_imports, prepare_runs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write an HTML report of a run (config, curves, metrics, traversals)",
        description=(
            "Write RUN_DIR/report.html: config, training curves, reconstructions, traversal GIFs, "
            "metric table and MI heat map, all images inlined (opens without a server)."
        ),
    )
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                        help="one or more trained run folders; one report each")
    parser.add_argument("--order", default="factor", choices=["kl", "factor", "index"],
                        help="traversal row order: by the factor each latent captures (MI, "
                             "default), by per-dim KL, by index")
    parser.add_argument("--limit", type=float, default=3.0,
                        help="traversals span latent values in [-L, L] (default 3)")
    parser.add_argument("--steps", type=int, default=10, help="traversal values per row (default 10)")
    parser.add_argument("--max-latents", type=int, default=16,
                        help="traversal rows shown at most (default 16)")
    parser.add_argument("--device", default="cpu", help="torch device for the model (cpu, cuda)")
    parser.add_argument("--out", type=Path, default=None,
                        help="HTML path (only with one RUN_DIR; default RUN_DIR/report.html)")
    add_trust_imports(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from disentkit.viz.report import write_report

    if args.out and len(args.run_dirs) > 1:
        raise FileNotFoundError("--out names one file; give one RUN_DIR with it")
    prepare_runs(args.run_dirs, args)
    for run_dir in args.run_dirs:
        path = write_report(
            run_dir, args.out, order=args.order, limit=args.limit, steps=args.steps,
            max_latents=args.max_latents, device=args.device,
        )
        print(path)
    return 0
