"""UNet training-step and sampler-step GFLOP/s against the machine's matmul rate, in one run.

For each configuration (the tiny CPU configurations and the 64-px reference ones of
:data:`disentkit.nn.unet.UNET_PRESETS`), two steps are timed:

* **training step**: a uint8 NHWC batch is moved to the device and converted to float [-1, 1]
  NCHW there (``disentkit.pixels.to_model_input``, the training loop's conversion), noised at
  uniform random ``t`` with ``DiscreteSchedule.q_sample`` (linear DDPM betas, T = 1000), then
  UNet forward, eps-MSE loss, backward and an Adam step (Ho et al. 2020, Algorithm 1);
* **sampler step**: one no-grad UNet evaluation in eval mode plus one deterministic DDIM update
  (``disentkit.diffusion.ddim_step``) on a 10-step PDAE grid.

FLOPs are counted, not estimated: ``torch.utils.flop_counter.FlopCounterMode`` over one whole
training step (forward + backward + Adam) and one whole sampler step, run untimed before the timed
rounds on the same model, batch, device and dtype. It counts matrix products, convolutions (forward
and the gradients backward actually computes) and scaled-dot-product attention at 2 FLOPs per
multiply-add; elementwise work (GroupNorm, SiLU, the loss, Adam, the DDIM update, the uint8
conversion) counts zero, so its time lowers the achieved rate, as it should.

The baseline is a float32 ``N x N x N`` matmul (``2 N^3`` FLOPs; N = 2048 on CPU, 8192 on CUDA)
timed in the same process, with the same threads, **interleaved with the steps**: every round
times one matmul, one training step and one sampler step, so that load from other processes hits
all three alike. The figure is the ratio of the step's GFLOP/s to the matmul's, reported as the
median of the per-round ratios and as best step over best matmul.

``--setups`` also compares ways to run the same training step (channels_last, thread counts,
Adam implementations, oneDNN off), one model per setup, interleaved round by round; only the
benchmark's own setup changes, never the network.

    python benchmarks/diffusion_step.py                                   # CPU, all configurations
    python benchmarks/diffusion_step.py --configs pdae_celeba64 --batch pdae_celeba64=2 \\
        --setups default,channels_last,threads1,adam_foreach
    python benchmarks/diffusion_step.py --device cuda --dtype bfloat16   # a GPU machine

Results go to ``benchmarks/results/diffusion_step.{json,md}`` (``--out`` to change).
"""

from __future__ import annotations

import os

