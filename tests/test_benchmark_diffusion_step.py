"""benchmarks/diffusion_step.py: its FLOP counts, its steps and its report, at a tiny size (no
timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from disentkit.nn.unet import UNet, UNetConfig

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "diffusion_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("diffusion_step_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _forward_backward_flops(config: UNetConfig, batch: int, side: int) -> int:
    model = UNet(config)
    x = torch.randn(batch, config.in_channels, side, side)
    counter = FlopCounterMode(display=False)
    with counter:
        F.mse_loss(model(x, torch.zeros(batch, dtype=torch.long)), x).backward()
    return counter.get_total_flops()


def test_step_flops_are_the_unets_forward_and_backward(bench) -> None:
    setup = bench.Setup(threads=1)
    b = bench.build_bench("tiny_disdiff", 2, setup)
    train, sample = bench.count_flops(b.train_step), bench.count_flops(b.sampler_step)
    # the whole training step (noising, loss, Adam) counts exactly the UNet's forward + backward
    assert train == _forward_backward_flops(UNetConfig.preset("tiny_disdiff"), 2, 8)
    # the backward pass is in (about twice the forward; the first conv needs no input gradient)
    assert 2.5 * sample < train <= 3 * sample


def test_training_step_converts_uint8_on_the_device_and_updates_the_unet(bench) -> None:
    b = bench.build_bench("tiny_disdiff", 2, bench.Setup(threads=1))
    assert b.images.dtype == torch.uint8 and b.images.shape == (2, 8, 8, 3)
    out_conv = b.model.out[-1].weight
    assert not out_conv.any()  # zero-initialised: only a real backward + Adam step moves it
    b.train_step()
    assert math.isfinite(float(b.last_loss))
    assert out_conv.abs().min() > 0
    level = b._level
    b.sampler_step()
    assert b._x.shape == (2, 3, 8, 8) and torch.isfinite(b._x).all()
    assert b._level == len(b.grid_times) - 2 and level == 0
    b.sampler_step()
    assert b._level == len(b.grid_times) - 3


def test_bench_config_reports_consistent_figures(bench) -> None:
    r = bench.bench_config("tiny_disdiff", 2, bench.Setup(threads=1), warmup=0, steps=1, matmul_size=128)
    assert r["threads"] == 1 and r["batch"] == 2 and r["input"] == [3, 8, 8]
    mm = r["matmul"]
    assert mm["gflops_best"] == pytest.approx(2 * 128 ** 3 / (mm["ms_min"] / 1e3) / 1e9)
    for key in ("train", "sample"):
        s, flops = r[key], r[f"{key}_gflop_per_step"]
        assert flops > 0 and s["ms_min"] > 0
        assert s["gflops_best"] == pytest.approx(flops / (s["ms_min"] / 1e3))
        assert s["ratio_best"] == pytest.approx(s["gflops_best"] / mm["gflops_best"])
        assert s["ratio_median_of_rounds"] == pytest.approx(s["ratio_best"])  # one round
    assert r["train_gflop_per_step"] > 2.5 * r["sample_gflop_per_step"]


def test_main_writes_json_and_markdown(bench, tmp_path, keep_threads) -> None:
    out = tmp_path / "diffusion_step"
    report = bench.main(["--configs", "tiny_disdiff", "--batch", "tiny_disdiff=1", "--warmup", "0",
                         "--steps", "1", "--matmul-size", "128", "--threads", "1",
                         "--setups", "default,channels_last", "--setups-config", "tiny_disdiff",
                         "--out", str(out)])
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["configs"]["tiny_disdiff"]["batch"] == 1
    assert saved["machine"]["threads"] == 1 and len(saved["machine"]["load_average_end"]) == 3
    assert set(saved["setups"]["setups"]) == {"default", "channels_last"}
    assert saved["setups"]["setups"]["channels_last"]["channels_last"] is True
    assert saved == json.loads(json.dumps(report))
    page = out.with_suffix(".md").read_text()
    assert "| tiny_disdiff | 8x8x3 latents of 32 px | 1 |" in page
    assert "| channels_last | True | 1 |" in page


def test_bad_batch_option_is_one_line(bench) -> None:
    with pytest.raises(SystemExit, match="--batch expects NAME=B"):
        bench.parse_batches("pdae_celeba64=0")
    with pytest.raises(SystemExit, match="expected some of"):
        bench.main(["--configs", "nope"])
