"""``disentkit masks RUN_DIR``: the N concept masks FDAE's CMFNet gives each image, side by side
(wuancong/FDAE ``conditional_image_sample.py --save_mask``), one row per image, as one PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from disentkit.commands._args import positive_int as _positive
from disentkit.commands._trust import add_trust_imports, prepare_runs


def _index_list(value: str) -> list[int]:
    try:
        numbers = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        numbers = []
    if not numbers or any(n < 0 for n in numbers):
        raise argparse.ArgumentTypeError(f"expected dataset indices like 0,17,523, got {value[:40]!r}")
    return numbers


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "masks",
        help="the concept masks of a mask-based run (FDAE), side by side per image",
        description=(
            "Encode dataset images with a trained FDAE run and write one PNG with a row per image: "
            "the image, its N concept masks (white = the concept owns the pixel; the masks sum to "
            "1 at every pixel) and an argmax map in one colour per concept. Example: disentkit "
            "masks runs/fdae-shapes3d_like-seed0 --n 6"
        ),
    )
    parser.add_argument("run_dir", type=Path, help="a run directory (config.yaml + checkpoints/)")
    parser.add_argument("--n", type=_positive, default=8, help="number of images (default 8)")
    parser.add_argument("--indices", type=_index_list, default=None,
                        help="dataset indices to show, comma separated (default: --n drawn with --seed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image draw (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device for the model (cpu, cuda)")
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default RUN_DIR/masks.png)")
    add_trust_imports(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from disentkit.run_loading import load_run
    from disentkit.viz.fdae_views import write_masks

    prepare_runs([args.run_dir], args)
    loaded = load_run(args.run_dir, device=args.device)
    out = args.out or (args.run_dir / "masks.png")
    path, count, concepts = write_masks(loaded.model, loaded.data(), out, num=args.n,
                                        indices=args.indices, seed=args.seed)
    print(f"{path}  ({count} images x {concepts} masks)")
    return 0
