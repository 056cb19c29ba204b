"""key=value overrides are accepted before, between and after a command's options."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from disentkit.cli import build_parser, main, parse_args


def test_train_takes_overrides_after_an_option(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    assert main(["train", "preset=vae/smoke", "--data-root", str(data), "name=late",
                 "--print-config", f"out_dir={tmp_path}", "train.steps=7"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["name"] == "late" and config["out_dir"] == str(tmp_path)
    assert config["data_root"] == str(data) and config["train"]["steps"] == 7
    assert config["model"]["name"] == "vae"  # the preset= word before the option still counts


def test_words_keep_their_order_so_the_last_value_wins(capsys) -> None:
    assert main(["train", "preset=vae/smoke", "seed=1", "--print-config", "seed=2"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["seed"] == 2


def test_quickstart_and_sweep_collect_words_around_options(tmp_path: Path, capsys) -> None:
    parser = build_parser()
    args = parse_args(parser, ["quickstart", "train.steps=5", "--out", "o", "seed=4"])
    assert args.overrides == ["train.steps=5", "seed=4"] and args.out == "o"
    assert main(["sweep", "preset=vae/smoke", "--dry-run", "--out", str(tmp_path / "sw"),
                 "seed=0:2", "--parallel", "1", "train.steps=3"]) == 0
    out = capsys.readouterr().out
    assert "2 runs" in out and out.count("train.steps=3") == 2


def test_unknown_options_and_words_for_commands_without_overrides_are_still_errors(
        tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "preset=vae/smoke", "--bogus", "name=y"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --bogus" in err and "name=y" not in err
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(tmp_path), "seed=1"])  # eval takes options, not key=value overrides
    assert exc.value.code == 2 and "unrecognized arguments: seed=1" in capsys.readouterr().err
