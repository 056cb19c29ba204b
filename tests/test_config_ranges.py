"""Config values are range-checked when a config is loaded, run names stay inside out_dir, and
opening a run folder never imports code named by its config.yaml."""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from pathlib import Path

import pytest
import yaml

from disentkit.cli import main
from disentkit.config import (
    ConfigError,
    RunConfig,
    UntrustedImportsError,
    load_config,
    load_config_file,
    save_config,
)
from disentkit.ranges import Range
from disentkit.registry import DATASETS, MODELS

PRESET = "quickstart/sprites"  # betatcvae on the procedural sprites

# (override, key named in the message, a piece of the expected range); the examples first
BAD_VALUES = [
    ("train.steps=-5", "train.steps", ">= 1"),
    ("train.steps=0", "train.steps", ">= 1"),
    ("train.checkpoint_every=-1", "train.checkpoint_every", ">= 1"),
    ("train.checkpoint_every=0", "train.checkpoint_every", ">= 1"),
    ("model.latent_dim=0", "model.latent_dim", ">= 1"),
    ("model.beta=-4", "model.beta", ">= 0"),
    ("lr_schedule.warmup_steps=-10", "lr_schedule.warmup_steps", ">= 0"),
    ("train.batch_size=0", "train.batch_size", ">= 1"),
    ("optim.lr=nan", "optim.lr", "a finite number > 0"),
    ("train.devices=0", "train.devices", ">= 1"),
    (f"seed={2**70}", "seed", "in [0, 4294967295]"),
    ("train.grad_clip=-1", "train.grad_clip", "> 0"),
    # and more of the same kind
    ("train.grad_clip=0", "train.grad_clip", "> 0"),
    ("optim.lr=.inf", "optim.lr", "a finite number > 0"),
    ("optim.lr=-0.001", "optim.lr", "> 0"),
    ("optim.betas=[0.9, 1.0]", "optim.betas[1]", "in [0, 1)"),
    ("train.ema_decay=1", "train.ema_decay", "in (0, 1)"),
    ("lr_schedule.min_lr_ratio=1.5", "lr_schedule.min_lr_ratio", "in [0, 1]"),
    ("seed=-1", "seed", "in [0, 4294967295]"),
    ("eval.seed=4294967296", "eval.seed", "in [0, 4294967295]"),
    ("train.num_nodes=0", "train.num_nodes", ">= 1"),
    ("log.every=0", "log.every", ">= 1"),
    ("model.gamma=-1", "model.gamma", ">= 0"),
    ("data.positions=0", "data.positions", ">= 1"),
]


