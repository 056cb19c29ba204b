"""``disentkit swap RUN_DIR``: code-swap grids of a run whose model swaps parts of its code.

The command is generic. It opens the run (EMA weights where it has them), draws ``--sources``
and ``--targets`` images from the run's dataset with ``--seed``, and calls the model's

    swap_grids(sources01, targets01, *, spec: str | None, partial: bool, steps: int | None,
               generator: torch.Generator) -> dict[str, Tensor]

``sources01`` / ``targets01``: float NCHW images in [0, 1] on the model's device; ``spec``: the
``--swap`` string in the model's own syntax (None: the model's default set of swaps); ``partial``:
``--partial``; ``steps``: ``--steps`` (None: the model's default sampler steps); ``generator``: a CPU
generator seeded with ``--seed`` for every draw. Each returned entry (name -> picture) is written
as ``NAME.png`` into ``RUN_DIR/swaps/`` (or ``--out``): a uint8 (H, W, 3) picture, a float
(C, H, W) image or float (rows, cols, C, H, W) tiles in [0, 1] (:mod:`disentkit.viz.swaps`).
A model without ``swap_grids`` gets one error line. Invalid ``--swap`` strings are the model's to
refuse, with a :class:`~disentkit.errors.UserError` (one line).

DisDiff: one grid per factor k (``--swap 0,2`` picks factors), cell (i, j) = target i with
factor k's code taken from source j, plus ``x0_strip`` (predicted x0 per factor along the steps).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from disentkit.commands._args import add_weights_options
from disentkit.commands._args import positive_int as _positive
from disentkit.commands._args import seed_int as _seed
from disentkit.commands._trust import add_trust_imports, prepare_runs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "swap",
        help="code-swap grids of a run (DisDiff factors, FDAE concepts)",
        description=(
            "Swap parts of the code between dataset images and draw the results: one PNG per "
            "grid, row 0 the source images, column 0 the targets. Needs a model with code swaps "
            "(disdiff, fdae). Example: disentkit swap runs/disdiff-smoke-seed0 --sources 4 "
            "--targets 4 --steps 10"
        ),
    )
    parser.add_argument("run_dir", type=Path, help="a run directory (config.yaml + checkpoints/)")
    parser.add_argument("--swap", default=None,
                        help="which parts to swap, in the model's syntax (disdiff: factor indices "
                             "such as 0,2; fdae: c1,2-m0); default: the model's default swaps")
    parser.add_argument("--partial", action="store_true",
                        help="the partial variant (disdiff: sample with the swapped factor's field only)")
    parser.add_argument("--sources", type=_positive, default=4, help="source images (default 4)")
    parser.add_argument("--targets", type=_positive, default=4, help="target images (default 4)")
    parser.add_argument("--steps", type=_positive, default=None,
                        help="sampler steps (default: the run's model.sample_steps)")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the images and noise (default 0)")
    add_weights_options(parser)
    parser.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default RUN_DIR/swaps)")
    add_trust_imports(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from disentkit.run_loading import load_run
    from disentkit.viz.swaps import CannotSwapError, write_swaps

    prepare_runs([args.run_dir], args)
    loaded = load_run(args.run_dir, use_ema=not args.no_ema, device=args.device)
    if not callable(getattr(loaded.model, "swap_grids", None)):
        name = loaded.config.model.name
        raise CannotSwapError(f"{name} has no code swaps (it defines no swap_grids); swap grids exist "
                              "for models with a factorised code, such as disdiff and fdae")
    out = args.out or (args.run_dir / "swaps")
    written = write_swaps(loaded.model, loaded.data(), out, num_sources=args.sources,
                          num_targets=args.targets, spec=args.swap, partial=args.partial,
                          steps=args.steps, seed=args.seed)
    for name, path in written.items():
        print(f"{path}  ({name})")
    return 0
