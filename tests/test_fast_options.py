"""The fast-path options (issue 16) compute what the default path computes.

channels_last and the optimiser kernels (foreach, fused) give the default losses within float
tolerance; device-resident data gives bit-identical batches and weights; bf16-mixed really
autocasts the forward; train.compile hands training_losses to torch.compile with the configured
mode (compiling itself is not run here: it takes minutes on this CPU, and the GPU check times it).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import disentkit
import toy_plugin
from disentkit.config import ConfigError, load_config
from disentkit.training import engine
from disentkit.training.checkpoint import load_checkpoint

BASE = [
    "imports=[toy_plugin]", "data.name=toy_bars", "model.name=betavae", "model.latent_dim=4",
    "train.batch_size=4", "optim.lr=1e-3", "log.progress=false", "train.num_threads=1",
    "eval.at_end=false", "eval.report_at_end=false", "log.every=1", "train.steps=3",
]
TOY = [x for x in BASE if not x.startswith("model.")] + ["model.name=toy_ae"]


def _run(tmp_path: Path, name: str, *extra: str, base: list[str] = BASE) -> Path:
    return disentkit.train(load_config(None, [*base, f"out_dir={tmp_path}", f"name={name}", *extra]))


def _losses(run_dir: Path) -> list[dict[str, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("images_per_s", "lr")} for row in rows]


def _assert_close(a: list[dict[str, float]], b: list[dict[str, float]], rel: float) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3]
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key in ra:
            assert ra[key] == pytest.approx(rb[key], rel=rel, abs=1e-6), key


def test_channels_last_gives_the_default_losses(tmp_path: Path, monkeypatch) -> None:
    seen: list[bool] = []
    original = engine.Trainer._model_input

    def record(self, indices):
        x = original(self, indices)
        conv = next(p for p in self.raw_model.parameters() if p.ndim == 4)
        seen.append(x.is_contiguous(memory_format=torch.channels_last)
                    and conv.is_contiguous(memory_format=torch.channels_last))
        return x

    default = _losses(_run(tmp_path, "default"))
    monkeypatch.setattr(engine.Trainer, "_model_input", record)
    fast = _losses(_run(tmp_path, "nhwc", "train.channels_last=true"))
    assert seen == [True] * 3  # the option really changed the memory order
    _assert_close(fast, default, rel=1e-5)


@pytest.mark.parametrize("option", ["optim.foreach=true", "optim.foreach=false", "optim.fused=true",
                                    "optim.name=adamw optim.fused=true"])
def test_optimiser_kernels_give_the_default_losses(tmp_path: Path, option: str) -> None:
    extra = option.split()
    name = [x for x in extra if x.startswith("optim.name")]
    default = _losses(_run(tmp_path, "default", *name))
    fast = _losses(_run(tmp_path, "fast", *extra))
    _assert_close(fast, default, rel=1e-5)


def test_optimiser_options_reach_torch(tmp_path: Path, monkeypatch) -> None:
    made: list[dict] = []
    original = engine._make_optimiser

    def record(spec, config):
        optimiser = original(spec, config)
        made.append(dict(optimiser.defaults))
        return optimiser

    monkeypatch.setattr(engine, "_make_optimiser", record)
    _run(tmp_path, "fused", "optim.fused=true", "train.steps=1")
    _run(tmp_path, "foreach", "optim.foreach=false", "train.steps=1")
    assert made[0]["fused"] is True and made[1]["foreach"] is False


def test_fused_radam_and_fused_with_foreach_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="no fused RAdam"):
        load_config(None, [*BASE, "optim.name=radam", "optim.fused=true"])
    with pytest.raises(ConfigError, match="set one of them"):
        load_config(None, [*BASE, "optim.fused=true", "optim.foreach=true"])


def test_device_resident_data_gives_identical_batches_and_weights(tmp_path: Path) -> None:
    data = toy_plugin.ToyBars(toy_plugin.ToyBarsConfig())
    indices = torch.from_numpy(np.random.default_rng(0).integers(0, len(data), 32))
    host = data.uint8_batch(indices)
    data.to("cpu")
    assert torch.equal(data.uint8_batch(indices), host) and host.dtype == torch.uint8
    a = load_checkpoint(_run(tmp_path, "host") / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(_run(tmp_path, "resident", "train.data_on_device=true")
                        / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_data_with_fresh_randomness_cannot_be_device_resident() -> None:
    trainer = object.__new__(engine.Trainer)
    trainer.config = load_config(None, [*BASE, "train.data_on_device=true"])
    trainer.fabric = SimpleNamespace(device=torch.device("cpu"))
    trainer.data = SimpleNamespace(deterministic_observations=False, to=lambda device: None)
    with pytest.raises(ConfigError, match="draws fresh randomness.*train.data_on_device=false"):
        trainer._put_data_on_device()


def test_bf16_mixed_autocasts_the_forward(tmp_path: Path, monkeypatch) -> None:
    seen: list[bool] = []
    original = toy_plugin.ToyAE.training_losses

    def record(self, batch, step):
        seen.append(torch.is_autocast_enabled("cpu"))
        return original(self, batch, step)

    monkeypatch.setattr(toy_plugin.ToyAE, "training_losses", record)
    _run(tmp_path, "bf16", "train.precision=bf16-mixed", "train.steps=2", base=TOY)
    assert seen == [True, True]


def test_compile_hands_training_losses_to_torch_compile(tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []
    compiled: list[int] = []

    def fake_compile(fn, mode=None, **kwargs):
        calls.append(mode)

        def run(*args, **kw):
            compiled.append(1)
            return fn(*args, **kw)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    _run(tmp_path, "plain", base=TOY)
    assert calls == []
    _run(tmp_path, "compiled", "train.compile=true", "train.compile_mode=reduce-overhead", base=TOY)
    assert calls == ["reduce-overhead"] and len(compiled) == 3
