"""Peak memory of an FDAE training start on a full-size 3D Shapes file that this script writes.

FDAE's reference evaluation loader (``wuancong/FDAE data/ground_truth/shapes3d.py``) reads all
480,000 images of ``3dshapes.h5`` as float32, 23.6 GB. disentkit keeps them as uint8 (5.9 GB,
``shapes3d`` with ``in_memory: true``, the default) and converts each batch on the device. This
benchmark measures what a training start costs in resident memory:

1. write ``3dshapes.h5`` in the real format (``images`` (480000, 64, 64, 3) uint8, ``labels``
   (480000, 6) float64), in chunks, with a deterministic pattern (no page is all zeros);
2. in a fresh process each (its peak RSS is its own, read from ``getrusage(RUSAGE_CHILDREN)``),
   ``disentkit train preset=fdae/shapes3d data.path=FILE`` for ``--steps`` steps at batch 32 on
   the CPU, once with the images in memory and once reading the HDF5 file per batch
   (``data.in_memory=false``, the baseline without the images). The network is shrunk to
   ``fdae/smoke``'s sizes, so that the question is the data's; the paper network's own memory is
   its parameters and optimiser state (296 M parameters x 4 copies x 4 bytes, 4.7 GB in float32).

    python benchmarks/fdae_memory.py                 # writes the file to a temporary folder
    python benchmarks/fdae_memory.py --dir /scratch --keep

Results go to ``benchmarks/results/fdae_memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
NUM_IMAGES = 480_000
IMAGE_SHAPE = (64, 64, 3)
#: fdae/smoke's network, at 64 px
SMALL_NETWORK = [
    "model.unet=tiny_fdae", "model.unet_overrides.base_channels=16", "model.unet_overrides.head_channels=16",
    "model.unet_overrides.norm_groups=8", "model.num_concepts=2", "model.content_dim=8", "model.mask_dim=8",
    "model.cond_dim=8", "model.encoder_widths=[8,16,32,32]", "model.encoder_blocks=[1,1,1,1]",
    "model.mask_channels=[16,8]", "model.mask_norm_groups=4",
]


def write_shapes3d(path: Path, num: int = NUM_IMAGES, chunk: int = 20_000) -> float:
    """Write a 3dshapes.h5 of ``num`` images in the real layout; returns the seconds it took."""
    import h5py

    start = time.perf_counter()
    per_image = int(np.prod(IMAGE_SHAPE))
    sizes = (10, 10, 10, 8, 4, 15)
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (num, *IMAGE_SHAPE), dtype=np.uint8)
        labels = f.create_dataset("labels", (num, 6), dtype=np.float64)
        # a 251-periodic byte pattern (uint8 only: no large temporaries), shifted per chunk
        base = np.resize(np.arange(251, dtype=np.uint8), chunk * per_image).reshape(chunk, *IMAGE_SHAPE)
        for k, lo in enumerate(range(0, num, chunk)):
            hi = min(lo + chunk, num)
            images[lo:hi] = base[: hi - lo] + np.uint8(k % 251)
            labels[lo:hi] = np.stack(np.unravel_index(np.arange(lo, hi), sizes), axis=1).astype(np.float64)
    return time.perf_counter() - start


def training_start(h5: Path, out_dir: Path, name: str, in_memory: bool, steps: int) -> dict[str, Any]:
    """Run one training start in a child process; its peak RSS and wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    command = [
        sys.executable, "-m", "disentkit", "train", "preset=fdae/shapes3d", f"data.path={h5}",
        f"data.in_memory={'true' if in_memory else 'false'}", *SMALL_NETWORK, "train.accelerator=cpu",
        "train.precision=32", f"train.steps={steps}", "train.checkpoint_every=100000", "train.num_threads=1",
        "eval.at_end=false", "eval.report_at_end=false", "log.progress=false", f"out_dir={out_dir}",
        f"name={name}",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"training start failed ({done.returncode}): {done.stderr[-2000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kib <= before:  # ru_maxrss of children is the maximum over all of them so far
        print(f"note: {name}'s peak RSS did not exceed an earlier child's ({before} KiB)")
    return {"in_memory": in_memory, "steps": steps, "peak_rss_gib": peak_kib / 2**20, "wall_s": wall}


def _row(label: str, run: dict[str, Any]) -> str:
    return f"| {label} | {run['peak_rss_gib']:.2f} | {run['wall_s']:.0f} |"


def markdown(results: dict[str, Any]) -> str:
    runs = results["runs"]
    gib = 2**30
    return "\n".join([
        "# FDAE training start on a full-size 3dshapes.h5: peak memory",
        "",
        f"`python benchmarks/fdae_memory.py {results['argv']}`; the file ({results['num_images']:,} images, "
        f"{results['file_gib']:.2f} GiB) was written by the benchmark in {results['write_s']:.0f} s. "
        f"Each start is `disentkit train preset=fdae/shapes3d` with fdae/smoke's network at 64 px, batch 32, "
        f"{runs['in_memory']['steps']} steps, one CPU thread, in its own process.",
        "",
        "| images | peak RSS (GiB) | wall (s) |",
        "|---|---|---|",
        _row("in memory as uint8 (`data.in_memory=true`, the default)", runs["in_memory"]),
        _row("read from the file per batch (`data.in_memory=false`)", runs["from_file"]),
        "",
        f"The uint8 images are {results['uint8_bytes'] / gib:.2f} GiB; the difference of the two starts is "
        f"{runs['in_memory']['peak_rss_gib'] - runs['from_file']['peak_rss_gib']:.2f} GiB. As float32 (the "
        f"reference loader) they would be {results['float32_bytes'] / gib:.2f} GiB "
        f"({results['float32_bytes'] / 1e9:.1f} GB).",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to write the file (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the file and the run folders")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "fdae_memory")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fdae_memory_", dir=args.dir))
    try:
        h5 = work / "3dshapes.h5"
        write_s = write_shapes3d(h5)
        results: dict[str, Any] = {
            "argv": " ".join(argv if argv is not None else sys.argv[1:]),
            "num_images": NUM_IMAGES, "write_s": write_s, "file_gib": h5.stat().st_size / 2**30,
            "uint8_bytes": NUM_IMAGES * int(np.prod(IMAGE_SHAPE)),
            "float32_bytes": 4 * NUM_IMAGES * int(np.prod(IMAGE_SHAPE)),
            "load_before": list(os.getloadavg()),
            # the smaller start first: the children's ru_maxrss is a running maximum
            "runs": {"from_file": training_start(h5, work / "runs", "from_file", False, args.steps)},
        }
        results["runs"]["in_memory"] = training_start(h5, work / "runs", "in_memory", True, args.steps)
        results["load_after"] = list(os.getloadavg())
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