# Set before torch loads its OpenMP runtime (libgomp reads it once): idle OpenMP threads sleep
# instead of spinning. On a CPU shared with other jobs, spinning threads fight those jobs for the
# cores at every parallel region's barrier; a 2-thread tiny UNet step ran 10-20x slower with
# libgomp's default than with PASSIVE (results/diffusion_step.md). Set OMP_WAIT_POLICY to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from disentkit.diffusion import DiscreteSchedule, ddim_grid, ddim_step  # noqa: E402
from disentkit.nn.unet import UNet, UNetConfig, count_parameters  # noqa: E402
from disentkit.pixels import to_model_input  # noqa: E402
from disentkit.training.cpu_memory import tune_glibc_malloc  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DTYPES = {"float32": None, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class BenchConfig:
    """One UNet preset at the input size its method trains it on, with default batch sizes."""

    preset: str
    side: int
    channels: int
    cpu_batch: int
    cuda_batch: int
    kind: str  # "tiny" or "64px"
    note: str


#: The tiny CPU configurations (32-px images; DisDiff's LDM sees the 8x8x3 VQ-f4 latents of
#: 32-px images) and the 64-px reference ones (DisDiff's LDM: 16x16x3 latents of 64-px images).
#: CPU batches are modest: the 64-px steps cost 80-660 GFLOP per image.
CONFIGS: dict[str, BenchConfig] = {
    "tiny_pdae": BenchConfig("tiny_pdae", 32, 3, 8, 128, "tiny", "32 px"),
    "tiny_disdiff": BenchConfig("tiny_disdiff", 8, 3, 8, 256, "tiny", "8x8x3 latents of 32 px"),
    "tiny_fdae": BenchConfig("tiny_fdae", 32, 3, 8, 128, "tiny", "32 px, stem 16"),
    "pdae_celeba64": BenchConfig("pdae_celeba64", 64, 3, 2, 64, "64px", "64 px, Diff-AE CelebA64 DDPM"),
    "disdiff_ldm": BenchConfig("disdiff_ldm", 16, 3, 16, 256, "64px", "16x16x3 latents of 64 px"),
    "fdae": BenchConfig("fdae", 64, 3, 1, 16, "64px", "64 px, EDM UNet 192 ch"),
}


@dataclass(frozen=True)
class Setup:
    """How a step is run: device, autocast dtype, memory format, threads, Adam implementation."""

    device: str = "cpu"
    dtype: str = "float32"
    channels_last: bool = False
    threads: int = 0  # 0: leave torch's setting
    adam: str = "default"  # default | foreach | fused | loop
    mkldnn: bool = True

    def autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast (GroupNorm stays float32 inside the UNet), or nothing."""
        dtype = DTYPES[self.dtype]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=dtype)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


#: Named variations of a base setup for ``--setups`` (applied on top of the command line's).
SETUP_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "channels_last": {"channels_last": True},
    "threads1": {"threads": 1},
    "adam_foreach": {"adam": "foreach"},
    "adam_fused": {"adam": "fused"},
    "no_mkldnn": {"mkldnn": False},
    "channels_last_foreach": {"channels_last": True, "adam": "foreach"},
}


# ------------------------------------------------------------------------------------------- FLOPs
def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` as FlopCounterMode counts them: matrix products, convolutions
    (forward, and the gradients backward actually computes) and attention; elementwise work (the
    loss, GroupNorm, Adam, the DDIM update) counts zero."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


# ------------------------------------------------------------------------------------------ timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes, with the device's queue drained before and after."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


@contextlib.contextmanager
def applied(setup: Setup) -> Iterator[None]:
    """The setup's thread count and oneDNN switch for the duration of a timing."""
    threads, mkldnn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    if setup.threads:
        torch.set_num_threads(setup.threads)
    torch.backends.mkldnn.enabled = setup.mkldnn
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = mkldnn


def matmul_fn(size: int, device: torch.device, dtype: torch.dtype = torch.float32) -> Callable[[], None]:
    """One ``size``^3 matmul into a preallocated output (``2 size^3`` FLOPs)."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, generator=gen, device=device).to(dtype)
    b = torch.randn(size, size, generator=gen, device=device).to(dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    return lambda: torch.mm(a, b, out=out)


def make_adam(params: Sequence[torch.nn.Parameter], kind: str) -> torch.optim.Adam:
    """Adam (lr 1e-4) in the requested implementation; "default" is torch's own choice."""
    options = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True},
               "loop": {"foreach": False}}
    if kind not in options:
        raise ValueError(f"adam must be one of {', '.join(options)}, got {kind!r:.40}")
    return torch.optim.Adam(params, lr=1e-4, **options[kind])


@dataclass
class StepBench:
    """A UNet with its optimiser, uint8 batch and sampler state, ready to time."""

    model: UNet
    setup: Setup
    images: torch.Tensor  # uint8 (B, H, W, C) on the host
    schedule: DiscreteSchedule = field(default_factory=DiscreteSchedule.linear)
    optimiser: torch.optim.Optimizer | None = None
    generator: torch.Generator | None = None
    _x: torch.Tensor | None = None
    _level: int = 0
    last_loss: torch.Tensor | None = None

    def __post_init__(self) -> None:
        device = torch.device(self.setup.device)
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(0)
        self.optimiser = make_adam(list(self.model.parameters()), self.setup.adam)
        grid = ddim_grid(self.schedule, 10, "pdae", "sample")
        self.grid_times = [int(v) for v in grid.times.tolist()]
        self.grid_abar = [float(v) for v in grid.alpha_bars.tolist()]

    def train_step(self) -> None:
        """uint8 -> float on the device, noise at random t, forward, eps-MSE, backward, Adam."""
        setup, model = self.setup, self.model
        model.train()
        x0 = to_model_input(self.images.to(self.device, non_blocking=True), 255.0, "pm1")
        x0 = x0.contiguous(memory_format=setup.memory_format)
        t = self.schedule.sample_t(x0.shape[0], self.generator, self.device)
        noise = torch.empty_like(x0).normal_(generator=self.generator)
        x_t = self.schedule.q_sample(x0, t, noise)
        with setup.autocast():
            eps = model(x_t, t)
        loss = F.mse_loss(eps.float(), noise)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.last_loss = loss.detach()

    def sampler_step(self) -> None:
        """One no-grad UNet evaluation + one DDIM (eta 0) update; restarts from noise at the end
        of the grid."""
        model, setup = self.model, self.setup
        if self._x is None or self._level == 0:
            b, h, w, c = self.images.shape
            self._x = torch.randn((b, c, h, w), generator=self.generator, device=self.device)
            self._x = self._x.contiguous(memory_format=setup.memory_format)
            self._level = len(self.grid_times) - 1
        level, x = self._level, self._x
        t = torch.full((x.shape[0],), self.grid_times[level], dtype=torch.long, device=self.device)
        model.eval()
        with torch.no_grad(), setup.autocast():
            eps = model(x, t).float()
            self._x = ddim_step(x, eps, self.grid_abar[level], self.grid_abar[level - 1])
        self._level = level - 1


