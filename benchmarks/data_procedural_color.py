"""Rendering speed of the procedural colour scenes (``shapes3d_like``).

Measures, for image sizes 64 and 32:

* ray casting the region layers of every (scale, shape, orientation) geometry of the full grid
  (480 geometries, ``antialias`` 3), in geometries per second;
* composing the whole 480,000-image grid from those layers (chunks of 4096, output discarded),
  in images per second, and the total time to render the full grid from nothing;
* random training batches of 64 through ``uint8_batch`` once the layers exist, against a naive
  per-image loop (one ``uint8_from_indices`` call per image) in the same run;
* a cached CPU sub-grid (hues 4, scales 4, orientations 5, image size 32): time to compose it all
  and batches of 64 from the uint8 cache;
* ``color_sprites`` (default grid, 82,944 images at 64 px): coverage tables plus composing the
  whole grid, and random batches of 64.

Writes ``benchmarks/results/data_procedural_color.json``.

Usage: ``python benchmarks/data_procedural_color.py``
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

from disentkit.data.scenes import ColorSprites, Shapes3DLike

OUT = Path(__file__).resolve().parent / "results" / "data_procedural_color.json"


def _rate(fn, batches: list[np.ndarray], min_seconds: float = 1.5) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        fn(batches[done % len(batches)])
        done += 1
    return done / (time.perf_counter() - start)


def _full_grid(image_size: int) -> dict:
    data = Shapes3DLike(Shapes3DLike.Config(image_size=image_size, cache_mib=0))
    geometries = data._num_geometries
    start = time.perf_counter()
    data.layers(np.arange(geometries))
    layer_s = time.perf_counter() - start
    start = time.perf_counter()
    chunk = 4096
    for first in range(0, len(data), chunk):
        data.uint8_from_indices(np.arange(first, min(first + chunk, len(data))))
    compose_s = time.perf_counter() - start

    rng = np.random.default_rng(0)
    batches = [rng.integers(0, len(data), 64) for _ in range(64)]
    fast = _rate(data.uint8_batch, batches)

    def naive(idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([data.uint8_from_indices(np.array([i])) for i in idx]))

    slow = _rate(naive, batches)
    return {
        "grid": f"full {data.factor_sizes}, {image_size}x{image_size}x3, antialias 3",
        "images": len(data),
        "geometries": geometries,
        "layers_s": round(layer_s, 2),
        "layers_geometries_per_s": round(geometries / layer_s, 1),
        "compose_s": round(compose_s, 2),
        "compose_images_per_s": round(len(data) / compose_s),
        "whole_grid_s": round(layer_s + compose_s, 2),
        "whole_grid_images_per_s": round(len(data) / (layer_s + compose_s)),
        "batch64_per_s": round(fast, 1),
        "batch64_images_per_s": round(64 * fast),
        "naive_batch64_per_s": round(slow, 1),
        "speedup_vs_naive": round(fast / slow, 1),
    }


def _cached_subgrid() -> dict:
    config = Shapes3DLike.Config(
        floor_hues=4, wall_hues=4, object_hues=4, scales=4, orientations=5, image_size=32
    )
    data = Shapes3DLike(config)
    start = time.perf_counter()
    images = data.images_uint8
    build_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, len(data), 64) for _ in range(64)]
    fast = _rate(data.uint8_batch, batches)
    return {
        "grid": f"sub-grid {data.factor_sizes}, 32x32x3, cached",
        "images": len(data),
        "cache_mib": round(images.nbytes / 2**20, 1),
        "whole_grid_s": round(build_s, 2),
        "whole_grid_images_per_s": round(len(data) / build_s),
        "batch64_per_s": round(fast, 1),
        "batch64_images_per_s": round(64 * fast),
    }


def _color_sprites() -> dict:
    start = time.perf_counter()
    data = ColorSprites(ColorSprites.Config(cache_mib=0))
    setup_s = time.perf_counter() - start
    start = time.perf_counter()
    for first in range(0, len(data), 4096):
        data.uint8_from_indices(np.arange(first, min(first + 4096, len(data))))
    compose_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, len(data), 64) for _ in range(64)]
    fast = _rate(data.uint8_batch, batches)
    return {
        "grid": f"color_sprites {data.factor_sizes}, 64x64x3",
        "images": len(data),
        "coverage_tables_s": round(setup_s, 3),
        "whole_grid_s": round(setup_s + compose_s, 2),
        "whole_grid_images_per_s": round(len(data) / (setup_s + compose_s)),
        "batch64_per_s": round(fast, 1),
        "batch64_images_per_s": round(64 * fast),
    }


def main() -> None:
    torch.set_num_threads(1)
    rows = [_full_grid(64), _full_grid(32), _cached_subgrid(), _color_sprites()]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible, torch threads 1",
        "numpy": np.__version__,
        "rows": rows,
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
