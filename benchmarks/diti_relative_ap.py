"""Relative attribute AP of DiTi vs PDAE vs a random encoder on one frozen base DDPM.

DiTi's published attribute table could not be obtained, so the acceptance is relative: on the same
base DDPM and the same number of training steps, DiTi's mean attribute AP (DiTi's trained linear
probe, :func:`disentkit.metrics.attribute_probe.linear_probe_ap`) should exceed PDAE's, which
should exceed that of a random (untrained) encoder of the same architecture.

CPU scale: no procedural data set has attribute labels, so the attributes are the ground-truth
factors of ``shapes3d_like`` (32 px) binarised into the upper and lower half of each factor's
values (``value >= size // 2``: 6 binary attributes). The base is a finished ``ddpm/shapes3d_like``
run (``--base``); ``pdae`` and ``diti`` are trained here on it with identical settings (encoder,
code size, optimiser, steps, batch), DiTi with k = 8 blocks, stages 100, 300, 1000 and dims 5,
10, 17. The probe runs with DiTi's settings (15 epochs, batch 128, Adam 1e-3, unshuffled,
horizontal-flip codes, epoch chosen on the validation split) on disjoint random train / valid /
test subsets (kept in their random order, so the unshuffled loader does not see the factor grid's
order); the closed-form probe is reported beside it.

Usage::

    python benchmarks/diti_relative_ap.py --base RUNS/ddpm-shapes3d_like-seed0 --out-dir /tmp/ap \
        --steps 800 --only pdae &   # the two trainings may run in parallel
    python benchmarks/diti_relative_ap.py --base RUNS/ddpm-shapes3d_like-seed0 --out-dir /tmp/ap \
        --steps 800 --only diti
    python benchmarks/diti_relative_ap.py --base RUNS/ddpm-shapes3d_like-seed0 --out-dir /tmp/ap \
        --steps 800 --json benchmarks/results/diti_relative_ap.json \
        --md benchmarks/results/diti_relative_ap.md
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

SHARED_MODEL = {
    "latent_dim": 32,
    "encoder": "custom", "encoder_channels": [32, 64, 64], "encoder_attention_after": 1,
    "encoder_norm_groups": 8, "sample_steps": 10,
}
DITI_MODEL = {"num_blocks": 8, "stages": [100, 300, 1000], "stage_dims": [5, 10, 17], "mode": "base"}


def _model_section(base_config: Any, name: str) -> dict[str, Any]:
    """The pdae/diti model section whose frozen UNet is the base run's."""
    base = base_config.model.params
    section = {"name": name, "unet": base.unet, "unet_overrides": dict(base.unet_overrides),
               "schedule": base.schedule, "num_steps": base.num_steps, **SHARED_MODEL}
    return {**section, **DITI_MODEL} if name == "diti" else section


def _train(name: str, base: Path, out_dir: Path, args: argparse.Namespace) -> tuple[Path, float]:
    """Train (or reuse a finished) ``name`` run on the base; returns (run dir, seconds)."""
    from disentkit.api import train
    from disentkit.config import load_config_file

    run_dir = out_dir / name
    summary = run_dir / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("status") == "finished":
        return run_dir, float(json.loads(summary.read_text()).get("train_time_s", 0.0))
    base_config = load_config_file(base / "config.yaml")
    config = {
        "model": _model_section(base_config, name),
        "data": {"name": "shapes3d_like", **_data_params(base_config)},
        "init": {"run": str(base), "modules": ["base=unet"], "freeze": ["base"]},
        "train": {"steps": args.steps, "batch_size": args.batch_size, "checkpoint_every": 10**6,
                  "num_threads": args.threads, "ema_decay": 0.999, "ema_warmup": True},
        "optim": {"lr": args.lr},
        "seed": args.seed,
        "eval": {"metrics": [], "at_end": False, "report_at_end": False},
        "log": {"every": 100, "progress": False},
    }
    t0 = time.perf_counter()
    train(config, run_dir=run_dir)
    return run_dir, time.perf_counter() - t0


def _data_params(base_config: Any) -> dict[str, Any]:
    import dataclasses

    params = base_config.data.params
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}


def _random_model(base: Path, seed: int) -> torch.nn.Module:
    """An untrained pdae of the same architecture (its encoder is the random encoder)."""
    from disentkit.builders import build_dataset, build_model
    from disentkit.config import config_from_dict, load_config_file
    from disentkit.models.base import DataFacts

    base_config = load_config_file(base / "config.yaml")
    config = config_from_dict({"model": _model_section(base_config, "pdae"),
                               "data": {"name": "shapes3d_like", **_data_params(base_config)}})
    torch.manual_seed(seed)
    return build_model(config, DataFacts.of(build_dataset(config))).eval()


def _encode(model: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model.encode(images[s:s + batch]) for s in range(0, len(images), batch)]).numpy()