def build_bench(name: str, batch: int, setup: Setup, seed: int = 0) -> StepBench:
    """The preset ``name`` (a key of :data:`CONFIGS`) on ``setup``'s device with a random uint8
    batch of ``batch`` images."""
    spec = CONFIGS[name]
    config = UNetConfig.preset(spec.preset, in_channels=spec.channels, out_channels=spec.channels)
    torch.manual_seed(seed)
    model = UNet(config).to(setup.device, memory_format=setup.memory_format)
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, spec.side, spec.side, spec.channels), generator=gen,
                           dtype=torch.uint8)
    if torch.device(setup.device).type == "cuda":
        images = images.pin_memory()
    return StepBench(model, setup, images)


def _summary(times: list[float], flops: int) -> dict[str, float]:
    median, best = statistics.median(times), min(times)
    return {"ms_median": 1e3 * median, "ms_min": 1e3 * best,
            "gflops_median": flops / median / 1e9, "gflops_best": flops / best / 1e9}


def _ratios(step_times: list[float], flops: int, mm_times: list[float], mm_flops: int) -> dict[str, float]:
    pairs = [(flops / s) / (mm_flops / m) for s, m in zip(step_times, mm_times)]
    return {"ratio_median_of_rounds": statistics.median(pairs),
            "ratio_best": (flops / min(step_times)) / (mm_flops / min(mm_times))}


def bench_config(name: str, batch: int, setup: Setup, *, warmup: int = 1, steps: int = 3,
                 matmul_size: int = 2048) -> dict[str, Any]:
    """Time ``steps`` rounds (after ``warmup``) of matmul, training step and sampler step of the
    configuration ``name``; figures per step and their ratios to the matmul rate."""
    spec = CONFIGS[name]
    bench = build_bench(name, batch, setup)
    device = bench.device
    mm = matmul_fn(matmul_size, device)
    mm_flops = 2 * matmul_size ** 3
    mm_low = None if DTYPES[setup.dtype] is None else matmul_fn(matmul_size, device, DTYPES[setup.dtype])
    times: dict[str, list[float]] = {"matmul": [], "train": [], "sample": [], "matmul_dtype": []}
    with applied(setup):
        flops = {"train": count_flops(bench.train_step), "sample": count_flops(bench.sampler_step)}
        for i in range(warmup + steps):
            round_times = {"matmul": timed(mm, device), "train": timed(bench.train_step, device),
                           "sample": timed(bench.sampler_step, device)}
            if mm_low is not None:
                round_times["matmul_dtype"] = timed(mm_low, device)
            if i >= warmup:
                for key, value in round_times.items():
                    times[key].append(value)
        threads = torch.get_num_threads()
    loss = float(bench.last_loss)
    if not math.isfinite(loss):
        raise RuntimeError(f"{name}: the training loss is {loss}")
    result: dict[str, Any] = {
        "preset": spec.preset, "kind": spec.kind, "note": spec.note, "batch": batch,
        "input": [spec.channels, spec.side, spec.side], "parameters": count_parameters(bench.model),
        "threads": threads, "train_gflop_per_step": flops["train"] / 1e9,
        "sample_gflop_per_step": flops["sample"] / 1e9, "loss": loss,
        "matmul": _summary(times["matmul"], mm_flops),
        "train": {**_summary(times["train"], flops["train"]),
                  **_ratios(times["train"], flops["train"], times["matmul"], mm_flops)},
        "sample": {**_summary(times["sample"], flops["sample"]),
                   **_ratios(times["sample"], flops["sample"], times["matmul"], mm_flops)},
    }
    if mm_low is not None:
        result[f"matmul_{setup.dtype}"] = _summary(times["matmul_dtype"], mm_flops)
        for key in ("train", "sample"):
            result[key][f"ratio_best_vs_{setup.dtype}_matmul"] = (
                (flops[key] / min(times[key])) / (mm_flops / min(times["matmul_dtype"])))
    return result


