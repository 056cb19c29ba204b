"""Step time of CFASL against its base model, measured in the same process (a ratio).

One training step = forward (``training_losses``) + backward + gradient clipping + Adam step, at
batch 64 on 64x64 images on the CPU. Base and CFASL models are timed in interleaved rounds so that
load from other processes affects both alike; the ratio of medians is reported.

    python benchmarks/cfasl_step.py                          # beta-VAE base, sub_sec 16, 1 thread
    python benchmarks/cfasl_step.py --base betavae --sub-sec 10 --threads 2 --rounds 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from disentkit.registry import MODELS


def build(name: str, image_shape, **params):
    cls = MODELS.get(name)
    fields = set(cls.Config.__dataclass_fields__)
    return cls(cls.Config(**{k: v for k, v in params.items() if k in fields}), image_shape)


def step_fn(model, batch):
    opt = torch.optim.Adam([g for s in model.optimiser_specs() for g in s.param_groups], lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model.training_losses(batch, 0)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def time_steps(step, count: int) -> list[float]:
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        step()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="betavae")
    parser.add_argument("--sub-sec", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--architecture", default="cfasl")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=5, help="steps per model per round")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (args.channels, 64, 64)
    batch = (torch.rand(args.batch, *shape) > 0.5).float()
    common = dict(latent_dim=10, architecture=args.architecture, likelihood="bernoulli",
                  init="xavier_u01")
    base = build(args.base, shape, **common)
    cfasl = build(f"cfasl_{args.base}", shape, sub_sec=args.sub_sec, **common)
    steps = {"base": step_fn(base, batch), "cfasl": step_fn(cfasl, batch)}
    for step in steps.values():  # warm-up
        time_steps(step, 2)
    times: dict[str, list[float]] = {"base": [], "cfasl": []}
    for _ in range(args.rounds):
        for key, step in steps.items():
            times[key] += time_steps(step, args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    print(f"base={args.base} sub_sec={args.sub_sec} batch={args.batch} 64x64x{args.channels} "
          f"architecture={args.architecture} threads={args.threads} "
          f"steps={len(times['base'])} per model")
    for k in ("base", "cfasl"):
        print(f"  {k:6s} median {1000 * med[k]:7.1f} ms   min {1000 * low[k]:7.1f} ms")
    print(f"  ratio  median {med['cfasl'] / med['base']:.2f}   min {low['cfasl'] / low['base']:.2f}")


if __name__ == "__main__":
    main()
