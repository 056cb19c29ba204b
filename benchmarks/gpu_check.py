"""The one-shot GPU check (issue 16), driven by ``benchmarks/gpu_check.sh``.

In at most ``--budget-s`` seconds (480 by default, the script's 8 minutes) it records, section by
section, in ``benchmarks/results/gpu_<device>.json`` (written again after every section, so a
check cut short keeps what it measured):

a. the conv beta-VAE (disentanglement_lib's nets, 64x64 procedural sprites) through the engine:
   images/s at batch 64 and 256, eager and with each fast option, and a plain hand-written
   PyTorch loop of the same net and data in the same run with the same options (the ratio
   engine / plain is the figure);
b. the peak device memory of each of those timings;
c. ``disentkit sweep --parallel N`` for N = 1, 4, 8: N seeds at once on the one device, the
   aggregate images/s (the sum of the runs' steady log windows) and the wall time;
d. the diffusion family's UNet at 64 px (Diff-AE's CelebA-64 DDPM UNet, ``pdae_celeba64``),
   batch 128, bf16: training step time and peak memory;
e. in the time left, a beta-VAE (beta 4, Adam 1e-4, batch 64; the dlib study's settings) on the
   full procedural sprites grid (64 px, 737,280 images) trained for as many of the study's
   300,000 steps as the budget allows, then scored with the study preset; the steps reached and
   the scores. DCI is ``dci_fast`` here (the reference estimator alone takes minutes on CPU).

Everything is procedural (no files, no network). ``--dry`` runs every section at tiny sizes on
the CPU in seconds (a test runs it). The figures' targets on one H200-class GPU are recorded
beside them: >= 30,000 img/s at batch 64, >= 100,000 img/s at batch 256, >= 1.0x the plain loop,
the full 300k steps inside the budget.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_vs_plain_loop import Options, engine_rate, plain_loop_rate  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TARGETS = {"batch64_images_per_s": 30_000, "batch256_images_per_s": 100_000,
           "engine_over_plain": 1.0, "study_steps": 300_000}
STUDY_METRICS = ["mig", "factor_vae", "dci_fast", "sap", "beta_vae"]


@dataclass(frozen=True)
class Sizes:
    """How big each section is (the GPU sizes, or tiny ones for ``--dry``)."""

    image_size: int = 64
    #: the timing grid of sections a and c: 3 x 6 x orientations x positions^2 images
    positions: int = 8
    orientations: int = 10
    batches: tuple[int, ...] = (64, 256)
    engine_steps: int = 400
    plain_steps: int = 200
    compile_variants: bool = True
    sweep_ns: tuple[int, ...] = (1, 4, 8)
    sweep_steps: int = 3000
    unet: str = "pdae_celeba64"
    unet_batch: int = 128
    unet_dtype: str = "bfloat16"
    unet_steps: int = 10
    study_positions: int = 32
    study_orientations: int = 40
    study_steps: int = 300_000
    study_preset: str = "study"
    study_metrics: tuple[str, ...] = tuple(STUDY_METRICS)
    #: seconds kept for the study run's scoring
    eval_reserve_s: float = 90.0
    #: each section's share of the budget (the study run gets what is left)
    shares: dict[str, float] = field(default_factory=lambda: {"a": 0.38, "c": 0.16, "d": 0.05})


DRY = Sizes(positions=2, orientations=2, batches=(4,), engine_steps=4, plain_steps=2,
            compile_variants=False, sweep_ns=(2,), sweep_steps=2, unet="tiny_pdae", unet_batch=2,
            unet_dtype="float32", unet_steps=1, study_positions=2, study_orientations=2,
            study_steps=6, study_preset="fast", study_metrics=("mig", "dci_fast"), eval_reserve_s=0)


class Clock:
    """The budget: the time left overall and in a section."""

    def __init__(self, budget_s: float) -> None:
        self.start = time.perf_counter()
        self.budget_s = budget_s

    def used(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget_s - self.used()


# --------------------------------------------------------------------------- the procedural grids
_GRIDS: dict[str, np.ndarray] = {}


def _render_chunk(args: tuple[int, int, int, int, int]) -> np.ndarray:
    from disentkit.data.procedural import ProceduralSprites

    size, orientations, positions, start, stop = args
    data = ProceduralSprites(ProceduralSprites.Config(image_size=size, orientations=orientations,
                                                      positions=positions, cache_mib=0))
    return data.render_indices(np.arange(start, stop))


def prerender(size: int, orientations: int, positions: int, workers: int) -> np.ndarray:
    """The whole sprites grid, rendered in ``workers`` processes (forked before CUDA starts)."""
    n = 3 * 6 * orientations * positions * positions
    chunk = max(1, min(8192, -(-n // max(1, workers))))
    jobs = [(size, orientations, positions, s, min(n, s + chunk)) for s in range(0, n, chunk)]
    if workers <= 1 or len(jobs) == 1:
        return np.concatenate([_render_chunk(j) for j in jobs])
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return np.concatenate(pool.map(_render_chunk, jobs))


def register_grid_dataset() -> None:
    """``gpu_check_sprites``: a pre-rendered sprites grid held in this process (the engine then
    does not render it again for every timing)."""
    from disentkit.data.base import ArrayGroundTruthData
    from disentkit.registry import DATASETS

    if "gpu_check_sprites" in DATASETS.names():
        return

    @dataclass
    class GridConfig:
        grid: str = "timing"

    @DATASETS.register("gpu_check_sprites")
    class GpuCheckSprites(ArrayGroundTruthData):
        Config = GridConfig

        def __init__(self, config: GridConfig, data_root: Path | None = None) -> None:
            images, sizes = _GRIDS[config.grid], _GRID_SIZES[config.grid]
            super().__init__(images, ["shape", "scale", "orientation", "posX", "posY"], sizes,
                             name="gpu_check_sprites", value_max=1)


_GRID_SIZES: dict[str, tuple[int, ...]] = {}


def model_words(batch: int, grid: str = "timing") -> list[str]:
    return ["model.name=betavae", "model.beta=4", "model.latent_dim=10", "model.architecture=dlib",
            "data.name=gpu_check_sprites", f"data.grid={grid}", f"train.batch_size={batch}",
            "optim.lr=1e-4", "log.progress=false", "eval.at_end=false", "eval.report_at_end=false",
            "train.checkpoint_every=100000000"]


# --------------------------------------------------------------------------- sections
def engine_variants(sizes: Sizes, cuda: bool) -> list[tuple[str, Options]]:
    """The timings of section a, most telling first (the budget may stop the list)."""
    best = Options(precision="bf16-mixed" if cuda else "32", channels_last=True, fused=True,
                   data_on_device=True)
    variants = [("eager", Options()), ("best", best)]
    if sizes.compile_variants:
        variants.append(("best_compiled_cuda_graphs", replace(best, compile="reduce-overhead")))
    variants += [("bf16", Options(precision="bf16-mixed")), ("channels_last", Options(channels_last=True)),
                 ("fused_adam", Options(fused=True)), ("data_on_device", Options(data_on_device=True))]
    if sizes.compile_variants:
        variants += [("compile", Options(compile="default")),
                     ("compile_cuda_graphs", Options(compile="reduce-overhead"))]
    if not cuda:  # bf16 on this CPU is not what the GPU check is about; keep --dry short
        variants = variants[:2]
    return variants


def section_a(sizes: Sizes, device: str, clock: Clock, deadline: float, out: Path) -> dict[str, Any]:
    cuda = device == "cuda"
    rows: list[dict[str, Any]] = []
    for name, options in engine_variants(sizes, cuda):
        for batch in sizes.batches:
            if clock.used() > deadline:
                rows.append({"variant": name, "batch": batch, "skipped": "budget"})
                continue
            words = [*model_words(batch), *options.words()]
            row: dict[str, Any] = {"variant": name, "batch": batch, "options": asdict(options)}
            row["engine"] = _guarded(engine_rate, words, sizes.engine_steps, device=device,
                                     out_dir=_fresh(out, f"a-{name}-{batch}"))
            if name in ("eager", "best", "best_compiled_cuda_graphs") and clock.used() < deadline:
                row["plain"] = _guarded(plain_loop_rate, words, sizes.plain_steps, options,
                                        device=device)
                if "images_per_s" in row["engine"] and "images_per_s" in row["plain"]:
                    row["engine_over_plain"] = round(row["engine"]["images_per_s"]
                                                     / row["plain"]["images_per_s"], 3)
            rows.append(row)
            print(f"a: {name} batch {batch}: {json.dumps(row.get('engine'))}", file=sys.stderr, flush=True)
    return {"rows": rows, "figures": _figures_a(rows)}


def _figures_a(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The best engine rate per batch, its ratio to the best plain loop, and peak memory (b)."""
    figures: dict[str, Any] = {}
    for batch in {r["batch"] for r in rows}:
        timed = [r for r in rows if r["batch"] == batch and "images_per_s" in r.get("engine", {})]
        if not timed:
            continue
        best = max(timed, key=lambda r: r["engine"]["images_per_s"])
        plains = [r["plain"]["images_per_s"] for r in rows if r["batch"] == batch
                  and "images_per_s" in r.get("plain", {})]
        figures[f"batch{batch}"] = {
            "best_variant": best["variant"], "images_per_s": round(best["engine"]["images_per_s"]),
            "best_plain_images_per_s": round(max(plains)) if plains else None,
            "engine_over_best_plain": round(best["engine"]["images_per_s"] / max(plains), 3)
            if plains else None,
            "peak_memory_mib": {r["variant"]: r["engine"].get("peak_memory_mib") for r in timed},
        }
    return figures


