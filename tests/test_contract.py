"""The engine/model contract the diffusion family needs (issue 11): frozen sub-networks, the EMA
modules a model declares and LitEma's warm-up, EMA weights in evaluation and sample grids,
RAdam/AdamW, linear LR warm-up, gradient accumulation, DataFacts, the ``lr_schedule`` rename and
the model-declared evaluation protocol."""

from __future__ import annotations

import copy
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import nn

import disentkit
import toy_plugin
from disentkit.cli import main
from disentkit.config import ConfigError, config_from_dict, load_config, load_config_file
from disentkit.models import betatcvae as betatcvae_module
from disentkit.models.base import DataFacts, Model
from disentkit.models.vae import BetaVAE
from disentkit.registry import MODELS
from disentkit.training.checkpoint import load_checkpoint
from disentkit.training.ema import EMA
from disentkit.training.engine import Trainer
from disentkit.training.freezing import freeze_modules, frozen_names, is_frozen
from disentkit.training.samples import write_sample_grid
from disentkit.training.schedule import lr_multiplier

BASE = [
    "imports=[toy_plugin]", "data.name=toy_bars", "model.name=betavae", "model.latent_dim=4",
    "train.batch_size=8", "optim.lr=1e-3", "log.every=1", "log.progress=false",
    "train.num_threads=1", "eval.at_end=false", "eval.report_at_end=false",
]


def _config(tmp_path: Path, *extra: str, model: str | None = None):
    if model is not None:
        base = [x for x in BASE if not x.startswith("model.")] + [f"model.name={model}"]
    else:
        base = BASE
    return load_config(None, [*base, f"out_dir={tmp_path}", *extra])


def _train(tmp_path: Path, *extra: str, model: str | None = None) -> Path:
    return disentkit.train(_config(tmp_path, *extra, model=model))


def _checkpoint(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / "last.pt")


# ---- test models --------------------------------------------------------------------------------
@dataclass
class FrozenBaseConfig:
    hidden: int = 8


@MODELS.register("contract_frozen_base")
class FrozenBase(Model):
    """A frozen feature network (linear, batch norm, dropout) under a trainable head; records
    what it sees in every training step."""

    Config = FrozenBaseConfig
    frozen_modules = ("base",)
    seen: ClassVar[list[tuple[bool, bool, bool, bool]]] = []

    def __init__(self, config: FrozenBaseConfig, data: DataFacts) -> None:
        super().__init__(config, data)
        c, h, w = self.image_shape
        self.base = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, config.hidden),
                                  nn.BatchNorm1d(config.hidden), nn.Dropout(0.5))
        self.head = nn.Linear(config.hidden, c * h * w)

    def training_losses(self, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        FrozenBase.seen.append((self.training, self.base.training, self.base[3].training,
                                any(p.requires_grad for p in self.base.parameters())))
        out = torch.sigmoid(self.head(self.base(batch)))
        return {"loss": (out - batch.flatten(1)).pow(2).sum(1).mean()}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x)


@MODELS.register("contract_ema_decoder")
class EMADecoderAE(toy_plugin.ToyAE):
    """The toy autoencoder, declaring that the EMA covers its decoder only."""

    ema_modules = ("dec",)


@MODELS.register("contract_grouped")
class GroupedVAE(BetaVAE):
    """A beta-VAE that declares two concept groups of two dimensions, scored with DisDiff's
    protocol by default."""

    default_protocol = "disdiff"

    def code_groups(self) -> list[list[int]]:
        return [[0, 1], [2, 3]]


@MODELS.register("contract_facts")
class FactsAE(toy_plugin.ToyAE):
    """The toy autoencoder, keeping the DataFacts it was built with."""

    built_with: ClassVar[list[DataFacts]] = []

    def __init__(self, config, data: DataFacts) -> None:
        super().__init__(config, data)
        FactsAE.built_with.append(data)


