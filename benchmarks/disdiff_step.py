"""DisDiff stage 3: one training step against one forward of the frozen UNet, in the same run.

For each preset (random weights; nothing is loaded), rounds interleave, so load from other
processes hits every measurement alike:

* ``unet_forward``: one no-grad forward of the frozen latent UNet on the batch's latents (the
  unit the ratio is expressed in);
* ``step``: one whole stage-3 training step (``DisDiff.training_losses``: first-stage encode,
  encoder, frozen UNet, the N shift passes as one batch, L_rec, the two decodes and the frozen
  encoder for L_dis; backward; AdamW step);
* ``shift_batched`` / ``shift_loop``: forward + backward of the N shift-decoder passes alone, as
  one batch of N x B (disentkit) or one pass per factor (the reference's loop in
  ``openaimodel_shift.py:1011-1047``), on the same frozen encoder-half outputs;
* ``decode_encode``: forward + backward of L_dis's x0' branch alone (first-stage decode without
  quantisation, then the frozen encoder), the other large part of the step.

The reference also deep-copies the encoder every step; disentkit reads it in place
(``torch.func.functional_call``), so that cost is absent here by construction.

    python benchmarks/disdiff_step.py                                # CPU: shapes3d_like B 8, shapes3d B 2
    python benchmarks/disdiff_step.py --presets disdiff/shapes3d=128 --device cuda --rounds 10

Results go to ``benchmarks/results/disdiff_step.{json,md}`` (``--out`` to change).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep (shared CPU)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from disentkit.builders import build_model  # noqa: E402
from disentkit.config import load_config  # noqa: E402
from disentkit.models.base import DataFacts  # noqa: E402

DEFAULT_PRESETS = ("disdiff/shapes3d_like=8", "disdiff/shapes3d=2")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _size(preset: str) -> int:
    data = load_config(preset).data
    return int(getattr(data, "image_size", 64) or 64)


def measure(preset: str, batch: int, rounds: int, device: torch.device) -> dict[str, Any]:
    """Median seconds of each measurement over ``rounds`` interleaved rounds (one warm-up)."""
    torch.manual_seed(0)
    config = load_config(preset)
    side = _size(preset)
    model = build_model(config, DataFacts((3, side, side), 1000)).to(device).train()
    with torch.no_grad():  # a trained decoder's fields are not zero: skip the zero init
        for p in model.shift.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0, 0.02)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    x = torch.rand(batch, 3, side, side, device=device) * 2 - 1
    z0 = model.to_latent(x)
    t = torch.randint(0, model.schedule.num_steps, (batch,), device=device)
    code = model.encode(x).detach()
    with torch.no_grad():
        h, skips, emb = model.unet.encode(z0, t)

    def unet_forward() -> None:
        with torch.no_grad():
            model.unet(z0, t)

    def step() -> None:
        optim.zero_grad(set_to_none=True)
        model.training_losses(x, 0)["loss"].backward()
        optim.step()

    def shift_batched() -> None:
        model.shift.fields(h, skips, emb, code.requires_grad_(True)).sum().backward()

    def shift_loop() -> None:
        shift, n = model.shift, model.config.num_factors
        offsets = shift.factor_offsets()
        chunks = code.reshape(batch, n, -1)
        total = 0
        for k in range(n):
            total = total + shift.run(h, skips, emb + offsets[k], shift.code_embed(chunks[:, k])).sum()
        total.backward()

    def decode_encode() -> None:
        latent = z0.detach().requires_grad_(True)
        model._frozen_encode(model.from_latent(latent, quantize=False)).sum().backward()

    parts = {"unet_forward": unet_forward, "step": step, "shift_batched": shift_batched,
             "shift_loop": shift_loop, "decode_encode": decode_encode}
    for fn in parts.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in parts}
    for _ in range(rounds):
        for name, fn in parts.items():
            times[name].append(_timed(fn, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "preset": preset, "batch": batch, "image_size": side, "num_factors": model.config.num_factors,
        "latent_shape": list(model.latent_shape), "rounds": rounds, "median_s": med,
        "all_s": times,
        "step_over_unet_forward": med["step"] / med["unet_forward"],
        "shift_loop_over_batched": med["shift_loop"] / med["shift_batched"],
    }


def _markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# DisDiff stage-3 step vs the frozen UNet's forward (benchmarks/disdiff_step.py)", "",
        f"Device {meta['device']}, torch {meta['torch']}, {meta['threads']} thread(s), "
        f"{meta['machine']}; random weights, medians of interleaved rounds.", "",
        "| preset | batch | N | UNet forward (s) | step (s) | step / forward | shift N passes batched (s) "
        "| one pass per factor (s) | loop / batched | x0' decode + encode (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r["median_s"]
        lines.append(f"| {r['preset']} | {r['batch']} | {r['num_factors']} | {m['unet_forward']:.4f} | "
                     f"{m['step']:.3f} | {r['step_over_unet_forward']:.1f} | {m['shift_batched']:.3f} | "
                     f"{m['shift_loop']:.3f} | {r['shift_loop_over_batched']:.2f} | "
                     f"{m['decode_encode']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(DEFAULT_PRESETS),
                        help="PRESET=BATCH entries (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "disdiff_step")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    results = []
    for entry in args.presets:
        preset, _, batch = entry.partition("=")
        result = measure(preset, int(batch or 8), args.rounds, device)
        print(json.dumps({k: v for k, v in result.items() if k != "all_s"}))
        results.append(result)
    meta = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.platform(), "load_average": list(os.getloadavg())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    args.out.with_suffix(".md").write_text(_markdown(results, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