def compare_setups(name: str, batch: int, base: Setup, variants: Sequence[str], *, warmup: int = 1,
                   steps: int = 3, matmul_size: int = 2048) -> dict[str, Any]:
    """The training step of ``name`` under each named variant of ``base`` (one model each),
    interleaved round by round; each variant's matmul runs under its own thread setting."""
    unknown = [v for v in variants if v not in SETUP_VARIANTS]
    if unknown:
        raise SystemExit(f"unknown setup(s) {', '.join(unknown)[:100]}; expected some of "
                         f"{', '.join(SETUP_VARIANTS)}")
    setups = {v: replace(base, **SETUP_VARIANTS[v]) for v in variants}
    benches = {v: build_bench(name, batch, s) for v, s in setups.items()}
    first = variants[0]
    with applied(setups[first]):
        flops = count_flops(benches[first].train_step)
    device = torch.device(base.device)
    mm, mm_flops = matmul_fn(matmul_size, device), 2 * matmul_size ** 3
    times: dict[str, dict[str, list[float]]] = {v: {"matmul": [], "train": []} for v in variants}
    for i in range(warmup + steps):
        for v, bench in benches.items():
            with applied(setups[v]):
                pair = timed(mm, device), timed(bench.train_step, device)
            if i >= warmup:
                times[v]["matmul"].append(pair[0])
                times[v]["train"].append(pair[1])
    out: dict[str, Any] = {"config": name, "batch": batch, "train_gflop_per_step": flops / 1e9, "setups": {}}
    for v in variants:
        s = setups[v]
        out["setups"][v] = {
            "channels_last": s.channels_last, "threads": s.threads or torch.get_num_threads(),
            "adam": s.adam, "mkldnn": s.mkldnn,
            "matmul": _summary(times[v]["matmul"], mm_flops),
            "train": {**_summary(times[v]["train"], flops),
                      **_ratios(times[v]["train"], flops, times[v]["matmul"], mm_flops)},
        }
    return out


# -------------------------------------------------------------------------------------------- main
def parse_batches(text: str) -> dict[str, int]:
    """``name=B,name=B`` -> {name: B}."""
    out = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in CONFIGS or not value.isdigit() or int(value) < 1:
            raise SystemExit(f"--batch expects NAME=B with NAME one of {', '.join(CONFIGS)} and B >= 1, "
                             f"got {item[:60]!r}")
        out[name] = int(value)
    return out


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(setup: Setup) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(), "processor": cpu_name(),
        "cpus": os.cpu_count(), "torch": torch.__version__, "device": setup.device,
        "dtype": setup.dtype, "channels_last": setup.channels_last, "adam": setup.adam,
        "threads": setup.threads or torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(), "mkldnn": setup.mkldnn,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "load_average_start": list(os.getloadavg()),
    }
    if torch.device(setup.device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(setup.device)
        info["cuda_matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
        info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    return info


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES),
                        help="bfloat16: autocast (GroupNorm stays float32)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch threads (default: the CPUs this process may use)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--adam", default="default", choices=["default", "foreach", "fused", "loop"])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names")
    parser.add_argument("--batch", default="", help="per-config batch, e.g. pdae_celeba64=4,fdae=1")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed rounds per configuration")
    parser.add_argument("--matmul-size", type=int, default=0, help="default: 2048 on CPU, 8192 on CUDA")
    parser.add_argument("--setups", default="",
                        help=f"compare training-step setups on --setups-config: {', '.join(SETUP_VARIANTS)}")
    parser.add_argument("--setups-config", default="pdae_celeba64")
    parser.add_argument("--out", default=str(RESULTS / "diffusion_step"))
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown config(s) {', '.join(unknown)[:100]}; expected some of "
                         f"{', '.join(CONFIGS)}")
    setup = Setup(device=args.device, dtype=args.dtype, channels_last=args.channels_last,
                  threads=args.threads, adam=args.adam)
    cuda = torch.device(setup.device).type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    else:
        tune_glibc_malloc()  # as the training engine does on CPU runs
    torch.set_num_threads(args.threads)
    batches = parse_batches(args.batch)
    matmul_size = args.matmul_size or (8192 if cuda else 2048)
    report: dict[str, Any] = {"machine": machine_info(setup), "warmup": args.warmup, "steps": args.steps,
                              "matmul_size": matmul_size, "configs": {}}
    for name in names:
        spec = CONFIGS[name]
        batch = batches.get(name, spec.cuda_batch if cuda else spec.cpu_batch)
        result = bench_config(name, batch, setup, warmup=args.warmup, steps=args.steps,
                              matmul_size=matmul_size)
        report["configs"][name] = result
        print(name, json.dumps(result), flush=True)
    if args.setups:
        name = args.setups_config
        spec = CONFIGS[name]
        batch = batches.get(name, spec.cuda_batch if cuda else spec.cpu_batch)
        report["setups"] = compare_setups(name, batch, setup, args.setups.split(","),
                                          warmup=args.warmup, steps=args.steps, matmul_size=matmul_size)
        print("setups", json.dumps(report["setups"]), flush=True)
    report["machine"]["load_average_end"] = list(os.getloadavg())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return report


