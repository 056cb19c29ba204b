"""``disentkit manipulate RUN_DIR --attribute NAME [--keep 16] [--scale 0.3]``

DiTi's modular attribute manipulation (Yue et al., ICLR 2024; ``yue-zhongqi/diti``
``eval/manipulation.py``) on a ``pdae`` or ``diti`` run:

1. encode ``--train-images`` images of the run's dataset (a seeded random subset) and label them
   with the attribute: a CelebA / LFW attribute (positive = score > 0) or, on a ground-truth
   dataset, a factor binarised into its upper and lower half of values;
2. train the ProbMask classifier on the standardised codes (:mod:`disentkit.metrics.probmask`:
   ``--keep`` kept dimensions, DiTi's temperature / keep-rate schedule and bisection projection,
   ``--epochs`` epochs);
3. edit images along the masked classifier direction,
   ``z' = std (z_n + scale sqrt(D) w / ||w||) + mean``, and regenerate them from their inverted
   noise. As DiTi's script, inversion and regeneration use the whole code (no time-step masks);
   ``--masked`` uses DiTi's masked guided DDIM for both instead.

Writes ``manipulate-<attribute>.png`` (rows: images; columns: input, then scales -s, 0, +s) and
``manipulate-<attribute>.json`` (the learned mask, scores, classifier weight, standardisation,
the DiTi blocks of the kept dimensions, the training AP) into the run folder (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

from disentkit.commands._args import positive_int as _positive
from disentkit.commands.counterfactual import (
    add_image_options,
    image_from_argument,
    load_autoencoder_run,
)
from disentkit.errors import UserError


class UnknownAttributeError(UserError, LookupError):
    """``--attribute`` names no attribute or factor of the run's dataset."""


def _scale(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number such as 0.3, got {value[:40]!r}")
    return number


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "manipulate",
        help="DiTi attribute editing: a sparse (ProbMask) attribute direction in the code (PNG + mask)",
        description=(
            "Learn a sparse linear classifier of one attribute on a pdae/diti run's codes (ProbMask "
            "keeps --keep dimensions), edit images along it and regenerate them; writes a PNG grid "
            "and the learned mask as JSON. Example: disentkit manipulate runs/diti-celeba "
            "--attribute Smiling --keep 16 --scale 0.3"
        ),
    )
    parser.add_argument("run_dir", type=Path, help="a pdae or diti run directory")
    parser.add_argument("--attribute", required=True,
                        help="an attribute name of the dataset (CelebA: Smiling, ...; LFW: Male, ...) "
                             "or, on ground-truth data, a factor name (its upper half of values is "
                             "the positive class)")
    parser.add_argument("--keep", type=_positive, default=16,
                        help="code dimensions the mask keeps (default 16, DiTi's)")
    parser.add_argument("--scale", type=_scale, default=0.3,
                        help="editing step in standardised units times sqrt(code size) (default 0.3)")
    parser.add_argument("--epochs", type=_positive, default=10, help="classifier epochs (default 10)")
    parser.add_argument("--batch-size", type=_positive, default=128,
                        help="classifier batch size (default 128, DiTi's)")
    parser.add_argument("--train-images", type=_positive, default=10000,
                        help="dataset images the classifier trains on (default 10000, at most all)")
    parser.add_argument("--image", action="append", default=None, metavar="IMAGE",
                        help="an image to edit (file or dataset index; repeatable); default --n "
                             "images of the dataset")
    parser.add_argument("--n", type=_positive, default=6, help="dataset images to edit (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsets and the mask (default 0)")
    parser.add_argument("--masked", action="store_true",
                        help="DiTi runs: invert and regenerate with the time-step masks")
    parser.add_argument("--out", type=Path, default=None,
                        help="PNG path (default RUN_DIR/manipulate-ATTRIBUTE.png; the JSON lies beside)")
    add_image_options(parser)
    parser.set_defaults(handler=run)