# ---- frozen sub-networks ------------------------------------------------------------------------
def test_a_frozen_module_is_bit_identical_after_training_in_eval_mode_without_gradients(tmp_path) -> None:
    torch.manual_seed(0)  # the engine seeds with config.seed before it builds the model
    initial = FrozenBase(FrozenBaseConfig(), DataFacts((1, 32, 32), 64)).state_dict()
    FrozenBase.seen.clear()
    run = _train(tmp_path, "train.steps=5", "optim.name=adamw", "optim.weight_decay=0.1",
                 "optim.lr=0.05", "name=frozen", model="contract_frozen_base")
    state = _checkpoint(run)
    for key, value in initial.items():
        trained = state["model"][key]
        if key.startswith("base."):  # weights and batch-norm statistics alike
            assert torch.equal(trained, value), key
        elif key == "head.weight":
            assert not torch.equal(trained, value)  # the rest did train
    # every step: the model in train mode, its frozen part in eval mode, without gradients
    assert FrozenBase.seen == [(True, False, False, False)] * 5
    # only the head's weight and bias are in the optimiser
    assert [len(g["params"]) for g in state["optimisers"][0]["param_groups"]] == [2]


def test_extra_names_freeze_too_and_freezing_everything_is_one_line(tmp_path) -> None:
    config = _config(tmp_path, "train.steps=3", "name=extra")
    trainer = Trainer(config, tmp_path / "extra", freeze=["encoder"])
    trainer.fit()
    model = trainer.raw_model
    assert frozen_names(model) == ["encoder"] and not model.encoder.training
    assert not any(p.requires_grad for p in model.encoder.parameters())
    optimised = {id(p) for g in trainer.optimisers[0].optimizer.param_groups for p in g["params"]}
    assert optimised == {id(p) for p in model.decoder.parameters()}
    with pytest.raises(ConfigError, match="nothing would train") as info:
        Trainer(_config(tmp_path, "name=all"), tmp_path / "all", freeze=["encoder", "decoder"]).fit()
    assert "\n" not in str(info.value)
    assert not (tmp_path / "all").exists()  # refused before the run folder was written


def test_freeze_modules_refuses_unknown_names_and_survives_train_and_deepcopy() -> None:
    model = BetaVAE(BetaVAE.Config(latent_dim=3), (1, 32, 32))
    with pytest.raises(ConfigError, match=r"cannot freeze 'encdoer'.*its modules: encoder, decoder") as info:
        freeze_modules(model, ["encoder", "encdoer"])
    assert "\n" not in str(info.value)
    assert not any(is_frozen(m) for m in model.modules())  # nothing changed before the error
    assert freeze_modules(model, ["encoder", "encoder"]) == ["encoder"]
    model.train()
    assert model.training and model.decoder.training and not model.encoder.training
    twin = copy.deepcopy(model)  # what the EMA holds
    twin.train()
    assert not twin.encoder.training and model.encoder is not twin.encoder
    twin.encoder.train(True)
    assert not twin.encoder.training


# ---- EMA ---------------------------------------------------------------------------------------
class _Scalar(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros((), dtype=torch.float64))


def test_ema_warmup_follows_litema_by_hand() -> None:
    module = _Scalar()
    ema = EMA(module, 0.3, [], warmup=True)
    expected = []
    for value in (1.0, 2.0, 3.0):
        with torch.no_grad():
            module.w.fill_(value)
        ema.update(module)
        expected.append(float(ema.averaged[""].module.w.detach()))
    # decay_k = min(0.3, (1 + k) / (10 + k)), starting from the weights at creation (0):
    # k=1: 2/11 * 0 + 9/11 * 1; k=2: 3/12 * 9/11 + 9/12 * 2 = 75/44; k=3: capped at 0.3
    assert expected == pytest.approx([9 / 11, 75 / 44, 0.3 * 75 / 44 + 0.7 * 3], abs=1e-12)
    assert [ema.current_decay(k) for k in (1, 2, 3, 100)] == pytest.approx([2 / 11, 0.25, 0.3, 0.3])
    # a reloaded EMA goes on with the same count (exact resume)
    again = EMA(module, 0.3, [], warmup=True)
    again.load_state_dict(ema.state_dict())
    assert again.updates == 3
    # without warm-up: the first update copies, then a fixed decay
    plain = EMA(module, 0.3, [])
    plain.update(module)
    with torch.no_grad():
        module.w.fill_(1.0)
    plain.update(module)
    assert float(plain.averaged[""].module.w.detach()) == pytest.approx(0.3 * 3 + 0.7 * 1)


