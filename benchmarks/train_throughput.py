"""Training throughput of every registered model on CPU (images/s at batch 64, 64x64 inputs).

For each model, two timings of one full training step (``training_losses`` + backward + a step of
every optimiser the model declares):

* ``fixed``: the step on one float batch already in memory (the model's cost alone);
* ``data``: the same step fed by the training data path: random indices -> the dataset's
  ``uint8_batch`` -> ``to_model_input`` (uint8 NHWC -> float NCHW on the device), as the engine
  does it. The ratio data/fixed shows whether the data path is a bottleneck (it should be ~1).

It also times the data path alone. Datasets: the procedural ``sprites`` grid at 64x64 (1 channel,
rendered once and cached) and an in-memory 3-channel uint8 grid. CFASL models run at
``sub_sec=16`` and are compared with their base method (requirement: <= 2x the base step).

    python benchmarks/train_throughput.py [--threads 2] [--steps 8] [--models vae,betavae]

Results go to ``benchmarks/results/train_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from disentkit.builders import to_model_input
from disentkit.config import from_dict
from disentkit.data.base import ArrayGroundTruthData
from disentkit.registry import DATASETS, MODELS
from disentkit.training.cpu_memory import tune_glibc_malloc

RESULTS = Path(__file__).parent / "results"
CFASL_BASE = {"cfasl_betavae": "betavae", "cfasl_betatcvae": "betatcvae",
              "cfasl_controlvae": "controlvae", "cfasl_commutativevae": "clgvae"}


def build(name: str, channels: int, dataset_size: int) -> torch.nn.Module:
    cls = MODELS.get(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    params: dict[str, Any] = {}
    if "dataset_size" in fields:
        params["dataset_size"] = dataset_size
    if "sub_sec" in fields:
        params["sub_sec"] = 16
    if "estimator" in fields:
        # beta-TCVAE and its CFASL wrapper timed with the same estimator (the recorded runs used MSS).
        params["estimator"] = "mss"
    model = cls(from_dict(cls.Config, params), (channels, 64, 64))
    model.train()
    return model


def optimisers(model: torch.nn.Module) -> list[torch.optim.Optimizer]:
    out = []
    for spec in model.optimiser_specs():
        kwargs: dict[str, Any] = {"lr": spec.lr or 1e-4}
        if spec.betas is not None:
            kwargs["betas"] = tuple(spec.betas)
        out.append(torch.optim.Adam(spec.param_groups, **kwargs))
    return out


def step(model, opts, batch: torch.Tensor, it: int) -> None:
    loss = model.training_losses(batch, it)["loss"]
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in opts:
        opt.step()


def time_steps(fn, warmup: int, steps: int) -> list[float]:
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(steps):
        start = time.perf_counter()
        fn(warmup + i)
        times.append(time.perf_counter() - start)
    return times


def bench_model(name: str, data: Any, batch_size: int, warmup: int, steps: int) -> dict[str, Any]:
    channels = data.observation_shape[2]
    torch.manual_seed(0)
    model = build(name, channels, len(data))
    opts = optimisers(model)
    per_step = batch_size * getattr(model, "batch_multiplier", 1)
    input_range = getattr(model, "input_range", "01")
    generator = torch.Generator().manual_seed(0)
    fixed_batch = to_model_input(
        data.uint8_batch(torch.randint(0, len(data), (per_step,), generator=generator)),
        data.value_max, input_range)

    def fed(i: int) -> None:
        index = torch.randint(0, len(data), (per_step,), generator=generator)
        batch = to_model_input(data.uint8_batch(index), data.value_max, input_range)
        step(model, opts, batch, i)

    # Interleave the two kinds of step so that load changes on a shared machine hit both alike.
    for i in range(warmup):
        step(model, opts, fixed_batch, i)
        fed(i)
    fixed, fed_times = [], []
    for i in range(steps):
        start = time.perf_counter()
        step(model, opts, fixed_batch, warmup + i)
        middle = time.perf_counter()
        fed(warmup + i)
        fixed.append(middle - start)
        fed_times.append(time.perf_counter() - middle)
    fixed_s, fed_s = statistics.median(fixed), statistics.median(fed_times)
    return {
        "images_per_step": per_step,
        "fixed_step_s": fixed_s, "fixed_images_per_s": per_step / fixed_s,
        "fixed_min_step_s": min(fixed), "fixed_max_images_per_s": per_step / min(fixed),
        "data_step_s": fed_s, "data_images_per_s": per_step / fed_s,
        "data_min_step_s": min(fed_times), "data_max_images_per_s": per_step / min(fed_times),
        "data_over_fixed": fed_s / fixed_s,
        "data_over_fixed_min": min(fed_times) / min(fixed),
    }


def compare_pair(name: str, base: str, data: Any, batch_size: int, warmup: int,
                 steps: int) -> dict[str, Any]:
    """Step time of ``name`` over ``base`` on the same fixed batch, steps interleaved (so a
    changing load on a shared machine affects both alike)."""
    channels = data.observation_shape[2]
    runs = []
    for model_name in (name, base):
        torch.manual_seed(0)
        model = build(model_name, channels, len(data))
        per_step = batch_size * getattr(model, "batch_multiplier", 1)
        generator = torch.Generator().manual_seed(0)
        batch = to_model_input(
            data.uint8_batch(torch.randint(0, len(data), (per_step,), generator=generator)),
            data.value_max, getattr(model, "input_range", "01"))
        runs.append((model, optimisers(model), batch))
    times: list[list[float]] = [[], []]
    for i in range(warmup + steps):
        for k, (model, opts, batch) in enumerate(runs):
            start = time.perf_counter()
            step(model, opts, batch, i)
            if i >= warmup:
                times[k].append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(*times)]
    return {
        "step_s": statistics.median(times[0]), "base_step_s": statistics.median(times[1]),
        "min_step_s": min(times[0]), "base_min_step_s": min(times[1]),
        "ratio_median_of_pairs": statistics.median(ratios),
        "ratio_of_mins": min(times[0]) / min(times[1]),
    }


def bench_data_path(data: Any, batch_size: int, repeats: int = 50) -> float:
    generator = torch.Generator().manual_seed(1)

    def once(_: int) -> None:
        index = torch.randint(0, len(data), (batch_size,), generator=generator)
        to_model_input(data.uint8_batch(index), data.value_max, "01")

    times = time_steps(once, 3, repeats)
    return batch_size / statistics.median(times)


def datasets() -> dict[str, Any]:
    sprites_cls = DATASETS.get("sprites")
    sprites = sprites_cls(from_dict(sprites_cls.Config, {"image_size": 64, "orientations": 10,
                                                         "positions": 16}))
    sprites.uint8_batch(np.arange(len(sprites)))  # render the grid once (cached)
    rng = np.random.default_rng(0)
    color = ArrayGroundTruthData(rng.integers(0, 256, (4, 8, 8, 8, 64, 64, 3), dtype=np.uint8)
                                 .reshape(-1, 64, 64, 3), ["a", "b", "c", "d"], [4, 8, 8, 8],
                                 name="random_rgb")
    return {"sprites64 (1ch)": sprites, "random_rgb64 (3ch)": color}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--models", default="", help="comma-separated names (default: all)")
    parser.add_argument("--datasets", default="", help="comma-separated dataset labels")
    parser.add_argument("--out", default=str(RESULTS / "train_throughput"))
    parser.add_argument("--pairs-only", action="store_true",
                        help="only the interleaved CFASL-vs-base comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # The same allocator setting the training engine applies on CPU runs.
    tune_glibc_malloc()
    names = args.models.split(",") if args.models else MODELS.names()
    sets = datasets()
    if args.datasets:
        sets = {k: v for k, v in sets.items() if k in args.datasets.split(",")}
    report: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "threads": args.threads,
                    "load_average_start": os.getloadavg()},
        "batch_size": args.batch_size, "warmup": args.warmup, "steps": args.steps,
        "data_path_images_per_s": {}, "models": {}, "cfasl_vs_base": {},
    }
    for label, data in sets.items():
        report["data_path_images_per_s"][label] = bench_data_path(data, args.batch_size)
        for name, base in CFASL_BASE.items():
            if name in MODELS and base in MODELS and name in names:
                result = compare_pair(name, base, data, args.batch_size, args.warmup, args.steps)
                report["cfasl_vs_base"].setdefault(name, {})[label] = {"base": base, **result}
                print(label, name, "vs", base, json.dumps(result), flush=True)
        for name in ([] if args.pairs_only else names):
            try:
                result = bench_model(name, data, args.batch_size, args.warmup, args.steps)
            except Exception as err:  # a model that cannot take this input is reported, not fatal
                result = {"skipped": f"{type(err).__name__}: {err}"[:200]}
            report["models"].setdefault(name, {})[label] = result
            print(label, name, json.dumps(result), flush=True)
    for name, base in CFASL_BASE.items():
        for label in sets:
            a = report["models"].get(name, {}).get(label, {})
            b = report["models"].get(base, {}).get(label, {})
            if "fixed_step_s" in a and "fixed_step_s" in b:
                a["over_base_step"] = a["fixed_step_s"] / b["fixed_step_s"]
                a["over_base_step_min"] = a["fixed_min_step_s"] / b["fixed_min_step_s"]
    report["machine"]["load_average_end"] = os.getloadavg()
    out = Path(args.out + ("_cfasl" if args.pairs_only else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Training throughput (CPU)",
        "",
        f"{m['platform']}, {m['cpus']} CPUs, torch {m['torch']}, {m['threads']} threads; "
        f"batch {report['batch_size']} (x batch_multiplier), 64x64; median of {report['steps']} "
        f"steps after {report['warmup']} warm-up; load average at start "
        f"{', '.join(f'{x:.1f}' for x in m['load_average_start'])}, at end "
        f"{', '.join(f'{x:.1f}' for x in m['load_average_end'])} (shared machine: numbers are "
        "noisy; compare ratios within one run).",
        "",
        "Data path alone (indices -> uint8_batch -> float NCHW): "
        + "; ".join(f"{k}: {v:,.0f} images/s" for k, v in report["data_path_images_per_s"].items()),
        "",
        "Step times: median / min in seconds; img/s from the min (least disturbed by other jobs).",
        "",
        "| model | data | images/step | fixed batch: step s | img/s | data path: step s | img/s "
        "| data/fixed (median, min) | vs base (median, min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, per in report["models"].items():
        for label, r in per.items():
            if "skipped" in r:
                lines.append(f"| {name} | {label} | - | skipped: {r['skipped']} | | | | | |")
                continue
            base = (f"{r['over_base_step']:.2f}x, {r['over_base_step_min']:.2f}x"
                    if "over_base_step" in r else "")
            lines.append(
                f"| {name} | {label} | {r['images_per_step']} | {r['fixed_step_s']:.3f} / "
                f"{r['fixed_min_step_s']:.3f} | {r['fixed_max_images_per_s']:.0f} | "
                f"{r['data_step_s']:.3f} / {r['data_min_step_s']:.3f} | "
                f"{r['data_max_images_per_s']:.0f} | {r['data_over_fixed']:.2f}, "
                f"{r['data_over_fixed_min']:.2f} | {base} |")
    if report["cfasl_vs_base"]:
        lines += [
            "",
            "CFASL (sub_sec 16) vs its base method, steps interleaved on one fixed batch "
            "(requirement: <= 2x):",
            "",
            "| model | base | data | step s (median / min) | base step s (median / min) "
            "| ratio (median of pairs, of mins) |",
            "|---|---|---|---|---|---|",
        ]
        for name, per in report["cfasl_vs_base"].items():
            for label, r in per.items():
                lines.append(
                    f"| {name} | {r['base']} | {label} | {r['step_s']:.3f} / {r['min_step_s']:.3f} "
                    f"| {r['base_step_s']:.3f} / {r['base_min_step_s']:.3f} | "
                    f"{r['ratio_median_of_pairs']:.2f}x, {r['ratio_of_mins']:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
