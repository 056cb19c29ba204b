"""``disentkit train [preset=NAME] [key=value ...]`` and ``disentkit train --resume RUN_DIR``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a preset with key=value overrides",
        description=(
            "Train a model. Example: disentkit train preset=betavae/sprites model.beta=4 seed=3. "
            "Overrides are key=value with dotted keys; see `disentkit presets` for the presets."
        ),
    )
    parser.add_argument("overrides", nargs="*", help="preset=NAME and key=value overrides")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue a run from its newest intact checkpoint (last.pt, else "
                             "prev.pt); overrides that change the model's shape are refused, "
                             "optimiser settings (optim.lr, ...) given or edited win over the saved ones")
    parser.add_argument("--data-root", help="directory holding dataset files (also DISENTKIT_DATA)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--trust-imports", action="store_true",
                        help="with --resume: import the modules the run's config.yaml lists under "
                             "imports (runs their code: only for run folders you trust)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    import disentkit
    from disentkit.config import load_config, load_config_file
    from disentkit.run_lock import EXIT_LOCKED, RunLockedError
    from disentkit.training.engine import NonFiniteLossError

    overrides = list(args.overrides)
    if args.data_root:
        overrides.append(f"data_root={args.data_root}")
    if args.resume:
        run_dir = Path(args.resume)
        config_path = run_dir / "config.yaml"
        if not config_path.is_file():
            raise FileNotFoundError(f"--resume {run_dir}: no config.yaml there; is it a run directory?")
        # The run folder's own imports are only honoured with --trust-imports (or imports=...).
        config = load_config_file(config_path, overrides, trust_imports=args.trust_imports)
    else:
        config = load_config(None, overrides)
        run_dir = None
    if args.print_config:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False))
        return 0
    try:
        path = disentkit.train(config, run_dir=run_dir, resume=bool(args.resume))
    except NonFiniteLossError as err:
        print(f"disentkit train: error: {err}", file=sys.stderr)
        return 1
    except RunLockedError as err:
        print(f"disentkit train: error: {err}", file=sys.stderr)
        return EXIT_LOCKED
    except FileExistsError as err:  # a new run into a directory that already holds one
        print(f"disentkit train: error: {err}", file=sys.stderr)
        return 2
    from disentkit.training.distributed import is_global_zero

    if is_global_zero():
        print(f"run directory: {path}")
    return 0
