"""Tests of disentkit.metrics: dlib equality (item-by-item reference below), values, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score, roc_auc_score

from disentkit.data.base import ArrayGroundTruthData
from disentkit.metrics import (
    CodeCache,
    beta_vae,
    dci,
    dci_from_codes,
    dci_from_importance,
    discrete_entropy,
    discrete_mutual_info,
    evaluate,
    factor_vae,
    histogram_discretize,
    irs_from_codes,
    mfvm,
    mfvm_dlib,
    mig,
    mig_from_codes,
    modularity_explicitness_from_codes,
    reduce_groups,
    representation_from_model,
    sample_codes,
    sap,
    sap_from_codes,
    tad,
    to_jsonable,
    unsupervised_from_codes,
)
from disentkit.metrics.attributes import attribute_probe_ap, attribute_regression, auroc_matrix

SIZES = (3, 4, 5)


def make_grid(sizes=SIZES) -> ArrayGroundTruthData:
    """8x8 images whose first pixels encode the factor indices (recoverable exactly)."""
    n = int(np.prod(sizes))
    factors = np.stack(np.unravel_index(np.arange(n), sizes), axis=1)
    images = np.random.RandomState(123).randint(0, 50, size=(n, 8, 8, 1)).astype(np.uint8)
    for k, s in enumerate(sizes):
        images[:, 0, k, 0] = (factors[:, k] * 200 // max(s - 1, 1)).astype(np.uint8)
    return ArrayGroundTruthData(images, [f"f{k}" for k in range(len(sizes))], sizes)


def perfect_rep(sizes=SIZES):
    """codes = factor indices (float32), computed row by row (batch-size independent)."""
    scale = np.array([max(s - 1, 1) for s in sizes], np.float32)

    def rep(x: np.ndarray) -> np.ndarray:
        pix = np.rint(x[:, 0, : len(sizes), 0] * np.float32(255.0)).astype(np.float32)
        return np.rint(pix / np.float32(200.0) * scale).astype(np.float32)

    return rep


def noisy_rep(x: np.ndarray) -> np.ndarray:
    """codes = fixed pixel noise (independent of the factors)."""
    return x[:, 4:6, 2:5, 0].reshape(len(x), -1).astype(np.float32)


def rotated_rep(x: np.ndarray) -> np.ndarray:
    """Entangled: a dense rotation of the (centred) factors, elementwise ops only."""
    f = perfect_rep()(x).astype(np.float64) - np.array([1.0, 1.5, 2.0])
    a, b, c = f[:, 0], f[:, 1], f[:, 2]
    return np.stack([0.6 * a + 0.6 * b + 0.5 * c, 0.7 * a - 0.7 * b, 0.4 * a + 0.4 * b - 0.8 * c],
                    1).astype(np.float32)


# ---- dlib-style item-by-item reference (chunk 16, encode 16 at a time, sklearn loops) ----------

def ref_generate_batch_factor_code(data, rep, num_points, rs, batch_size=16):
    codes, factors = None, None
    i = 0
    while i < num_points:
        n = min(num_points - i, batch_size)
        f, obs = data.sample(n, rs)
        z = rep(obs)
        codes = z if codes is None else np.vstack((codes, z))
        factors = f if factors is None else np.vstack((factors, f))
        i += n
    return codes.T, factors.T  # dlib layout


def ref_histogram(target, num_bins=20):
    out = np.zeros_like(target)
    for i in range(target.shape[0]):
        out[i, :] = np.digitize(target[i, :], np.histogram(target[i, :], num_bins)[1][:-1])
    return out


def ref_mig(mus, ys):
    d = ref_histogram(mus)
    m = np.zeros((mus.shape[0], ys.shape[0]))
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            m[i, j] = mutual_info_score(ys[j, :], d[i, :])
    h = np.array([mutual_info_score(ys[j], ys[j]) for j in range(ys.shape[0])])
    s = np.sort(m, axis=0)[::-1]
    return np.mean((s[0] - s[1]) / h)


def ref_factor_vae(data, rep, rs, batch_size, num_train, num_eval, num_var, threshold):
    obs = data.sample_observations(num_var, rs)
    reps = np.concatenate([rep(obs[i:i + 64]) for i in range(0, num_var, 64)])
    gv = np.var(reps, axis=0, ddof=1)
    active = np.sqrt(gv) >= threshold

    def votes(n):
        v = np.zeros((data.num_factors, gv.shape[0]), np.int64)
        for _ in range(n):
            k = rs.randint(data.num_factors)
            f = data.sample_factors(batch_size, rs)
            f[:, k] = f[0, k]
            z = rep(data.sample_observations_from_factors(f, rs))
            lv = np.var(z, axis=0, ddof=1)
            v[k, np.argmin(lv[active] / gv[active])] += 1
        return v

    tv = votes(num_train)
    clf = np.argmax(tv, axis=0)
    idx = np.arange(tv.shape[1])
    ev = votes(num_eval)
    return np.sum(tv[clf, idx]) / np.sum(tv), np.sum(ev[clf, idx]) / np.sum(ev)


def ref_beta_vae_features(data, rep, rs, batch_size, n):
    feats, labels = [], []
    for _ in range(n):
        k = rs.randint(low=0, high=data.num_factors)
        f1 = data.sample_factors(batch_size, rs)
        f2 = data.sample_factors(batch_size, rs)
        f2[:, k] = f1[:, k]
        z1 = rep(data.sample_observations_from_factors(f1, rs))
        z2 = rep(data.sample_observations_from_factors(f2, rs))
        feats.append(np.mean(np.abs(z1 - z2), axis=0))
        labels.append(k)
    return np.stack(feats), np.array(labels)


@pytest.fixture(scope="module")
def data():
    return make_grid()


# ---- exactness ---------------------------------------------------------------------------------

def test_vectorised_mi_equals_sklearn_bit_for_bit():
    rs = np.random.RandomState(0)
    codes = rs.randn(700, 5).astype(np.float32)
    codes[:, 3] = 1.5  # constant code
    codes[:, 4] = np.round(codes[:, 4], 1)
    factors = np.stack([rs.randint(3, size=700), rs.randint(40, size=700), rs.randint(2, size=700)], 1)
    d = histogram_discretize(codes, 20)
    m = discrete_mutual_info(d, factors)
    for i in range(5):
        for j in range(3):
            assert m[i, j] == mutual_info_score(factors[:, j], d[:, i])
    h = discrete_entropy(factors)
    assert all(h[j] == mutual_info_score(factors[:, j], factors[:, j]) for j in range(3))
    assert (d == ref_histogram(codes.T).T).all()  # float32 edges, digitize semantics
    assert d[:, 3].max() == d[:, 3].min()


def test_sample_codes_equals_item_by_item_reference(data):
    rep = perfect_rep()
    ref_c, ref_f = ref_generate_batch_factor_code(data, rep, 203, np.random.RandomState(7))
    c, f = sample_codes(data, rep, 203, np.random.RandomState(7), batch_size=16, encode_batch_size=97)
    assert np.array_equal(c, ref_c.T) and np.array_equal(f, ref_f.T)
    c2, _ = sample_codes(data, rep, 203, np.random.RandomState(7), batch_size=32)
    assert not np.array_equal(c2, c)  # the sampling chunk shapes the stream


def test_mig_equals_reference(data):
    for rep in (perfect_rep(), noisy_rep, rotated_rep):
        mus, ys = ref_generate_batch_factor_code(data, rep, 500, np.random.RandomState(0))
        assert mig(data, rep, np.random.RandomState(0), num_train=500)["discrete_mig"] == ref_mig(mus, ys)


@pytest.mark.parametrize("rep", [perfect_rep(), noisy_rep, rotated_rep])
def test_factor_vae_equals_reference(data, rep):
    ours = factor_vae(data, rep, np.random.RandomState(3), batch_size=64, num_train=150,
                      num_eval=80, num_variance_estimate=300, encode_batch_size=1000)
    ref = ref_factor_vae(data, rep, np.random.RandomState(3), 64, 150, 80, 300, 0.05)
    assert (ours["train_accuracy"], ours["eval_accuracy"]) == ref


def test_beta_vae_features_equal_reference(data):
    from disentkit.metrics import beta_vae_features

    ours = beta_vae_features(data, rotated_rep, 64, 60, np.random.RandomState(5), 500)
    ref = ref_beta_vae_features(data, rotated_rep, np.random.RandomState(5), 64, 60)
    assert np.array_equal(ours[0], ref[0]) and np.array_equal(ours[1], ref[1])


def test_logistic_regression_does_not_consume_stream(data):
    rs = np.random.RandomState(0)
    res = beta_vae(data, perfect_rep(), rs, num_train=100, num_eval=50)
    rs2 = np.random.RandomState(0)
    from disentkit.metrics import beta_vae_features

    beta_vae_features(data, perfect_rep(), 64, 100, rs2)
    beta_vae_features(data, perfect_rep(), 64, 50, rs2)
    assert rs.randint(10**9) == rs2.randint(10**9)
    assert res["eval_accuracy"] > 0.95


# ---- values -------------------------------------------------------------------------------------

def test_mig_values(data):
    kw = {"num_train": 800}
    perfect = mig(data, perfect_rep(), np.random.RandomState(0), **kw)["discrete_mig"]
    rot = mig(data, rotated_rep, np.random.RandomState(0), **kw)["discrete_mig"]
    noise = mig(data, noisy_rep, np.random.RandomState(0), **kw)["discrete_mig"]
    assert perfect > 0.95 and rot < 0.6 * perfect and 0 <= noise < 0.05


def test_mig_invariances_and_edges():
    rs = np.random.RandomState(1)
    f = np.stack([rs.randint(s, size=600) for s in SIZES], 1)
    codes = f.astype(np.float32)
    base = mig_from_codes(codes, f)["discrete_mig"]
    permuted = codes[:, [2, 0, 1]] * np.float32([4.0, 0.5, 2.0]) + np.float32(8.0)
    assert mig_from_codes(permuted, f)["discrete_mig"] == base
    # equal-width bins are not invariant to a non-linear monotone map: exp merges low values
    assert mig_from_codes(np.exp(codes), f)["discrete_mig"] < base - 0.02
    with pytest.raises(ValueError, match="at least 2"):
        mig_from_codes(codes[:, :1], f)
    const = np.concatenate([codes, np.ones((600, 1), np.float32)], 1)
    assert mig_from_codes(const, f)["discrete_mig"] == base
    big = rs.randint(40, size=(600, 1))
    capped = mig_from_codes(np.concatenate([big, big], 1).astype(np.float32) * [1, 0], big)
    assert capped["discrete_mig"] < 0.95  # 40 values > 20 bins caps a perfect code


def test_sap_values():
    rs = np.random.RandomState(2)
    f = np.stack([rs.randint(s, size=400) for s in SIZES], 1)
    perfect = sap_from_codes(f.astype(float), f, continuous_factors=True)["SAP_score"]
    assert perfect == pytest.approx(1.0, abs=0.02)
    noise = sap_from_codes(rs.randn(400, 3), f, continuous_factors=True)["SAP_score"]
    assert noise < 0.05
    const = np.concatenate([f.astype(float), np.ones((400, 1))], 1)
    assert sap_from_codes(const, f, continuous_factors=True)["score_matrix"][3].sum() == 0.0
    ftest = np.stack([rs.randint(s, size=200) for s in SIZES], 1)
    d = sap_from_codes(f.astype(float), f, ftest.astype(float), ftest)
    assert 0 <= d["SAP_score"] <= 1 and d["score_matrix"].shape == (3, 3)


def test_dci_importance_algebra():
    assert dci_from_importance(np.eye(5)) == pytest.approx((1.0, 1.0))
    dup = np.vstack([np.eye(5), np.eye(5)])
    d, c = dci_from_importance(dup)
    assert d == pytest.approx(1.0) and c == pytest.approx(1 - math.log(2) / math.log(10))
    assert dci_from_importance(np.zeros((4, 3)))[0] == pytest.approx(0.0, abs=1e-6)


def test_dci_values_and_parallel_equality(data):
    kw = {"num_train": 300, "num_test": 150, "gbt_params": {"n_estimators": 10}}
    p = dci(data, perfect_rep(), np.random.RandomState(0), n_jobs=1, **kw)
    p2 = dci(data, perfect_rep(), np.random.RandomState(0), n_jobs=2, **kw)
    p3 = dci(data, perfect_rep(), np.random.RandomState(0), n_jobs=2, backend="loky", **kw)
    assert p["disentanglement"] > 0.9 and p["completeness"] > 0.9 and p["informativeness_test"] == 1
    for other in (p2, p3):  # any n_jobs / backend / dispatch order: identical numbers
        assert p["disentanglement"] == other["disentanglement"]
        assert np.array_equal(p["importance_matrix"], other["importance_matrix"])
    # columns follow the factors even though fits are dispatched largest factor first
    assert np.argmax(p["importance_matrix"], axis=0).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="backend"):
        dci(data, perfect_rep(), np.random.RandomState(0), backend="dask", **kw)
    r = dci(data, rotated_rep, np.random.RandomState(0), n_jobs=1, **kw)
    assert r["disentanglement"] < p["disentanglement"] - 0.2
    # permuting code dims permutes the importance rows
    c, f = sample_codes(data, perfect_rep(), 300, np.random.RandomState(0))
    ct, ft = sample_codes(data, perfect_rep(), 100, np.random.RandomState(1))
    a = dci_from_codes(c, f, ct, ft, n_jobs=1, gbt_params={"n_estimators": 10})
    b = dci_from_codes(c[:, [1, 2, 0]], f, ct[:, [1, 2, 0]], ft, n_jobs=1,
                       gbt_params={"n_estimators": 10})
    assert a["disentanglement"] == pytest.approx(b["disentanglement"], abs=1e-9)
    e = dci_from_codes(np.exp(c), f, np.exp(ct), ft, n_jobs=1, gbt_params={"n_estimators": 10})
    assert e["informativeness_test"] == a["informativeness_test"]  # trees: monotone invariant


def test_modularity_explicitness_values_and_constant_code():
    rs = np.random.RandomState(3)
    f = np.stack([rs.randint(s, size=500) for s in SIZES], 1)
    ft = np.stack([rs.randint(s, size=300) for s in SIZES], 1)
    p = modularity_explicitness_from_codes(f.astype(np.float32), f, ft.astype(np.float32), ft)
    assert p["modularity_score"] > 0.95 and p["explicitness_score_test"] > 0.95
    noise = modularity_explicitness_from_codes(rs.randn(500, 3), f, rs.randn(300, 3), ft)
    assert noise["explicitness_score_test"] < 0.6
    const = np.concatenate([f, np.zeros((500, 1))], 1).astype(np.float32)
    const_t = np.concatenate([ft, np.zeros((300, 1))], 1).astype(np.float32)
    with pytest.raises(ValueError, match="constant"):
        modularity_explicitness_from_codes(const, f, const_t, ft)
    dropped = modularity_explicitness_from_codes(const, f, const_t, ft, drop_constant_codes=True)
    assert dropped["explicitness_score_test"] == pytest.approx(p["explicitness_score_test"])


def test_irs_values_and_dlib_num_active_dims():
    rs = np.random.RandomState(4)
    f = np.stack([rs.randint(s, size=500) for s in SIZES], 1)
    codes = np.concatenate([f.astype(float), np.full((500, 1), 3.0)], 1)
    r = irs_from_codes(codes, f)
    assert r["IRS"] == pytest.approx(1.0)
    assert r["num_active_dims"] == pytest.approx(f.sum())  # dlib: sum of code values
    assert irs_from_codes(codes, f, fix_num_active_dims=True)["num_active_dims"] == 3
    assert irs_from_codes(rs.randn(500, 3), f)["IRS"] < 0.45
    assert irs_from_codes(np.ones((500, 2)), f)["IRS"] == 0.0


def test_unsupervised_values():
    rs = np.random.RandomState(5)
    z = rs.randn(2000, 3)
    ind = unsupervised_from_codes(z)
    assert abs(ind["gaussian_total_correlation"]) < 0.01 and ind["mutual_info_score"] < 0.12
    mixed = unsupervised_from_codes(z @ np.array([[1, 0.9, 0], [0, 1, 0.9], [0, 0, 1.0]]))
    assert mixed["gaussian_total_correlation"] > 0.3
    assert mixed["mutual_info_score"] > ind["mutual_info_score"]
    const = unsupervised_from_codes(np.concatenate([z, np.ones((2000, 1))], 1))
    assert np.isnan(const["gaussian_total_correlation"])  # dlib: log 0 -> nan, no crash


def test_factor_vae_values_and_quirks(data):
    kw = {"num_train": 200, "num_eval": 100, "num_variance_estimate": 500}
    p = factor_vae(data, perfect_rep(), np.random.RandomState(0), **kw)
    assert p["eval_accuracy"] == 1.0 and p["num_active_dims"] == 3
    noise = factor_vae(data, noisy_rep, np.random.RandomState(0), **kw)
    assert noise["eval_accuracy"] < 0.6

    def with_const(x):
        z = perfect_rep()(x)
        return np.concatenate([z, np.zeros((len(x), 1), np.float32)], 1)

    q = factor_vae(data, with_const, np.random.RandomState(0), **kw)
    assert q["eval_accuracy"] == 1.0 and q["num_active_dims"] == 4  # dlib bug: all codes
    fixed = factor_vae(data, with_const, np.random.RandomState(0), fix_num_active_dims=True, **kw)
    assert fixed["num_active_dims"] == 3
    empty = factor_vae(data, lambda x: np.zeros((len(x), 2), np.float32), np.random.RandomState(0), **kw)
    assert empty == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}


def test_mfvm_variants(data):
    with pytest.raises(ValueError, match="distinct"):
        mfvm(data, perfect_rep(), np.random.RandomState(0), num_train=60)  # 100 > 59 images
    p = mfvm(data, perfect_rep(), np.random.RandomState(0), num_train=60, batch_size=40)
    assert p["mfvm_2"] == 1.0 and p["num_active_dims"] == 3
    gen = np.random.RandomState(11)
    n = mfvm(data, lambda x: gen.randn(len(x), 4).astype(np.float32), np.random.RandomState(0),
             num_train=60, batch_size=40)
    assert n["mfvm_2"] < 1.0
    d = mfvm_dlib(data, perfect_rep(), np.random.RandomState(0), num_train=60, num_eval=30,
                  num_variance_estimate=300, num_fixed=[1, 2])
    assert d["mfvm_1"] == 1.0 and d["mfvm_2"] == 1.0 and "mfvm_2_train" in d


def test_determinism(data):
    a = sap(data, rotated_rep, np.random.RandomState(9), num_train=200, num_test=100)
    b = sap(data, rotated_rep, np.random.RandomState(9), num_train=200, num_test=100)
    assert a["SAP_score"] == b["SAP_score"]


# ---- evaluate / sharing ---------------------------------------------------------------------------

def test_evaluate_shares_codes_and_matches_single_metrics(data):
    calls = {"n": 0}

    def rep(x):
        calls["n"] += 1
        return rotated_rep(x)

    small = {"num_train": 320, "num_test": 160}
    params = {"mig": {"num_train": 320}, "sap": dict(small), "unsupervised": {"num_train": 320},
              "dci": {**small, "gbt_params": {"n_estimators": 5}}, "irs": {"num_train": 320},
              "modularity_explicitness": dict(small)}
    res = evaluate(data, rep, metrics=list(params), params=params, n_jobs=1, code_cache="off")
    assert res["encoder"]["observations"] == 480 and calls["n"] <= 2
    assert set(res["versions"]) >= {"numpy", "sklearn", "torch"}
    single = mig(data, rotated_rep, np.random.RandomState(0), num_train=320)
    assert res["metrics"]["mig"]["discrete_mig"] == single["discrete_mig"]
    s = sap(data, rotated_rep, np.random.RandomState(0), **small)
    assert res["metrics"]["sap"]["SAP_score"] == s["SAP_score"]
    d = dci(data, rotated_rep, np.random.RandomState(0), n_jobs=1, gbt_params={"n_estimators": 5}, **small)
    assert res["metrics"]["dci"]["disentanglement"] == d["disentanglement"]
    ref_calls = len(range(0, 320, 16)) + len(range(0, 160, 16))
    assert ref_calls * len(params) > 10 * calls["n"]
    to_jsonable(res)


def test_code_cache_prefix_resume(data):
    cache = CodeCache(data, perfect_rep(), encode_batch_size=64)
    (a,), _ = cache.draws(0, [100])
    (b, c), rs_after = cache.draws(0, [100, 50])
    assert np.array_equal(a[0], b[0])
    ref_rs = np.random.RandomState(0)
    sample_codes(data, perfect_rep(), 100, ref_rs)
    ref_c, ref_f = sample_codes(data, perfect_rep(), 50, ref_rs)
    assert np.array_equal(c[0], ref_c) and np.array_equal(c[1], ref_f)
    assert rs_after.randint(10**9) == ref_rs.randint(10**9)
    (d,), _ = cache.draws(0, [40])  # diverging chunk plan (40 = 16+16+8) is redrawn correctly
    e, _ = sample_codes(data, perfect_rep(), 40, np.random.RandomState(0))
    assert np.array_equal(d[0], e)


def test_group_protocols(data):
    def grouped(x):
        z = perfect_rep()(x)
        return np.concatenate([z, 2 * z + 1], 1)  # dims (0,3), (1,4), (2,5) are the groups

    groups = [0, 1, 2, 0, 1, 2]
    small = {"mig": {"num_train": 320}, "factor_vae": {"num_train": 60, "num_eval": 30,
                                                       "num_variance_estimate": 300},
             "dci": {"num_train": 320, "num_test": 160, "gbt_params": {"n_estimators": 5}}}
    dd = evaluate(data, grouped, metrics=list(small), params=small, protocol="disdiff",
                  groups=groups, n_jobs=1)
    assert dd["config"]["disdiff_fit_points"] == len(data)
    assert dd["metrics"]["mig"]["discrete_mig"] > 0.9
    assert dd["metrics"]["factor_vae"]["eval_accuracy"] == 1.0
    fd = evaluate(data, grouped, metrics=list(small), params=small, protocol="fdae",
                  groups=groups, group_dims=2, n_jobs=1)
    assert fd["config"]["group_dims"] == 2
    assert fd["metrics"]["mig"]["discrete_mig"] > 0.9
    assert fd["metrics"]["factor_vae"]["eval_accuracy"] == 1.0
    with pytest.raises(ValueError, match="FDAE"):
        evaluate(data, grouped, metrics=["beta_vae"], protocol="fdae", groups=groups)
    red = reduce_groups(np.random.RandomState(0).randn(50, 6), groups, dims=1)
    assert red.shape == (50, 3)


# ---- attribute metrics --------------------------------------------------------------------------

def test_tad_and_probes():
    rs = np.random.RandomState(0)
    y = (rs.rand(600, 3) > 0.5).astype(int)
    codes = np.concatenate([y + 0.1 * rs.randn(600, 3), rs.randn(600, 2)], 1)
    auc = auroc_matrix(codes, y)
    for a in range(3):
        for d in range(5):
            s = roc_auc_score(y[:, a], codes[:, d])
            assert auc[a, d] == pytest.approx(max(s, 1 - s), abs=1e-12)
    t = tad(codes, y)
    assert t["num_attributes"] == 3 and 1.2 < t["tad"] <= 1.5
    dup = tad(codes, np.concatenate([y, y[:, :1]], 1))  # a duplicated attribute is filtered
    assert dup["num_attributes"] == 2
    assert tad(rs.randn(600, 5), y)["num_attributes"] == 0
    ap = attribute_probe_ap(codes[:400], 2 * y[:400] - 1, codes[400:], 2 * y[400:] - 1)
    assert ap["mean_ap"] > 0.95
    targets = codes[:, :2] @ np.array([[1.0], [2.0]])
    reg = attribute_regression(codes[:400], targets[:400], codes[400:], targets[400:])
    assert reg["mean_pearson_r"] > 0.999 and reg["mean_mse"] < 1e-6


def test_representation_from_model(data):
    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(64, 3)

        def encode(self, x):
            assert x.shape[1:] == (1, 8, 8)
            return self.lin(x.flatten(1)), torch.zeros(len(x), 3)

    model = Enc().train()
    rep = representation_from_model(model, batch_size=7)
    obs = data.sample_observations(20, np.random.RandomState(0))
    z = rep(obs)
    assert z.shape == (20, 3) and z.dtype == np.float32 and model.training
    with torch.no_grad():
        want = model.lin(torch.from_numpy(obs).permute(0, 3, 1, 2).reshape(20, 64)).numpy()
    np.testing.assert_allclose(z, want, rtol=1e-5, atol=1e-6)
