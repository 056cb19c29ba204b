"""Batch sampling speed and resident memory of the data layer.

For an in-memory grid (the real ``dsprites_downsampled.npz`` when available, else the rendered
procedural sub-grid), the same grid memory-mapped from an ``.npy`` file, and the procedural
generator rendering on demand, measure batches of 64 per second through ``uint8_batch`` and
compare with a naive per-item baseline (one ``uint8_from_indices`` call per image, then stack)
in the same run. Writes ``benchmarks/results/data_sampling.json``.

Usage: ``python benchmarks/data_sampling.py [--data-dir DIR]`` (default ``<data root>/dsprites``, where
``disentkit data download dsprites_small`` puts ``dsprites_downsampled.npz``).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from disentkit.data.base import ArrayGroundTruthData
from disentkit.data.procedural import ProceduralSprites
from disentkit.data.root import resolve_data_root

OUT = Path(__file__).resolve().parent / "results" / "data_sampling.json"


def _rate(fn, batches: list[np.ndarray], min_seconds: float = 1.0) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        fn(batches[done % len(batches)])
        done += 1
    return done / (time.perf_counter() - start)


def _measure(name: str, data, batch: int = 64) -> dict:
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, len(data), batch) for _ in range(64)]
    fast = _rate(data.uint8_batch, batches)

    def naive(idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([data.uint8_from_indices(np.array([i])) for i in idx]))

    slow = _rate(naive, batches)
    return {
        "dataset": name,
        "images": len(data),
        "batches_per_s": round(fast, 1),
        "us_per_batch": round(1e6 / fast, 1),
        "naive_batches_per_s": round(slow, 1),
        "speedup_vs_naive": round(fast / slow, 1),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(resolve_data_root() / "dsprites"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    small = Path(args.data_dir) / "dsprites_downsampled.npz"
    if small.exists():
        with np.load(small, allow_pickle=True, encoding="latin1") as f:
            images, source = f["imgs"][..., None], "real dsprites_downsampled.npz"
    else:
        grid = ProceduralSprites(ProceduralSprites.Config(orientations=10, positions=16))
        images, source = grid.images_uint8, "procedural sub-grid"
    names, sizes = ("shape", "scale", "orientation", "posX", "posY"), (3, 6, 10, 16, 16)
    rows = [_measure("in-memory (3,6,10,16,16)", ArrayGroundTruthData(images, names, sizes, value_max=1))]
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "grid.npy", images)
        mapped = np.load(Path(tmp) / "grid.npy", mmap_mode="r")
        memmapped = ArrayGroundTruthData(mapped, names, sizes, value_max=1)
        rows.append(_measure("memmap .npy (3,6,10,16,16)", memmapped))
    rows.append(_measure("procedural sprites, full grid, on demand", ProceduralSprites()))
    result = {
        "source_of_grid": source,
        "batch_size": 64,
        "machine": f"{platform.processor() or platform.machine()}, torch threads 1",
        "rows": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
