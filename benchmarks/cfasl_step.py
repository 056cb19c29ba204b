"""Step time of CFASL against its base model, measured in the same process (a ratio).

One training step = forward (``training_losses``) + backward + gradient clipping + Adam step, at
batch 64 on 64x64 images on the CPU. Base and CFASL steps are interleaved (one round = ``--steps``
steps of each model) so that load from other processes affects both alike; the medians and minima
of the step times and their ratios are reported, with the load average before and after.

``--malloc tuned`` raises glibc's mmap and trim thresholds (``mallopt``) before anything is
allocated, so freed memory stays in the process: with the defaults the step's large activations
are returned to the kernel and faulted back in every step (about 18k minor page faults per base
step, 23k per CFASL step, against none when tuned), and the decoder pass on CFASL's 2B codes costs
about 3x the pass on B codes instead of 2x (see results/cfasl_step.md).
``--breakdown`` also times the parts of the step on their own (forward + backward each);
``--ablate`` adds a third interleaved model, CFASL with its symmetry terms replaced by zeros (the
decoder still runs on 2B codes), which isolates the cost that the doubled decoder batch imposes.

    python benchmarks/cfasl_step.py                          # beta-VAE base, sub_sec 16, 1 thread
    python benchmarks/cfasl_step.py --threads 2 --malloc tuned --rounds 12 --breakdown
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch

from disentkit.models import symmetry
from disentkit.models.losses import reconstruction_loss
from disentkit.registry import MODELS
from disentkit.training.cpu_memory import tune_glibc_malloc

tune_malloc = tune_glibc_malloc


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


def time_steps(step: Callable[[], None], count: int) -> list[float]:
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        step()
        out.append(time.perf_counter() - t0)
    return out


def interleaved(fns: dict[str, Callable[[], None]], rounds: int, steps: int) -> dict[str, list[float]]:
    for fn in fns.values():  # warm-up
        time_steps(fn, 2)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            times[key] += time_steps(fn, steps)
    return times


def without_symmetry_terms(cfasl) -> None:
    """Replace the model's symmetry terms by zeros (transformed codes = the batch's codes reversed,
    so the decoder still runs on 2B codes): what is left of the step is the base objective on a
    doubled decoder batch."""
    from disentkit.models.cfasl import SymmetryTerms

    def zero_terms(mean, logvar, z):
        half = z.shape[0] // 2
        zero = z.sum() * 0.0
        group = torch.eye(z.shape[1]).expand(half, -1, -1)
        off = torch.zeros(half, z.shape[1], dtype=torch.long)
        return SymmetryTerms(zero, zero, zero, zero, zero, zero, z.flip(0), group, off.float(), off)

    cfasl.symmetry_terms = zero_terms


def breakdown_parts(cfasl, batch: torch.Tensor) -> dict[str, Callable[[], None]]:
    """Forward + backward of each part of the CFASL step on its own (parameters' gradients
    accumulate; that does not change the cost)."""
    size = batch.shape[0]
    dim = cfasl.codebook.latent_dim
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(size, dim, generator=gen, requires_grad=True)
    mean = torch.randn(size, dim, generator=gen, requires_grad=True)
    logvar = torch.randn(size, dim, generator=gen, requires_grad=True)
    codes2 = torch.randn(2 * size, dim, generator=gen, requires_grad=True)
    target2 = torch.cat([batch, batch])
    with torch.no_grad():
        delta0 = cfasl.codebook.displacements(z)
    delta = delta0.clone().requires_grad_()
    choice = torch.randint(cfasl.codebook.sub_sec, (dim,), generator=gen)
    likelihood = cfasl.config.likelihood

    def encoder():
        m, lv = cfasl.posterior(batch)
        (m.sum() + lv.sum()).backward()

    def decoder(count: int):
        def run():
            reconstruction_loss(cfasl.decoder(codes2[:count]), target2[:count], likelihood).backward()
        return run

    def group_elements():
        cfasl.codebook.group_elements().sum().backward()

    def displacements():
        cfasl.codebook.displacements(z).sum().backward()

    def composite():
        half = size // 2
        sl, fl = cfasl.predictor(torch.cat([mean[:half], logvar[:half], mean[half:], logvar[half:]], -1))
        weights, _, _ = symmetry.composite_weights(sl, fl, cfasl.config.tau)
        algebra = cfasl.codebook.algebra(weights)
        group, inverse = torch.linalg.matrix_exp(algebra), torch.linalg.matrix_exp(-algebra)
        (symmetry.act(z[:half], group).sum() + symmetry.act(z[half:], inverse).sum()).backward()

    def all_terms():
        sym = cfasl.symmetry_terms(mean, logvar, z)
        (sym.sparsity + sym.parallel + sym.orthogonal + sym.commutator + sym.switch
         + sym.encoder_equivariance + sym.transformed.sum()).backward()

    return {
        "encoder (B images)": encoder,
        "decoder, B codes": decoder(size),
        "decoder, 2B codes": decoder(2 * size),
        "codebook exp(g_k), K elements": group_elements,
        "displacements (exp + K x B products)": displacements,
        "parallel loss": lambda: symmetry.parallel_loss(delta).backward(),
        "sparsity loss": lambda: symmetry.sparsity_loss(delta).backward(),
        "orthogonal loss": lambda: symmetry.orthogonal_loss(delta, choice).backward(),
        "commutator loss": lambda: symmetry.commutator_loss(cfasl.codebook.elements).backward(),
        "composite symmetry + switches + G, G^-1": composite,
        "all symmetry terms (symmetry_terms)": all_terms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="betavae")
    parser.add_argument("--sub-sec", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--architecture", default="cfasl")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="steps per model per round")
    parser.add_argument("--malloc", choices=("default", "tuned"), default="default")
    parser.add_argument("--breakdown", action="store_true", help="also time the step's parts")
    parser.add_argument("--ablate", action="store_true",
                        help="also time CFASL with its symmetry terms replaced by zeros")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()

    tuned = tune_malloc() if args.malloc == "tuned" else False
    if args.malloc == "tuned" and not tuned:
        parser.error("--malloc tuned needs glibc (mallopt was not available or refused)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_start = os.getloadavg()
    shape = (args.channels, 64, 64)
    batch = (torch.rand(args.batch, *shape) > 0.5).float()
    common = dict(latent_dim=10, architecture=args.architecture, likelihood="bernoulli",
                  init="xavier_u01", estimator="mss")  # same TC estimator for base and CFASL
    base = build(args.base, shape, **common)
    cfasl = build(f"cfasl_{args.base}", shape, sub_sec=args.sub_sec, **common)
    models = {"base": step_fn(base, batch), "cfasl": step_fn(cfasl, batch)}
    if args.ablate:
        no_sym = build(f"cfasl_{args.base}", shape, sub_sec=args.sub_sec, **common)
        without_symmetry_terms(no_sym)
        models["cfasl_no_sym"] = step_fn(no_sym, batch)
    times = interleaved(models, args.rounds, args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    per_round = [statistics.median(times["cfasl"][i:i + args.steps])
                 / statistics.median(times["base"][i:i + args.steps])
                 for i in range(0, len(times["base"]), args.steps)]
    parts: dict[str, dict[str, float]] = {}
    if args.breakdown:
        part_times = interleaved(breakdown_parts(cfasl, batch), args.rounds, args.steps)
        parts = {k: {"median_ms": 1000 * statistics.median(v), "min_ms": 1000 * min(v)}
                 for k, v in part_times.items()}
    load_end = os.getloadavg()

    print(f"base={args.base} sub_sec={args.sub_sec} batch={args.batch} 64x64x{args.channels} "
          f"architecture={args.architecture} threads={args.threads} malloc={args.malloc} "
          f"steps={len(times['base'])} per model, load average {load_start[0]:.2f} -> {load_end[0]:.2f}")
    for k in times:
        print(f"  {k:12s} median {1000 * med[k]:7.1f} ms   min {1000 * low[k]:7.1f} ms   "
              f"ratio to base: of medians {med[k] / med['base']:.2f}, of minima {low[k] / low['base']:.2f}")
    print(f"  cfasl / base: median of per-round ratios {statistics.median(per_round):.2f}")
    for name, value in parts.items():
        print(f"  part {name:42s} median {value['median_ms']:7.2f} ms   min {value['min_ms']:7.2f} ms")
    if args.json:
        record = {
            "args": vars(args), "torch": torch.__version__, "load_average": [load_start, load_end],
            **{f"{k}_ms": [1000 * t for t in v] for k, v in times.items()},
            "ratio_of_medians": med["cfasl"] / med["base"], "ratio_of_minima": low["cfasl"] / low["base"],
            "median_of_round_ratios": statistics.median(per_round), "parts": parts,
            **({"no_sym_ratio_of_medians": med["cfasl_no_sym"] / med["base"],
                "no_sym_ratio_of_minima": low["cfasl_no_sym"] / low["base"]} if args.ablate else {}),
        }
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=1)


if __name__ == "__main__":
    main()
