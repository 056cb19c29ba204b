"""The throughput benchmark runs on a tiny grid and reports both timings (no timing asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from disentkit.data.base import ArrayGroundTruthData

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"


def test_benchmark_measures_fixed_and_data_path_steps() -> None:
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    images = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 1), dtype=np.uint8)
    data = ArrayGroundTruthData(images, ["a", "b"], [4, 4])
    result = module.bench_model("factorvae", data, batch_size=4, warmup=1, steps=1)
    assert result["images_per_step"] == 8  # FactorVAE's second batch
    assert result["fixed_step_s"] > 0 and result["data_step_s"] > 0
    assert module.bench_data_path(data, 4, repeats=2) > 0
