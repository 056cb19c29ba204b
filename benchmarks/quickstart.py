"""End-to-end time of the main job (`disentkit quickstart`) on this machine, and what it learned.

The README promises the quickstart (train 3000 steps, evaluate with the fast metric preset, write
the HTML report) in well under 10 minutes on a 2-core CPU. This script runs it in a fresh
directory, times each phase from the run's own files, and records the headline scores.

    python benchmarks/quickstart.py [--out benchmarks/results/quickstart.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "quickstart.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "disentkit", "quickstart", "--out", tmp], check=True)
        total = time.perf_counter() - start
        run_dir = Path(tmp) / "quickstart-sprites-seed0"
        results = json.loads((run_dir / "results.json").read_text())
        records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        train_mtime = (run_dir / "checkpoints" / "last.pt").stat().st_mtime
        eval_mtime = (run_dir / "results.json").stat().st_mtime
        report_mtime = (run_dir / "report.html").stat().st_mtime
    from disentkit.evaluation import headline_scores

    mig = results["metrics"]["mig"]
    record = {
        "command": "disentkit quickstart",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "total_s": round(total, 1),
        "evaluation_s": round(eval_mtime - train_mtime, 1),
        "report_s": round(report_mtime - eval_mtime, 1),
        "final_images_per_s": round(records[-1]["images_per_s"], 1),
        "scores": {k: round(v, 4) for k, v in headline_scores(results).items()},
        "mig_per_factor": [round(float(v), 4) for v in mig.get("mig_per_factor", [])],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