def _score(model: torch.nn.Module, split: dict[str, torch.Tensor], labels: dict[str, np.ndarray],
           seed: int) -> dict[str, Any]:
    from disentkit.metrics.attribute_probe import linear_probe_ap
    from disentkit.metrics.attributes import attribute_probe_ap

    codes = {k: _encode(model, v) for k, v in split.items()}
    flipped = _encode(model, split["train"].flip(-1))
    probe = linear_probe_ap(codes["train"], labels["train"], codes["valid"], labels["valid"],
                            codes["test"], labels["test"], codes_train_flipped=flipped, seed=seed)
    standardised = linear_probe_ap(codes["train"], labels["train"], codes["valid"], labels["valid"],
                                   codes["test"], labels["test"], codes_train_flipped=flipped, seed=seed,
                                   standardise=True)
    closed = attribute_probe_ap(np.concatenate([codes["train"], codes["valid"]]),
                                np.concatenate([labels["train"], labels["valid"]]),
                                codes["test"], labels["test"])
    return {"mean_ap": probe["mean_ap"], "ap_per_attribute": [float(a) for a in probe["ap_per_attribute"]],
            "best_epoch": probe["best_epoch"], "valid_mean_ap_per_epoch": probe["valid_mean_ap_per_epoch"],
            "standardised_mean_ap": standardised["mean_ap"],
            "standardised_best_epoch": standardised["best_epoch"],
            "closed_form_mean_ap": closed["mean_ap"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="a finished ddpm/shapes3d_like run")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the pdae / diti runs go")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=4000)
    parser.add_argument("--num-valid", type=int, default=1000)
    parser.add_argument("--num-test", type=int, default=2000)
    parser.add_argument("--only", choices=["pdae", "diti"], default=None,
                        help="train this one run and stop (run the two in parallel, then score)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--md", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from disentkit.run_loading import load_run
    from disentkit.viz.images import data_batch

    if args.only:
        print(f"{args.only}: trained in {_train(args.only, args.base, args.out_dir, args)[1]:.0f} s")
        return
    trained = {name: _train(name, args.base, args.out_dir, args) for name in ("pdae", "diti")}
    models = {"random encoder": _random_model(args.base, args.seed),
              **{name: load_run(path).model for name, (path, _) in trained.items()}}
    data = load_run(trained["pdae"][0]).data()
    rng = np.random.default_rng(args.seed)
    sizes = {"train": args.num_train, "valid": args.num_valid, "test": args.num_test}
    order = rng.permutation(len(data))[: sum(sizes.values())]
    cuts = np.cumsum([0, *sizes.values()])
    index = {k: order[cuts[i]:cuts[i + 1]] for i, k in enumerate(sizes)}
    factors = {k: data.index_to_factors(v) for k, v in index.items()}
    half = np.asarray(data.factor_sizes) // 2
    labels = {k: (f >= half).astype(np.int64) for k, f in factors.items()}
    split = {k: data_batch(data, v) for k, v in index.items()}
    results = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        results[name] = {**_score(model, split, labels, args.seed), "probe_s": time.perf_counter() - t0}
        print(f"{name}: mean AP {results[name]['mean_ap']:.4f} (standardised codes "
              f"{results[name]['standardised_mean_ap']:.4f}, closed form "
              f"{results[name]['closed_form_mean_ap']:.4f})", flush=True)
    order_ok = results["diti"]["mean_ap"] > results["pdae"]["mean_ap"] > results["random encoder"]["mean_ap"]
    payload = {
        "benchmark": "diti_relative_ap", "data": "shapes3d_like 32 px, 6 factors binarised at size // 2",
        "attributes": [f"{n} >= {h}" for n, h in zip(data.factor_names, half)],
        "base_run": str(args.base), "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
        "seed": args.seed, "splits": sizes, "train_time_s": {k: t for k, (_, t) in trained.items()},
        "model": {"shared": SHARED_MODEL, "diti": DITI_MODEL}, "results": results,
        "diti_gt_pdae_gt_random": bool(order_ok), "threads": args.threads,
        "cpu_count": os.cpu_count(), "torch": torch.__version__,
    }
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2))
    if args.md:
        args.md.write_text(_markdown(payload))
    print(f"DiTi > PDAE > random: {order_ok}")


def _markdown(p: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {name} | {r['mean_ap']:.4f} | {r['standardised_mean_ap']:.4f} | {r['closed_form_mean_ap']:.4f} | "
        f"{r['best_epoch']} | "
        + " ".join(f"{a:.3f}" for a in r["ap_per_attribute"]) + " |"
        for name, r in p["results"].items())
    return (
        "# DiTi vs PDAE vs random encoder: attribute AP on one base DDPM\n\n"
        f"Data: {p['data']} ({', '.join(p['attributes'])}). Base: a finished `ddpm/shapes3d_like` run "
        f"(1500 steps). PDAE and DiTi: {p['steps']} steps of batch {p['batch_size']}, Adam {p['lr']}, "
        "the same 3-conv encoder (32, 64, 64) to a 32-d code, EMA 0.999; DiTi k = 8, stages 100/300/1000, "
        f"dims 5/10/17. Training time (s): {json.dumps({k: round(v) for k, v in p['train_time_s'].items()})} "
        f"on a shared 2-core CPU (each run's own `train.num_threads`); scored with {p['threads']} "
        "thread(s).\n\n"
        f"Probe: DiTi's linear probe (15 epochs, batch 128, Adam 1e-3, unshuffled, flip codes, epoch "
        f"on valid) on {p['splits']['train']} / {p['splits']['valid']} / {p['splits']['test']} "
        "train / valid / test images; closed form = one logistic regression per attribute on the "
        "standardised train+valid codes.\n\n"
        "| encoder | mean AP (linear probe) | mean AP (linear probe, standardised codes) | mean AP "
        "(closed form) | best epoch | AP per attribute (linear probe) |\n"
        "|---|---|---|---|---|---|\n" + rows + "\n\n"
        f"DiTi > PDAE > random encoder (linear probe): **{p['diti_gt_pdae_gt_random']}**.\n"
    )


if __name__ == "__main__":
    main()
