"""The console script: train / eval / quickstart / presets end to end at a tiny size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disentkit.cli import main

TINY = ["data.orientations=2", "data.positions=4", "train.steps=6", "train.batch_size=8",
        "log.every=3", "log.progress=false", "train.checkpoint_every=3", "eval.preset=fast"]


def test_quickstart_at_tiny_size_writes_a_complete_run(tmp_path: Path, capsys) -> None:
    code = main(["quickstart", "--out", str(tmp_path), *TINY,
                 "eval.metrics=[mig, factor_vae]"])
    assert code == 0
    run_dir = tmp_path / "quickstart-sprites-seed0"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "checkpoints/last.pt",
                 "results.json", "report.html"):
        assert (run_dir / name).exists(), name
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["metrics"]) == {"mig", "factor_vae"}
    assert 0.0 <= results["metrics"]["mig"]["discrete_mig"] <= 1.0
    out = capsys.readouterr().out
    assert "run directory" in out and "mig" in out and "report.html" in out
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "data:image/gif;base64," in html
    # A second quickstart does not clobber the first.
    assert main(["quickstart", "--out", str(tmp_path), *TINY, "eval.at_end=false"]) == 0
    assert (tmp_path / "quickstart-sprites-seed0-2" / "checkpoints" / "last.pt").exists()


def test_train_then_eval_then_resume_from_cli(tmp_path: Path, capsys) -> None:
    args = ["train", "preset=quickstart/sprites", f"out_dir={tmp_path}", "name=r", *TINY,
            "eval.at_end=false", "eval.report_at_end=false"]
    assert main(args) == 0
    run_dir = tmp_path / "r"
    assert not (run_dir / "results.json").exists()
    assert main(["eval", str(run_dir), "--metrics", "mig", "sap", "--preset", "fast"]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["metrics"]) == {"mig", "sap"}
    assert "| mig |" in capsys.readouterr().out
    # Resume with more steps continues from step 6.
    assert main(["train", "--resume", str(run_dir), "train.steps=9"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 9


def test_config_errors_exit_2_with_message(tmp_path: Path, capsys) -> None:
    assert main(["train", "preset=quickstart/sprites", "model.btea=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'model.btea'" in err and "beta" in err
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_print_config_and_presets(capsys) -> None:
    assert main(["train", "preset=quickstart/sprites", "model.beta=7", "--print-config"]) == 0
    assert "beta: 7.0" in capsys.readouterr().out
    assert main(["presets", "quickstart"]) == 0
    assert "quickstart/sprites" in capsys.readouterr().out


def test_help_lists_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("train", "eval", "quickstart", "presets"):
        assert command in out
