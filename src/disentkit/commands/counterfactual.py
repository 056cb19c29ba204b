"""``disentkit counterfactual RUN_DIR --image A --image B [--blocks START:WIDTH ...] [--alphas ...]``

DiTi's counterfactual generation (Yue et al., ICLR 2024; ``yue-zhongqi/diti``
``eval/counterfactual_generation.py``) on a ``pdae`` or ``diti`` run: both images are encoded and
DDIM-inverted; for each code segment (``START:WIDTH`` in blocks of the model's partition, a DiTi
block being one time-step interval, a PDAE block one dimension) the segment of A's code is lerped
towards B's, ``z' = z_A - z_A K + lerp(z_A K, z_B K, alpha)``, the inverted noises are slerped and
the image is regenerated (DiTi: masked guided DDIM). As in the reference, each segment also gets a
second row with the same lerp in B's context (``z_B - z_B K + ...``; ``--context a`` or ``b`` draws
one of the two). Writes one labelled PNG grid: rows = segments (x contexts), columns = alphas,
framed by the two inputs. Defaults as the reference: segments (2, 4), (16, 8), (24, 8), (32, 32) of
64 blocks (scaled to models with another number of blocks) and alphas 0, .25, .5, .75, 1.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from disentkit.commands._args import add_weights_options
from disentkit.commands._args import positive_int as _positive
from disentkit.commands._trust import add_trust_imports, prepare_runs
from disentkit.errors import UserError


class ImageInputError(UserError, ValueError):
    """An ``--image`` that is neither a readable image file nor an item of the run's dataset."""


class NotAnAutoencoderError(UserError, TypeError):
    """The run's model has no code blocks and DDIM inversion (not a pdae / diti run)."""


def _block(value: str) -> tuple[int, int]:
    start, _, width = value.partition(":")
    try:
        pair = (int(start), int(width))
    except ValueError:
        pair = (-1, 0)
    if pair[0] < 0 or pair[1] < 1:
        raise argparse.ArgumentTypeError(
            f"expected START:WIDTH (first block >= 0, number of blocks >= 1), e.g. 2:4, got {value[:40]!r}")
    return pair


def _finite(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"expected a finite number such as 0.25, got {value[:40]!r}")
    return number


def add_image_options(parser: argparse.ArgumentParser) -> None:
    """The options shared with ``manipulate``: weights, device, DDIM steps."""
    parser.add_argument("--steps", type=_positive, default=None,
                        help="DDIM steps of the inversion and of the regeneration (default: the "
                             "run's model.sample_steps; DiTi's script inverts with 1000 and "
                             "regenerates with 100)")
    add_weights_options(parser)
    add_trust_imports(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "counterfactual",
        help="DiTi counterfactuals: move code segments of image A towards image B (PNG grid)",
        description=(
            "Invert two images with a pdae or diti run, lerp chosen segments of the first code "
            "towards the second, slerp the inverted noises and regenerate; writes one labelled PNG "
            "grid (rows: segments in A's and B's context, columns: alphas). Example: disentkit "
            "counterfactual runs/diti --image a.png --image b.png --blocks 2:4 16:8 --alphas 0 0.5 1"
        ),
    )
    parser.add_argument("run_dir", type=Path, help="a pdae or diti run directory")
    parser.add_argument("--image", action="append", required=True, metavar="IMAGE",
                        help="give exactly two: an image file (PNG, JPEG, WebP, BMP; centre-cropped "
                             "and resized to the run's size) or a whole number, that item of the "
                             "run's dataset")
    parser.add_argument("--blocks", type=_block, nargs="+", default=None, metavar="START:WIDTH",
                        help="code segments in blocks of the model's partition (default DiTi's "
                             "2:4 16:8 24:8 32:32 of 64 blocks, scaled to other block counts)")
    parser.add_argument("--alphas", type=_finite, nargs="+", default=None, metavar="ALPHA",
                        help="interpolation weights (default 0 0.25 0.5 0.75 1)")
    parser.add_argument("--context", choices=("both", "a", "b"), default="both",
                        help="whose code the moved segment goes into: A's (alpha 0 is A), B's "
                             "(alpha 1 is B), or both, one row each (default, as the reference)")
    parser.add_argument("--out", type=Path, default=None,
                        help="PNG path (default RUN_DIR/counterfactual.png)")
    add_image_options(parser)
    parser.set_defaults(handler=run)


