"""ControlVAE (Shao et al. 2020, "ControlVAE: Controllable Variational Autoencoder", ICML;
shj1987/ControlVAE-ICML2020 ``Disentangling/P_PID.py``, ``solver_light.py``).

    loss = REC + beta(t) * KL,

where beta(t) is set by a non-linear PI controller that drives the (detached) batch KL towards
a set-point C(t):

    e(t) = C(t) - KL(t)
    P(t) = Kp / (1 + exp(e(t)))                    (in (0, Kp); large when KL > C)
    I(t) = I(t-1) - Ki * e(t)                      (accumulates while KL > C)
    beta(t) = clamp(P(t) + I(t) + beta_min, beta_min, beta_max)

Anti-windup (``anti_windup``):

* ``reference`` (the paper's Algorithm 1; CV's code for the lower bound): when the previous
  *unclamped* output left [beta_min, beta_max], I is held (``I(t) = I(t-1)``). While I is held
  only P, which lies in (0, Kp), moves the output, so the controller unwinds from the lower
  bound only if ``I > -Kp`` (from the upper one only if ``I < beta_max - beta_min``). One
  integration step moves I by ``Ki * |e|``; the gains must keep that well below Kp. CV's do
  (Ki * C = 0.0005 against Kp = 0.01 at the start); gains with ``Ki * |e| > Kp`` can freeze I
  for good on the first step that crosses the bound (e.g. Kp = 0.01, Ki = 0.05 with the
  initial KL ~0 against C = 0.5 gives I = -0.025 at step 0 and beta = beta_min ever after);
* ``conditional`` (textbook conditional integration): I is held only when the update would push
  the output further into saturation (previous output above beta_max and e < 0, or below
  beta_min and e > 0); otherwise it integrates, so the controller can always unwind.

The initial previous output is taken as beta_min, so the integral accumulates from step 0.

Set-point schedules (``setpoint_schedule``):

* ``staircase`` (CV): ``C(t) = min(C_max, C_0 + step_size * floor((t + 1) / step_period))``
  for the 0-based step t (CV counts iterations from 1 and raises C at iterations 5000, 10000,
  ... before the controller runs), with C_0 = 0.5, 0.15 per 5000 iterations up to 16 or 18;
* ``linear`` (CFASL's baseline): ``C(t) = C_0 + (C_max - C_0) * min(1, t / ramp_steps)``;
* ``constant``: ``C(t) = C_max``.

**Difference from CFASL's port.** GIST-IRR/CFASL ``models/controlvae.py`` tests anti-windup
against a variable that is never updated (always 0 < beta_min), so its integral never
accumulates and its beta stays at ~1 + P, i.e. a plain VAE. Here the integral builds up as the
controller intends. CFASL also keeps beta as a tensor with a gradient through P; here beta is a
constant of the step (detached), as in CV.

State (``integral``, ``prev_output``, ``beta``) lives in registered buffers, so it is saved in
checkpoints; it is only updated in training mode. Under DDP each process sees its own shard's
KL; PyTorch DDP's default buffer broadcast keeps the controller state of rank 0.

``encode`` returns the posterior mean. Logged: ``beta``, ``setpoint``, ``error`` (e), ``p_term``,
``integral`` and ``windup`` (1 when the step held I, else 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from disentkit.models.base import DataFacts
from disentkit.models.vae import GaussianVAE, VAEConfig
from disentkit.ranges import Count, NonNegative, NonNegInt
from disentkit.registry import MODELS


@dataclass
class ControlVAEConfig(VAEConfig):
    #: final KL set-point C_max (nats)
    kl_target: NonNegative = 16.0
    #: set-point at step 0
    setpoint_start: NonNegative = 0.5
    setpoint_schedule: Literal["staircase", "linear", "constant"] = "staircase"
    #: staircase: increase by step_size every step_period steps
    step_size: NonNegative = 0.15
    step_period: Count = 5000
    #: linear: steps to go from setpoint_start to kl_target
    ramp_steps: NonNegInt = 300000
    kp: NonNegative = 0.01
    ki: NonNegative = 0.001
    beta_min: NonNegative = 1.0
    #: upper clamp of beta (null: none, as in CV's disentangling code; CFASL uses 100)
    beta_max: NonNegative | None = None
    #: reference: hold I while the previous output is out of bounds (paper/CV); conditional:
    #: hold I only when integrating would push further into saturation
    anti_windup: Literal["reference", "conditional"] = "reference"


def setpoint(step: int, cfg: ControlVAEConfig) -> float:
    """C(t) for the configured schedule (see module doc)."""
    if cfg.setpoint_schedule == "constant":
        return float(cfg.kl_target)
    if cfg.setpoint_schedule == "staircase":
        if cfg.step_period <= 0:
            raise ValueError(f"step_period must be positive, got {cfg.step_period}")
        # CV counts iterations from 1 and raises C before the controller runs at iteration
        # k * period, i.e. at 0-based step k * period - 1.
        value = cfg.setpoint_start + cfg.step_size * ((max(step, 0) + 1) // cfg.step_period)
        return float(min(cfg.kl_target, value))
    if cfg.ramp_steps <= 0:
        return float(cfg.kl_target)
    frac = min(1.0, max(step, 0) / cfg.ramp_steps)
    return float(cfg.setpoint_start + (cfg.kl_target - cfg.setpoint_start) * frac)


def pi_update(kl: torch.Tensor, target: float, integral: torch.Tensor, prev_output: torch.Tensor,
              kp: float, ki: float, beta_min: float, beta_max: float | None,
              anti_windup: str = "reference") -> dict[str, torch.Tensor]:
    """One step of the PI controller (pure function of tensors; see module doc).

    Returns ``beta`` (clamped), ``output`` (unclamped P + I + beta_min), ``integral`` (new I),
    ``p_term``, ``error`` and ``windup`` (whether I was held).
    """
    upper = math.inf if beta_max is None else beta_max
    error = target - kl
    p_term = kp * torch.sigmoid(-error)  # Kp / (1 + exp(e)), overflow-free
    below, above = prev_output < beta_min, prev_output > upper
    if anti_windup == "reference":
        windup = below | above
    elif anti_windup == "conditional":
        windup = (below & (error > 0)) | (above & (error < 0))
    else:
        raise ValueError(f"anti_windup must be 'reference' or 'conditional', got {anti_windup!r}")
    new_integral = torch.where(windup, integral, integral - ki * error)
    output = p_term + new_integral + beta_min
    beta = output.clamp(min=beta_min, max=None if beta_max is None else beta_max)
    return {"beta": beta, "output": output, "integral": new_integral, "p_term": p_term,
            "error": error, "windup": windup}


@MODELS.register("controlvae")
class ControlVAE(GaussianVAE):
    """REC + beta_PI(t) * KL with a PI-controlled beta. ``encode``: posterior mean."""

    Config = ControlVAEConfig

    def __init__(self, config: ControlVAEConfig, data: DataFacts) -> None:
        super().__init__(config, data)
        self.register_buffer("integral", torch.zeros((), dtype=torch.float64))
        self.register_buffer("prev_output", torch.tensor(float(config.beta_min), dtype=torch.float64))
        self.register_buffer("beta", torch.tensor(float(config.beta_min), dtype=torch.float64))

    def regulariser(self, mean, logvar, z, kl_per_dim, step, extra):  # noqa: D102
        cfg = self.config
        kl = kl_per_dim.sum()
        target = setpoint(step, cfg)
        if self.training:
            out = pi_update(kl.detach().to(torch.float64), target, self.integral,
                            self.prev_output, cfg.kp, cfg.ki, cfg.beta_min, cfg.beta_max,
                            cfg.anti_windup)
            self.integral.copy_(out["integral"])
            self.prev_output.copy_(out["output"])
            self.beta.copy_(out["beta"])
            extra["error"] = out["error"].float()
            extra["p_term"] = out["p_term"].float()
            extra["windup"] = out["windup"].float()
        extra["beta"] = self.beta.float().clone()
        extra["integral"] = self.integral.float().clone()
        extra["setpoint"] = torch.tensor(target, device=kl.device)
        return self.beta.to(kl.dtype) * kl
