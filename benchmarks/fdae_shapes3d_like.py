"""FDAE (N = 6) and its DiffAE baseline (N = 1) trained the same way on the procedural
``shapes3d_like`` scenes, scored with the FDAE protocol beside the paper's Shapes3D numbers.

The paper (Wu & Zheng, AAAI 2024, Table 2; 10 seeds, 64 px 3D Shapes, 281.5 M-parameter UNet,
100k steps of batch 32 on a GPU) reports FDAE DCI 0.917 +- 0.038, FactorVAE 0.987 +- 0.023,
MIG 0.473 +- 0.075 and the DiffAE baseline (N = 1, same network) 0.114 +- 0.008 / 0.432 +- 0.019
/ 0.007 +- 0.002. This script runs the CPU preset ``fdae/shapes3d_like`` (32 px, a 4-level
16-channel UNet, 16-dim codes) at N = 6 and N = 1 with one seed, the two trainings side by side
(one thread each), then evaluates each run with ``disentkit eval --protocol fdae`` and computes
self-MIG (paper Eq. 13) on codes of the same images. It records the scale it ran at.

    python benchmarks/fdae_shapes3d_like.py --runs /tmp/fdae_bench --steps 500            # train + record
    python benchmarks/fdae_shapes3d_like.py --runs /tmp/fdae_bench --steps 500 --skip-train  # record only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
PAPER = {  # Table 2, Shapes3D, mean +- std over 10 seeds
    "fdae": {"dci": (0.917, 0.038), "factor_vae": (0.987, 0.023), "mig": (0.473, 0.075)},
    "diffae": {"dci": (0.114, 0.008), "factor_vae": (0.432, 0.019), "mig": (0.007, 0.002)},
}
#: paper Table 1, self-MIG on Shapes3D at N = 2, 4, 6, 8, 10
PAPER_SELF_MIG = {2: 0.86, 4: 0.88, 6: 0.92, 8: 0.89, 10: 0.78}
VARIANTS = {"fdae": 6, "diffae": 1}


def _train_words(name: str, concepts: int, steps: int, runs: Path, seed: int) -> list[str]:
    return ["train", "preset=fdae/shapes3d_like", f"model.num_concepts={concepts}", f"train.steps={steps}",
            f"seed={seed}", f"name={name}", f"out_dir={runs}", "eval.at_end=false",
            "train.checkpoint_every=100", "eval.report_at_end=false", "train.num_threads=1"]


def train(runs: Path, steps: int, seed: int) -> dict[str, float]:
    """Both trainings at once (one thread each); returns each one's wall time in seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs.mkdir(parents=True, exist_ok=True)
    started, procs = time.perf_counter(), {}
    for name, concepts in VARIANTS.items():
        log = open(runs / f"{name}.log", "w")  # noqa: SIM115 - closed when the process ends
        procs[name] = (subprocess.Popen([sys.executable, "-m", "disentkit",
                                         *_train_words(name, concepts, steps, runs, seed)],
                                        stdout=log, stderr=subprocess.STDOUT, env=env), log)
    times = {}
    for name, (proc, log) in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"training {name} failed; see {runs / (name + '.log')}")
        log.close()
        times[name] = round(time.perf_counter() - started, 1)
    return times


def evaluate(run: Path, preset: str) -> tuple[dict, float]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "disentkit", "eval", str(run), "--protocol", "fdae",
                    "--preset", preset, "--metrics", "dci", "factor_vae", "mig"], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    return json.loads((run / "results.json").read_text()), round(time.perf_counter() - start, 1)


def self_mig_of_run(run: Path, points: int, seed: int) -> dict:
    """Self-MIG on the codes of ``points`` dataset images drawn with ``seed`` (FDAE's d_r)."""
    import numpy as np

    from disentkit.metrics import representation_from_model
    from disentkit.metrics.sampling import encode_observations
    from disentkit.metrics.self_mig import self_mig
    from disentkit.run_loading import load_run

    loaded = load_run(run)
    data = loaded.data()
    obs = data.sample_observations(points, np.random.RandomState(seed))
    codes = encode_observations(representation_from_model(loaded.model), obs, 256)
    groups = loaded.model.code_groups()
    if len(groups) < 2:
        return {}
    out = self_mig(np.asarray(codes), groups)
    return {"self_mig": out["self_mig"], "self_mig_mean": out["self_mig_mean"],
            "per_code": [round(float(v), 4) for v in out["per_code"]], "group_dims": out["group_dims"],
            "num_points": out["num_points"]}


