"""``disentkit traverse RUN_DIR``: latent traversal grids (PNG) and GIFs, reconstructions and,
for ground-truth datasets, true-factor traversals (see :mod:`disentkit.viz.traversal`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from disentkit.commands._trust import add_trust_imports, prepare_runs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "traverse",
        help="latent traversal grids and GIFs of a trained run",
        description=(
            "Decode latent traversals of a trained run: one row per latent, one column per value. "
            "Example: disentkit traverse runs/betavae-dsprites-seed0 --mode all --limit 3 --steps 10"
        ),
    )
    parser.add_argument("run_dir", type=Path, help="a run directory (config.yaml + checkpoints/)")
    parser.add_argument("--mode", default="all", choices=["fixed", "random", "zero", "prior", "all"],
                        help="seed codes: fixed images, a random image, the zero vector, prior samples")
    parser.add_argument("--limit", type=float, default=3.0, help="traverse values in [-L, L] (KFV: 3)")
    parser.add_argument("--steps", type=int, default=10, help="number of values (columns/frames)")
    parser.add_argument("--values", default="range", choices=["range", "quantile"],
                        help="range: linspace(-L, L); quantile: per-latent posterior-mean quantiles")
    parser.add_argument("--tail", type=float, default=0.05,
                        help="with --values quantile: quantile levels tail .. 1 - tail")
    parser.add_argument("--order", default="kl", choices=["kl", "factor", "index"],
                        help="row order: by per-dim KL, by the factor each latent captures (MI), by index")
    parser.add_argument("--max-latents", type=int, default=None, help="show only the first N rows")
    parser.add_argument("--index", type=int, nargs="+", default=None,
                        help="dataset indices of the fixed images (default: middle of each third)")
    parser.add_argument("--num-prior", type=int, default=3, help="prior samples in mode 'prior'")
    parser.add_argument("--prior", default="normal", choices=["normal", "uniform"],
                        help="prior samples: N(0, I), or uniform[0, 1) as in 1Konny/FactorVAE (parity)")
    parser.add_argument("--num-images", type=int, default=16, help="images in the reconstruction grid")
    parser.add_argument("--mi-points", type=int, default=10000,
                        help="samples for the MI matrix (--order factor) when results.json has none")
    parser.add_argument("--no-gif", action="store_true", help="write PNG grids only")
    parser.add_argument("--no-factors", action="store_true", help="skip the true-factor traversals")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random image and prior samples")
    parser.add_argument("--device", default="cpu", help="torch device for the model (cpu, cuda)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/traversals)")
    add_trust_imports(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from disentkit.run_loading import load_run
    from disentkit.viz.images import data_batch
    from disentkit.viz.latents import (
        activity_from_data,
        encode_batched,
        mi_matrix,
        order_latents,
        sample_indices,
    )
    from disentkit.viz.reconstruction import write_reconstructions
    from disentkit.viz.report import mi_from_results
    from disentkit.viz.traversal import MODES, quantile_values, range_values, write_traversals

    prepare_runs([args.run_dir], args)
    run_ = load_run(args.run_dir, device=args.device)
    model = run_.model
    out = args.out or (args.run_dir / "traversals")
    try:
        data = run_.data()
    except (FileNotFoundError, OSError) as err:
        data = None
        print(f"dataset not available ({err}); only 'zero' and 'prior' traversals are possible")
    has_factors = data is not None and hasattr(data, "factor_sizes")
    modes = list(MODES) if args.mode == "all" else [args.mode]
    if data is None:
        modes = [m for m in modes if m in ("zero", "prior")]
        if not modes:
            raise FileNotFoundError("the dataset is needed for fixed/random traversals")

    activity, kind = (None, "KL")
    if data is not None:
        activity, kind = activity_from_data(model, data, seed=args.seed)
    mi = None
    if args.order == "factor":
        results_path = args.run_dir / "results.json"
        if results_path.is_file():
            mi = mi_from_results(json.loads(results_path.read_text()))
        if mi is None and has_factors:
            print(f"estimating the code/factor MI matrix from {args.mi_points} samples ...")
            mi = mi_matrix(model, data, num_points=args.mi_points, seed=args.seed)
    order = order_latents(
        int(model.latent_dim), args.order, activity=activity, activity_kind=kind, mi=mi,
        factor_names=list(data.factor_names) if has_factors else None,
        max_latents=args.max_latents,
    )
    for note in order.notes:
        print(f"note: {note}")

    if args.values == "quantile":
        if data is None:
            raise FileNotFoundError("--values quantile needs the dataset to encode")
        idx = sample_indices(len(data), 1000, args.seed)
        values = quantile_values(encode_batched(model, data_batch(data, idx)), args.steps, args.tail)
        tail = args.tail
    else:
        values, tail = range_values(args.limit, args.steps), None
    with torch.inference_mode():
        written = write_traversals(
            model, out, order, data=data, modes=modes, values=values, quantile_tail=tail,
            fixed=args.index, num_prior=args.num_prior, seed=args.seed, prior=args.prior,
            gif=not args.no_gif,
        )
    paths = [p for ps in written.values() for p in ps]
    if data is not None:
        idx = sample_indices(len(data), args.num_images, args.seed)
        paths.append(write_reconstructions(model, data_batch(data, idx), out / "reconstructions.png"))
    if has_factors and not args.no_factors:
        from disentkit.viz.factors import write_factor_traversals

        paths += list(write_factor_traversals(model, data, out, seed=args.seed, dims=order.dims).values())
    print(f"rows ({order.criterion}): {', '.join(order.labels)}")
    for path in paths:
        print(path)
    return 0