def section_c(sizes: Sizes, device: str, clock: Clock, deadline: float, out: Path,
              train_command: Sequence[str] | None = None) -> dict[str, Any]:
    """N seeds at once through ``execute_local(parallel=N)`` (separate processes on one device)."""
    from disentkit.experiments.sweep import execute_local, plan_sweep

    rows = []
    for n in sizes.sweep_ns:
        if clock.used() > deadline:
            rows.append({"parallel": n, "skipped": "budget"})
            continue
        batch = sizes.batches[0]
        every = max(1, sizes.sweep_steps // 4)
        # the subprocesses render the (small) grid themselves: the registered sprites dataset
        words = ["model.name=betavae", "model.beta=4", "model.architecture=dlib", "data.name=sprites",
                 f"data.image_size={sizes.image_size}", f"data.positions={sizes.positions}",
                 f"data.orientations={sizes.orientations}", f"train.batch_size={batch}",
                 f"train.steps={sizes.sweep_steps}", f"log.every={every}", "log.progress=false",
                 "eval.at_end=false", "eval.report_at_end=false", f"train.accelerator={device}",
                 "train.data_on_device=true", "train.channels_last=true", "optim.fused=true",
                 "train.checkpoint_every=100000000", f"seed=0:{n}"]
        if device == "cuda":
            words.append("train.precision=bf16-mixed")
        folder = _fresh(out, f"c-sweep{n}")
        plan = plan_sweep(words, folder)
        started = time.perf_counter()
        outcome = execute_local(plan, parallel=n, train_command=train_command, echo=False)
        wall = time.perf_counter() - started
        steady = []
        for run in plan.runs:
            lines = (folder / run.name / "metrics.jsonl").read_text().splitlines() \
                if (folder / run.name / "metrics.jsonl").exists() else []
            rates = [json.loads(line)["images_per_s"] for line in lines]
            steady.append(statistics.median(rates[1:] or rates) if rates else 0.0)
        rows.append({"parallel": n, "outcome": sorted(set(outcome.values())),
                     "aggregate_images_per_s": round(sum(steady)),
                     "per_run_images_per_s": [round(r) for r in steady], "wall_s": round(wall, 1),
                     "wall_images_per_s": round(n * sizes.sweep_steps * batch / wall)})
        print(f"c: parallel {n}: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    return {"rows": rows}


def section_d(sizes: Sizes, device: str) -> dict[str, Any]:
    """The diffusion UNet's training step (benchmarks/diffusion_step.py's timing)."""
    from diffusion_step import Setup, build_bench, timed

    dev = torch.device(device)
    setup = Setup(device=device, dtype=sizes.unet_dtype, channels_last=True,
                  adam="fused" if device == "cuda" else "default")
    bench = build_bench(sizes.unet, sizes.unet_batch, setup)
    bench.train_step()  # warm-up (cuDNN's choice of kernels)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [timed(bench.train_step, dev) for _ in range(sizes.unet_steps)]
    row = {"preset": sizes.unet, "batch": sizes.unet_batch, "dtype": sizes.unet_dtype,
           "channels_last": True, "adam": setup.adam, "step_ms": round(1000 * statistics.median(times), 2),
           "images_per_s": round(sizes.unet_batch / statistics.median(times), 1)}
    if dev.type == "cuda":
        row["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return row


def section_e(sizes: Sizes, device: str, clock: Clock, out: Path) -> dict[str, Any]:
    """The study run on the full grid for the time left, then its scores."""
    import disentkit
    from disentkit.config import load_config
    from disentkit.evaluation import evaluate_run

    train_s = clock.left() - sizes.eval_reserve_s
    if train_s < 5:
        return {"skipped": "budget"}
    words = [*model_words(64, grid="study"), f"train.steps={sizes.study_steps}",
             f"log.every={max(1, min(1000, sizes.study_steps // 3))}", f"train.accelerator={device}",
             "train.data_on_device=true", "train.channels_last=true", "optim.fused=true",
             f"eval.preset={sizes.study_preset}"]
    if device == "cuda":
        words.append("train.precision=bf16-mixed")
    folder = _fresh(out, "e-study")
    config = load_config(None, [*words, f"out_dir={folder}", "name=study"])
    # SIGTERM at the deadline: the engine stops at the next step boundary with a checkpoint.
    # Outside its loop the engine puts back this no-op handler, so a SIGTERM that comes just as
    # training ends does not end the check before the scoring.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    timer = threading.Timer(train_s, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    started = time.perf_counter()
    try:
        run_dir = disentkit.train(config)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
    trained_s = time.perf_counter() - started
    summary = json.loads((run_dir / "summary.json").read_text())
    row: dict[str, Any] = {"steps_reached": summary["step"], "steps_target": sizes.study_steps,
                           "status": summary["status"], "train_s": round(trained_s, 1),
                           "train_time_s": summary.get("train_time_s")}
    started = time.perf_counter()
    results = evaluate_run(run_dir, metrics=list(sizes.study_metrics), preset=sizes.study_preset,
                           device=device, quiet=True)
    from disentkit.evaluation import headline_scores

    row["scores"] = {k: round(float(v), 4) for k, v in headline_scores(results).items()}
    row["eval_s"] = round(time.perf_counter() - started, 1)
    row["eval_preset"] = sizes.study_preset
    return row


# --------------------------------------------------------------------------- driver
def _guarded(fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``fn(*args, **kwargs)``; a timing that fails is recorded as its one-line error, and the
    check goes on."""
    try:
        return fn(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - a benchmark records failures and continues
        traceback.print_exc()
        return {"error": f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"}


def _fresh(out: Path, name: str) -> Path:
    path = out / name
    path.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="", dir=path))


def machine(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                            "cpus": os.cpu_count(), "device": device}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
    return info


def result_path(out: Path, dry: bool, device: str) -> Path:
    if dry:
        return out / "gpu_dry.json"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    return out / f"gpu_{re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')}.json"


def _targets(report: dict[str, Any]) -> dict[str, Any]:
    figures = report["sections"].get("a", {}).get("figures", {})
    study = report["sections"].get("e", {})
    got = {
        "batch64_images_per_s": figures.get("batch64", {}).get("images_per_s"),
        "batch256_images_per_s": figures.get("batch256", {}).get("images_per_s"),
        "engine_over_plain": min((f["engine_over_best_plain"] for f in figures.values()
                                  if f.get("engine_over_best_plain")), default=None),
        "study_steps": study.get("steps_reached"),
    }
    return {k: {"target": TARGETS[k], "measured": v, "met": v is not None and v >= TARGETS[k]}
            for k, v in got.items()}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="tiny sizes on the CPU (seconds)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds for everything (default 460; --dry 900, which never binds)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of gpu_*.json")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder for the runs")
    parser.add_argument("--sections", default="a,c,d,e", help="which sections (b comes with a)")
    args = parser.parse_args(argv)
    sizes = DRY if args.dry else Sizes()
    device = "cuda" if torch.cuda.is_available() and not args.dry else "cpu"
    clock = Clock(args.budget_s if args.budget_s is not None else 900.0 if args.dry else 460.0)
    sections = set(args.sections.split(","))
    workers = max(1, (os.cpu_count() or 1) - 1)
    # render before CUDA starts (the render workers are forked)
    _GRIDS["timing"] = prerender(sizes.image_size, sizes.orientations, sizes.positions, workers)
    _GRID_SIZES["timing"] = (3, 6, sizes.orientations, sizes.positions, sizes.positions)
    if "e" in sections:
        _GRIDS["study"] = prerender(sizes.image_size, sizes.study_orientations, sizes.study_positions,
                                    workers)
        _GRID_SIZES["study"] = (3, 6, sizes.study_orientations, sizes.study_positions,
                                sizes.study_positions)
    register_grid_dataset()
    report: dict[str, Any] = {"benchmark": "gpu_check", "dry": args.dry, "machine": machine(device),
                              "budget_s": clock.budget_s, "render_s": round(clock.used(), 1),
                              "sizes": {k: v for k, v in asdict(sizes).items()}, "sections": {}}
    args.out.mkdir(parents=True, exist_ok=True)
    path = result_path(args.out, args.dry, device)
    work_root = args.work or Path(tempfile.mkdtemp(prefix="disentkit-gpu-check-"))
    ends, t = {}, clock.used()
    for name in ("a", "c", "d"):
        t += sizes.shares[name] * (clock.budget_s - clock.used())
        ends[name] = t

    def record(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        if name not in sections:
            return
        started = time.perf_counter()
        report["sections"][name] = _guarded(fn)
        report["sections"][name]["section_s"] = round(time.perf_counter() - started, 1)
        report["targets"] = _targets(report)
        report["used_s"] = round(clock.used(), 1)
        path.write_text(json.dumps(report, indent=2))

    record("a", lambda: section_a(sizes, device, clock, ends["a"], work_root))
    record("c", lambda: section_c(sizes, device, clock, ends["c"], work_root))
    record("d", lambda: section_d(sizes, device))
    record("e", lambda: section_e(sizes, device, clock, work_root))
    print(f"gpu_check: wrote {path} ({clock.used():.0f} s)", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