def record(runs: Path, steps: int, preset: str, seed: int, train_s: dict | None, out: Path) -> dict:
    from disentkit.evaluation import headline_scores

    rows = {}
    for name, concepts in VARIANTS.items():
        run = runs / name
        results, eval_s = evaluate(run, preset)
        metrics = results["metrics"]
        records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        rows[name] = {
            "num_concepts": concepts,
            "scores": {k: round(v, 4) for k, v in headline_scores(results).items()},
            "dci_completeness": round(float(metrics["dci"].get("completeness", float("nan"))), 4),
            "mig_per_factor": [round(float(v), 4) for v in metrics["mig"].get("mig_per_factor", [])],
            "self_mig": self_mig_of_run(run, 2000, seed),
            "final_loss": records[-1]["loss"], "final_rec": records[-1].get("rec"),
            "images_per_s": round(records[-1]["images_per_s"], 2),
            "train_s": (train_s or {}).get(name), "eval_s": eval_s,
            "train_loop_s": json.loads((run / "summary.json").read_text()).get("train_time_s"),
            "paper": {k: list(v) for k, v in PAPER[name].items()},
        }
    payload = {
        "what": "fdae/shapes3d_like at N=6 (FDAE) and N=1 (DiffAE baseline), one seed, FDAE protocol",
        "scale": {"image_px": 32, "steps": steps, "batch_size": 16, "seed": seed, "eval_preset": preset,
                  "preset": "fdae/shapes3d_like", "code_dim_per_group": 16,
                  "paper_scale": "64 px 3D Shapes, 281.5 M-param UNet, 100k steps x batch 32, 10 seeds"},
        "machine": f"{platform.machine()}, {os.cpu_count()} shared cores, Python {platform.python_version()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "runs": rows,
        "paper_self_mig_shapes3d": PAPER_SELF_MIG,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    return payload


def _cell(value: float | None, paper: tuple[float, float] | None = None) -> str:
    ours = "-" if value is None else f"{value:.3f}"
    return ours if paper is None else f"{ours} (paper {paper[0]:.3f} ± {paper[1]:.3f})"


def write_markdown(payload: dict, path: Path, notes: str = "") -> Path:
    """A table of both runs' scores beside the paper's, with the scale they ran at."""
    scale = payload["scale"]
    lines = ["# FDAE and its DiffAE baseline on shapes3d_like (CPU scale)", "",
             f"`benchmarks/fdae_shapes3d_like.py`: `{scale['preset']}` "
             f"({scale['image_px']} px, codes of {scale['code_dim_per_group']} per group), "
             f"{scale['steps']} steps of batch {scale['batch_size']}, seed {scale['seed']}, metrics with "
             f"the `{scale['eval_preset']}` preset under the FDAE protocol, on {payload['machine']} "
             f"(load average {payload['load_average'][0]}). The paper: {scale['paper_scale']}.", "",
             "| run | N | DCI | FactorVAE | MIG | self-MIG (max / mean) | training loop s | eval s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in payload["runs"].items():
        paper = {k: tuple(v) for k, v in row["paper"].items()}
        sm = row.get("self_mig") or {}
        self_mig = f"{sm['self_mig']:.3f} / {sm['self_mig_mean']:.3f}" if sm else "-"
        scores = row["scores"]
        train_s = row.get("train_loop_s") or row.get("train_s")
        lines.append(f"| {name} | {row['num_concepts']} | {_cell(scores.get('dci'), paper['dci'])} | "
                     f"{_cell(scores.get('factor_vae'), paper['factor_vae'])} | "
                     f"{_cell(scores.get('mig'), paper['mig'])} | {self_mig} | {train_s} | "
                     f"{row.get('eval_s')} |")
    per_factor = "; ".join(f"{n}: {r['mig_per_factor']}" for n, r in payload["runs"].items())
    lines += ["", f"Per-factor MIG: {per_factor}", "", notes.strip(), ""]
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder for the two run folders")
    parser.add_argument("--steps", type=int, default=500, help="training steps of each run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="fast", choices=["fast", "study"], help="metric sample sizes")
    parser.add_argument("--skip-train", action="store_true", help="only evaluate and record existing runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "fdae_shapes3d_like.json")
    parser.add_argument("--markdown-only", action="store_true",
                        help="only rewrite the .md next to --out from its .json")
    args = parser.parse_args()
    if not args.markdown_only:
        times = None if args.skip_train else train(args.runs, args.steps, args.seed)
        print(json.dumps(record(args.runs, args.steps, args.preset, args.seed, times, args.out), indent=2))
    payload = json.loads(args.out.read_text())
    print(write_markdown(payload, args.out.with_suffix(".md")))


if __name__ == "__main__":
    main()
