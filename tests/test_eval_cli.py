"""``disentkit eval RUN_DIR --metrics ... --preset ... --seed N --representation ...``: what
results.json records (scores, parameters, protocol, library versions) and clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disentkit.cli import main

TINY = ["data.orientations=2", "data.positions=4", "train.steps=3", "train.batch_size=8",
        "log.every=3", "log.progress=false", "train.checkpoint_every=3", "eval.preset=fast",
        "eval.at_end=false", "eval.report_at_end=false"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "preset=quickstart/sprites", f"out_dir={out}", "name=r", *TINY]) == 0
    return out / "r"


def test_eval_writes_scores_parameters_protocol_and_versions(run_dir: Path, capsys) -> None:
    args = ["eval", str(run_dir), "--metrics", "mig", "factor_vae", "--preset", "fast", "--seed", "3"]
    assert main(args) == 0
    res = json.loads((run_dir / "results.json").read_text())
    assert res["representation"] == "mean" and res["dataset"] == "sprites"
    assert 0.0 <= res["metrics"]["mig"]["discrete_mig"] <= 1.0
    assert 0.0 <= res["metrics"]["factor_vae"]["eval_accuracy"] <= 1.0
    cfg = res["config"]
    assert cfg["seed"] == 3 and cfg["preset"] == "fast" and cfg["protocol"] == "dlib"
    assert cfg["params"]["mig"]["num_train"] == 2000
    assert cfg["params"]["factor_vae"]["prune_threshold"] == 0.05
    assert {"python", "numpy", "scipy", "sklearn", "torch"} <= set(res["versions"])
    assert "| factor_vae |" in capsys.readouterr().out
    # same seed, same numbers
    assert main(args) == 0
    again = json.loads((run_dir / "results.json").read_text())
    assert again["metrics"]["mig"]["discrete_mig"] == res["metrics"]["mig"]["discrete_mig"]


def test_eval_sampled_representation(run_dir: Path) -> None:
    args = ["eval", str(run_dir), "--metrics", "mig", "--preset", "fast", "--representation", "sampled"]
    assert main(args) == 0
    res = json.loads((run_dir / "results.json").read_text())
    assert res["representation"] == "sampled" and res["config"]["code_cache"] == "off"
    assert 0.0 <= res["metrics"]["mig"]["discrete_mig"] <= 1.0


def test_eval_bad_metric_is_a_clean_error(run_dir: Path, capsys) -> None:
    assert main(["eval", str(run_dir), "--metrics", "mgi", "--preset", "fast"]) == 2
    err = capsys.readouterr().err
    assert "unknown metric" in err and "mig" in err
