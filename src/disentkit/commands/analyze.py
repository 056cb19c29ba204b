"""``disentkit analyze RUN_DIR --kind largest-kld|eigen|latent3d|sweep|symmetries|all``: CFASL's
qualitative analyses of a trained VAE-family run (GIST-IRR/CFASL ``src/analysis_tools/``), written as
PNGs (and the arrays as .npz, the symmetry numbers as .json) into RUN_DIR/analysis/ (see
:mod:`disentkit.viz.cfasl_analysis`, :mod:`disentkit.viz.cfasl_sweep` and
:mod:`disentkit.viz.cfasl_symmetries`; ``symmetries`` needs a CFASL model)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from disentkit.commands._trust import add_trust_imports, prepare_runs

KINDS = ("largest-kld", "eigen", "latent3d", "sweep", "symmetries")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="CFASL's qualitative analyses of a run (largest-KLD change, latent eigen, 3-D codes, "
             "latent sweep, per-factor symmetries)",
        description=(
            "Write CFASL's qualitative analyses of a trained run into RUN_DIR/analysis/: "
            "largest-kld (decode z1 -> z2 swapping the largest-KL dimensions cumulatively), "
            "eigen (eigenvalues/eigenvectors of the latent covariance), latent3d (codes on "
            "the 3 largest-KL dimensions coloured by a factor), sweep (image d with latent d "
            "swept over [-limit, limit], one row per dimension) and symmetries (CFASL models: "
            "the composite symmetry the model predicts for each factor's consecutive values, "
            "applied once and as a chain, with the latents it moves; PNG + JSON). Example: "
            "disentkit analyze runs/cfasl_betavae-dsprites-seed1 --kind all"
        ),
    )
    parser.add_argument("run_dir", help="a trained run folder (holds config.yaml and checkpoints)")
    parser.add_argument("--kind", choices=[*KINDS, "all"], default="all",
                        help="which analysis to write (default all of them)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the image draws")
    parser.add_argument("--num-pairs", type=int, default=5, help="largest-kld: image pairs")
    parser.add_argument("--top-k", type=int, default=5,
                        help="largest-kld: dimensions swapped (CF: 6 on 3D Shapes, else 5)")
    parser.add_argument("--num-batches", type=int, default=100, help="eigen: batches of codes")
    parser.add_argument("--batch-size", type=int, default=64, help="eigen: images per batch")
    parser.add_argument("--mean-codes", action="store_true",
                        help="eigen: use posterior means instead of sampled z (CF samples)")
    parser.add_argument("--sampled-codes", action="store_true",
                        help="largest-kld/sweep/symmetries: use sampled z as CF does (default: "
                             "posterior means)")
    parser.add_argument("--num-points", type=int, default=640, help="latent3d: images (CF: 10x64)")
    parser.add_argument("--fixed-factors", type=int, nargs="*", default=None,
                        help="latent3d: factor indices held at one random value "
                             "(CF: dSprites scale and orientation = 1 2)")
    parser.add_argument("--color-factor", type=int, default=0,
                        help="latent3d: factor index that colours the points (default 0)")
    parser.add_argument("--sweep-values", type=int, default=10,
                        help="sweep: values per latent (CF: 10)")
    parser.add_argument("--sweep-limit", type=float, default=2.0,
                        help="sweep: values run over [-limit, limit] (CF: 2)")
    parser.add_argument("--symmetry-steps", type=int, default=10,
                        help="symmetries: value steps per factor, from value 0 (CF: every value; "
                             "default 10)")
    parser.add_argument("--sampled-switches", action="store_true",
                        help="symmetries: draw the switches as training does (Gumbel-softmax, "
                             "CF) instead of taking each switch's more probable state")
    add_trust_imports(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (ValueError, TypeError) as err:
        # bad options for this run (a factor index out of range, a model without a Gaussian
        # posterior, data without factors for latent3d, ...): the message says what to change
        print(f"disentkit analyze: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from disentkit.run_loading import load_run
    from disentkit.viz import cfasl_analysis as ca
    from disentkit.viz import cfasl_sweep, cfasl_symmetries

    prepare_runs([args.run_dir], args)
    loaded = load_run(args.run_dir)
    model, data = loaded.model, loaded.data()
    out = Path(args.run_dir) / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    kinds = KINDS if args.kind == "all" else (args.kind,)
    written: list[Path] = []
    for kind in kinds:
        if kind == "latent3d" and args.kind == "all" and not getattr(data, "factor_sizes", None):
            # CelebA and other factor-free data: the other analyses still apply
            print(f"latent3d skipped: dataset '{getattr(data, 'name', type(data).__name__)}' has no "
                  "ground-truth factors to colour the codes by", file=sys.stderr)
            continue
        if kind == "symmetries" and args.kind == "all" and not _symmetries_apply(model, data):
            print("symmetries skipped: the analysis needs a CFASL model (symmetry codebook) and a "
                  "dataset with ground-truth factors", file=sys.stderr)
            continue
        rs = np.random.RandomState(args.seed)
        torch.manual_seed(args.seed)
        if kind == "largest-kld":
            result = ca.largest_kld_change(model, data, rs, args.num_pairs, args.top_k,
                                           sampled=args.sampled_codes)
            written.append(ca.plot_largest_kld(result, out / "largest_kld.png"))
            np.savez(out / "largest_kld.npz", **result)
        elif kind == "eigen":
            result = ca.latent_eigen(model, data, rs, args.num_batches, args.batch_size,
                                     sampled=not args.mean_codes)
            written.append(ca.plot_eigen(result, out / "eigen.png"))
            np.savez(out / "eigen.npz", **result)
        elif kind == "sweep":
            result = cfasl_sweep.latent_sweep(model, data, rs, args.sweep_values, args.sweep_limit,
                                              sampled=args.sampled_codes)
            written.append(cfasl_sweep.plot_latent_sweep(result, out / "latent_sweep.png"))
            np.savez(out / "latent_sweep.npz", **result)
        elif kind == "symmetries":
            result = cfasl_symmetries.factor_symmetries(
                model, data, rs, args.symmetry_steps, sampled=args.sampled_codes,
                sample_switches=args.sampled_switches)
            written.append(cfasl_symmetries.plot_symmetries(result, out / "symmetries.png"))
            written.append(cfasl_symmetries.symmetries_json(result, out / "symmetries.json"))
        else:
            result = ca.latent_scatter3d(model, data, rs, args.num_points, args.fixed_factors,
                                         args.color_factor)
            names = getattr(data, "factor_names", ())
            name = names[args.color_factor] if args.color_factor < len(names) else "factor"
            written.append(ca.plot_scatter3d(result, out / "latent3d.png", name))
            np.savez(out / "latent3d.npz", **result)
    for path in written:
        print(path)
    return 0


def _symmetries_apply(model: object, data: object) -> bool:
    """``--kind all`` runs the symmetry analysis only where it can run (CFASL model, factors)."""
    return hasattr(model, "codebook") and bool(getattr(data, "factor_sizes", None))
