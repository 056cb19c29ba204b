"""benchmarks/fdae_step.py at the smoke size: its bare-UNet objective is FDAE's reconstruction term
without the condition map, its FLOP counts see CMFNet's extra work, and one timed round reports
both steps (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fdae_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("fdae_step_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_bare_objective_is_fdaes_reconstruction_term_without_the_condition_map(bench) -> None:
    model = bench.build("smoke", torch.device("cpu")).eval()
    x0 = torch.rand(2, 3, 32, 32) * 2 - 1
    # with the condition map switched off, FDAE's rec term draws the same sigmas and noise
    model.cmfnet.combine = lambda masks, content: None
    torch.manual_seed(3)
    rec = model.training_losses(x0, 0)["rec"]
    torch.manual_seed(3)
    assert bench.bare_losses(model, x0).item() == pytest.approx(rec.item(), rel=1e-6)


def test_flops_and_one_round(bench, tmp_path) -> None:
    flops = bench.meta_flops("smoke", 2)
    assert flops["gflop"]["fdae"] > flops["gflop"]["unet"] > 0
    result = bench.bench("smoke", torch.device("cpu"), None, rounds=1, batch=2)
    assert set(result["step_s_median"]) == {"fdae", "unet"}
    assert result["flop_ratio"] > 1 and result["time_ratio_median"] > 0
    text = bench.markdown({"argv": "", "environment": {"device": "cpu", "threads": 1, "dtype": "float32",
                                                      "torch": torch.__version__, "load_before": [0, 0, 0]},
                           "timed": {"smoke": result}, "meta_flops": {"smoke": flops}})
    assert "| smoke | 32 | 2 |" in text
