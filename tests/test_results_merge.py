"""results.json keeps one entry per metric: a new evaluation replaces only the metrics it scores,
says which it replaced and what changed, upgrades a file of the old layout, and never overwrites a
file it cannot read; every reader (aggregate, headline scores, the report's MI) still sees all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disentkit.cli import main
from disentkit.evaluation import RESULTS_LAYOUT, headline_scores, merge_results, save_results

TINY = ["data.orientations=2", "data.positions=4", "train.steps=3", "train.batch_size=8",
        "log.every=3", "log.progress=false", "train.checkpoint_every=3", "eval.preset=fast",
        "eval.at_end=false", "eval.report_at_end=false"]


def _old_layout() -> dict:
    """A results.json as `disentkit eval` wrote it before entries existed (one evaluation)."""
    return {"run": "r", "dataset": "sprites", "representation": "mean",
            "metrics": {"mig": {"discrete_mig": 0.2}, "sap": {"SAP_score": 0.1}},
            "config": {"seed": 0, "preset": "fast", "protocol": "dlib", "code_cache": "grid",
                       "params": {"mig": {"num_train": 2000}, "sap": {"num_train": 2000}}},
            "versions": {"numpy": "1"}, "timings_s": {"mig": 1.5, "sap": 0.5}}


def _fresh(metrics: dict, seed: int = 3, protocol: str = "fdae", **config) -> dict:
    return {"run": "r", "dataset": "sprites", "representation": "mean", "metrics": metrics,
            "config": {"seed": seed, "preset": "fast", "protocol": protocol,
                       "params": {m: {"num_train": 500} for m in metrics}, **config},
            "versions": {"numpy": "2"}, "timings_s": {m: 0.25 for m in metrics}}


def test_merge_replaces_only_the_new_metrics_and_names_the_changes() -> None:
    fresh = _fresh({"mig": {"discrete_mig": 0.4}, "dci": {"disentanglement": 0.3}},
                   groups=[[0, 1], [2, 3]], group_dims=7)
    payload, note = merge_results(_old_layout(), fresh, step=9, evaluated_at="2025-01-01T00:00:00Z")
    assert payload["layout"] == RESULTS_LAYOUT
    assert payload["metrics"] == {"mig": {"discrete_mig": 0.4}, "sap": {"SAP_score": 0.1},
                                  "dci": {"disentanglement": 0.3}}
    assert payload["evaluated"] == ["mig", "dci"]
    sap = payload["entries"]["sap"]  # upgraded from the old layout's config, untouched since
    assert (sap["seed"], sap["protocol"], sap["time_s"]) == (0, "dlib", 0.5)
    assert sap["params"] == {"num_train": 2000}
    assert sap["step"] is None and sap["evaluated_at"] is None and sap["versions"] == {"numpy": "1"}
    mig = payload["entries"]["mig"]
    assert (mig["seed"], mig["protocol"], mig["groups"], mig["group_dims"], mig["step"]) == \
        (3, "fdae", [[0, 1], [2, 3]], 7, 9)
    assert mig["evaluated_at"] == "2025-01-01T00:00:00Z" and mig["time_s"] == 0.25
    assert payload["replaced"] == {"mig": "protocol dlib -> fdae; seed 0 -> 3; num_train 2000 -> 500"}
    assert note == ("results.json: replaced mig (protocol dlib -> fdae; seed 0 -> 3; num_train "
                    "2000 -> 500); kept sap from earlier evaluations")
    # the same settings again: replaced, and said so
    again, note = merge_results(payload, fresh, step=9)
    assert again["replaced"] == {"mig": "same settings", "dci": "same settings"}
    assert again["entries"]["sap"] == sap and "kept sap" in note


def test_first_evaluation_has_no_note_and_kept_scores_of_older_checkpoints_are_named() -> None:
    first, note = merge_results(None, _fresh({"sap": {"SAP_score": 0.1}}, protocol="dlib"), step=3)
    assert note == "" and first["replaced"] == {}
    _, note = merge_results(first, _fresh({"mig": {"discrete_mig": 0.4}}, protocol="dlib"), step=6)
    assert note == "results.json: kept sap (step 3) from earlier evaluations"


@pytest.mark.parametrize("text, why", [
    ('{"metrics": {"mig": ', "could not be parsed as JSON"),
    ("[1, 2]", "is not a JSON object"),
    ('{"dataset": "dsprites", "metrics": {"mig": {"discrete_mig": 0.9}}}', "held scores of dataset dsprites"),
])
def test_a_file_that_cannot_be_merged_is_set_aside_not_overwritten(tmp_path: Path, text, why) -> None:
    (tmp_path / "results.json").write_text(text)
    (tmp_path / "results.previous.json").write_text("older")  # taken: the next free name is used
    payload, note = save_results(tmp_path, _fresh({"mig": {"discrete_mig": 0.4}}), step=1)
    assert why in note and "kept as results.previous-2.json" in note
    assert (tmp_path / "results.previous-2.json").read_text() == text
    assert (tmp_path / "results.previous.json").read_text() == "older"
    written = json.loads((tmp_path / "results.json").read_text())
    assert written == payload and list(written["metrics"]) == ["mig"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "preset=quickstart/sprites", f"out_dir={out}", "name=r", *TINY]) == 0
    return out / "r"


def test_eval_merges_into_results_json_and_every_reader_sees_all(run_dir: Path, capsys) -> None:
    from disentkit.experiments.aggregate import collect_runs
    from disentkit.viz.report import mi_from_results

    path = run_dir / "results.json"
    path.write_text(json.dumps({**_old_layout(), "run": str(run_dir)}))  # an old-layout file
    assert main(["eval", str(run_dir), "--metrics", "mig", "--preset", "fast", "--seed", "3"]) == 0
    captured = capsys.readouterr()
    assert "note: results.json: replaced mig (seed 0 -> 3" in captured.err
    assert "kept sap from earlier evaluations" in captured.err
    assert "| mig |" in captured.out and "| sap |" not in captured.out  # the table: this evaluation
    res = json.loads(path.read_text())
    assert res["metrics"]["sap"] == {"SAP_score": 0.1} and res["entries"]["sap"]["seed"] == 0
    assert res["entries"]["mig"]["seed"] == 3 and res["entries"]["mig"]["step"] == 3
    assert res["config"]["seed"] == 3 and res["evaluated"] == ["mig"]  # config: the latest evaluation
    # a grouped protocol replaces MIG again, and says so; its MI rows are groups, not latents
    assert main(["eval", str(run_dir), "--metrics", "mig", "--preset", "fast", "--seed", "3",
                 "--protocol", "fdae", "--groups", "5"]) == 0
    assert "replaced mig (protocol dlib -> fdae" in capsys.readouterr().err
    res = json.loads(path.read_text())
    assert set(res["metrics"]) == {"mig", "sap"} and res["entries"]["mig"]["protocol"] == "fdae"
    assert len(res["metrics"]["mig"]["mutual_info"]) == 5  # one row per group
    assert mi_from_results(res) is None
    # the readers
    assert set(headline_scores(res)) == {"mig", "sap"}
    runs, skipped = collect_runs([run_dir])
    assert not skipped and {"mig.discrete_mig", "sap.SAP_score"} <= set(runs[0].scores)
    assert not any(key.startswith(("entries", "layout")) for key in runs[0].scores)


def test_eval_on_another_dataset_writes_its_own_file_and_checks_the_image_shape(
        run_dir: Path, capsys) -> None:
    """`--data` scores the run on other data (DiTi probes CelebA-LMDB and FFHQ encoders on
    labelled CelebA); the run's results.json is left as it was."""
    assert main(["eval", str(run_dir), "--metrics", "mig", "--preset", "fast"]) == 0
    own = (run_dir / "results.json").read_text()
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--metrics", "mig", "--preset", "fast",
                 "--data", "name=sprites", "image_size=32", "orientations=4", "positions=8"]) == 0
    assert (run_dir / "results.json").read_text() == own
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--metrics", "mig", "--preset", "fast",
                 "--data", "name=sprites", "image_size=32", "orientations=4", "positions=8"]) == 0
    assert "note: results_sprites.json: replaced mig (same settings)" in capsys.readouterr().err
    other = json.loads((run_dir / "results_sprites.json").read_text())
    assert other["dataset"] == "sprites"
    assert other["data_overrides"] == ["name=sprites", "image_size=32", "orientations=4", "positions=8"]
    assert 0.0 <= other["metrics"]["mig"]["discrete_mig"] <= 1.0
    assert other["metrics"]["mig"] != json.loads(own)["metrics"]["mig"]  # another factor grid
    capsys.readouterr()
    for extra, message in [(["image_size=64"], "its images are (1, 64, 64) (C, H, W) but the model was "
                                               "trained on (1, 32, 32)"),
                           ([], "")]:
        args = ["--data", "name=sprites", *extra] if extra else ["--data", "image_size=32"]
        assert main(["eval", str(run_dir), "--metrics", "mig", "--preset", "fast", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert (message or "--data needs name=DATASET") in err