def test_the_ema_covers_the_declared_modules_and_load_run_uses_its_weights(tmp_path) -> None:
    run = _train(tmp_path, "train.steps=4", "train.ema_decay=0.5", "name=ema",
                 model="contract_ema_decoder")
    state = _checkpoint(run)
    assert list(state["ema"]) == ["dec"]  # the declared module, not the whole model
    averaged = {k[len("module."):]: v for k, v in state["ema"]["dec"].items() if k.startswith("module.")}
    assert not torch.equal(averaged["weight"], state["model"]["dec.weight"])
    model = disentkit.load_run(run).model
    assert torch.equal(model.dec.weight, averaged["weight"])
    assert torch.equal(model.enc.weight, state["model"]["enc.weight"])  # not averaged: as trained
    raw = disentkit.load_run(run, use_ema=False).model
    assert torch.equal(raw.dec.weight, state["model"]["dec.weight"])


def test_images_every_writes_sample_grids_drawn_with_the_ema_weights(tmp_path) -> None:
    run = _train(tmp_path, "train.steps=4", "log.images_every=2", "train.ema_decay=0.5", "name=img")
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_2.png", "step_4.png"]
    ema_grid = write_sample_grid(disentkit.load_run(run).model, tmp_path / "ema.png", 0,
                                 torch.device("cpu")).read_bytes()
    raw_grid = write_sample_grid(disentkit.load_run(run, use_ema=False).model, tmp_path / "raw.png",
                                 0, torch.device("cpu")).read_bytes()
    assert (run / "samples" / "step_4.png").read_bytes() == ema_grid != raw_grid
    # a model without sample() is refused before the run folder is written
    with pytest.raises(ConfigError, match="log.images_every = 2 draws sample grids.*toy_ae"):
        _train(tmp_path, "log.images_every=2", "name=nosample", model="toy_ae")
    assert not (tmp_path / "nosample" / "config.yaml").exists()


# ---- optimisers and learning rates ----------------------------------------------------------------
def test_optim_name_selects_radam_adamw_or_adam(tmp_path) -> None:
    for name, cls in [("radam", torch.optim.RAdam), ("adamw", torch.optim.AdamW),
                      ("adam", torch.optim.Adam)]:
        trainer = Trainer(_config(tmp_path, f"optim.name={name}", "optim.weight_decay=0.01",
                                  f"name={name}"), tmp_path / name)
        trainer._setup()
        optimiser = trainer.optimisers[0].optimizer
        assert type(optimiser) is cls and optimiser.param_groups[0]["weight_decay"] == 0.01


def test_optim_name_lists_radam_when_wrong(tmp_path) -> None:
    with pytest.raises(ConfigError, match="allowed values: 'adam', 'adamw', 'radam'"):
        _config(tmp_path, "optim.name=sgd")


def test_linear_warmup_rates_per_step_by_hand(tmp_path) -> None:
    # lr * (s + 1) / W for the steps s < W = 4, then the schedule (cosine from step 4 to 8)
    cfg = _config(tmp_path, "lr_schedule.warmup_steps=4", "lr_schedule.name=cosine").lr_schedule
    rates = [lr_multiplier(cfg, 8)(s) for s in range(9)]
    assert rates == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 0.5 + 0.5 * 2 ** -0.5, 0.5,
                                   0.5 - 0.5 * 2 ** -0.5, 0.0])
    run = _train(tmp_path, "train.steps=5", "optim.lr=0.1", "lr_schedule.warmup_steps=4",
                 "name=warm", model="toy_ae")
    logged = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    # the rate after step k (that of the next step): 0.1 * 2/4, 3/4, 1, 1, 1
    assert logged == pytest.approx([0.05, 0.075, 0.1, 0.1, 0.1])
    # and the first step really ran at lr / 4: Adam's first move is lr * sign(grad)
    torch.manual_seed(0)
    before = toy_plugin.ToyAE(toy_plugin.ToyAEConfig(), (1, 32, 32)).state_dict()
    one = _train(tmp_path, "train.steps=1", "optim.lr=0.1", "lr_schedule.warmup_steps=4",
                 "name=one", model="toy_ae")
    move = (_checkpoint(one)["model"]["dec.bias"] - before["dec.bias"]).abs()
    assert float(move.max()) == pytest.approx(0.025, rel=1e-5)


