"""dci_fast: a flagged approximation of DCI (histogram boosting, split-gain importances).

Hand-checkable cases on the 60-image factor grid of test_metrics (sizes 3, 4, 5): a perfect code
scores ~1, codes independent of the factors score low, a synthetic entangled code agrees with the
reference dci within a tolerance, a seed fixes the numbers; and the suite registration (shared
codes, presets, the fast preset never switching to it by itself).
"""

from __future__ import annotations

import numpy as np
import pytest

from disentkit.evaluation import HEADLINE, headline_scores
from disentkit.metrics import DEFAULT_METRICS, PRESETS, evaluate
from disentkit.metrics.dci import dci_from_codes
from disentkit.metrics.dci_fast import (
    ESTIMATOR,
    EstimatorUnavailableError,
    dci_fast,
    dci_fast_from_codes,
    split_gain_importance,
)
from disentkit.registry import METRICS
from test_metrics import make_grid, perfect_rep

P = perfect_rep()
SMALL = {"num_train": 300, "num_test": 150, "n_jobs": 1}


@pytest.fixture(scope="module")
def data():
    return make_grid()


def rs(seed: int = 0) -> np.random.RandomState:
    return np.random.RandomState(seed)


def _factors(n: int, sizes: tuple[int, ...], seed: int) -> np.ndarray:
    gen = np.random.RandomState(seed)
    return np.stack([gen.randint(s, size=n) for s in sizes], 1)


def _mixed_codes(f: np.ndarray, seed: int) -> np.ndarray:
    """Each code mostly one factor (jittered within its class) plus a share of another, and one
    pure-noise code: partly disentangled, so D and C are away from both 0 and 1."""
    gen = np.random.RandomState(seed)
    z = (f + gen.rand(*f.shape)) / f.max(0)
    mixed = np.stack([z[:, 0] + 0.6 * z[:, 1], z[:, 1] + 0.4 * z[:, 2], z[:, 2] - 0.5 * z[:, 0]], 1)
    return np.concatenate([mixed, 0.3 * gen.randn(len(f), 1)], 1)


def test_perfect_code_scores_about_one(data):
    res = dci_fast(data, P, rs(), **SMALL)
    imp = res["importance_matrix"]
    # every factor is predicted from its own code only: a diagonal importance matrix
    assert imp.shape == (3, 3)
    assert np.allclose(imp.sum(0), 1.0)
    assert np.all(np.argmax(imp, axis=0) == [0, 1, 2])
    assert res["disentanglement"] > 0.95 and res["completeness"] > 0.95
    assert res["informativeness_test"] == 1.0
    assert res["estimator"] == ESTIMATOR and "not the reference" in ESTIMATOR


def test_codes_independent_of_factors_score_low(data):
    gen = np.random.RandomState(11)  # fresh noise per call (a fixed per-image code is memorised)
    res = dci_fast(data, lambda x: gen.randn(len(x), 4), rs(), **SMALL)
    assert res["disentanglement"] < 0.3 and res["completeness"] < 0.3
    assert res["informativeness_test"] < 0.45  # chance is 0.33 / 0.25 / 0.2


def test_agrees_with_reference_dci_on_a_synthetic_code():
    sizes = (3, 4, 5)
    f_tr, f_te = _factors(1200, sizes, 1), _factors(600, sizes, 2)
    z_tr, z_te = _mixed_codes(f_tr, 3), _mixed_codes(f_te, 4)
    ref = dci_from_codes(z_tr, f_tr, z_te, f_te, gbt_seed=0, n_jobs=1)
    fast = dci_fast_from_codes(z_tr, f_tr, z_te, f_te, hgb_seed=0, n_jobs=1)
    assert 0.2 < ref["disentanglement"] < 0.8  # a case where agreement is informative
    for key in ("disentanglement", "completeness", "informativeness_test"):
        assert fast[key] == pytest.approx(ref[key], abs=0.04), key
    # the same code drives each factor in both importance matrices
    assert np.array_equal(np.argmax(fast["importance_matrix"], 0),
                          np.argmax(ref["importance_matrix"], 0))
    assert np.abs(fast["importance_matrix"] - ref["importance_matrix"]).max() < 0.08


def test_deterministic_with_a_seed_and_any_n_jobs():
    sizes = (3, 4, 5)
    f_tr, f_te = _factors(400, sizes, 5), _factors(200, sizes, 6)
    z_tr, z_te = _mixed_codes(f_tr, 7), _mixed_codes(f_te, 8)
    state = np.random.get_state()[1].copy()
    a = dci_fast_from_codes(z_tr, f_tr, z_te, f_te, hgb_seed=3, n_jobs=1)
    b = dci_fast_from_codes(z_tr, f_tr, z_te, f_te, hgb_seed=3, n_jobs=2)
    assert np.array_equal(np.random.get_state()[1], state)  # numpy's global generator untouched
    assert np.array_equal(a["importance_matrix"], b["importance_matrix"])
    assert a["disentanglement"] == b["disentanglement"]
    assert a["informativeness_test"] == b["informativeness_test"]


def test_never_splitting_model_gives_zero_scores():
    codes = np.zeros((60, 2))
    f = np.stack([np.arange(60) % 2, np.arange(60) % 3], 1)
    z = dci_fast_from_codes(codes, f, codes, f, n_jobs=1, hgb_params={"max_iter": 3})
    assert not z["importance_matrix"].any()
    assert z["disentanglement"] == pytest.approx(0.0, abs=1e-6)
    assert z["completeness"] == pytest.approx(0.0, abs=1e-6)


def test_missing_tree_gains_are_one_clear_error():
    class NoTrees:  # what a scikit-learn without the fitted node arrays would look like
        pass

    with pytest.raises(EstimatorUnavailableError) as err:
        split_gain_importance(NoTrees(), 3)
    message = str(err.value)
    assert "\n" not in message and "scikit-learn" in message and "use the reference metric dci" in message


def test_registered_shares_codes_and_is_only_used_when_named(data):
    assert "dci_fast" in METRICS and HEADLINE["dci_fast"] == "disentanglement"
    for preset in ("study", "fast"):
        assert {k: PRESETS[preset]["dci_fast"][k] for k in ("num_train", "num_test", "batch_size")} \
            == {k: PRESETS[preset]["dci"][k] for k in ("num_train", "num_test", "batch_size")}
    # the fast preset keeps the reference metric: dci_fast is never switched in by itself
    assert "dci_fast" not in DEFAULT_METRICS
    fast = evaluate(data, P, seed=0, preset="fast", n_jobs=1,
                    params={"dci": {"num_train": 200, "num_test": 100,
                                    "gbt_params": {"n_estimators": 5}}},
                    metrics=["dci"])
    assert list(fast["metrics"]) == ["dci"] and "estimator" not in fast["metrics"]["dci"]
    # asked for by name: same draws as dci (one code cache), its own entry and headline
    both = evaluate(data, P, seed=0, preset="fast", n_jobs=1, code_cache="off",
                    metrics=["dci", "dci_fast"],
                    params={"dci": {"num_train": 200, "num_test": 100,
                                    "gbt_params": {"n_estimators": 5}},
                            "dci_fast": {"num_train": 200, "num_test": 100}})
    assert both["encoder"]["observations"] == 300
    alone = dci_fast(data, P, rs(0), num_train=200, num_test=100, n_jobs=1)
    assert np.array_equal(both["metrics"]["dci_fast"]["importance_matrix"], alone["importance_matrix"])
    assert headline_scores(both)["dci_fast"] == alone["disentanglement"]
