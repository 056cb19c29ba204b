"""The Python API as the README shows it, the run lock around `disentkit.train`, and the
evaluation at the end skipped (not crashed) on data without ground-truth factors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import disentkit
from disentkit.config import load_config

TINY = ["data.orientations=2", "data.positions=4", "train.steps=4", "train.batch_size=8",
        "log.progress=false", "train.num_threads=1", "eval.report_at_end=false"]


def test_readme_python_api_flow(tmp_path: Path) -> None:
    from disentkit.metrics import evaluate, representation_from_model

    run_dir = disentkit.train(load_config("quickstart/sprites", ["seed=1", f"out_dir={tmp_path}", *TINY,
                                                                 "eval.at_end=false"]))
    assert run_dir == tmp_path / "quickstart-sprites-seed1"
    assert not (run_dir / "run.lock").exists()  # released when the run ends
    model, config = disentkit.load_run(run_dir)
    assert config.seed == 1 and not model.training
    images = torch.rand(3, 1, 32, 32)
    codes = model.encode(images)
    assert codes.shape == (3, 10)
    results = evaluate(disentkit.load_run(run_dir).data(), representation_from_model(model),
                       metrics=["mig"], seed=0, preset="fast")
    assert 0.0 <= results["metrics"]["mig"]["discrete_mig"] <= 1.0


def test_evaluation_at_end_is_skipped_for_data_without_ground_truth(tmp_path: Path, capsys) -> None:
    from PIL import Image

    from disentkit.experiments.sweep import run_state

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(folder / f"{i}.png")
    config = load_config("quickstart/sprites", [
        "data.name=image_folder", f"data.path={folder}", "data.image_size=32", "model.estimator=mws",
        f"out_dir={tmp_path}", "name=faces", *TINY[2:]])
    assert config.eval.at_end and config.eval.metrics
    run_dir = disentkit.train(config)  # used to raise "no ground-truth factors" after training
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["evaluation"].startswith("skipped:")
    assert "neither ground-truth factors nor attribute labels" in capsys.readouterr().err
    assert not (run_dir / "results.json").exists()
    assert run_state(run_dir) == "finished"  # a sweep does not retry the evaluation


def test_a_factor_with_one_value_skips_the_evaluation_in_one_line(tmp_path: Path, capsys) -> None:
    """data.orientations=1 leaves orientation constant: DCI's boosted trees refused the single
    class with a traceback after training; now the run finishes and the skip says why."""
    config = load_config("quickstart/sprites", [
        "data.orientations=1", "data.positions=4", f"out_dir={tmp_path}", "name=flat", *TINY[2:]])
    run_dir = disentkit.train(config)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["evaluation"].startswith("skipped:")
    err = capsys.readouterr().err
    assert "factor 'orientation' of dataset 'sprites' takes a single value" in err
    assert "Traceback" not in err and not (run_dir / "results.json").exists()
    # The check sits in the metric suite, so a library caller gets it too, before any encoding.
    from disentkit.errors import UnscorableDataError
    from disentkit.metrics import evaluate

    calls: list[int] = []

    def representation(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return x.reshape(len(x), -1)[:, :2]

    with pytest.raises(UnscorableDataError, match="factor 'orientation' .* takes a single value"):
        evaluate(disentkit.load_run(run_dir).data(), representation, metrics=["dci"], preset="fast")
    assert calls == []
