"""Aggregation of hand-made run folders: hand-computed mean, sample std (ddof=1) and n."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
import yaml

from disentkit.cli import main
from disentkit.experiments.aggregate import (
    aggregate,
    collect_runs,
    mean_std,
    to_csv,
    to_json,
    to_markdown,
    write_outputs,
)

# (model, beta, seed) -> MIG; the second metric is 10x the first
SCORES = {
    ("betavae", 1.0, 0): 0.10, ("betavae", 1.0, 1): 0.20, ("betavae", 1.0, 2): 0.30,
    ("betavae", 4.0, 0): 0.40, ("betavae", 4.0, 1): 0.50,
    ("vae", 1.0, 0): 0.05,
}


def make_run(root: Path, model: str, beta: float, seed: int, mig: float | None) -> Path:
    run = root / f"{model}-b{beta}-s{seed}"
    run.mkdir(parents=True)
    config = {"model": {"name": model, "beta": beta, "latent_dim": 10},
              "train": {"steps": 100}, "optim": {"betas": [0.9, 0.999]},
              "seed": seed, "name": run.name, "out_dir": str(root)}
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if mig is not None:
        results = {"metrics": {"mig": {"discrete_mig": mig, "mutual_info": [[1, 2]]},
                               "sap": {"sap_score": 10 * mig}}, "versions": {"torch": "x"}}
        (run / "results.json").write_text(json.dumps(results))
    return run


@pytest.fixture()
def runs_dir(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for (model, beta, seed), mig in SCORES.items():
        make_run(root, model, beta, seed, mig)
    make_run(root, "betavae", 4.0, 9, None)  # still training: no results
    return root


def test_mean_std_hand_computed() -> None:
    mean, std, n = mean_std([0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2) and n == 3
    assert std == pytest.approx(0.1)  # sqrt(((-.1)^2 + 0 + .1^2) / 2)
    mean, std, n = mean_std([2.0])
    assert mean == 2.0 and math.isnan(std) and n == 1
    assert mean_std([1.0, float("nan"), 3.0])[2] == 2


def test_collect_and_group(runs_dir: Path) -> None:
    runs, skipped = collect_runs([runs_dir])
    assert len(runs) == 6
    assert len(skipped) == 1 and "no results.json" in skipped[0][1]
    by, metrics, groups = aggregate(runs)
    assert by == ["model.name", "model.beta"]  # varying keys; seed/name/out_dir ignored
    assert metrics == ["mig.discrete_mig", "sap.sap_score"]  # the MI matrix is not a scalar
    table = {(g.setting["model.name"], g.setting["model.beta"]): g.stats for g in groups}
    m, s, n = table[("betavae", 1.0)]["mig.discrete_mig"]
    assert (m, n) == (pytest.approx(0.2), 3) and s == pytest.approx(0.1)
    m, s, n = table[("betavae", 4.0)]["sap.sap_score"]
    assert m == pytest.approx(4.5) and s == pytest.approx(math.sqrt(0.5)) and n == 2
    assert table[("vae", 1.0)]["mig.discrete_mig"][2] == 1


def test_group_by_and_metric_selection(runs_dir: Path) -> None:
    runs, _ = collect_runs([runs_dir])
    by, metrics, groups = aggregate(runs, by=["model.name"], metrics=["mig"])
    assert metrics == ["mig.discrete_mig"]
    stats = {g.setting["model.name"]: g.stats["mig.discrete_mig"] for g in groups}
    values = [0.1, 0.2, 0.3, 0.4, 0.5]
    mean = sum(values) / 5
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 4)
    assert stats["betavae"][0] == pytest.approx(mean)
    assert stats["betavae"][1] == pytest.approx(std)
    with pytest.raises(KeyError, match="no metric"):
        aggregate(runs, metrics=["fid"])
    with pytest.raises(KeyError, match="no run has config key"):
        aggregate(runs, by=["model.gamma"])


def test_outputs_markdown_csv_json(runs_dir: Path, tmp_path: Path) -> None:
    runs, _ = collect_runs([runs_dir])
    by, metrics, groups = aggregate(runs, by=["model.name", "model.beta"], metrics=["mig"])
    md = to_markdown(by, metrics, groups)
    assert "| model.name | model.beta | n | mig.discrete_mig |" in md
    assert "| betavae | 1 | 3 | 0.200 ± 0.100 |" in md
    assert "| vae | 1 | 1 | 0.050 |" in md
    rows = list(csv.DictReader(io.StringIO(to_csv(by, metrics, groups))))
    first = rows[0]
    assert first["model.name"] == "betavae" and float(first["std"]) == pytest.approx(0.1)
    assert rows[-1]["std"] == "" and rows[-1]["n"] == "1"
    payload = json.loads(to_json(by, metrics, groups))
    assert payload["groups"][1]["stats"]["mig.discrete_mig"]["values"] == [0.4, 0.5]
    assert payload["groups"][2]["stats"]["mig.discrete_mig"]["std"] is None
    written = write_outputs(by, metrics, groups, tmp_path / "out", x="model.beta",
                            violin_by="model.name")
    names = {p.name for p in written}
    assert {"summary.md", "summary.csv", "summary.json", "mig.discrete_mig_vs_model.beta.png",
            "mig.discrete_mig_violin.png"} <= names
    assert all(p.stat().st_size > 0 for p in written)


def test_aggregate_cli(runs_dir: Path, tmp_path: Path, capsys) -> None:
    code = main(["aggregate", str(runs_dir), "--by", "model.beta", "--metric", "sap.sap_score",
                 "--out", str(tmp_path / "agg"), "--no-plots"])
    assert code == 0
    out = capsys.readouterr().out
    # betavae 1, 2, 3 and vae 0.5: mean 6.5 / 4 = 1.625, std sqrt(3.6875 / 3) = 1.109
    assert "| 1 | 4 | 1.625 ± 1.109 |" in out
    assert (tmp_path / "agg" / "summary.csv").is_file()
    assert main(["aggregate", str(tmp_path / "agg")]) == 2  # no runs there