# ---- gradient accumulation ------------------------------------------------------------------------
def test_accumulated_micro_batches_give_the_update_of_one_larger_batch(tmp_path) -> None:
    small = _train(tmp_path, "train.steps=3", "train.batch_size=4", "train.accumulate=2",
                   "name=acc", model="toy_ae")
    large = _train(tmp_path, "train.steps=3", "train.batch_size=8", "name=big", model="toy_ae")
    a, b = _checkpoint(small)["model"], _checkpoint(large)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    logged = [json.loads(x) for x in (small / "metrics.jsonl").read_text().splitlines()]
    big = [json.loads(x) for x in (large / "metrics.jsonl").read_text().splitlines()]
    assert logged[0]["loss"] == pytest.approx(big[0]["loss"], rel=1e-5)  # mean over the micro-batches
    # (the same run without accumulation differs: the test compares something)
    plain = _checkpoint(_train(tmp_path, "train.steps=3", "train.batch_size=4", "name=plain",
                               model="toy_ae"))["model"]
    assert not torch.allclose(plain["dec.weight"], a["dec.weight"], atol=1e-6)


def test_resume_stays_exact_with_accumulation_ema_warmup_and_sample_grids(tmp_path) -> None:
    args = ["train.steps=4", "train.accumulate=2", "train.batch_size=4", "train.ema_decay=0.8",
            "train.ema_warmup=true", "log.images_every=2", "train.checkpoint_every=100"]
    full = _train(tmp_path, *args, "name=full")
    config = _config(tmp_path, *args, "name=cut")
    trainer = Trainer(config, tmp_path / "cut")
    original = trainer._loop

    def loop_with_signal(loggers):
        os.kill(os.getpid(), signal.SIGUSR1)  # stop after the first step, with a checkpoint
        return original(loggers)

    trainer._loop = loop_with_signal
    trainer.fit()
    assert _checkpoint(tmp_path / "cut")["step"] == 1
    resumed = disentkit.train(load_config_file(tmp_path / "cut" / "config.yaml"),
                              run_dir=tmp_path / "cut", resume=True)
    a, b = _checkpoint(full), _checkpoint(resumed)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key, value in a["ema"][""].items():
        assert torch.equal(value, b["ema"][""][key]), key
    assert (full / "samples" / "step_4.png").read_bytes() == (resumed / "samples" / "step_4.png").read_bytes()


# ---- DataFacts ------------------------------------------------------------------------------------
def test_every_packaged_model_takes_data_facts() -> None:
    facts = DataFacts((1, 64, 64), 100, (2, 50))
    for name in MODELS.names():
        cls = MODELS.get(name)
        if cls.__module__.startswith("disentkit."):
            model = cls(cls.Config(), facts)
            assert model.data_facts == facts and model.image_shape == (1, 64, 64), name


def test_the_engine_tells_the_model_its_data_and_load_run_rebuilds_it(tmp_path) -> None:
    FactsAE.built_with.clear()
    run = _train(tmp_path, "train.steps=1", "name=facts", model="contract_facts")
    expected = DataFacts((1, 32, 32), 64, (8, 8))  # toy_bars: 8 x 8 positions of 32 x 32 images
    assert FactsAE.built_with == [expected]
    assert disentkit.load_run(run).model.data_facts == expected


def test_betatcvae_reads_n_from_data_facts() -> None:
    cls = MODELS.get("betatcvae")
    torch.manual_seed(0)
    told = cls(cls.Config(latent_dim=4, estimator="mss"), DataFacts((1, 32, 32), 1000))
    torch.manual_seed(0)
    set_in_config = cls(cls.Config(latent_dim=4, estimator="mss", dataset_size=1000), (1, 32, 32))
    torch.manual_seed(0)
    other = cls(cls.Config(latent_dim=4, estimator="mss"), DataFacts((1, 32, 32), 10))
    mean, logvar = torch.randn(8, 4), torch.randn(8, 4) * 0.1
    z = mean + torch.randn(8, 4)
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).mean(0)
    value = told.regulariser(mean, logvar, z, kl, 0, {})
    torch.testing.assert_close(value, set_in_config.regulariser(mean, logvar, z, kl, 0, {}))
    assert not torch.allclose(value, other.regulariser(mean, logvar, z, kl, 0, {}))