# ---------------------------------------------------------------------------------------- markdown
def _load(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page (machine, per-configuration table, setup comparison)."""
    m = report["machine"]
    where = m.get("gpu", f"{m['processor']}, {m['cpus']} CPUs")
    lines = [
        "# UNet training and sampler steps vs the matmul rate (`benchmarks/diffusion_step.py`)",
        "",
        f"{m['platform']}; {where}; torch {m['torch']}; device {m['device']}, {m['dtype']}, "
        f"{m['threads']} threads (OMP_WAIT_POLICY {m.get('omp_wait_policy') or 'unset'}), channels_last "
        f"{m['channels_last']}, Adam {m['adam']}. "
        f"Load average at start {_load(m['load_average_start'])}, at end "
        f"{_load(m.get('load_average_end', []))}.",
        "",
        f"Median / min of {report['steps']} rounds after {report['warmup']} warm-up; every round times a "
        f"float32 {report['matmul_size']}^3 matmul, a training step and a sampler step, one after the "
        "other. FLOPs per step from FlopCounterMode (matmul, convolution, attention; 2 per "
        "multiply-add). Ratio = step GFLOP/s / matmul GFLOP/s: median of the per-round ratios, and "
        "best step over best matmul.",
        "",
        "| config | input | batch | params | step | GFLOP/step | ms (median / min) | GFLOP/s (best) "
        "| matmul GFLOP/s (median / best) | ratio (median, best) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["configs"].items():
        mm = r["matmul"]
        for key, label in (("train", "training"), ("sample", "sampler")):
            s = r[key]
            lines.append(
                f"| {name} | {r['note']} | {r['batch']} | {r['parameters'] / 1e6:.1f} M | {label} | "
                f"{r[f'{key}_gflop_per_step']:.2f} | {s['ms_median']:.0f} / {s['ms_min']:.0f} | "
                f"{s['gflops_best']:.1f} | {mm['gflops_median']:.1f} / {mm['gflops_best']:.1f} | "
                f"**{s['ratio_median_of_rounds']:.2f}**, {s['ratio_best']:.2f} |")
    verdicts = [f"{name} {r['train']['ratio_median_of_rounds']:.2f} "
                f"({'met' if r['train']['ratio_median_of_rounds'] >= 0.5 else 'not met'})"
                for name, r in report["configs"].items() if r["kind"] == "64px"]
    if verdicts:
        lines += ["", "Target, a 64-px training step at >= 0.5 of the matmul rate (median of rounds): "
                  + "; ".join(verdicts) + "."]
    if "setups" in report:
        c = report["setups"]
        lines += [
            "",
            f"## Setups of the {c['config']} training step (batch {c['batch']}, "
            f"{c['train_gflop_per_step']:.1f} GFLOP), interleaved round by round",
            "",
            "| setup | channels_last | threads | Adam | oneDNN | ms (median / min) | matmul GFLOP/s "
            "(median) | ratio (median, best) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for v, s in c["setups"].items():
            t = s["train"]
            lines.append(
                f"| {v} | {s['channels_last']} | {s['threads']} | {s['adam']} | {s['mkldnn']} | "
                f"{t['ms_median']:.0f} / {t['ms_min']:.0f} | {s['matmul']['gflops_median']:.1f} | "
                f"**{t['ratio_median_of_rounds']:.2f}**, {t['ratio_best']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