def attribute_labels(data: Any, name: str, indices: Any) -> tuple[Any, str]:
    """(N,) {0, 1} labels of ``indices`` for attribute ``name`` and a description of the class."""
    import numpy as np

    names = list(getattr(data, "attribute_names", None) or [])
    if getattr(data, "attributes", None) is not None and names:
        lookup = {n.lower(): i for i, n in enumerate(names)}
        if name.lower() not in lookup:
            raise UnknownAttributeError(_unknown(name, names, "attribute"))
        column = lookup[name.lower()]
        values = np.asarray(data.attributes)[indices, column].astype(np.float64)
        return (values > 0).astype(np.int64), f"{names[column]} > 0"
    factor_names = list(getattr(data, "factor_names", ()) or ())
    if factor_names and hasattr(data, "index_to_factors"):
        lookup = {n.lower(): i for i, n in enumerate(factor_names)}
        if name.lower() not in lookup:
            raise UnknownAttributeError(_unknown(name, factor_names, "factor"))
        j = lookup[name.lower()]
        size = int(data.factor_sizes[j])
        if size < 2:
            raise UnknownAttributeError(f"--attribute {name}: the factor has a single value; choose "
                                        f"one of {', '.join(factor_names)[:200]}")
        values = np.asarray(data.index_to_factors(np.asarray(indices)))[:, j]
        return (values >= size // 2).astype(np.int64), f"{factor_names[j]} >= {size // 2} (of {size} values)"
    raise UnknownAttributeError(
        f"--attribute: the run's dataset {getattr(data, 'name', '?')} has neither attribute labels "
        "nor ground-truth factors; manipulate needs one of them (celeba, lfw, or a factor dataset)")


def _unknown(name: str, known: list[str], kind: str) -> str:
    listing = ", ".join(known)
    listing = listing if len(listing) <= 300 else listing[:297] + "..."
    return f"--attribute {name[:60]!r}: no such {kind} of the run's dataset; expected one of {listing}"


def _encode(model: Any, data: Any, indices: Any, batch_size: int = 128) -> Any:
    import torch

    from disentkit.pixels import for_model
    from disentkit.viz.images import data_batch

    device = next(model.parameters()).device
    with torch.no_grad():  # the model encodes images in its own pixel range
        return torch.cat([model.encode(for_model(data_batch(data, indices[s:s + batch_size]).to(device),
                                                 model)).float().cpu()
                          for s in range(0, len(indices), batch_size)])


def regenerate(model: Any, images: Any, codes: Any, edited: Any, steps: int | None, masked: bool) -> Any:
    """Invert ``images`` ([0, 1]) with ``codes`` and regenerate them with ``edited`` codes (B, D);
    [0, 1] (the model itself works in its pixel range, [-1, 1])."""
    from disentkit.diffusion.samplers import ddim_invert
    from disentkit.pixels import for_display, for_model

    x = for_model(images, model)
    if masked or not hasattr(model, "masks"):  # PDAE (no masks) or DiTi's masked sampler
        return for_display(model.decode(edited, model.invert(x, steps, codes), steps), model)
    n = int(steps or model.config.sample_steps)
    x_T = ddim_invert(model.denoiser(codes, None, timestep_masks=False), model.schedule,
                      x, n, spacing=model.config.spacing, clip_x0=model.config.clip_x0)
    return for_display(model.decode(edited, x_T, steps, timestep_masks=False), model)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "attribute"


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from sklearn.metrics import average_precision_score

    from disentkit.metrics.probmask import edit_codes, edit_direction, train_probmask_classifier
    from disentkit.pixels import for_model
    from disentkit.viz.counterfactual import manipulation_figure
    from disentkit.viz.images import save_png

    loaded = load_autoencoder_run(args, "manipulate")
    model, data = loaded.model, loaded.data()
    rng = np.random.default_rng(args.seed)
    count = min(args.train_images, len(data))
    train = np.sort(rng.choice(len(data), size=count, replace=False))
    labels, definition = attribute_labels(data, args.attribute, train)
    codes = _encode(model, data, train)
    fit = train_probmask_classifier(codes.numpy(), labels, keep=args.keep, epochs=args.epochs,
                                    batch_size=args.batch_size, seed=args.seed)
    direction = edit_direction(fit["weight"], fit["mask"])
    with torch.no_grad():
        scores = ((codes - fit["mean"]) / fit["std"] * fit["mask"]) @ fit["weight"]
    train_ap = float(average_precision_score(labels, scores.numpy()))
    device = next(model.parameters()).device
    if args.image:
        images = torch.stack([image_from_argument(v, loaded, data) for v in args.image]).to(device)
    else:
        picks = np.sort(rng.choice(len(data), size=min(args.n, len(data)), replace=False))
        from disentkit.viz.images import data_batch

        images = data_batch(data, picks).to(device)
    scales = [-args.scale, 0.0, args.scale]
    with torch.no_grad():
        z = model.encode(for_model(images, model))
        mean, std, step = fit["mean"].to(z), fit["std"].to(z), direction.to(z)
        edits = torch.stack([regenerate(model, images, z, edit_codes(z, mean, std, step, s), args.steps,
                                        args.masked) for s in scales])
    png = args.out or (args.run_dir / f"manipulate-{_slug(args.attribute)}.png")
    title = f"{args.attribute[:40]}: {args.keep}/{codes.shape[1]} dims"
    save_png(manipulation_figure(images.cpu(), edits.cpu(), scales, title), png)
    record = _record(args, definition, fit, model, count, train_ap, labels)
    json_path = Path(png).with_suffix(".json")
    json_path.write_text(json.dumps(record, indent=1))
    kept = record["kept_dims"]
    print(f"{png}  ({args.attribute}: kept dims {kept[:16]}{' ...' if len(kept) > 16 else ''}, train AP "
          f"{train_ap:.3f}); mask in {json_path}")
    return 0


def _record(args: argparse.Namespace, definition: str, fit: dict[str, Any], model: Any, count: int,
            train_ap: float, labels: Any) -> dict[str, Any]:
    kept = [int(d) for d in fit["mask"].nonzero().flatten().tolist()]
    record = {"attribute": args.attribute, "positive_class": definition, "keep": args.keep,
              "kept_dims": kept, "mask": fit["mask"].tolist(), "scores": fit["scores"].tolist(),
              "weight": fit["weight"].tolist(), "bias": fit["bias"], "mean": fit["mean"].tolist(),
              "std": fit["std"].tolist(), "scale": args.scale, "epochs": args.epochs,
              "batch_size": args.batch_size,
              "train_images": count, "positive_fraction": float(labels.mean()), "train_ap": train_ap,
              "seed": args.seed, "masked_sampling": bool(args.masked)}
    if callable(getattr(model, "dimension_blocks", None)):
        blocks = model.dimension_blocks()
        record["kept_blocks"] = sorted({blocks[d] for d in kept})
    return record
