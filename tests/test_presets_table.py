"""``disentkit presets``: a table of name, method, dataset and source that fits the terminal,
``--long`` with the full source notes, and one line for a filter that matches nothing."""

from __future__ import annotations

from importlib import resources

import yaml

from disentkit.cli import main


def _source(name: str) -> str:
    text = (resources.files("disentkit") / "configs" / f"{name}.yaml").read_text()
    return " ".join(yaml.safe_load(text)["source"].split())


def test_presets_table_has_method_dataset_and_a_source_cut_to_the_width(monkeypatch, capsys) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["presets", "dsprites"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "method", "dataset", "source"]
    assert all(len(line) <= 100 for line in lines)
    assert all("dsprites" in line.split()[0] for line in lines[2:])
    rows = {line.split()[0]: line for line in lines[2:]}
    # the method and dataset come from the preset itself (not its folder name)
    assert rows["cfasl_baselines/commutativevae_dsprites"].split()[1:3] == ["clgvae", "dsprites"]
    row = rows["betavae/dsprites"]
    cut = row.split(None, 3)[3]
    assert cut.endswith("…") and _source("betavae/dsprites").startswith(cut[:-1])


def test_presets_long_prints_the_full_source_notes(monkeypatch, capsys) -> None:
    monkeypatch.setenv("COLUMNS", "70")
    assert main(["presets", "quickstart", "--long"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("quickstart/sprites  (method betatcvae, dataset sprites)\n    ")
    assert " ".join(out.split("\n", 1)[1].split()) == _source("quickstart/sprites")


def test_presets_filter_without_match_is_one_line(capsys) -> None:
    assert main(["presets", "no-such-method"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("disentkit presets: error: no preset name contains 'no-such-method'")
    assert err.count("\n") == 1
