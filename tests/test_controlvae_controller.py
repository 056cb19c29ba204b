"""ControlVAE's PI controller against the reference loop (shj1987/ControlVAE-ICML2020
``Disentangling/P_PID.py`` driven by ``solver_light.py``), hand-computed gain regimes, and the
smoke preset's beta actually moving."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from disentkit.cli import main
from disentkit.config import from_dict
from disentkit.models.controlvae import ControlVAEConfig, pi_update, setpoint


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _reference_loop(kls: list[float], c0: float, step_val: float, period: int, c_max: float,
                    kp: float, ki: float) -> list[tuple[float, float, float]]:
    """The reference training loop in plain floats: iterations count from 1, C is raised at the
    start of every ``period``-th iteration, then P + I + 1 with I held while the previous
    unclamped output is below 1 (which starts at 1.0). Returns (C, I, beta) per iteration."""
    c, integral, prev_w, out = c0, 0.0, 1.0, []
    for it, kl in enumerate(kls, start=1):
        if it % period == 0:
            c += step_val
        c = min(c, c_max)
        error = c - kl
        p = kp / (1.0 + math.exp(error)) + 1.0
        new_integral = integral + (-ki) * error  # the reference writes Ki = -0.001 and adds Ki*e
        if prev_w < 1:
            new_integral = integral
        w = p + new_integral
        prev_w, integral = w, new_integral
        out.append((c, integral, max(w, 1.0)))
    return out


def _ours(kls: list[float], cfg: ControlVAEConfig) -> list[tuple[float, float, float]]:
    integral = torch.zeros((), dtype=torch.float64)
    prev = torch.tensor(cfg.beta_min, dtype=torch.float64)
    out = []
    for step, kl in enumerate(kls):  # the engine's 0-based step
        target = setpoint(step, cfg)
        res = pi_update(torch.tensor(kl, dtype=torch.float64), target, integral, prev, cfg.kp,
                        cfg.ki, cfg.beta_min, cfg.beta_max, cfg.anti_windup)
        integral, prev = res["integral"], res["output"]
        out.append((target, integral.item(), res["beta"].item()))
    return out


def test_staircase_controller_matches_the_reference_loop_step_by_step() -> None:
    # KL below, above and crossing the set-point; the staircase saturates at C_max.
    kls = [0.0, 0.1, 0.3, 2.5, 4.0, 3.0, 0.2, 0.0, 0.0, 1.0, 6.0, 6.0, 0.5, 1.5]
    cfg = from_dict(ControlVAEConfig, {"kl_target": 1.5, "setpoint_start": 0.5, "step_size": 0.25,
                                       "step_period": 3, "kp": 0.5, "ki": 0.05})
    ref = _reference_loop(kls, 0.5, 0.25, 3, 1.5, 0.5, 0.05)
    ours = _ours(kls, cfg)
    assert [o[0] for o in ours] == pytest.approx([r[0] for r in ref])  # C raised on the same step
    assert [o[1] for o in ours] == pytest.approx([r[1] for r in ref])
    assert [o[2] for o in ours] == pytest.approx([r[2] for r in ref])
    assert len({round(r[2], 9) for r in ref}) > 5  # the sequence exercises the controller


def test_reference_gains_hold_the_integral_then_recover() -> None:
    # Kp = 0.01, Ki = 0.001 (the reference run scripts), C = 0.5, KL = 0 for 8 steps, then 5.
    cfg = from_dict(ControlVAEConfig, {"kl_target": 0.5, "setpoint_schedule": "constant"})
    out = _ours([0.0] * 8 + [5.0, 5.0], cfg)
    p_low, p_high = 0.01 * _sig(-0.5), 0.01 * _sig(4.5)
    # I falls by Ki * e = 0.0005 a step while the output P + I + 1 stays >= 1 ...
    assert [o[1] for o in out[:8]] == pytest.approx([-0.0005 * k for k in range(1, 9)])
    assert out[6][2] == pytest.approx(1 + p_low - 0.0035)
    assert out[7][2] == 1.0  # step 8: output 1 + P - 0.004 < 1 -> clamped
    # ... step 9 holds I (previous output < 1), but P alone lifts the output back above 1 ...
    assert out[8][1] == pytest.approx(-0.004) and out[8][2] == pytest.approx(1 + p_high - 0.004)
    # ... so step 10 integrates again: I = -0.004 + 0.001 * 4.5.
    assert out[9][1] == pytest.approx(0.0005) and out[9][2] == pytest.approx(1 + p_high + 0.0005)


def test_an_integral_step_larger_than_kp_freezes_the_reference_rule() -> None:
    # The old smoke gains (Kp 0.01, Ki 0.05): one step at e = 0.5 takes I to -0.025 < -Kp, and only
    # P in (0, Kp) can lift a held output, so beta stays at beta_min even when KL >> C.
    cfg = from_dict(ControlVAEConfig, {"kl_target": 0.5, "setpoint_schedule": "constant", "ki": 0.05})
    out = _ours([0.0, 5.0, 5.0, 5.0], cfg)
    assert [o[1] for o in out] == pytest.approx([-0.025] * 4)
    assert [o[2] for o in out] == [1.0] * 4


def test_smoke_preset_beta_moves_and_reaches_both_bounds(tmp_path: Path) -> None:
    assert main(["train", "preset=controlvae/smoke", f"out_dir={tmp_path}", "name=run",
                 "log.every=1"]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    betas = [r["beta"] for r in records]
    assert len(records) == 30 and all(b >= 1.0 for b in betas)
    assert len({round(b, 6) for b in betas}) >= 5, betas
    assert max(betas) == pytest.approx(1.5)  # the upper clamp (beta_max) is reached
    held = [i for i, r in enumerate(records) if r["windup"] == 1.0 and r["beta"] == 1.0]
    assert held, "anti-windup never held the integral at the lower bound"
    # after a hold at beta_min the controller unwinds and beta leaves 1.0 again
    assert any(b > 1.0 for b in betas[held[0]:])
