"""Grid code cache (disentkit.metrics.grid, evaluate(code_cache=...)): same numbers as the
item-by-item reference and as the uncached path; each grid image encoded once; datasets that draw
per-observation randomness are never cached."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import disentkit.metrics.suite as suite
from disentkit.data.base import ArrayGroundTruthData
from disentkit.metrics import (
    GridCodes,
    check_deterministic_observations,
    evaluate,
    planned_observations,
    sap_from_codes,
)
from disentkit.metrics.utils import derived_seed
from disentkit.registry import DATASETS
from test_metrics import (
    make_grid,
    perfect_rep,
    ref_beta_vae_features,
    ref_factor_vae,
    ref_generate_batch_factor_code,
    ref_mig,
    rotated_rep,
)

SMALL = {
    "beta_vae": {"num_train": 120, "num_eval": 60},
    "factor_vae": {"num_train": 150, "num_eval": 80, "num_variance_estimate": 300},
    "mig": {"num_train": 320},
    "sap": {"num_train": 320, "num_test": 160},
    "dci": {"num_train": 320, "num_test": 160, "gbt_params": {"n_estimators": 5}},
}


@pytest.fixture(scope="module")
def data():
    return make_grid()


class Recording:
    """Representation wrapper remembering every image it was given (as bytes)."""

    def __init__(self, fn):
        self.fn = fn
        self.seen: Counter = Counter()

    def __call__(self, x):
        self.seen.update(row.tobytes() for row in x)
        return self.fn(x)


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(value, b[key]), key
        else:
            assert value == b[key] or (value != value and b[key] != b[key]), key


def ref_beta_vae(data, rep, rs, n_train, n_eval):
    x, y = ref_beta_vae_features(data, rep, rs, 64, n_train)
    model = LogisticRegression(random_state=rs).fit(x, y)
    xe, ye = ref_beta_vae_features(data, rep, rs, 64, n_eval)
    return float(np.mean(model.predict(x) == y)), float(model.score(xe, ye))


def test_grid_cache_equals_uncached_and_item_by_item_reference(data):
    rec = Recording(rotated_rep)
    grid = evaluate(data, rec, metrics=list(SMALL), params=SMALL, n_jobs=1, code_cache="grid")
    off = evaluate(data, rotated_rep, metrics=list(SMALL), params=SMALL, n_jobs=1, code_cache="off")
    auto = evaluate(data, rotated_rep, metrics=list(SMALL), params=SMALL, n_jobs=1)
    assert grid["config"]["code_cache"] == auto["config"]["code_cache"] == "grid"
    assert off["config"]["code_cache"] == "off"
    for name in SMALL:
        _assert_same(grid["metrics"][name], off["metrics"][name])
        _assert_same(grid["metrics"][name], auto["metrics"][name])
    # every grid image went through the representation exactly once
    all_images = data.sample_observations_from_factors(
        data.index_to_factors(np.arange(len(data))), np.random.RandomState(0))
    assert rec.seen == Counter(row.tobytes() for row in all_images)
    assert grid["encoder"]["observations"] == len(data) < off["encoder"]["observations"]
    # item-by-item dlib-style references, each from RandomState(0)
    m = grid["metrics"]
    fv = ref_factor_vae(data, rotated_rep, np.random.RandomState(0), 64, 150, 80, 300, 0.05)
    assert (m["factor_vae"]["train_accuracy"], m["factor_vae"]["eval_accuracy"]) == fv
    bv = ref_beta_vae(data, rotated_rep, np.random.RandomState(0), 120, 60)
    assert (m["beta_vae"]["train_accuracy"], m["beta_vae"]["eval_accuracy"]) == bv
    mus, ys = ref_generate_batch_factor_code(data, rotated_rep, 320, np.random.RandomState(0))
    assert m["mig"]["discrete_mig"] == ref_mig(mus, ys)
    rs = np.random.RandomState(0)
    tr = ref_generate_batch_factor_code(data, rotated_rep, 320, rs)
    te = ref_generate_batch_factor_code(data, rotated_rep, 160, rs)
    ref_sap = sap_from_codes(tr[0].T, tr[1].T, te[0].T, te[1].T, svc_seed=derived_seed(rs))
    assert m["sap"]["SAP_score"] == ref_sap["SAP_score"]


def test_planned_observations_counts_the_uncached_encodes(data):
    metrics = [*SMALL, "irs", "mfvm_dlib"]
    params = {**SMALL, "irs": {"num_train": 480},
              "mfvm_dlib": {"num_train": 20, "num_eval": 10, "num_variance_estimate": 100}}
    off = evaluate(data, perfect_rep(), metrics=metrics, params=params, n_jobs=1, code_cache="off")
    planned = planned_observations(metrics, data.num_factors, "study", params)
    assert off["encoder"]["observations"] == planned == off["encoder"]["planned_observations"]
    # hand count: BetaVAE 2*64*180, FactorVAE 300 + 64*230, mfvm_dlib (k=1 only for K=3)
    # 100 + 1*64*30, shared draws max(320, 480, 320+160) = 480
    assert planned == 2 * 64 * 180 + 300 + 64 * 230 + 100 + 64 * 30 + 480
    assert planned_observations(["mig", "sap"], 3, "study", SMALL, share_codes=False) == 320 + 480


def test_auto_skips_the_grid_when_it_saves_nothing_or_is_too_large(data, monkeypatch):
    tiny = {"mig": {"num_train": 32}}
    res = evaluate(data, perfect_rep(), metrics=["mig"], params=tiny)
    assert res["config"]["code_cache"] == "off" and res["encoder"]["observations"] == 32
    forced = evaluate(data, perfect_rep(), metrics=["mig"], params=tiny, code_cache="grid")
    assert forced["config"]["code_cache"] == "grid" and forced["encoder"]["observations"] == 60
    assert forced["metrics"]["mig"]["discrete_mig"] == res["metrics"]["mig"]["discrete_mig"]
    monkeypatch.setattr(suite, "GRID_CACHE_MAX_BYTES", 100)  # 60 x 3 float32 codes = 720 bytes
    fv = {"factor_vae": SMALL["factor_vae"]}
    small_mem = evaluate(data, perfect_rep(), metrics=["factor_vae"], params=fv)
    assert small_mem["config"]["code_cache"] == "off"
    with pytest.raises(ValueError, match="code_cache"):
        evaluate(data, perfect_rep(), metrics=["mig"], code_cache="yes")


class NoisyGrid(ArrayGroundTruthData):
    """Per-observation noise from random_state (like noisy dSprites): must never be cached."""

    deterministic_observations = False

    def sample_observations_from_factors(self, factors, random_state):
        clean = super().sample_observations_from_factors(factors, random_state)
        return clean + random_state.uniform(0, 0.01, clean.shape).astype(np.float32)


class MislabelledGrid(NoisyGrid):
    deterministic_observations = True  # wrong: it draws from random_state


def test_random_observation_datasets_are_never_grid_cached(data):
    noisy = NoisyGrid(data.images_uint8, data.factor_names, data.factor_sizes)
    fv = {"factor_vae": SMALL["factor_vae"]}
    auto = evaluate(noisy, rotated_rep, metrics=["factor_vae"], params=fv)
    assert auto["config"]["code_cache"] == "off"
    ref = ref_factor_vae(noisy, rotated_rep, np.random.RandomState(0), 64, 150, 80, 300, 0.05)
    assert (auto["metrics"]["factor_vae"]["train_accuracy"],
            auto["metrics"]["factor_vae"]["eval_accuracy"]) == ref
    with pytest.raises(ValueError, match="deterministic_observations"):
        evaluate(noisy, rotated_rep, metrics=["factor_vae"], params=fv, code_cache="grid")
    bad = MislabelledGrid(data.images_uint8, data.factor_names, data.factor_sizes)
    with pytest.raises(ValueError, match="consumed random numbers"):
        evaluate(bad, rotated_rep, metrics=["factor_vae"], params=fv)


def test_dataset_flags():
    plain = ("sprites", "dsprites", "dsprites_small", "shapes3d", "shapes3d_like", "cars3d", "mpi3d")
    random = ("color_dsprites", "noisy_dsprites", "scream_dsprites", "smallnorb")
    assert all(DATASETS.get(n).deterministic_observations is True for n in plain)
    assert all(DATASETS.get(n).deterministic_observations is False for n in random)
    assert ArrayGroundTruthData.deterministic_observations is True
    colour = DATASETS.get("color_dsprites")(DATASETS.get("color_dsprites").Config(base="sprites"))
    with pytest.raises(ValueError, match="deterministic_observations"):
        check_deterministic_observations(colour)
    sprites = DATASETS.get("sprites")(DATASETS.get("sprites").Config(orientations=1, positions=2))
    check_deterministic_observations(sprites)  # a plain procedural grid passes the probe


def test_lookup_serves_indices_only(data):
    grid = GridCodes(data, perfect_rep(), encode_batch_size=7)
    codes = grid.codes
    assert grid.num_calls == -(-len(data) // 7) and codes.shape == (len(data), 3)
    np.testing.assert_array_equal(grid.lookup(np.array([5, 0, 5])), codes[[5, 0, 5]])
    idx_data = grid.index_data()
    rs1, rs2 = np.random.RandomState(4), np.random.RandomState(4)
    f, idx = idx_data.sample(10, rs1)
    f2, obs = data.sample(10, rs2)
    assert np.array_equal(f, f2) and np.array_equal(idx, data.factors_to_index(f))
    assert np.array_equal(grid.lookup(idx), perfect_rep()(obs))
    assert len(idx_data) == len(data) and idx_data.factor_names == data.factor_names
    with pytest.raises(TypeError, match="flat indices"):
        grid.lookup(obs)
    with pytest.raises(ValueError, match="must be in"):
        idx_data.sample_observations_from_factors(np.array([[0, 0, 9]]), rs1)
