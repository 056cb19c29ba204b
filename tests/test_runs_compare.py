"""``disentkit runs`` and ``disentkit compare`` on fixture run folders written file by file
(config.yaml, summary.json, results.json, report.html, run.lock): no training."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from disentkit.cli import main
from disentkit.experiments.runs_table import compare_runs, list_runs, sort_rows


def _run(root: Path, name: str, *, beta: float = 4.0, seed: int = 0, summary: dict | None = None,
         metrics: dict | None = None, report: bool = True, extra: dict | None = None) -> Path:
    """A run folder as the trainer and ``disentkit eval`` leave it."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    config = {"model": {"name": "betavae", "beta": beta, "latent_dim": 10},
              "data": {"name": "dsprites"}, "train": {"steps": 100},
              "optim": {"lr": 1.0e-5, "betas": [0.9, 0.999]}, "seed": seed, "name": name,
              **(extra or {})}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary))
    if metrics is not None:
        (run_dir / "results.json").write_text(json.dumps({"dataset": "dsprites", "metrics": metrics}))
    if report:
        (run_dir / "report.html").write_text("<html></html>")
    return run_dir


def _dead_pid() -> int:
    """The pid of a process that has ended (its lock, if any, is stale)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    done = {"status": "finished", "step": 100, "steps": 100}
    _run(root / "sweep", "000-beta=1-seed=9", beta=1.0, seed=9, summary=done,
         metrics={"mig": {"discrete_mig": 0.05, "mutual_info": [[0.1, 0.2]]},
                  "dci": {"disentanglement": 0.5, "completeness": 0.4}})
    _run(root / "sweep", "001-beta=4-seed=10", seed=10, summary=done,
         metrics={"mig": {"discrete_mig": 0.3}})
    _run(root / "sweep", "002-beta=8-seed=0", beta=8.0, summary=done, report=False,
         metrics={"mig": {"discrete_mig": 0.1}})  # report_at_end, but no report.html: "trained"
    _run(root, "failed", summary={"status": "failed", "step": 40, "steps": 100,
                                  "error": "RuntimeError: boom"})
    _run(root, "interrupted", summary={"status": "interrupted", "step": 50, "steps": 100})
    killed = _run(root, "killed", summary={"status": "running", "step": 70, "steps": 100})
    (killed / "run.lock").write_text(json.dumps({"host": os.uname().nodename, "pid": _dead_pid(),
                                                 "started": 1.0e9}))
    _run(root, "no-summary")
    _run(root, "list-summary").joinpath("summary.json").write_text("[1, 2]")
    (root / "broken").mkdir()
    (root / "broken" / "config.yaml").write_text("model: [unclosed\n")
    (root / "foreign").mkdir()
    (root / "foreign" / "config.yaml").write_text("- just\n- a list\n")
    (root / "notes").mkdir()  # no config.yaml: not a run, not listed
    (root / "notes" / "summary.json").write_text("{}")
    return root


def _json(capsys, argv: list[str]) -> list[dict]:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_runs_lists_every_run_folder_with_status_progress_and_headlines(runs_root: Path, capsys) -> None:
    from disentkit.run_lock import RunLock

    live = _run(runs_root, "live", summary={"status": "running", "step": 3, "steps": 100})
    with RunLock(live, heartbeat_s=0):
        rows = {r["run"]: r for r in _json(capsys, ["runs", str(runs_root), "--json"])}
    assert sorted(rows) == sorted(["sweep/000-beta=1-seed=9", "sweep/001-beta=4-seed=10",
                                   "sweep/002-beta=8-seed=0", "failed", "interrupted", "killed",
                                   "live", "no-summary", "list-summary", "broken", "foreign"])
    status = {name: row["status"] for name, row in rows.items()}
    assert status == {"sweep/000-beta=1-seed=9": "finished", "sweep/001-beta=4-seed=10": "finished",
                      "sweep/002-beta=8-seed=0": "trained", "failed": "failed",
                      "interrupted": "interrupted", "killed": "killed", "live": "running",
                      "no-summary": "unknown", "list-summary": "unknown", "broken": "unreadable",
                      "foreign": "unreadable"}
    first = rows["sweep/000-beta=1-seed=9"]
    assert (first["method"], first["dataset"], first["seed"]) == ("betavae", "dsprites", 9)
    assert (first["step"], first["steps"]) == (100, 100)
    assert (first["mig"], first["dci"]) == (0.05, 0.5)  # headlines, not completeness or the MI
    assert "dci" not in rows["sweep/001-beta=4-seed=10"]
    assert rows["failed"]["detail"] == "RuntimeError: boom"
    assert (rows["no-summary"]["step"], rows["no-summary"]["steps"]) == (None, 100)  # config's steps
    assert rows["broken"]["method"] is None
    assert rows["broken"]["detail"].startswith("config.yaml cannot be read (ParserError: ")


def test_runs_table_is_aligned_with_headline_columns_and_notes(runs_root: Path, capsys) -> None:
    assert main(["runs", str(runs_root)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["run", "status", "method", "dataset", "seed", "step", "mig", "dci"]
    assert len({len(line) for line in lines}) == 1  # every line padded to the same width
    cells = {c[0]: c for c in ([x.strip() for x in line.strip("|").split("|")] for line in lines[2:])}
    assert cells["sweep/000-beta=1-seed=9"][1:] == ["finished", "betavae", "dsprites", "9", "100/100",
                                                    "0.050", "0.500"]
    assert cells["failed"][5:] == ["40/100", "-", "-"]
    assert cells["broken"][1:3] == ["unreadable", "-"]
    assert "note: foreign: unreadable: config.yaml holds a list, not a mapping" in captured.err
    assert "note: no-summary: unknown: summary.json missing" in captured.err


def test_runs_sort_numeric_descending_and_missing_last(runs_root: Path, capsys) -> None:
    def order(*flags: str) -> list[str]:
        return [r["run"] for r in _json(capsys, ["runs", str(runs_root), "--json", *flags])]

    by_mig = order("--sort=-mig")
    assert by_mig[:3] == ["sweep/001-beta=4-seed=10", "sweep/002-beta=8-seed=0",
                          "sweep/000-beta=1-seed=9"]
    assert order("--sort", "mig", "--reverse")[:3] == by_mig[:3]
    assert order("--sort", "mig")[:3] == by_mig[:3][::-1]  # runs without mig stay last both ways
    # seeds 9 and 10 sort as numbers (text would put "10" first)
    seeds = [r for r in order("--sort", "seed") if r.startswith("sweep/")]
    assert seeds == ["sweep/002-beta=8-seed=0", "sweep/000-beta=1-seed=9", "sweep/001-beta=4-seed=10"]
    assert order("--sort", "step")[:3] == ["failed", "interrupted", "killed"]
    assert order()[:2] == ["broken", "failed"]  # default: by run path


def test_runs_errors_are_one_line(runs_root: Path, tmp_path: Path, capsys) -> None:
    assert main(["runs", str(runs_root), "--sort", "speed"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("disentkit runs: error: unknown sort key 'speed'; sort by one of run, status")
    assert "\n" not in err and "mig" in err
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    assert "does not exist; give the folder that holds your runs" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["runs", str(empty)]) == 0
    assert "no run folders" in capsys.readouterr().out
    assert _json(capsys, ["runs", str(empty), "--json"]) == []


def test_no_file_content_runs_code(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "PWNED"
    evil = tmp_path / "runs" / "evil"
    evil.mkdir(parents=True)
    (evil / "config.yaml").write_text(
        f"model: !!python/object/apply:os.system ['touch {marker}']\ndata: {{name: x}}\n")
    (evil / "summary.json").write_text('{"status": "finished"}')
    rows = list_runs(tmp_path / "runs")
    assert [r["status"] for r in rows] == ["unreadable"] and not marker.exists()
    good = _run(tmp_path / "runs", "good", summary={"status": "finished"})
    assert main(["compare", str(good), str(evil)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"disentkit compare: error: {evil}/config.yaml cannot be read")
    assert err.count("\n") == 1 and not marker.exists()


def test_compare_shows_differing_config_keys_and_every_score(tmp_path: Path, capsys) -> None:
    a = _run(tmp_path / "sweep", "000-beta=1", beta=1.0,
             summary={"status": "finished", "step": 100, "steps": 100},
             metrics={"mig": {"discrete_mig": 0.05, "mutual_info": [[0.1]]},
                      "dci": {"completeness": 0.4, "disentanglement": 0.5}})
    b = _run(tmp_path / "sweep", "001-beta=4", extra={"eval": {"preset": "fast"}},
             summary={"status": "failed", "step": 40, "steps": 100},
             metrics={"mig": {"discrete_mig": 0.3}, "sap": {"SAP_score": 0.2}})
    comparison = compare_runs([a, b])
    assert comparison.labels == ["000-beta=1", "001-beta=4"]
    assert comparison.config == {"model.beta": [1.0, 4.0], "name": ["000-beta=1", "001-beta=4"],
                                 "eval.preset": [None, "fast"]}  # lr, betas, seed are equal
    assert list(comparison.scores) == ["mig.discrete_mig", "dci.disentanglement", "dci.completeness",
                                       "sap.SAP_score"]  # headline first per metric, no matrices
    assert comparison.scores["dci.completeness"] == [0.4, None]
    assert comparison.headline == ["mig.discrete_mig", "dci.disentanglement", "sap.SAP_score"]

    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    rows = {c[0]: c[1:] for c in ([x.strip() for x in line.strip("|").split("|")]
                                  for line in out.splitlines() if line.startswith("|"))}
    assert rows["status"] == ["finished", "failed"] and rows["step"] == ["100/100", "40/100"]
    assert rows["model.beta"] == ["1", "4"] and rows["eval.preset"] == ["-", "fast"]
    assert rows["mig.discrete_mig *"] == ["0.0500", "0.3000"]
    assert rows["dci.completeness"] == ["0.4000", "-"]
    assert "optim.lr" not in rows and "seed" not in rows

    payload = json.loads(_json_text(capsys, ["compare", str(a), str(b), "--json"]))
    assert [r["status"] for r in payload["runs"]] == ["finished", "failed"]
    assert payload["config"]["eval.preset"] == [None, "fast"]
    assert payload["scores"]["sap.SAP_score"] == [None, 0.2]


def _json_text(capsys, argv: list[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_compare_identical_unevaluated_runs_says_so(tmp_path: Path, capsys) -> None:
    a = _run(tmp_path / "x", "same")
    b = _run(tmp_path / "y", "same")
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert f"| run    | {a} | {b} |" in out  # same folder names: the paths label the columns
    assert "The configs are identical." in out and "No run has scores yet" in out


@pytest.mark.parametrize("case", ["one", "none", "not-a-run", "missing", "file"])
def test_compare_refuses_what_is_not_two_runs(tmp_path: Path, case: str, capsys) -> None:
    good = _run(tmp_path, "good")
    other = {"not-a-run": tmp_path, "missing": tmp_path / "gone", "file": good / "config.yaml"}
    argv = {"one": [str(good)], "none": []}.get(case, [str(good), str(other.get(case))])
    assert main(["compare", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("disentkit compare: error: ") and err.count("\n") == 1
    expected = {"one": "compare needs at least 2 run folders, got 1", "none": "got 0",
                "not-a-run": "is not a run folder (no config.yaml in it)",
                "missing": "does not exist; give run folders", "file": "is a file"}[case]
    assert expected in err


def test_sort_rows_ties_keep_run_order() -> None:
    rows = [{"run": "a", "mig": 0.2}, {"run": "b", "mig": float("nan")}, {"run": "c", "mig": 0.2},
            {"run": "d"}]
    assert [r["run"] for r in sort_rows(rows, "-mig")] == ["a", "c", "b", "d"]