def test_cfasl_betatcvae_weights_its_terms_without_swapping_its_config(monkeypatch) -> None:
    cls = MODELS.get("cfasl_betatcvae")
    config = cls.Config(latent_dim=4, alpha=5.0, gamma=7.0, mi_weight=2.0, dwkl_weight=3.0, beta=3.0)
    cfasl = cls(config, DataFacts((1, 32, 32), 1000))
    base_cls = MODELS.get("betatcvae")
    base = base_cls(base_cls.Config(latent_dim=4, alpha=2.0, gamma=3.0, beta=3.0, estimator="mss"),
                    DataFacts((1, 32, 32), 1000))
    seen = []
    real = betatcvae_module.tc_decomposition

    def spy(*args, **kwargs):
        seen.append(cfasl.config is config)
        return real(*args, **kwargs)

    monkeypatch.setattr(betatcvae_module, "tc_decomposition", spy)
    mean, logvar = torch.randn(8, 4), torch.randn(8, 4) * 0.1
    z = mean + torch.randn(8, 4)
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).mean(0)
    torch.testing.assert_close(cfasl.regulariser(mean, logvar, z, kl, 0, {}),
                               base.regulariser(mean, logvar, z, kl, 0, {}))
    assert seen[0] is True  # the model kept its own config throughout


# ---- lr_schedule: the renamed section -------------------------------------------------------------
def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_an_old_schedule_section_loads_as_lr_schedule_with_one_warning(tmp_path, capsys) -> None:
    data = _config(tmp_path, "name=old").to_dict()
    data["schedule"] = data.pop("lr_schedule") | {"name": "cosine", "warmup_steps": 3}
    path = tmp_path / "config.yaml"
    import yaml

    path.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    # the file's old section, then an override with the new name: the override wins
    config = load_config_file(path, ["lr_schedule.warmup_steps=5"], trust_imports=True)
    assert (config.lr_schedule.name, config.lr_schedule.warmup_steps) == ("cosine", 5)
    warnings = _warnings(capsys.readouterr().err)
    assert len(warnings) == 1 and str(path) in warnings[0]
    assert "'schedule' is now 'lr_schedule'" in warnings[0]
    assert "schedule" not in config.to_dict()
    # an override with the old name on a config with the new one; a preset file with it; a dict
    assert _config(tmp_path, "schedule.warmup_steps=7").lr_schedule.warmup_steps == 7
    assert len(_warnings(capsys.readouterr().err)) == 1
    preset = tmp_path / "old_preset.yaml"
    preset.write_text("base: quickstart/sprites\nschedule: {name: linear}\n")
    config = load_config(str(preset), ["schedule.min_lr_ratio=0.5"])
    assert (config.lr_schedule.name, config.lr_schedule.min_lr_ratio) == ("linear", 0.5)
    assert len(_warnings(capsys.readouterr().err)) == 1
    assert config_from_dict(data).lr_schedule.warmup_steps == 3
    assert len(_warnings(capsys.readouterr().err)) == 1
    load_config("quickstart/sprites", ["lr_schedule.warmup_steps=2"])
    assert _warnings(capsys.readouterr().err) == []


# ---- the model's evaluation protocol --------------------------------------------------------------
def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def test_eval_takes_the_models_protocol_and_groups_unless_told_otherwise(tmp_path) -> None:
    run = _train(tmp_path, "train.steps=2", "name=grouped", "model.latent_dim=4", model="contract_grouped")
    assert main(["eval", str(run), "--metrics", "mig", "--preset", "fast"]) == 0
    config = _results(run)["config"]
    assert config["protocol"] == "disdiff" and config["groups"] == [[0, 1], [2, 3]]
    assert len(_results(run)["metrics"]["mig"]["mutual_info"]) == 2  # one code per group
    assert main(["eval", str(run), "--metrics", "mig", "--preset", "fast", "--protocol", "dlib"]) == 0
    assert _results(run)["config"]["protocol"] == "dlib"
    # the run's eval section comes before the model's declaration
    chosen = _train(tmp_path, "train.steps=2", "name=chosen", "eval.protocol=fdae",
                    "eval.num_groups=4", "model.latent_dim=4", model="contract_grouped")
    assert main(["eval", str(chosen), "--metrics", "mig", "--preset", "fast"]) == 0
    config = _results(chosen)["config"]
    assert config["protocol"] == "fdae" and config["groups"] == [[0], [1], [2], [3]]
