"""Benchmark: seconds per image of the dlib conv encoder's forward pass vs images per forward, on
CPU with 1 and 2 torch threads (the knob behind ``representation_from_model(batch_size=)``).

64x64x1 binary inputs, ``ConvEncoder(1, 10)``; each batch size is timed for ~0.7 s, the sizes are
interleaved and the sweep repeated (``--repeats``), medians reported with the load average.
Run: ``python benchmarks/metrics_encoder_batch.py`` (~1 minute); writes
benchmarks/results/metrics_encoder_batch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from disentkit.metrics import library_versions
from disentkit.nn.conv64 import ConvEncoder

SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)


def per_image(encoder: torch.nn.Module, x: torch.Tensor, seconds: float) -> float:
    with torch.no_grad():
        encoder(x)
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            encoder(x)
            n += len(x)
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.7)
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "metrics_encoder_batch.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    encoder = ConvEncoder(1, 10).eval()
    images = torch.from_numpy((np.random.RandomState(0).rand(max(SIZES), 1, 64, 64) > 0.9).astype(np.float32))
    load_before = os.getloadavg()
    threads = [int(t) for t in args.threads.split(",")]
    runs = {t: {b: [] for b in SIZES} for t in threads}
    for _ in range(args.repeats):
        for t in threads:
            torch.set_num_threads(t)
            for b in SIZES:
                runs[t][b].append(per_image(encoder, images[:b].contiguous(), args.seconds))
    out = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "versions": library_versions(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "us_per_image_median": {f"threads={t}": {str(b): round(1e6 * statistics.median(v), 1)
                                                 for b, v in r.items()} for t, r in runs.items()},
        "us_per_image_runs": {f"threads={t}": {str(b): [round(1e6 * x, 1) for x in v]
                                               for b, v in r.items()} for t, r in runs.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("load_before", "load_after", "us_per_image_median")}, indent=1))


if __name__ == "__main__":
    main()
