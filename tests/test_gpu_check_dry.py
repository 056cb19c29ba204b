"""``benchmarks/gpu_check.sh --dry``: the one-shot GPU check runs every section end to end at tiny
sizes on the CPU and records each figure where the GPU run will (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_runs_every_section(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable,
           "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry", "--out", str(tmp_path),
                           "--work", str(tmp_path / "work")], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_dry.json").read_text())
    sections = report["sections"]
    assert report["dry"] is True and report["machine"]["device"] == "cpu"
    # a: the engine and the plain loop of the same net, eager and with the fast options
    rows = {r["variant"]: r for r in sections["a"]["rows"]}
    assert set(rows) == {"eager", "best"}
    for row in rows.values():
        assert row["engine"]["images_per_s"] > 0 and row["plain"]["images_per_s"] > 0
        assert row["engine_over_plain"] > 0
    assert rows["best"]["options"] == {"precision": "32", "channels_last": True, "fused": True,
                                       "data_on_device": True, "compile": ""}
    assert sections["a"]["figures"]["batch4"]["best_plain_images_per_s"] > 0
    # c: two seeds at once through the sweep
    (sweep,) = sections["c"]["rows"]
    assert sweep["parallel"] == 2 and sweep["outcome"] == ["finished"]
    assert len(sweep["per_run_images_per_s"]) == 2 and sweep["aggregate_images_per_s"] > 0
    # d: the diffusion UNet's step
    assert sections["d"]["preset"] == "tiny_pdae" and sections["d"]["step_ms"] > 0
    # e: the study run, trained and scored
    study = sections["e"]
    assert study["steps_reached"] == study["steps_target"] == 6 and study["status"] == "finished"
    assert set(study["scores"]) == {"mig", "dci_fast"}
    assert set(report["targets"]) == {"batch64_images_per_s", "batch256_images_per_s",
                                      "engine_over_plain", "study_steps"}