@pytest.mark.parametrize(("override", "key", "expected"), BAD_VALUES)
def test_out_of_range_values_fail_at_load_time(override: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(PRESET, [override])
    message = str(info.value)
    assert message.startswith(f"{key} = ") and "is out of range: expected" in message
    assert expected in message and f"; set {key} to " in message


@pytest.mark.parametrize(("override", "key", "expected"), BAD_VALUES)
def test_out_of_range_values_exit_2_with_one_line_before_training(
    override: str, key: str, expected: str, tmp_path: Path, capsys
) -> None:
    quick = ["train.steps=1", "eval.at_end=false", "eval.report_at_end=false"]  # if it did run
    assert main(["train", f"preset={PRESET}", *quick, override, f"out_dir={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"disentkit train: error: {key} = ")
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_message_says_what_was_expected_found_and_what_to_do() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(PRESET, ["model.beta=-4"])
    assert str(info.value) == (
        "model.beta = -4.0 is out of range: expected a number >= 0 (the weight of the total "
        "correlation); set model.beta to a non-negative number"
    )
    with pytest.raises(ConfigError, match=r"to a positive number, or null to turn it off$"):
        load_config(PRESET, ["train.grad_clip=-1"])


@pytest.mark.parametrize(("inside", "outside"), [
    ("seed=4294967295", "seed=4294967296"),
    ("eval.seed=0", "eval.seed=-1"),
    ("train.steps=1", "train.steps=0"),
    ("train.checkpoint_every=1", "train.checkpoint_every=0"),
    ("model.beta=0", "model.beta=-0.001"),
    ("train.grad_clip=null", "train.grad_clip=0"),
    ("train.ema_decay=null", "train.ema_decay=0"),
    ("optim.betas=[0, 0.999]", "optim.betas=[-0.1, 0.999]"),
    ("lr_schedule.min_lr_ratio=1", "lr_schedule.min_lr_ratio=1.001"),
    ("train.num_threads=0", "train.num_threads=-1"),
])
def test_bounds_are_where_declared(inside: str, outside: str) -> None:
    load_config(PRESET, [inside])
    with pytest.raises(ConfigError, match="is out of range"):
        load_config(PRESET, [outside])


def test_floats_without_a_declared_range_must_still_be_finite() -> None:
    """A user plugin's Config (tests/toy_plugin.py declares no ranges) gets the finiteness check."""
    words = ["imports=[toy_plugin]", "data.name=toy_bars", "model.name=toy_ae"]
    with pytest.raises(ConfigError, match=r"^model.loss_scale = nan is not a finite number"):
        load_config(None, [*words, "model.loss_scale=nan"])
    assert load_config(None, [*words, "model.loss_scale=-2"]).model.loss_scale == -2.0


def test_a_resumed_run_is_checked_too(tmp_path: Path) -> None:
    save_config(load_config(PRESET), tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match="train.steps = 0 is out of range"):
        load_config_file(tmp_path / "config.yaml", ["train.steps=0"])
    data = yaml.safe_load((tmp_path / "config.yaml").read_text())
    data["train"]["checkpoint_every"] = 0
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="train.checkpoint_every = 0 is out of range"):
        load_config_file(tmp_path / "config.yaml")


def _numeric_fields_without_range(cls: type) -> list[str]:
    missing = []
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        arms = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) \
            else (hint,)
        for arm in arms:
            leaves = [arm]
            if typing.get_origin(arm) in (list, tuple):
                leaves = [a for a in typing.get_args(arm) if a is not Ellipsis]
            for leaf in leaves:
                has_range = typing.get_origin(leaf) is typing.Annotated and any(
                    isinstance(m, Range) for m in leaf.__metadata__)
                if typing.get_origin(leaf) is typing.Annotated:
                    leaf = typing.get_args(leaf)[0]
                if leaf in (int, float) and not has_range:
                    missing.append(f"{cls.__qualname__}.{name}")
    return missing


def test_every_numeric_field_of_the_packaged_configs_declares_a_range() -> None:
    classes = [f.type for f in dataclasses.fields(RunConfig)
               if isinstance(f.type, str) and f.type.endswith("Config") and f.type != "SectionConfig"]
    import disentkit.config as config_module

    sections = [getattr(config_module, name) for name in classes] + [RunConfig]
    entries = [entry.Config for registry in (MODELS, DATASETS)
               for entry in map(registry.get, registry.names())
               if entry.__module__.startswith("disentkit.")]  # not the tests' plugins
    missing = [m for cls in sections + entries for m in _numeric_fields_without_range(cls)]
    assert missing == []
    for cls in entries:  # the defaults themselves lie in the declared ranges
        from disentkit.config import _check_fields

        _check_fields(cls(), cls.__qualname__)


# --------------------------------------------------------------------------------------------
# Run names
# --------------------------------------------------------------------------------------------
def test_a_run_name_is_one_folder_inside_out_dir() -> None:
    for name in ["000", "run.1", "beta4-seed0", "..x", ""]:
        assert load_config(PRESET, [f"name={name}"]).run_name == (name or "quickstart-sprites-seed0")
    for name in ["../x", "/tmp/abs", ".", "..", "...", "a/b", "a\\b", "' '"]:
        with pytest.raises(ConfigError, match=r"^name = .*one folder inside out_dir"):
            load_config(PRESET, [f"name={name}"])


def test_train_with_an_escaping_name_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    quick = ["train.steps=1", "eval.at_end=false", "eval.report_at_end=false"]
    assert main(["train", f"preset={PRESET}", *quick, f"out_dir={out}", "name=../escaped"]) == 2
    assert "disentkit train: error: name = '../escaped' is a path" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "escaped").exists()


