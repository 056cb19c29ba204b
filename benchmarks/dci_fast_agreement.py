"""Benchmark: ``dci_fast`` (histogram boosting, split-gain importances) against the reference
``dci`` (exact ``GradientBoostingClassifier``) on representations of trained models, and the speed
of the five-metric study suite with each, in the same run.

1. Trains small models of different methods on different procedural data sets with the package
   (``disentkit.train``, CPU, one torch thread; 600-1500 steps each, so the codes carry some, not
   all, of the factors -- the regime where D/C/I are informative).
2. Agreement: for every trained run, one set of draws at the ``fast`` preset's sizes (2000 / 1000
   points; ``--agree-preset study`` for 10000 / 5000) through ``evaluate()``'s code cache, scored by
   both estimators (their ``score_draws``, as ``evaluate(metrics=["dci", "dci_fast"])`` does): D, C,
   informativeness, and the wall / CPU time of each scoring.
3. Speed: the study suite (BetaVAE, FactorVAE, MIG, SAP + DCI) on the first run's 46 080-image
   sprites grid, ``preset="study"``, once with ``dci`` and once with ``dci_fast`` (same seed,
   ``n_jobs=1``: one core, as the issue's ~177 s), wall and CPU time; the two DCI results at study
   size are a further agreement row.

Run: ``python benchmarks/dci_fast_agreement.py`` (about 9.5 CPU minutes: 19 min wall on the shared
2-core machine at load 5-6); writes benchmarks/results/dci_fast_agreement.json (the .md beside it is
written by hand from it).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import disentkit
from disentkit.config import load_config
from disentkit.metrics import (
    PRESETS,
    CodeCache,
    evaluate,
    library_versions,
    representation_from_model,
)
from disentkit.metrics.dci import score_draws as dci_score_draws
from disentkit.metrics.dci_fast import score_draws as dci_fast_score_draws

SUITE = ["beta_vae", "factor_vae", "mig", "sap"]
COMMON = ["eval.metrics=[]", "eval.at_end=false", "eval.report_at_end=false", "log.progress=false",
          "train.num_threads=1", "train.checkpoint_every=100000", "model.latent_dim=10"]
#: (label, preset, overrides): different methods on different procedural grids, all 32x32. Short
#: runs on the 46 080-image sprites grid collapse (600 steps of beta-VAE: test informativeness at
#: chance), so sprites gets the quickstart's beta-TCVAE for 1500 steps; the colour grids learn
#: their factors in 600.
RUNS: list[tuple[str, str, list[str]]] = [
    ("betatcvae / sprites 3x6x10x16x16", "quickstart/sprites", ["train.steps=1500"]),
    ("betavae / shapes3d_like 4x4x4x4x3x5", "betavae/smoke",
     ["data.name=shapes3d_like", "data.image_size=32", "data.antialias=1", "data.floor_hues=4",
      "data.wall_hues=4", "data.object_hues=4", "data.scales=4", "data.shapes=3",
      "data.orientations=5", "train.batch_size=64", "train.steps=600"]),
    ("factorvae / color_sprites 3x3x4x4x3x4x4", "factorvae/smoke",
     ["data.name=color_sprites", "data.image_size=32", "data.background_hues=3",
      "data.sprite_hues=3", "data.positions=4", "train.batch_size=64", "train.steps=600"]),
    ("dipvae / color_sprites 3x3x4x4x3x4x4", "dipvae/smoke",
     ["data.name=color_sprites", "data.image_size=32", "data.background_hues=3",
      "data.sprite_hues=3", "data.positions=4", "train.batch_size=64", "train.steps=600"]),
]
KEYS = ("disentanglement", "completeness", "informativeness_train", "informativeness_test")


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed(fn: Any) -> tuple[Any, dict[str, float]]:
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}


def train_runs(root: Path, steps: int | None) -> list[dict[str, Any]]:
    runs = []
    for i, (label, preset, extra) in enumerate(RUNS):
        length = [] if steps is None else [f"train.steps={steps}"]
        config = load_config(preset, [*COMMON, *extra, *length, f"out_dir={root}", f"name=run{i}",
                                      "seed=0"])
        path, cost = timed(lambda config=config: disentkit.train(config))
        runs.append({"label": label, "preset": preset, "overrides": extra, "path": path,
                     "train": cost})
        print("trained", label, cost, flush=True)
    return runs


def compare(data: Any, rep: Any, preset: str, points: int | None) -> dict[str, Any]:
    """Both estimators on the same draws (evaluate()'s code cache path), each scoring timed."""
    sizes = dict(PRESETS[preset]["dci"])
    if points is not None:
        sizes.update(num_train=points, num_test=points // 2)
    cache = CodeCache(data, rep)
    draws, rs_after = cache.draws(0, [sizes["num_train"], sizes["num_test"]], sizes["batch_size"])
    ref, t_ref = timed(lambda: dci_score_draws(draws, copy.deepcopy(rs_after), n_jobs=1))
    fast, t_fast = timed(lambda: dci_fast_score_draws(draws, copy.deepcopy(rs_after), n_jobs=1))
    return {
        "points": [sizes["num_train"], sizes["num_test"]],
        "dci": {k: ref[k] for k in KEYS}, "dci_fast": {k: fast[k] for k in KEYS},
        "abs_diff": {k: abs(fast[k] - ref[k]) for k in KEYS},
        "importance_max_abs_diff": float(np.abs(fast["importance_matrix"]
                                                - ref["importance_matrix"]).max()),
        "same_top_code_per_factor": bool(np.array_equal(np.argmax(fast["importance_matrix"], 0),
                                                        np.argmax(ref["importance_matrix"], 0))),
        "timings": {"dci": t_ref, "dci_fast": t_fast}, "factor_sizes": list(map(int, data.factor_sizes)),
    }


def suite(data: Any, rep: Any, dci_name: str) -> dict[str, Any]:
    res, cost = timed(lambda: evaluate(data, rep, metrics=[*SUITE, dci_name], seed=0,
                                       preset="study", n_jobs=1))
    return {"total": cost, "timings_s": res["timings_s"], "result": res["metrics"][dci_name],
            "scores": {"beta_vae": res["metrics"]["beta_vae"]["eval_accuracy"],
                       "factor_vae": res["metrics"]["factor_vae"]["eval_accuracy"],
                       "mig": res["metrics"]["mig"]["discrete_mig"],
                       "sap": res["metrics"]["sap"]["SAP_score"]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps of every model (default: each run's own, see RUNS)")
    ap.add_argument("--agree-preset", default="fast", choices=("fast", "study"),
                    help="draw sizes of the per-run agreement (fast: 2000/1000, study: 10000/5000)")
    ap.add_argument("--points", type=int, default=None,
                    help="agreement training points (test: half), replacing the preset's sizes")
    ap.add_argument("--no-suite", action="store_true", help="skip the study-suite timing")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dci_fast_agreement.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out: dict[str, Any] = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                           "versions": library_versions(), "args": vars(args),
                           "load_before": load()}
    with tempfile.TemporaryDirectory() as tmp:
        runs = train_runs(Path(tmp), args.steps)
        rows = []
        for run in runs:
            loaded = disentkit.load_run(run["path"])
            data, rep = loaded.data(), representation_from_model(loaded.model, device="cpu")
            row = {k: v for k, v in run.items() if k != "path"}
            row.update(compare(data, rep, args.agree_preset, args.points), load=load())
            rows.append(row)
            print("agreement", row["label"], row["dci"], row["dci_fast"], row["timings"], flush=True)
            if run is runs[0] and not args.no_suite:
                data.images_uint8  # noqa: B018 - render the grid before any timing
                fast = suite(data, rep, "dci_fast")
                print("suite dci_fast", fast["total"], fast["timings_s"], flush=True)
                ref = suite(data, rep, "dci")
                print("suite dci", ref["total"], ref["timings_s"], flush=True)
                out["suite"] = {"run": run["label"], "dci": ref, "dci_fast": fast,
                                "load_after": load()}
        out["agreement"] = rows
    out["load_after"] = load()
    summarise(out)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=_jsonable))
    print(json.dumps(out["summary"], indent=1))


def _jsonable(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else float(value)


def summarise(out: dict[str, Any]) -> None:
    rows = out["agreement"]
    summary: dict[str, Any] = {
        "max_abs_diff": {k: max(r["abs_diff"][k] for r in rows) for k in KEYS},
        "dci_over_dci_fast_cpu": [r["timings"]["dci"]["cpu_s"] / r["timings"]["dci_fast"]["cpu_s"]
                                  for r in rows],
    }
    if "suite" in out:
        s = out["suite"]
        ref, fast = s["dci"]["result"], s["dci_fast"]["result"]
        summary["suite"] = {
            "with_dci_wall_s": s["dci"]["total"]["wall_s"],
            "with_dci_fast_wall_s": s["dci_fast"]["total"]["wall_s"],
            "wall_ratio": s["dci"]["total"]["wall_s"] / s["dci_fast"]["total"]["wall_s"],
            "with_dci_cpu_s": s["dci"]["total"]["cpu_s"],
            "with_dci_fast_cpu_s": s["dci_fast"]["total"]["cpu_s"],
            "cpu_ratio": s["dci"]["total"]["cpu_s"] / s["dci_fast"]["total"]["cpu_s"],
            "dci_s": s["dci"]["timings_s"]["dci"], "dci_fast_s": s["dci_fast"]["timings_s"]["dci_fast"],
            "study_size_abs_diff": {k: abs(fast[k] - ref[k]) for k in KEYS},
            "other_metrics_equal": s["dci"]["scores"] == s["dci_fast"]["scores"],
        }
    out["summary"] = summary


if __name__ == "__main__":
    main()
