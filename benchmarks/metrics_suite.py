"""Benchmark: the study-size metric suite (BetaVAE, FactorVAE, MIG, SAP, DCI), disentkit's
``evaluate()`` vs an item-by-item disentanglement_lib-style baseline, in the same run.

Representation: dlib's conv encoder (``disentkit.nn.conv64.ConvEncoder``, 64x64x1 input, 10 codes,
Glorot init with ``torch.manual_seed(0)``), posterior mean, ``torch.set_num_threads(2)``.
Data: procedural ``sprites`` with orientations=10, positions=16 (3 x 6 x 10 x 16 x 16 = 46 080
images), rendered once before any timing (both paths then read the same in-memory grid).

* fast path: ``evaluate(..., preset="study")`` with its defaults (grid code cache on: the grid is
  encoded once, 1024 images per call, every metric reads codes by index; DCI's five GBTs on two
  threads), timed in full.
* baseline, as dlib does it: every metric re-samples from ``RandomState(0)``; the encoder is
  called per vote on 64 images (BetaVAE: twice per vote), on the 10 000 variance images in 64s
  (FactorVAE), per 16-point chunk (MIG, SAP, DCI); sklearn MI double loop; LinearSVC and GBT fits
  one after the other. The sampling+encoding loops are timed on a fraction of their votes/chunks
  (taken from the start of the stream) and extrapolated linearly -- their cost is per vote /
  per chunk; the scoring steps (logistic regression, MI loop, SVC fits, GBT fits) are timed in
  full on the exact full-size inputs (computed untimed through the grid cache, which gives
  dlib's draws; tests/test_metrics_grid.py).

Rounds alternate fast and baseline measurements; medians are reported. The load average is
recorded before/after. Run: ``python benchmarks/metrics_suite.py`` (about 15 minutes on the shared
2-core machine); writes benchmarks/results/metrics_suite.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score

from disentkit.data.procedural import ProceduralSprites
from disentkit.metrics import (
    CodeCache,
    GridCodes,
    beta_vae_features,
    evaluate,
    library_versions,
    representation_from_model,
)
from disentkit.metrics.dci import dci_from_codes
from disentkit.metrics.sap import sap_from_codes
from disentkit.metrics.utils import derived_seed
from disentkit.nn.conv64 import ConvEncoder

STUDY = {"votes_train": 10000, "votes_eval": 5000, "variance": 10000, "train": 10000, "test": 5000}
FAST_METRICS = ["beta_vae", "factor_vae", "mig", "sap"]


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(t: tuple[float, float]) -> dict[str, float]:
    return {"wall_s": time.perf_counter() - t[0], "cpu_s": time.process_time() - t[1]}


def make_representation(data: Any, forward_batch: int) -> tuple[Any, Any]:
    """dlib's conv encoder, Glorot init (seed 0), posterior mean as the code.

    At init the means vary by only ~0.01 over the grid, so FactorVAE's pruning (std >= 0.05) would
    drop every code and skip the metric; a trained encoder's codes spread O(1). The mean head is
    therefore rescaled once (folded into its weights: codes standardised on 2048 grid images), a
    fixed linear layer like any other -- the forward cost is unchanged.
    """
    torch.manual_seed(0)
    encoder = ConvEncoder(1, 10).eval()
    x = data.sample_observations(2048, np.random.RandomState(1))
    with torch.no_grad():
        z = encoder(torch.from_numpy(x).permute(0, 3, 1, 2))[0]
        mu, sd = z.mean(0), z.std(0)
        encoder.mean.weight.div_(sd[:, None])
        encoder.mean.bias.sub_(mu).div_(sd)
    rep = representation_from_model(encoder, device="cpu", batch_size=forward_batch, method="forward")
    return encoder, rep


def forward_per_image(encoder: Any, shape: tuple[int, ...], batch: int, seconds: float = 1.0) -> float:
    """Seconds per image of one encoder forward at ``batch`` images (after a warm-up call)."""
    x = torch.from_numpy(np.random.RandomState(0).rand(batch, *shape).astype(np.float32))
    x = (x > 0.9).float().permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        encoder(x)
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            encoder(x)
            n += batch
    return (time.perf_counter() - t0) / n


# ---- dlib-style item-by-item loops (timed on a fraction) -------------------------------------
def baseline_beta_vae_votes(data, rep, rs, n_votes):
    for _ in range(n_votes):
        k = rs.randint(low=0, high=data.num_factors)
        f1 = data.sample_factors(64, rs)
        f2 = data.sample_factors(64, rs)
        f2[:, k] = f1[:, k]
        z1 = rep(data.sample_observations_from_factors(f1, rs))
        z2 = rep(data.sample_observations_from_factors(f2, rs))
        np.mean(np.abs(z1 - z2), axis=0)


def baseline_factor_vae_variance(rep, obs, n_chunks):
    for i in range(n_chunks):
        rep(obs[64 * i : 64 * (i + 1)])


def baseline_factor_vae_votes(data, rep, rs, n_votes, global_var):
    active = np.ones_like(global_var, dtype=bool)
    for _ in range(n_votes):
        k = rs.randint(data.num_factors)
        f = data.sample_factors(64, rs)
        f[:, k] = f[0, k]
        z = rep(data.sample_observations_from_factors(f, rs))
        np.argmin(np.var(z, axis=0, ddof=1)[active] / global_var[active])


def baseline_chunks(data, rep, rs, n_chunks):
    codes, factors = [], []
    for _ in range(n_chunks):
        f, obs = data.sample(16, rs)
        codes.append(rep(obs))
        factors.append(f)
    return np.vstack(codes), np.vstack(factors)


def baseline_mig_score(codes, factors):
    mus, ys = codes.T, factors.T
    d = np.zeros_like(mus)
    for i in range(mus.shape[0]):
        d[i, :] = np.digitize(mus[i, :], np.histogram(mus[i, :], 20)[1][:-1])
    m = np.array([[mutual_info_score(ys[j], d[i]) for j in range(ys.shape[0])]
                  for i in range(d.shape[0])])
    h = np.array([mutual_info_score(ys[j], ys[j]) for j in range(ys.shape[0])])
    s = np.sort(m, axis=0)[::-1]
    return float(np.mean((s[0] - s[1]) / h))


def baseline_logistic(x, y, xe, ye, rs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(random_state=rs).fit(x, y)
    return float(np.mean(model.predict(x) == y)), float(model.score(xe, ye))


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--beta-votes", type=int, default=500, help="timed BetaVAE votes (of 15000)")
    ap.add_argument("--factor-votes", type=int, default=500, help="timed FactorVAE votes (of 15000)")
    ap.add_argument("--variance-chunks", type=int, default=60, help="timed chunks of 64 (of 157)")
    ap.add_argument("--chunks", type=int, default=60, help="timed 16-point chunks per metric "
                    "(of 625 MIG, 937 SAP, 937 DCI)")
    ap.add_argument("--gbt-estimators", type=int, default=100, help="DCI GBT n_estimators (100 = "
                    "scikit-learn default = study; lower only for a smoke run)")
    ap.add_argument("--forward-batch", type=int, default=64,
                    help="images per encoder forward inside the representation (slices larger calls)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "metrics_suite.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    out: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads()},
        "versions": library_versions(), "load_before": load(),
        "dataset": "sprites(orientations=10, positions=16): 3x6x10x16x16 = 46080 images, 64x64x1",
        "representation": "ConvEncoder(1, 10) (dlib conv encoder), torch.manual_seed(0), posterior "
                          "mean, mean head standardised once; representation_from_model slices calls "
                          "into forwards of --forward-batch images",
        "args": vars(args),
    }
    data = ProceduralSprites(ProceduralSprites.Config(orientations=10, positions=16))
    t = clock()
    data.images_uint8  # noqa: B018 - render and cache the grid once, before any timing
    out["render_grid"] = since(t)
    encoder, rep = make_representation(data, args.forward_batch)
    out["encoder_s_per_image"] = {
        str(b): median([forward_per_image(encoder, data.observation_shape, b) for _ in range(3)])
        for b in (16, 32, 64, 128, 256, 1024)
    }
    print("encoder s/image", out["encoder_s_per_image"], flush=True)

    # exact full-size inputs for the baseline's scoring steps (untimed; grid cache = dlib draws)
    t = clock()
    grid = GridCodes(data, rep, 1024)
    grid.encode()
    out["grid_encode_untimed_warmup"] = since(t)
    idx_data = grid.index_data()
    rs = np.random.RandomState(0)
    bx, by = beta_vae_features(idx_data, grid.lookup, 64, STUDY["votes_train"], rs)
    bxe, bye = beta_vae_features(idx_data, grid.lookup, 64, STUDY["votes_eval"], rs)
    cache = CodeCache(idx_data, grid.lookup)
    (tr, te), rs_after = cache.draws(0, [STUDY["train"], STUDY["test"]])
    var_codes = grid.lookup(idx_data.sample_observations(STUDY["variance"], np.random.RandomState(0)))
    global_var = np.var(var_codes, axis=0, ddof=1)

    units = {"beta_vae_votes": STUDY["votes_train"] + STUDY["votes_eval"],
             "factor_vae_votes": STUDY["votes_train"] + STUDY["votes_eval"],
             "factor_vae_variance_chunks": -(-STUDY["variance"] // 64),
             "mig_chunks": STUDY["train"] // 16,
             "sap_chunks": (STUDY["train"] + STUDY["test"]) // 16,
             "dci_chunks": (STUDY["train"] + STUDY["test"]) // 16}
    timed = {"beta_vae_votes": args.beta_votes, "factor_vae_votes": args.factor_votes,
             "factor_vae_variance_chunks": args.variance_chunks, "mig_chunks": args.chunks,
             "sap_chunks": args.chunks, "dci_chunks": args.chunks}
    out["baseline_units"] = {"total": units, "timed": timed}
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        row: dict[str, Any] = {"load_start": load()}
        # -- fast path: evaluate() in full (without DCI; DCI below) --
        t = clock()
        res = evaluate(data, rep, metrics=FAST_METRICS, seed=0, preset="study", n_jobs=2)
        row["fast_total"] = since(t)
        row["fast_timings_s"] = res["timings_s"]
        row["fast_encoder"] = res["encoder"]
        row["scores"] = {"beta_vae": res["metrics"]["beta_vae"]["eval_accuracy"],
                         "factor_vae": res["metrics"]["factor_vae"]["eval_accuracy"],
                         "mig": res["metrics"]["mig"]["discrete_mig"],
                         "sap": res["metrics"]["sap"]["SAP_score"]}
        print(r, "fast", row["fast_total"], res["timings_s"], flush=True)
        # -- baseline loops on a fraction --
        per_unit = {}
        t = clock()
        baseline_beta_vae_votes(data, rep, np.random.RandomState(0), args.beta_votes)
        per_unit["beta_vae_votes"] = since(t)
        rs = np.random.RandomState(0)
        t = clock()
        obs = data.sample_observations(STUDY["variance"], rs)
        row["baseline_factor_vae_variance_sampling"] = since(t)
        t = clock()
        baseline_factor_vae_variance(rep, obs, args.variance_chunks)
        per_unit["factor_vae_variance_chunks"] = since(t)
        t = clock()
        baseline_factor_vae_votes(data, rep, rs, args.factor_votes, global_var)
        per_unit["factor_vae_votes"] = since(t)
        for name in ("mig", "sap", "dci"):
            t = clock()
            codes, factors = baseline_chunks(data, rep, np.random.RandomState(0), args.chunks)
            per_unit[f"{name}_chunks"] = since(t)
        # batch-size invariance of this encoder: chunk-of-16 codes vs grid codes of the same images
        ref = grid.lookup(data.factors_to_index(factors))
        row["max_abs_code_diff_batch16_vs_grid"] = float(np.max(np.abs(codes - ref)))
        row["baseline_loops_timed"] = per_unit
        # -- baseline scoring steps, full size, exact inputs --
        scoring = {}
        t = clock()
        row["baseline_beta_vae"] = baseline_logistic(bx, by, bxe, bye, np.random.RandomState(0))
        scoring["beta_vae_logistic"] = since(t)
        t = clock()
        row["baseline_mig"] = baseline_mig_score(tr[0], tr[1])
        scoring["mig_histogram_mi_loop"] = since(t)
        t = clock()
        row["baseline_sap"] = sap_from_codes(tr[0], tr[1], te[0], te[1], svc_seed=derived_seed(rs_after),
                                             n_jobs=1)["SAP_score"]
        scoring["sap_svc_sequential"] = since(t)
        row["baseline_scoring"] = scoring
        row["load_end"] = load()
        print(r, "baseline loops", per_unit, "scoring", scoring, flush=True)
        rounds.append(row)
    out["rounds"] = rounds

    # -- DCI: the same 5 GBT fits (identical inputs) sequential / 2 threads / 2 processes --
    dci_times: dict[str, Any] = {"load_start": load()}
    seed = derived_seed(rs_after)
    dci_res = {}
    for label, n_jobs, backend in (("sequential", 1, "threading"), ("threads_2", 2, "threading"),
                                   ("loky_2", 2, "loky")):
        t = clock()
        dci_res[label] = dci_from_codes(tr[0], tr[1], te[0], te[1], seed, n_jobs,
                                        {"n_estimators": args.gbt_estimators}, backend)
        dci_times[label] = since(t)
        print("dci", label, dci_times[label], flush=True)
    dci_times["load_end"] = load()
    assert all(np.array_equal(v["importance_matrix"], dci_res["sequential"]["importance_matrix"])
               for v in dci_res.values())
    out["dci"] = dci_times
    out["dci_disentanglement"] = dci_res["sequential"]["disentanglement"]
    # -- one end-to-end evaluate() of the whole suite, defaults (DCI on two threads) --
    load_start = load()
    t = clock()
    res = evaluate(data, rep, metrics=[*FAST_METRICS, "dci"], seed=0, preset="study", n_jobs=2,
                   params={"dci": {"gbt_params": {"n_estimators": args.gbt_estimators}}})
    out["end_to_end"] = {**since(t), "timings_s": res["timings_s"], "encoder": res["encoder"],
                         "load_start": load_start, "load_end": load(),
                         "dci_equal_to_sequential": bool(np.array_equal(
                             res["metrics"]["dci"]["importance_matrix"],
                             dci_res["sequential"]["importance_matrix"]))}
    print("end-to-end", out["end_to_end"], flush=True)
    out["load_after"] = load()
    summarise(out)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=float))
    print(json.dumps(out["summary"], indent=1))


def summarise(out: dict[str, Any]) -> None:
    rounds = out["rounds"]
    units, timed = out["baseline_units"]["total"], out["baseline_units"]["timed"]

    def base_loop(key: str, r: dict) -> float:
        return r["baseline_loops_timed"][key]["wall_s"] / timed[key] * units[key]

    base = {
        "beta_vae": [base_loop("beta_vae_votes", r) + r["baseline_scoring"]["beta_vae_logistic"]["wall_s"]
                     for r in rounds],
        "factor_vae": [base_loop("factor_vae_votes", r) + base_loop("factor_vae_variance_chunks", r)
                       + r["baseline_factor_vae_variance_sampling"]["wall_s"] for r in rounds],
        "mig": [base_loop("mig_chunks", r) + r["baseline_scoring"]["mig_histogram_mi_loop"]["wall_s"]
                for r in rounds],
        "sap": [base_loop("sap_chunks", r) + r["baseline_scoring"]["sap_svc_sequential"]["wall_s"]
                for r in rounds],
        "dci_sampling": [base_loop("dci_chunks", r) for r in rounds],
    }
    fast = {name: [r["fast_timings_s"][name] for r in rounds] for name in FAST_METRICS}
    fast["grid_encode"] = [r["fast_timings_s"].get("grid_encode", 0.0) for r in rounds]
    fast_total = [r["fast_total"]["wall_s"] for r in rounds]
    base_total = [sum(base[k][i] for k in base if k != "dci_sampling") for i in range(len(rounds))]
    med = {"baseline": {k: median(v) for k, v in base.items()},
           "fast": {k: median(v) for k, v in fast.items()}}
    dci = out["dci"]
    no_dci_ratio = median([b / f for b, f in zip(base_total, fast_total, strict=True)])
    base_with = median(base_total) + med["baseline"]["dci_sampling"] + dci["sequential"]["wall_s"]
    fast_with = median(fast_total) + dci["threads_2"]["wall_s"]
    enc = out["encoder_s_per_image"]
    obs_fast = rounds[0]["fast_encoder"]["observations"]
    obs_base = (2 * 64 * units["beta_vae_votes"] + 64 * units["factor_vae_votes"] + STUDY["variance"]
                + 16 * (units["mig_chunks"] + units["sap_chunks"] + units["dci_chunks"]))
    out["summary"] = {
        "median_s": med,
        "suite_without_dci": {"baseline_s": median(base_total), "fast_s": median(fast_total),
                              "ratio_median_of_rounds": no_dci_ratio},
        "suite_with_dci": {"baseline_s": base_with, "fast_s": fast_with,
                           "ratio": base_with / fast_with},
        "dci_fit_s": {k: dci[k]["wall_s"] for k in ("sequential", "threads_2", "loky_2")},
        "encoded_observations": {"baseline": obs_base, "fast": obs_fast},
        "observations_ratio": obs_base / obs_fast,
        "encoder_s_per_image": enc,
        "fast_grid_encode_share": median(fast["grid_encode"]) / median(fast_total),
        "end_to_end_fast_s": out["end_to_end"]["wall_s"],
        "end_to_end_ratio": base_with / out["end_to_end"]["wall_s"],
    }


if __name__ == "__main__":
    main()
