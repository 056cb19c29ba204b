"""PDAE / DiTi training step against the base UNet's own training step, in one run.

The PDAE family trains an encoder and a shift decoder against a frozen DDPM. Its step runs the
frozen base once without autograd (encoder half + decoder half), feeds the base's encoder-half
activations to the shift decoder (so the encoder half is not run twice), and back-propagates
through the encoder and the shift decoder only. The base DDPM's own training step (stage 0) is
one forward and backward through the whole UNet plus an Adam step. Both are timed here on the
same batch, device and threads, **interleaved round by round** so that load from other processes
hits both alike; the figure is the median of the per-round ratios (PDAE step / base step).

* **base step**: ``ddpm``-style eps-MSE on the same UNet (a trainable copy of the frozen base),
  forward, backward, Adam;
* **pdae step**: ``model.training_losses`` (flip, t, noise, encoder, frozen base, shift decoder,
  the lambda-weighted loss; every loss term of the mode, two decoder passes for DiTi ``dual``),
  backward, Adam over the trainable parameters.

    python benchmarks/pdae_step.py                                    # diti/sprites, pdae/sprites
    python benchmarks/pdae_step.py --presets diti/sprites,diti/celeba64=2 --modes base,dual --rounds 3
    python benchmarks/pdae_step.py --presets diti/smoke --modes base,stop_grad,dual

Results go to ``benchmarks/results/pdae_step.{json,md}`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from disentkit.builders import build_model
from disentkit.config import load_config
from disentkit.models.base import DataFacts

RESULTS = Path(__file__).parent / "results"


def _channels(config) -> int:
    return 1 if config.data.name == "sprites" else 3


def _side(config) -> int:
    return int(config.data.params.image_size)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(preset: str, mode: str | None, batch: int, rounds: int, device: str) -> dict:
    overrides = [f"model.mode={mode}"] if mode else []
    config = load_config(preset, overrides)
    c, side = _channels(config), _side(config)
    torch.manual_seed(0)
    model = build_model(config, DataFacts((c, side, side))).to(device).train()
    base = copy.deepcopy(model.base).requires_grad_(True).train()  # stage 0: the same UNet, trainable
    pdae_opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-4)
    base_opt = torch.optim.Adam(base.parameters(), 1e-4)
    x = (torch.rand(batch, c, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device)
    schedule = model.schedule

    def base_step() -> None:
        t = torch.randint(0, schedule.num_steps, (batch,), device=device)
        noise = torch.randn_like(x)
        base_opt.zero_grad(set_to_none=True)
        F.mse_loss(base(schedule.q_sample(x, t, noise), t), noise).backward()
        base_opt.step()
        _sync(device)

    def pdae_step() -> None:
        pdae_opt.zero_grad(set_to_none=True)
        model.training_losses(x, 0)["loss"].backward()
        pdae_opt.step()
        _sync(device)

    base_step(), pdae_step()  # warm-up (allocations, kernels)
    base_times, pdae_times, ratios = [], [], []
    for _ in range(rounds):
        b, p = _timed(base_step), _timed(pdae_step)
        base_times.append(b)
        pdae_times.append(p)
        ratios.append(p / b)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"preset": preset, "mode": getattr(model.config, "mode", None), "batch": batch,
            "image": [c, side, side], "rounds": rounds,
            "base_params": sum(p.numel() for p in base.parameters()),
            "trainable_params": trainable, "base_step_s": statistics.median(base_times),
            "pdae_step_s": statistics.median(pdae_times), "ratio_median": statistics.median(ratios),
            "ratio_best": min(pdae_times) / min(base_times)}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _markdown(rows: list[dict], meta: dict) -> str:
    lines = ["# PDAE / DiTi training step vs the base UNet's training step", "",
             f"Machine: {meta['machine']}; torch {meta['torch']}; {meta['threads']} thread(s); device "
             f"{meta['device']}; load average at start {meta['load']}. Steps interleaved round by round; "
             "ratio = PDAE-family step / base-DDPM step (median of per-round ratios; best = best / best).",
             "", "| preset | mode | batch | image | base step (s) | pdae step (s) | ratio (median) "
             "| ratio (best) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        image = "x".join(map(str, r["image"]))
        lines.append(f"| {r['preset']} | {r['mode'] or '-'} | {r['batch']} | {image} | "
                     f"{r['base_step_s']:.3f} | {r['pdae_step_s']:.3f} | {r['ratio_median']:.2f} | "
                     f"{r['ratio_best']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="pdae/sprites,diti/sprites")
    parser.add_argument("--modes", default="",
                        help="DiTi modes to compare (comma list); default: the preset's")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS / "pdae_step")
    args = parser.parse_args()
    rows = []
    for entry in args.presets.split(","):
        preset, _, batch = entry.partition("=")  # preset=BATCH sets that preset's batch
        modes = args.modes.split(",") if args.modes and preset.startswith("diti/") else [None]
        for mode in modes:
            rows.append(bench(preset, mode, int(batch or args.batch), args.rounds, args.device))
            print(json.dumps(rows[-1]))
    meta = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs", "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": args.device,
            "load": " ".join(f"{v:.1f}" for v in os.getloadavg())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(rows, meta))
    print(_markdown(rows, meta))


if __name__ == "__main__":
    main()
