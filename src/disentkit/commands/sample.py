"""``disentkit sample RUN_DIR``: a PNG grid of samples from a generative run (diffusion runs use
their sampler, VAEs decode prior draws; EMA weights where the run has them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from disentkit.commands._args import add_weights_options
from disentkit.commands._args import positive_int as _positive
from disentkit.commands._args import seed_int as _seed
from disentkit.commands._trust import add_trust_imports, prepare_runs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="a PNG grid of samples from a generative run",
        description=(
            "Draw samples from a trained run and write them as one PNG grid: diffusion runs (ddpm) "
            "run their sampler from noise, VAE-family runs decode prior draws z ~ N(0, I). The "
            "run's EMA weights are used where it has them. Example: disentkit sample "
            "runs/ddpm-sprites-seed0 --n 64 --steps 50 --seed 1"
        ),
    )
    parser.add_argument("run_dir", type=Path, help="a run directory (config.yaml + checkpoints/)")
    parser.add_argument("--n", type=_positive, default=64, help="number of samples (default 64)")
    parser.add_argument("--steps", type=_positive, default=None,
                        help="DDIM steps of a diffusion run (default: its model.sample_steps)")
    parser.add_argument("--sampler", choices=["ddim", "ddpm"], default=None,
                        help="diffusion sampler: ddim (--steps steps) or ddpm (ancestral, all T "
                             "steps); default: the run's model.sampler")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the noise (default 0)")
    parser.add_argument("--per-row", type=_positive, default=None,
                        help="images per grid row (default: about square)")
    add_weights_options(parser)
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default RUN_DIR/samples.png)")
    add_trust_imports(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from disentkit.run_loading import load_run
    from disentkit.viz.samples import describe, write_samples

    prepare_runs([args.run_dir], args)
    loaded = load_run(args.run_dir, use_ema=not args.no_ema, device=args.device)
    out = args.out or (args.run_dir / "samples.png")
    path = write_samples(loaded.model, out, num=args.n, seed=args.seed, steps=args.steps,
                         sampler=args.sampler, per_row=args.per_row)
    print(f"{path}  ({args.n} samples, {describe(loaded.model, args.steps, args.sampler)}, seed {args.seed})")
    return 0
