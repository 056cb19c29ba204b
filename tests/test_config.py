"""Run config: presets, key=value overrides, strict errors, round trip through config.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from disentkit.config import (
    ConfigError,
    config_from_dict,
    load_config,
    load_config_file,
    parse_override,
    preset_names,
    save_config,
)
from disentkit.registry import MODELS, UnknownEntryError


def test_preset_and_overrides_are_typed() -> None:
    cfg = load_config("quickstart/sprites", ["model.beta=6", "seed=3", "optim.lr=2e-4",
                                             "train.precision=bf16-mixed"])
    assert cfg.model.name == "betatcvae"
    assert cfg.model.beta == 6.0 and isinstance(cfg.model.beta, float)
    assert cfg.seed == 3
    assert cfg.optim.lr == pytest.approx(2e-4)
    assert cfg.train.precision == "bf16-mixed"
    assert cfg.preset == "quickstart/sprites"
    assert cfg.run_name == "quickstart-sprites-seed3"


def test_preset_given_as_override_like_the_cli() -> None:
    cfg = load_config(None, ["preset=quickstart/sprites", "model.beta=2"])
    assert cfg.model.beta == 2.0 and cfg.data.name == "sprites"


def test_unknown_key_names_key_and_allowed_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("quickstart/sprites", ["model.btea=4"])
    message = str(info.value)
    assert "model.btea" in message and "beta" in message and "latent_dim" in message


def test_unknown_top_level_and_section_keys() -> None:
    with pytest.raises(ConfigError, match="unknown key 'train.stpes'.*steps"):
        load_config("quickstart/sprites", ["train.stpes=10"])
    with pytest.raises(ConfigError, match="unknown key 'sed'"):
        load_config("quickstart/sprites", ["sed=1"])


def test_wrong_types_and_literals_say_what_is_allowed() -> None:
    with pytest.raises(ConfigError, match="train.steps: got 'many'; expected an integer"):
        load_config("quickstart/sprites", ["train.steps=many"])
    with pytest.raises(ConfigError, match="model.likelihood.*'bernoulli', 'gaussian'"):
        load_config("quickstart/sprites", ["model.likelihood=poisson"])
    with pytest.raises(ConfigError, match="train.precision.*'32', 'bf16-mixed', '16-mixed'"):
        load_config("quickstart/sprites", ["train.precision=8"])
    with pytest.raises(ConfigError, match="expected true or false"):
        load_config("quickstart/sprites", ["log.tensorboard=3"])


def test_unknown_model_name_lists_known_models() -> None:
    with pytest.raises(ConfigError, match="unknown model 'betavea'.*betavae"):
        load_config("quickstart/sprites", ["model.name=betavea"])
    with pytest.raises(UnknownEntryError):
        MODELS.get("no_such_model")


def test_unknown_preset_lists_presets() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'nope/x'.*quickstart/sprites"):
        load_config("nope/x")
    assert "quickstart/sprites" in preset_names()


def test_changing_model_name_drops_preset_params() -> None:
    cfg = load_config("quickstart/sprites", ["model.name=vae"])
    assert cfg.model.name == "vae"
    assert not hasattr(cfg.model.params, "beta")


def test_saved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config("quickstart/sprites", ["model.beta=5", "train.ema_modules=[decoder]"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config_file(tmp_path / "config.yaml")
    assert again.to_dict() == cfg.to_dict()
    assert again.train.ema_modules == ["decoder"]


def test_missing_sections_are_reported() -> None:
    with pytest.raises(ConfigError, match="'data' section"):
        config_from_dict({"model": {"name": "vae"}})


def test_parse_override_values() -> None:
    assert parse_override("optim.betas=[0.5, 0.9]") == (["optim", "betas"], [0.5, 0.9])
    assert parse_override("train.grad_clip=null") == (["train", "grad_clip"], None)
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("model.beta")


def test_every_packaged_preset_loads_and_names_its_source() -> None:
    from importlib import resources

    import yaml

    for name in preset_names():
        text = (resources.files("disentkit") / "configs" / f"{name}.yaml").read_text()
        assert (yaml.safe_load(text) or {}).get("source") or "base:" in text, name
        load_config(name)


def test_numeric_looking_strings_keep_their_spelling() -> None:
    """`name=000` (a sweep's single run) names folder 000, not 0; numbers stay numbers."""
    config = load_config("quickstart/sprites", ["name=000", "out_dir=0123", "data_root=on",
                                                "optim.lr=1.0e-3", "model.beta=4.50",
                                                "log.tensorboard=yes", "train.grad_clip=null"])
    assert config.name == "000" and config.run_name == "000"
    assert config.out_dir == "0123" and config.data_root == "on"
    assert config.optim.lr == 1e-3 and config.model.beta == 4.5
    assert config.log.tensorboard is True and config.train.grad_clip is None
    with pytest.raises(ConfigError, match="train.steps"):
        load_config("quickstart/sprites", ["train.steps=1.50"])
    assert load_config("quickstart/sprites", ["seed=007"]).seed == 7


def test_messages_stay_one_short_line_for_huge_or_broken_input(tmp_path: Path) -> None:
    huge = "x" * 5000
    for words in (["train.steps=" + huge], [f"model.{huge}=1"], [huge], [f"name={huge}/y"]):
        with pytest.raises(ConfigError) as info:
            load_config("quickstart/sprites", words)
        assert len(str(info.value)) < 400 and "\n" not in str(info.value)
    (tmp_path / "config.yaml").write_text("model:\n  name: vae\n bad: [\n")
    with pytest.raises(ConfigError, match=r"config.yaml is not valid YAML \(line 3\)"):
        load_config_file(tmp_path / "config.yaml")
