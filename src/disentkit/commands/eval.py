"""``disentkit eval RUN_DIR [--metrics ...] [--preset study|fast] [--seed N] [--representation mean|sampled]
[--protocol dlib|fdae|disdiff --groups K | --group-size S] [--attr-train N --attr-test N --attr-points N]
[--probe closed_form|linear] [--select-epoch-on valid|test] [--data KEY=VALUE ...]``

Writes ``results.json`` (scores, parameters, protocol, library versions) into the run and prints
a table (:func:`disentkit.evaluation.evaluate_run`); with ``--data`` the run is scored on another
dataset, into ``results_<name>.json``."""

from __future__ import annotations

import argparse

from disentkit.commands._args import positive_int as _positive
from disentkit.commands._trust import add_trust_imports, prepare_runs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="score a trained run with the disentanglement metrics (writes results.json)"
    )
    parser.add_argument("run_dir", help="a trained run folder (holds config.yaml and checkpoints)")
    parser.add_argument("--metrics", nargs="+", help="metric names (default: the run's eval.metrics)")
    parser.add_argument("--preset", choices=["study", "fast"], help="sample sizes (default: the run's)")
    parser.add_argument("--seed", type=int, help="metric random seed (default: the run's eval.seed)")
    parser.add_argument("--representation", choices=["mean", "sampled"], default="mean",
                        help="posterior mean (default, dlib's headline) or one posterior sample")
    parser.add_argument("--device", default="cpu", help="torch device for the model (cpu, cuda)")
    parser.add_argument("--data", nargs="+", default=None, metavar="KEY=VALUE",
                        help="score on another dataset than the run's: its data settings, name "
                             "first (e.g. --data name=celeba image_size=64 crop=d2c for DiTi's "
                             "CelebA probe of an FFHQ or CelebA-LMDB run); the scores go to "
                             "RUN/results_<name>.json")
    _add_protocol_options(parser)
    _add_attribute_options(parser)
    add_trust_imports(parser)
    parser.set_defaults(handler=run)


def _add_protocol_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "grouped protocols", "FDAE and DisDiff score groups of consecutive code dimensions (one "
        "vector per concept), each reduced by PCA; ground-truth data only")
    group.add_argument("--protocol", choices=["dlib", "fdae", "disdiff"], default=None,
                       help="dlib (codes as they are), fdae (per-group PCA to --group-dims, k-means "
                            "MIG) or disdiff (per-group PCA to 1 dimension); default: the run's "
                            "eval.protocol, else the model's own (dlib for the VAE family)")
    layout = group.add_mutually_exclusive_group()
    layout.add_argument("--groups", type=_positive, metavar="K",
                        help="split the code into K equal consecutive groups (default: the run's "
                             "eval.num_groups / eval.group_size, else the groups the model declares)")
    layout.add_argument("--group-size", type=_positive, metavar="S",
                        help="split the code into consecutive groups of S dimensions")
    group.add_argument("--group-dims", type=_positive, metavar="N",
                       help="fdae: PCA components per group (default 36 // number of groups)")
    group.add_argument("--disdiff-fit-points", type=_positive, metavar="N",
                       help="disdiff: fit the PCA on N images drawn with the seed (default: every "
                            "image, in index order)")


def _add_attribute_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "attribute data (celeba, lfw)", "split sizes over the preset's (fast: 2000 training, 1000 "
        "held-out images and 2000 TAD codes; study: the official partitions and 10000 codes)")
    group.add_argument("--attr-train", type=_positive, metavar="N",
                       help="probe training images (those just before the held-out ones)")
    group.add_argument("--attr-test", type=_positive, metavar="N",
                       help="held-out images at the end of the data set (probes and TAD)")
    group.add_argument("--attr-points", type=_positive, metavar="N", help="TAD: number of codes")
    group.add_argument("--probe", choices=["closed_form", "linear"], default=None,
                       help="the default probes: closed_form (fast: logistic / least squares) or "
                            "linear (DiTi's: a Linear layer trained 15 epochs with Adam, the epoch "
                            "chosen on validation images; metrics linear_probe_ap / "
                            "linear_probe_regression)")
    group.add_argument("--select-epoch-on", choices=["valid", "test"], default=None,
                       help="linear_probe_regression: pick the epoch on validation images (default) "
                            "or on the test images, as DiTi's LFW script does (reference-compatible)")


def run(args: argparse.Namespace) -> int:
    import sys

    from disentkit.evaluation import evaluate_run

    prepare_runs([args.run_dir], args)
    try:
        evaluate_run(args.run_dir, args.metrics, args.preset, args.seed, device=args.device,
                     representation=args.representation, protocol=args.protocol,
                     groups={"num_groups": args.groups, "group_size": args.group_size,
                             "group_dims": args.group_dims,
                             "disdiff_fit_points": args.disdiff_fit_points},
                     attribute_split={"num_train": args.attr_train, "num_test": args.attr_test,
                                      "num_points": args.attr_points},
                     attribute_probe={"probe": args.probe, "select_on": args.select_epoch_on},
                     other_data=args.data)
    except (ValueError, LookupError) as err:  # bad metric names, datasets without labels, ...
        print(f"disentkit eval: error: {err}", file=sys.stderr)
        return 2
    return 0