# --------------------------------------------------------------------------------------------
# Imports named by a run folder
# --------------------------------------------------------------------------------------------
@pytest.fixture
def shared_run(tmp_path: Path, monkeypatch) -> tuple[Path, str, Path]:
    """A run folder whose config.yaml imports a module shipped next to it (importable, as when
    a command runs inside that folder); importing it writes a marker file."""
    run, module = tmp_path / "shared_run", f"planted_{tmp_path.name.replace('-', '_')}"
    marker = tmp_path / "marker"
    run.mkdir()
    (run / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    save_config(load_config(PRESET), run / "config.yaml")
    data = yaml.safe_load((run / "config.yaml").read_text())
    data["imports"] = [module]
    (run / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.syspath_prepend(str(run))
    yield run, module, marker
    sys.modules.pop(module, None)


@pytest.mark.parametrize("command", [["eval"], ["report"], ["traverse"], ["analyze"],
                                     ["train", "--resume"]])
def test_commands_reading_a_run_do_not_import_its_modules(shared_run, command, capsys) -> None:
    run, module, marker = shared_run
    assert main([*command, str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"disentkit {command[0]}: error: ")
    assert module in err and "--trust-imports" in err
    assert not marker.exists()


def test_imports_the_user_names_are_honoured(shared_run, tmp_path: Path, capsys) -> None:
    """--trust-imports, imports=[...] on the command line, or the user's own preset file."""
    run, module, marker = shared_run
    assert main(["train", "--resume", str(run), "--trust-imports", "--print-config"]) == 0
    assert marker.read_text() == "ran"
    for word in [f"imports=[{module}]", f"preset={tmp_path / 'mine.yaml'}"]:
        marker.unlink()
        sys.modules.pop(module)
        (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"base": PRESET, "imports": [module]}))
        command = ["--resume", str(run), word] if word.startswith("imports") else [word]
        assert main(["train", *command, "--print-config"]) == 0
        assert marker.exists(), word


def test_python_api_needs_trust_imports_for_a_run_folder(shared_run) -> None:
    import disentkit

    run, module, marker = shared_run
    with pytest.raises(UntrustedImportsError, match=f"asks to import {module} "):
        disentkit.load_run(run)
    assert not marker.exists()
    assert load_config_file(run / "config.yaml", trust_imports=True).imports == [module]
    assert marker.exists()
    # Once imported (as in the process that trained the run), reading it again runs nothing.
    marker.unlink()
    assert load_config_file(run / "config.yaml").imports == [module]
    assert not marker.exists()


def test_bad_or_missing_import_names_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=re.escape("imports[0] = '../evil' is not a module name")):
        load_config(PRESET, ["imports=[../evil]"])
    with pytest.raises(ConfigError, match="imports: no module named 'no_such_module_xyz'"):
        load_config(PRESET, ["imports=[no_such_module_xyz]"])


def test_a_resumed_sweep_run_names_its_imports_itself(tmp_path: Path) -> None:
    from disentkit.experiments.sweep import RunStatus, plan_sweep, train_argv

    words = ["imports=[toy_plugin]", "data.name=toy_bars", "model.name=toy_ae", "seed=0:2"]
    plan = plan_sweep(words, tmp_path / "s")
    argv = train_argv(plan, plan.runs[1], ["train"], status=RunStatus("resume"))
    assert argv == ["train", "--resume", str(plan.run_dir(plan.runs[1])), "imports=[toy_plugin]"]
    plain = plan_sweep(["preset=betavae/smoke", "seed=0:2"], tmp_path / "p")
    assert train_argv(plain, plain.runs[0], ["train"], status=RunStatus("resume"))[-2] == "--resume"
