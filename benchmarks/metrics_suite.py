"""Benchmark: study-size metric suite (BetaVAE, FactorVAE, MIG, SAP, DCI) with disentkit's fast
paths vs an item-by-item dlib-style baseline (encoder called per 16-point chunk / per vote,
sklearn MI double loop, sequential DCI), on a procedural 64x64 grid with a fixed cheap encoder.

The baseline's sampling+encoding loops for BetaVAE/FactorVAE are timed on a documented fraction
of the votes and extrapolated linearly (the loop cost is per vote); DCI's GBTs are the same
scikit-learn fits in both paths, run sequentially for the baseline (timed on the real draw).
Run: ``python benchmarks/metrics_suite.py`` (writes benchmarks/results/metrics_suite.json/.md).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import mutual_info_score

from disentkit.data.base import ArrayGroundTruthData
from disentkit.metrics import evaluate, histogram_discretize, library_versions
from disentkit.metrics.dci import dci_from_codes

SIZES = (5, 6, 8, 10, 4)  # 9600 images, 33 classes in total


def make_data() -> ArrayGroundTruthData:
    n = int(np.prod(SIZES))
    f = np.stack(np.unravel_index(np.arange(n), SIZES), axis=1).astype(np.float32)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32) / 63.0
    img = np.zeros((n, 64, 64), np.float32)
    for k, s in enumerate(SIZES):
        v = f[:, k:k + 1, None] / (s - 1)
        img += np.sin(np.pi * (k + 1) * (xx * np.cos(k) + yy * np.sin(k)) + 3 * v) * 0.2
    img = (img - img.min()) / (img.max() - img.min())
    return ArrayGroundTruthData((img[..., None] * 255).astype(np.uint8), [f"f{k}" for k in range(5)],
                                SIZES)


W = np.random.RandomState(0).randn(16 * 16, 10).astype(np.float32) / 16


def representation(x: np.ndarray) -> np.ndarray:
    """Fixed random linear map of 4x4-average-pooled pixels + tanh: (n, 10) codes."""
    pooled = x[..., 0].reshape(len(x), 16, 4, 16, 4).mean(axis=(2, 4)).reshape(len(x), -1)
    return np.tanh(pooled @ W)


def baseline_sample(data, rep, n, rs, chunk=16):
    codes, factors = [], []
    for i in range(0, n, chunk):
        f, obs = data.sample(min(chunk, n - i), rs)
        codes.append(rep(obs))
        factors.append(f)
    return np.vstack(codes), np.vstack(factors)


def baseline_mi(codes, factors):
    d = histogram_discretize(codes, 20)
    return np.array([[mutual_info_score(factors[:, j], d[:, i]) for j in range(factors.shape[1])]
                     for i in range(codes.shape[1])])


def baseline_votes_time(data, rep, n_votes, kind):
    rs = np.random.RandomState(0)
    t0 = time.perf_counter()
    for _ in range(n_votes):
        k = rs.randint(data.num_factors)
        f1 = data.sample_factors(64, rs)
        if kind == "beta":
            f2 = data.sample_factors(64, rs)
            f2[:, k] = f1[:, k]
            z1 = rep(data.sample_observations_from_factors(f1, rs))
            z2 = rep(data.sample_observations_from_factors(f2, rs))
            np.mean(np.abs(z1 - z2), axis=0)
        else:
            f1[:, k] = f1[0, k]
            np.var(rep(data.sample_observations_from_factors(f1, rs)), axis=0, ddof=1)
    return time.perf_counter() - t0


def main() -> None:
    data = make_data()
    out: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                             "processor": platform.processor()}, "versions": library_versions(),
                 "dataset": {"factor_sizes": SIZES, "image": "64x64x1"},
                 "representation": "tanh(avgpool4(x) @ W), W fixed N(0,1)/16, 10 codes"}
    # ---- disentkit fast path: whole study-size suite via evaluate() ---------------------------
    t0 = time.perf_counter()
    res = evaluate(data, representation, metrics=["beta_vae", "factor_vae", "mig", "sap", "dci"],
                   seed=0, preset="study", encode_batch_size=4096, n_jobs=-1)
    fast_total = time.perf_counter() - t0
    out["fast"] = {"total_s": fast_total, "per_metric_s": res["timings_s"], "encoder": res["encoder"],
                   "scores": {"beta_vae": res["metrics"]["beta_vae"]["eval_accuracy"],
                              "factor_vae": res["metrics"]["factor_vae"]["eval_accuracy"],
                              "mig": res["metrics"]["mig"]["discrete_mig"],
                              "sap": res["metrics"]["sap"]["SAP_score"],
                              "dci_d": res["metrics"]["dci"]["disentanglement"]}}
    print(json.dumps(out["fast"], indent=1, default=float))
    # ---- baseline (item-by-item, dlib-style) -------------------------------------------------
    base: dict = {}
    frac = 0.1
    for kind, n_votes in (("beta", 15000), ("factor", 15000)):
        t = baseline_votes_time(data, representation, int(n_votes * frac), kind)
        base[f"{kind}_vae_sampling_s_extrapolated"] = t / frac
    rs = np.random.RandomState(0)
    t0 = time.perf_counter()
    obs = data.sample_observations(10000, rs)
    np.var(np.vstack([representation(obs[i:i + 64]) for i in range(0, 10000, 64)]), 0, ddof=1)
    base["factor_vae_variance_s"] = time.perf_counter() - t0
    timings_arr = {}
    for name, sizes in (("mig", (10000,)), ("sap", (10000, 5000)), ("dci", (10000, 5000))):
        rs = np.random.RandomState(0)
        t0 = time.perf_counter()
        draws = [baseline_sample(data, representation, n, rs) for n in sizes]
        timings_arr[f"{name}_sampling_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    baseline_mi(*draws[0])
    timings_arr["mig_mi_loop_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    dci_from_codes(draws[0][0], draws[0][1], draws[1][0], draws[1][1], n_jobs=1)
    timings_arr["dci_sequential_gbt_s"] = time.perf_counter() - t0
    base.update(timings_arr)
    # SAP classifier cost is identical in both paths (same LinearSVC fits); take it from the fast run
    sap_fit = res["timings_s"]["sap"]
    base["sap_fits_s_from_fast_run"] = sap_fit
    base_total = (base["beta_vae_sampling_s_extrapolated"] + base["factor_vae_sampling_s_extrapolated"]
                  + base["factor_vae_variance_s"] + sum(timings_arr.values()) + sap_fit)
    base["total_s"] = base_total
    base["note"] = (f"BetaVAE/FactorVAE vote loops timed on {frac:.0%} of the 15000 votes and "
                    "extrapolated; logistic-regression fits (~1 s) not included")
    out["baseline"] = base
    out["speedup"] = base_total / fast_total
    print(json.dumps(base, indent=1, default=float))
    print(f"speed-up: {out['speedup']:.2f}x")
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "metrics_suite.json").write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
