"""Metrics declare themselves: headline key, preset sizes, shared-code use and FDAE form sit next to
each metric's definition, and every central place (``evaluate``, ``PRESETS``, ``FDAE_METRICS``,
``HEADLINE``, ``disentkit runs`` / ``compare``) reads them.

The expected tables below are written by hand from the values the suite had before the
declarations existed, so a slip while moving a number into its metric module fails here. A toy
metric declared in one plugin file (tests/toy_metric_plugin.py) then works everywhere.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from disentkit.cli import main
from disentkit.evaluation import HEADLINE, headline_scores
from disentkit.experiments.runs_table import compare_runs
from disentkit.metrics import FDAE_METRICS, PRESETS, declaration, declare_metric, evaluate
from disentkit.metrics import declare as declare_module
from disentkit.metrics.attribute_suite import ATTRIBUTE_PRESETS
from disentkit.metrics.suite import planned_observations
from disentkit.registry import METRICS
from test_metrics import make_grid, perfect_rep

#: headline key of every built-in metric, in the order of the table columns
EXPECTED_HEADLINE = {
    "beta_vae": "eval_accuracy", "factor_vae": "eval_accuracy", "mig": "discrete_mig",
    "sap": "SAP_score", "dci": "disentanglement", "dci_fast": "disentanglement",
    "modularity_explicitness": "modularity_score", "irs": "IRS",
    "unsupervised": "gaussian_total_correlation", "mfvm": "mfvm_mean", "mfvm_dlib": "mfvm_mean",
    "tad": "tad", "attribute_probe_ap": "mean_ap", "attribute_regression": "mean_pearson_r",
}

EXPECTED_PRESETS = {
    "study": {
        "beta_vae": {"batch_size": 64, "num_train": 10000, "num_eval": 5000},
        "factor_vae": {"batch_size": 64, "num_train": 10000, "num_eval": 5000,
                       "num_variance_estimate": 10000, "prune_threshold": 0.05},
        "mig": {"num_train": 10000, "batch_size": 16, "num_bins": 20},
        "sap": {"num_train": 10000, "num_test": 5000, "batch_size": 16, "continuous_factors": False},
        "dci": {"num_train": 10000, "num_test": 5000, "batch_size": 16},
        "dci_fast": {"num_train": 10000, "num_test": 5000, "batch_size": 16},
        "modularity_explicitness": {"num_train": 10000, "num_test": 5000, "batch_size": 16,
                                    "num_bins": 20},
        "unsupervised": {"num_train": 10000, "batch_size": 16, "num_bins": 20},
        "irs": {"num_train": 10000, "batch_size": 16, "diff_quantile": 0.99},
        "mfvm": {"batch_size": 100, "num_train": 800, "num_variance_estimate": 100,
                 "prune_threshold": 0.06},
        "mfvm_dlib": {"batch_size": 64, "num_train": 10000, "num_eval": 5000,
                      "num_variance_estimate": 10000, "prune_threshold": 0.05},
    },
    "fast": {
        "beta_vae": {"batch_size": 64, "num_train": 1000, "num_eval": 500},
        "factor_vae": {"batch_size": 64, "num_train": 1000, "num_eval": 500,
                       "num_variance_estimate": 2000, "prune_threshold": 0.05},
        "mig": {"num_train": 2000, "batch_size": 16, "num_bins": 20},
        "sap": {"num_train": 2000, "num_test": 1000, "batch_size": 16, "continuous_factors": False},
        "dci": {"num_train": 2000, "num_test": 1000, "batch_size": 16},
        "dci_fast": {"num_train": 2000, "num_test": 1000, "batch_size": 16},
        "modularity_explicitness": {"num_train": 2000, "num_test": 1000, "batch_size": 16,
                                    "num_bins": 20},
        "unsupervised": {"num_train": 2000, "batch_size": 16, "num_bins": 20},
        "irs": {"num_train": 2000, "batch_size": 16, "diff_quantile": 0.99},
        "mfvm": {"batch_size": 100, "num_train": 200, "num_variance_estimate": 100,
                 "prune_threshold": 0.06},
        "mfvm_dlib": {"batch_size": 64, "num_train": 1000, "num_eval": 500,
                      "num_variance_estimate": 2000, "prune_threshold": 0.05},
    },
}

EXPECTED_ATTRIBUTE_PRESETS = {
    "study": {
        "tad": {"num_points": 10000, "n_splits": 5, "auroc_threshold": 0.75,
                "entropy_reduction_threshold": 0.2},
        "attribute_probe_ap": {"num_train": None, "num_test": None, "C": 1.0, "max_iter": 1000},
        "attribute_regression": {"num_train": None, "num_test": None, "alpha": 0.0},
    },
    "fast": {
        "tad": {"num_points": 2000, "n_splits": 5, "auroc_threshold": 0.75,
                "entropy_reduction_threshold": 0.2},
        "attribute_probe_ap": {"num_train": 2000, "num_test": 1000, "C": 1.0, "max_iter": 1000},
        "attribute_regression": {"num_train": 2000, "num_test": 1000, "alpha": 0.0},
    },
}

SHARED = {"mig", "sap", "dci", "dci_fast", "modularity_explicitness", "unsupervised", "irs"}
FDAE = {"mig", "sap", "dci", "modularity_explicitness", "unsupervised", "irs", "factor_vae"}
PARALLEL = {"dci", "dci_fast", "sap"}


def test_declared_headlines_are_todays_in_todays_order() -> None:
    assert {k: HEADLINE[k] for k in EXPECTED_HEADLINE} == EXPECTED_HEADLINE
    assert [k for k in HEADLINE if k in EXPECTED_HEADLINE] == list(EXPECTED_HEADLINE)


@pytest.mark.parametrize("preset", ["study", "fast"])
def test_declared_preset_sizes_are_todays(preset: str) -> None:
    assert {m: PRESETS[preset][m] for m in EXPECTED_PRESETS[preset]} == EXPECTED_PRESETS[preset]
    assert {m: ATTRIBUTE_PRESETS[preset][m] for m in EXPECTED_ATTRIBUTE_PRESETS[preset]} \
        == EXPECTED_ATTRIBUTE_PRESETS[preset]
    # the attribute metrics are not factor-grid metrics, and vice versa
    assert not set(PRESETS[preset]) & set(ATTRIBUTE_PRESETS[preset])


def test_declared_code_sharing_fdae_forms_and_parallel_fits_are_todays() -> None:
    builtins = set(EXPECTED_PRESETS["study"])
    assert {m for m in builtins if declaration(m).shared_code} == SHARED
    assert {m for m in builtins if declaration(m).parallel} == PARALLEL
    assert {m for m in builtins if m in FDAE_METRICS} == FDAE
    assert declaration("factor_vae").fdae == "fit_transform"
    # planned encodings (num_factors 5, study): hand-computed from each metric's formula
    assert planned_observations(["beta_vae"], 5) == 2 * 64 * 15000
    assert planned_observations(["factor_vae"], 5) == 10000 + 64 * 15000
    assert planned_observations(["mfvm_dlib"], 5) == 10000 + 3 * 64 * 15000
    assert planned_observations(["mfvm"], 5) == 100 + 3 * 100 * 800
    assert planned_observations(["mig", "dci", "irs"], 5) == 15000
    assert planned_observations(["mig", "dci", "irs"], 5, share_codes=False) == 35000


@pytest.mark.parametrize("preset", ["study", "fast"])
def test_dci_fast_keeps_dcis_draws_and_headline(preset: str) -> None:
    dci, fast = declaration("dci"), declaration("dci_fast")
    assert fast.draw_sizes(**PRESETS[preset]["dci_fast"]) == dci.draw_sizes(**PRESETS[preset]["dci"])
    assert fast.headline == dci.headline == "disentanglement"


def test_a_declaration_that_cannot_work_fails_when_declared() -> None:
    with pytest.raises(ValueError, match="shared_code=True"):
        declare_metric("toy_broken", headline="x", presets={}, fdae="reduced")(lambda *a: {})
    with pytest.raises(ValueError, match="headline"):
        declare_metric("toy_broken", headline="", presets={})(lambda *a: {})
    assert "toy_broken" not in METRICS


@pytest.fixture
def toy_metric():
    """Import the plugin (its one file registers and declares ``toy_spread``); forget it after."""
    module = importlib.import_module("toy_metric_plugin")
    yield module
    METRICS._entries.pop("toy_spread", None)
    declare_module._DECLARED.pop("toy_spread", None)
    sys.modules.pop("toy_metric_plugin", None)


def test_a_metric_declared_in_one_file_runs_through_evaluate(toy_metric) -> None:
    data, rep = make_grid(), perfect_rep()
    assert PRESETS["fast"]["toy_spread"] == {"num_train": 40, "batch_size": 10}
    assert "toy_spread" in FDAE_METRICS and HEADLINE["toy_spread"] == "spread"
    out = evaluate(data, rep, ["mig", "toy_spread"], preset="fast", code_cache="off",
                   params={"mig": {"num_train": 40, "batch_size": 10}})
    toy = out["metrics"]["toy_spread"]
    assert toy["num_points"] == 40  # the fast preset's size, not the function's default (100)
    assert out["config"]["params"]["toy_spread"] == {"num_train": 40, "batch_size": 10}
    # shared code: MIG and the toy read the same 40 points, encoded once
    assert out["encoder"]["observations"] == 40 == out["encoder"]["planned_observations"]
    alone = toy_metric.toy_spread(data, rep, np.random.RandomState(0), num_train=40)
    assert toy["spread"] == alone["spread"] > 0
    assert headline_scores(out)["toy_spread"] == toy["spread"]
    # its FDAE form scores the per-group PCA codes: two groups of 1 dim each, not 3 raw codes
    grouped = evaluate(data, rep, ["toy_spread"], preset="fast", protocol="fdae",
                       groups=[[0, 1], [2]], group_dims=1, code_cache="off")
    assert grouped["metrics"]["toy_spread"]["num_codes"] == 2


def _run_with(root: Path, name: str, metrics: dict) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    config = {"model": {"name": "betavae"}, "data": {"name": "dsprites"}, "seed": 0, "name": name}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "summary.json").write_text(json.dumps({"status": "finished", "step": 5, "steps": 5}))
    (run_dir / "results.json").write_text(json.dumps({"dataset": "dsprites", "metrics": metrics}))
    return run_dir


def test_a_declared_metric_is_a_column_of_runs_and_a_headline_of_compare(toy_metric, tmp_path,
                                                                          capsys) -> None:
    a = _run_with(tmp_path, "a", {"mig": {"discrete_mig": 0.2},
                                  "toy_spread": {"spread": 0.75, "num_points": 40}})
    b = _run_with(tmp_path, "b", {"toy_spread": {"spread": 0.25, "num_points": 40}})
    assert main(["runs", str(tmp_path), "--json", "--sort", "toy_spread"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["run"], r["toy_spread"]) for r in rows] == [("b", 0.25), ("a", 0.75)]
    assert "num_points" not in rows[0]  # the headline only, not every key
    assert main(["runs", str(tmp_path)]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header.index("mig") < header.index("toy_spread")  # after the built-ins
    assert compare_runs([a, b]).headline == ["mig.discrete_mig", "toy_spread.spread"]
