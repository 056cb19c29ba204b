"""FDAE's training step against the bare UNet step, in one run: what CMFNet costs.

For each configuration (the ``fdae/smoke`` and ``fdae/shapes3d_like`` networks on CPU, and the
paper's 64-px network of ``fdae/shapes3d`` where a GPU is there or when asked for), two steps are
timed on the same model, batch and device:

* **fdae**: ``FDAE.training_losses`` (CMFNet on the clean batch: ResNet trunk, content and mask
  heads, mask decoder, softmax, condition map; the EDM objective with the condition map added
  after the UNet's first convolution; L_CD and L_ME), backward, RAdam step over every parameter;
* **unet**: the same EDM objective through the same UNet without a condition map (the bare
  denoiser FDAE is built on), backward, RAdam step over the UNet's parameters.

The rounds are interleaved (one fdae step, one unet step per round) so that load from other
processes hits both alike; the overhead is the median of the per-round time ratios fdae / unet.
FLOPs are counted, not estimated (``torch.utils.flop_counter.FlopCounterMode`` over one whole
step of each kind), and for the paper configuration also on the meta device at the paper's batch
of 32, which needs no memory and gives the FLOP ratio on any machine.

    python benchmarks/fdae_step.py                      # CPU: smoke, shapes3d_like (+ paper FLOPs)
    python benchmarks/fdae_step.py --configs paper --device cuda --dtype bfloat16

Results go to ``benchmarks/results/fdae_step.{json,md}`` (``--out`` to change).
"""

from __future__ import annotations

import os

# idle OpenMP threads sleep instead of spinning on a shared CPU (see benchmarks/diffusion_step.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from disentkit.config import load_config  # noqa: E402
from disentkit.models.fdae import FDAE  # noqa: E402
from disentkit.nn.unet import count_parameters  # noqa: E402

RESULTS = Path(__file__).parent / "results"
#: name -> (preset, image side, CPU batch, GPU batch)
CONFIGS: dict[str, tuple[str, int, int, int]] = {
    "smoke": ("fdae/smoke", 32, 4, 32),
    "shapes3d_like": ("fdae/shapes3d_like", 32, 16, 32),
    "paper": ("fdae/shapes3d", 64, 1, 32),
}


def build(name: str, device: torch.device) -> FDAE:
    preset, side, _, _ = CONFIGS[name]
    torch.manual_seed(0)
    with device:
        return FDAE(load_config(preset).model.params, (3, side, side))


def bare_losses(model: FDAE, x0: torch.Tensor) -> torch.Tensor:
    """The EDM objective of FDAE through its UNet alone (no condition map, no auxiliary terms)."""
    sigma = torch.exp(model.edm.p_mean + model.edm.p_std * torch.randn(x0.shape[0], device=x0.device))
    x_t = model.edm.add_noise(x0, sigma, torch.randn_like(x0))
    per_sample = ((model.denoised(x_t, sigma, None).float() - x0.float()) ** 2).flatten(1).mean(1)
    return (model.edm.loss_weight(sigma) * per_sample).mean()


def make_steps(model: FDAE, x0: torch.Tensor, dtype: torch.dtype | None) -> dict[str, Callable[[], None]]:
    full = torch.optim.RAdam(model.parameters(), 1e-4)
    unet_only = torch.optim.RAdam(model.unet.parameters(), 1e-4)
    autocast = (lambda: torch.autocast(x0.device.type, dtype=dtype)) if dtype else contextlib.nullcontext

    def fdae_step() -> None:
        with autocast():
            loss = model.training_losses(x0, 0)["loss"]
        full.zero_grad(set_to_none=True)
        loss.backward()
        full.step()

    def unet_step() -> None:
        with autocast():
            loss = bare_losses(model, x0)
        unet_only.zero_grad(set_to_none=True)
        loss.backward()
        unet_only.step()

    return {"fdae": fdae_step, "unet": unet_step}


