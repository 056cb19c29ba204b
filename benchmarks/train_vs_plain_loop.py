"""The training engine against a plain PyTorch loop of the same net and data, in the same run.

The plain loop is what one would write by hand: the uint8 grid in a tensor, random indices from
``torch.randint``, uint8 -> float, ``model.training_losses``, backward, ``Adam.step``, nothing
else (no NaN watch, EMA, logging, schedule, checkpoints). The engine runs the same model class
through ``disentkit.train`` (Fabric, the sampler, the NaN watch, the LR schedule, logging), its
images/s read from the log windows after the first (which holds the warm-up). Each setting is
timed in turns (engine, plain, engine, plain, ...) so that a change in the machine's load hits
both; the ratio engine / plain is the figure (1.0: the engine costs nothing).

The data path's share: the engine's own data path (sampler -> ``uint8_batch`` -> device ->
``to_model_input``) timed alone for the same batches, over the engine's step time.

    python benchmarks/train_vs_plain_loop.py [--threads 1,2] [--steps 60] [--rounds 3]

Results: ``benchmarks/results/train_vs_plain_loop.{json,md}``. ``gpu_check.py`` uses the same two
timers on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results"

#: the conv beta-VAE (disentanglement_lib's nets) on a 64-px procedural sprites sub-grid
#: (3 x 6 x 10 x 8 x 8 = 11,520 images); the CPU run uses 32 px, the GPU check 64 px
def beta_vae_words(image_size: int = 64, batch: int = 64, positions: int = 8,
                   orientations: int = 10) -> list[str]:
    return [
        "model.name=betavae", "model.beta=4", "model.latent_dim=10", "model.architecture=dlib",
        "data.name=sprites", f"data.image_size={image_size}", f"data.positions={positions}",
        f"data.orientations={orientations}", "data.cache_mib=8192",
        f"train.batch_size={batch}", "optim.lr=1e-4", "log.progress=false",
        "eval.at_end=false", "eval.report_at_end=false", "train.checkpoint_every=1000000",
    ]


@dataclass(frozen=True)
class Options:
    """The fast-path options, as the engine's config sets them and the plain loop applies them."""

    precision: str = "32"
    channels_last: bool = False
    fused: bool = False
    data_on_device: bool = False
    compile: str = ""  # "": off, else torch.compile's mode

    def words(self) -> list[str]:
        words = [f"train.precision={self.precision}",
                 f"train.channels_last={str(self.channels_last).lower()}",
                 f"optim.fused={str(self.fused).lower()}",
                 f"train.data_on_device={str(self.data_on_device).lower()}"]
        if self.compile:
            words += ["train.compile=true", f"train.compile_mode={self.compile}"]
        return words


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def engine_rate(words: Sequence[str], steps: int, windows: int = 4, device: str = "cpu",
                out_dir: Path | None = None) -> dict[str, Any]:
    """Train ``steps`` steps through ``disentkit.train``; images/s of the log windows after the
    first (median), and the peak device memory on CUDA."""
    import disentkit
    from disentkit.config import load_config

    every = max(1, steps // windows)
    with _folder(out_dir) as folder:
        config = load_config(None, [*words, f"train.steps={steps}", f"log.every={every}",
                                    f"train.accelerator={device}", f"out_dir={folder}", "name=engine"])
        if torch.device(device).type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        run_dir = disentkit.train(config)
        wall = time.perf_counter() - started
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [row["images_per_s"] for row in rows[1:]] or [rows[-1]["images_per_s"]]
    result = {"images_per_s": statistics.median(rates), "windows": len(rates), "wall_s": round(wall, 2)}
    if torch.device(device).type == "cuda":
        result["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


@contextlib.contextmanager
def _folder(out_dir: Path | None) -> Iterator[Path]:
    if out_dir is not None:
        yield Path(out_dir)
        return
    with tempfile.TemporaryDirectory(prefix="disentkit-bench-") as folder:
        yield Path(folder)


def plain_loop_rate(words: Sequence[str], steps: int, options: Options = Options(),
                    device: str = "cpu", warmup: int = 5, seed: int = 0) -> dict[str, Any]:
    """A hand-written loop of the same model and data: images/s over ``steps`` timed steps."""
    from disentkit.builders import build_dataset, build_model
    from disentkit.config import load_config
    from disentkit.models.base import DataFacts
    from disentkit.pixels import to_model_input

    config = load_config(None, list(words))
    dev = torch.device(device)
    torch.manual_seed(seed)
    data = build_dataset(config)
    images = data.uint8_batch(torch.arange(len(data)))  # the whole grid, uint8 NHWC
    images = images.to(dev) if options.data_on_device else images.pin_memory() \
        if dev.type == "cuda" else images
    model = build_model(config, DataFacts.of(data)).to(dev)
    memory = torch.channels_last if options.channels_last else torch.contiguous_format
    model.to(memory_format=memory)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=1e-4, fused=options.fused or None)
    losses = torch.compile(model.training_losses, mode=options.compile) if options.compile \
        else model.training_losses
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if options.precision == "bf16-mixed" \
        else contextlib.nullcontext()
    batch, value_max = config.train.batch_size, getattr(data, "value_max", 255)
    index_device = images.device

    def step(i: int) -> None:
        idx = torch.randint(len(images), (batch,), device=index_device)
        x = images[idx].to(dev, non_blocking=True)
        x = to_model_input(x, value_max, type(model).input_range).contiguous(memory_format=memory)
        with autocast:
            loss = losses(x, i)["loss"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    for i in range(warmup):
        step(i)
    sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    sync(dev)
    elapsed = time.perf_counter() - started
    result = {"images_per_s": steps * batch / elapsed, "step_ms": 1000 * elapsed / steps}
    if dev.type == "cuda":
        result["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def data_path_ms(words: Sequence[str], steps: int, device: str = "cpu") -> float:
    """The engine's data path alone, per step: sampler -> uint8_batch -> to_model_input."""
    from disentkit.builders import build_dataset
    from disentkit.config import load_config
    from disentkit.pixels import to_model_input
    from disentkit.training.sampler import BatchSampler

    config = load_config(None, list(words))
    data = build_dataset(config)
    data.uint8_batch(torch.arange(len(data)))  # render the grid first, as training's first steps do
    sampler = BatchSampler(len(data), config.train.batch_size, config.seed)
    dev = torch.device(device)
    started = time.perf_counter()
    for _ in range(steps):
        batch = data.uint8_batch(sampler.next_indices()).to(dev)
        to_model_input(batch, getattr(data, "value_max", 255), "01")
    sync(dev)
    return 1000 * (time.perf_counter() - started) / steps


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "torch": torch.__version__, "python": platform.python_version()}


def run_cpu(threads: Sequence[int], steps: int, rounds: int, image_size: int, batch: int) -> dict[str, Any]:
    words = beta_vae_words(image_size, batch)
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        thread_words = [*words, f"train.num_threads={n}", "train.cpu_malloc_tuning=false"]
        engine, plain = [], []
        for _ in range(rounds):  # in turns, so that a change of load hits both
            engine.append(engine_rate(thread_words, steps)["images_per_s"])
            plain.append(plain_loop_rate(thread_words, steps)["images_per_s"])
        step_ms = 1000 * batch / statistics.median(engine)
        data_ms = data_path_ms(thread_words, steps)
        rows.append({
            "threads": n, "engine_images_per_s": engine, "plain_images_per_s": plain,
            "ratio_engine_over_plain": round(statistics.median(engine) / statistics.median(plain), 3),
            "engine_step_ms": round(step_ms, 2), "data_path_ms": round(data_ms, 3),
            "data_path_share": round(data_ms / step_ms, 4),
        })
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"benchmark": "train_vs_plain_loop", "machine": machine(), "image_size": image_size,
            "batch": batch, "steps": steps, "rounds": rounds, "rows": rows,
            "load_average": list(_load_average())}


def _load_average() -> tuple[float, ...]:
    try:
        import os

        return tuple(round(v, 2) for v in os.getloadavg())
    except OSError:
        return ()


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# The engine against a plain PyTorch loop (CPU)", "",
        f"Conv beta-VAE (disentanglement_lib nets), procedural sprites {report['image_size']} px, "
        f"batch {report['batch']}, {report['steps']} steps per timing, {report['rounds']} rounds in "
        f"turns; {report['machine']['cpu']}, torch {report['machine']['torch']}; load average "
        f"{report['load_average']} (a shared machine: the ratio, timed in turns, is the figure).", "",
        "| threads | engine img/s (median) | plain loop img/s (median) | engine / plain | "
        "engine step ms | data path ms | data path share |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['threads']} | {statistics.median(row['engine_images_per_s']):.0f} | "
            f"{statistics.median(row['plain_images_per_s']):.0f} | {row['ratio_engine_over_plain']:.2f} | "
            f"{row['engine_step_ms']:.1f} | {row['data_path_ms']:.2f} | "
            f"{100 * row['data_path_share']:.1f} % |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="torch thread counts, comma separated")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=32, choices=(32, 64))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    report = run_cpu(threads, args.steps, args.rounds, args.image_size, args.batch)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_vs_plain_loop.json").write_text(json.dumps(report, indent=2))
    (args.out / "train_vs_plain_loop.md").write_text(markdown(report))
    return report


if __name__ == "__main__":
    main()