def load_autoencoder_run(args: argparse.Namespace, command: str) -> Any:
    """The run (EMA weights unless ``--no-ema``), refusing models without inversion."""
    from disentkit.run_loading import load_run

    prepare_runs([args.run_dir], args)
    loaded = load_run(args.run_dir, use_ema=not args.no_ema, device=args.device)
    model = loaded.model
    if not all(callable(getattr(model, name, None)) for name in ("counterfactual", "invert", "block_layout")):
        raise NotAnAutoencoderError(
            f"{command} needs a pdae or diti run (code blocks and DDIM inversion); {args.run_dir} "
            f"holds a {loaded.config.model.name} model; train one with disentkit train preset=diti/...")
    return loaded


def image_from_argument(value: str, loaded: Any, data: Any | None = None) -> Any:
    """(C, H, W) float [0, 1] tensor for an ``--image`` argument (file path or dataset index)."""
    import numpy as np
    import torch

    channels, height, width = loaded.model.image_shape
    path = Path(value)
    if not path.exists() and value.isdigit():
        data = data if data is not None else loaded.data()
        index = int(value)
        if index >= len(data):
            raise ImageInputError(f"--image {index}: the run's dataset has {len(data)} items "
                                  f"(0 to {len(data) - 1}); give a smaller index or an image file")
        from disentkit.viz.images import data_batch

        return data_batch(data, [index])[0]
    pixels = _read_image(path, height)
    if channels == 1:
        pixels = pixels.mean(axis=-1, keepdims=True)
    return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32) / 255.0).permute(2, 0, 1)


def _read_image(path: Path, size: int) -> Any:
    from disentkit.data.files import DataFileError, open_image, quote_error
    from disentkit.data.images import preprocess

    if not path.is_file():
        raise ImageInputError(f"--image {str(path)[:200]}: no such image file; give a PNG/JPEG path "
                              "or a whole number (an item of the run's dataset)")
    try:
        with open_image(path, str(path)) as image:
            return preprocess(image, "center", 0, size)
    except DataFileError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageInputError(f"--image {str(path)[:200]}: cannot decode it ({quote_error(err)}); "
                              "expected a JPEG, PNG, WebP or BMP image") from err


def run(args: argparse.Namespace) -> int:
    import torch

    from disentkit.pixels import for_display, for_model
    from disentkit.viz.counterfactual import (
        REFERENCE_ALPHAS,
        block_label,
        counterfactual_figure,
        reference_blocks,
    )
    from disentkit.viz.images import save_png

    if len(args.image) != 2:
        raise ImageInputError(f"counterfactual needs exactly two --image options (A and B), got "
                              f"{len(args.image)}")
    loaded = load_autoencoder_run(args, "counterfactual")
    model = loaded.model
    layout = model.block_layout()
    blocks = args.blocks or reference_blocks(len(layout))
    alphas = args.alphas or list(REFERENCE_ALPHAS)
    for start, width in blocks:
        model.code_mask(start, width)  # one-line ConfigError for a segment that does not fit
    device = next(model.parameters()).device
    x_a, x_b = (image_from_argument(value, loaded).to(device)[None] for value in args.image)
    with torch.no_grad():
        # the model takes and returns its own pixel range ([-1, 1]); the figure shows [0, 1]
        grid = for_display(model.counterfactual(for_model(x_a, model), for_model(x_b, model), blocks,
                                                alphas, args.steps, args.context)[:, :, 0], model)
    contexts = ["in A", "in B"] if args.context == "both" else [f"in {args.context.upper()}"]
    labels = [f"{block_label(layout, s, w)} {where}" for s, w in blocks for where in contexts]
    out = args.out or (args.run_dir / "counterfactual.png")
    save_png(counterfactual_figure(grid, x_a[0], x_b[0], labels, alphas), out)
    steps = args.steps or getattr(model.config, "sample_steps", None)
    print(f"{out}  ({len(blocks)} segments x {len(contexts)} context(s) x {len(alphas)} alphas, "
          f"{steps} DDIM steps, {len(layout)} blocks in the code)")
    return 0