def count_flops(step: Callable[[], None]) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def meta_flops(name: str, batch: int) -> dict[str, Any]:
    """FLOPs of both steps on the meta device (forward + backward; the optimiser counts zero)."""
    model = build(name, torch.device("meta"))
    side = CONFIGS[name][1]
    x0 = torch.zeros(batch, 3, side, side, device="meta")
    flops = {}
    for kind, loss_fn in (("fdae", lambda: model.training_losses(x0, 0)["loss"]),
                          ("unet", lambda: bare_losses(model, x0))):
        model.zero_grad(set_to_none=True)
        with FlopCounterMode(display=False) as counter:
            loss_fn().backward()
        flops[kind] = int(counter.get_total_flops())
    return {"batch": batch, "gflop": {k: v / 1e9 for k, v in flops.items()},
            "flop_ratio": flops["fdae"] / flops["unet"]}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(name: str, device: torch.device, dtype: torch.dtype | None, rounds: int,
          batch: int) -> dict[str, Any]:
    model = build(name, device).train()
    side = CONFIGS[name][1]
    x0 = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1
    steps = make_steps(model, x0, dtype)
    flops = {kind: count_flops(step) for kind, step in steps.items()}  # also the warm-up
    times: dict[str, list[float]] = {"fdae": [], "unet": []}
    for _ in range(rounds):
        for kind, step in steps.items():
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            times[kind].append(time.perf_counter() - start)
    ratios = [f / u for f, u in zip(times["fdae"], times["unet"])]
    return {
        "preset": CONFIGS[name][0], "image_side": side, "batch": batch, "rounds": rounds,
        "parameters": {"cmfnet": count_parameters(model.cmfnet), "unet": count_parameters(model.unet)},
        "step_s_median": {k: statistics.median(v) for k, v in times.items()},
        "step_s_all": times,
        "gflop": {k: v / 1e9 for k, v in flops.items()},
        "flop_ratio": flops["fdae"] / flops["unet"],
        "time_ratio_median": statistics.median(ratios),
        "time_ratio_all": ratios,
    }


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        "# FDAE step vs the bare UNet step",
        "",
        f"`python benchmarks/fdae_step.py {results['argv']}` on {env['device']} ({env['threads']} threads, "
        f"dtype {env['dtype']}, torch {env['torch']}, load average before the run "
        f"{env['load_before']}). fdae: CMFNet + condition map + EDM UNet + L_CD + L_ME, RAdam over "
        "everything; unet: the same EDM objective through the same UNet without a condition map. "
        "Time ratio: median over interleaved rounds of fdae / unet.",
        "",
        "| config | side | batch | CMFNet params | UNet params | fdae s/step | unet s/step | time ratio | "
        "FLOP ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["timed"].items():
        step = r["step_s_median"]
        lines.append(f"| {name} | {r['image_side']} | {r['batch']} | {r['parameters']['cmfnet']:,} | "
                     f"{r['parameters']['unet']:,} | {step['fdae']:.3f} | {step['unet']:.3f} | "
                     f"{r['time_ratio_median']:.2f} | {r['flop_ratio']:.3f} |")
    for name, r in results.get("meta_flops", {}).items():
        gflop = r["gflop"]
        lines += ["", f"{name} on the meta device at batch {r['batch']}: fdae {gflop['fdae']:.0f} GFLOP, "
                      f"unet {gflop['unet']:.0f} GFLOP per step (forward + backward), FLOP ratio "
                      f"{r['flop_ratio']:.4f}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="", help="comma-separated subset of " + ", ".join(CONFIGS)
                        + " (default: smoke, shapes3d_like on CPU; all on CUDA)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=0, help="batch size (0: the configuration's)")
    parser.add_argument("--no-meta", action="store_true", help="skip the paper FLOPs on the meta device")
    parser.add_argument("--out", type=Path, default=RESULTS / "fdae_step")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    default = list(CONFIGS) if gpu else ["smoke", "shapes3d_like"]
    names = [n for n in args.configs.split(",") if n] or default
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else None
    results: dict[str, Any] = {
        "argv": " ".join(argv if argv is not None else sys.argv[1:]),
        "environment": {"device": torch.cuda.get_device_name(device) if gpu
                        else platform.processor() or "cpu",
                        "threads": torch.get_num_threads(), "dtype": args.dtype, "torch": torch.__version__,
                        "load_before": list(os.getloadavg())},
        "timed": {},
    }
    for name in names:
        batch = args.batch or CONFIGS[name][3 if gpu else 2]
        results["timed"][name] = bench(name, device, dtype, args.rounds, batch)
        print(name, json.dumps({k: results["timed"][name][k] for k in ("step_s_median", "time_ratio_median",
                                                                       "flop_ratio")}))
    if not args.no_meta:
        results["meta_flops"] = {"paper": meta_flops("paper", 32)}
    results["environment"]["load_after"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
