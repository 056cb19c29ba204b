"""Discrete variance-preserving noise schedules (DDPM family).

A schedule of ``T`` steps is a sequence of betas; everything else follows from them (Ho et al.
2020, "Denoising Diffusion Probabilistic Models", eqs. 4, 6-7):

    alpha_t = 1 - beta_t,   abar_t = prod_{s<=t} alpha_s,
    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   eps ~ N(0, I),   t = 0 .. T-1.

Time steps are 0-based as in the reference code (``ckczzj/PDAE diffusion/gaussian_diffusion.py``),
so ``abar_0 = 1 - beta_0`` and ``abar_{-1} = 1`` is the clean data. All tables are kept in float64
on the CPU; look-ups return float64 tensors on the device of ``t`` and :meth:`broadcast` casts them to
the dtype of the tensor they multiply.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from disentkit.errors import ConfigError

SCHEDULE_NAMES = ("linear", "scaled_linear", "cosine")


def linear_betas(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Ho et al. 2020 (Sec. 4): betas linear from 1e-4 to 0.02 over T = 1000 steps (PDAE, DiTi)."""
    _check_steps(num_steps)
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def scaled_linear_betas(num_steps: int = 1000, beta_start: float = 0.0015,
                        beta_end: float = 0.0155) -> Tensor:
    """Latent diffusion's "linear" betas: ``linspace(sqrt(b0), sqrt(b1), T) ** 2`` (Rombach et al.
    2022; ``CompVis/latent-diffusion ldm/modules/diffusionmodules/util.py make_beta_schedule``, used
    by DisDiff's LDM configs). diffusers calls this schedule ``scaled_linear``."""
    _check_steps(num_steps)
    return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_steps, dtype=torch.float64) ** 2


def cosine_betas(num_steps: int = 1000, offset: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal 2021, eq. 17: ``abar(t) = f(t)/f(0)``, ``f(t) = cos^2((t/T + s)/(1 + s) pi/2)``,
    ``beta_t = min(1 - abar(t+1)/abar(t), max_beta)`` with s = 0.008 and the 0.999 cap of their Sec. 3.2."""
    _check_steps(num_steps)
    u = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((u + offset) / (1 + offset) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


def _check_steps(num_steps: int) -> None:
    if int(num_steps) != num_steps or num_steps < 2:
        raise ConfigError(f"a diffusion schedule needs an integer number of steps >= 2, got {num_steps!r}; "
                          "use e.g. 1000")


class DiscreteSchedule:
    """The ``T``-step variance-preserving process defined by ``betas`` (1-D, each in (0, 1))."""

    def __init__(self, betas: Tensor) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu().flatten()
        _check_steps(betas.numel())
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ConfigError("diffusion betas must all lie in (0, 1); found values from "
                              f"{betas.min().item():.4g} to {betas.max().item():.4g}")
        self.betas = betas
        self.alphas = 1 - betas
        self.alpha_bars = torch.cumprod(self.alphas, 0)
        # abar_{t-1}, with abar_{-1} = 1 (the clean data) in front
        self.alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bars[:-1]])

    # ---------------------------------------------------------------------------------- builders
    @classmethod
    def linear(cls, num_steps: int = 1000, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> DiscreteSchedule:
        """DDPM linear betas (see :func:`linear_betas`)."""
        return cls(linear_betas(num_steps, beta_start, beta_end))

    @classmethod
    def scaled_linear(cls, num_steps: int = 1000, beta_start: float = 0.0015,
                      beta_end: float = 0.0155) -> DiscreteSchedule:
        """LDM betas (see :func:`scaled_linear_betas`)."""
        return cls(scaled_linear_betas(num_steps, beta_start, beta_end))

    @classmethod
    def cosine(cls, num_steps: int = 1000, offset: float = 0.008,
               max_beta: float = 0.999) -> DiscreteSchedule:
        """Improved-DDPM cosine schedule (see :func:`cosine_betas`)."""
        return cls(cosine_betas(num_steps, offset, max_beta))

    @classmethod
    def named(cls, name: str, num_steps: int = 1000) -> DiscreteSchedule:
        """The schedule called ``name`` (one of :data:`SCHEDULE_NAMES`) with its papers' defaults."""
        builders = {"linear": cls.linear, "scaled_linear": cls.scaled_linear, "cosine": cls.cosine}
        if name not in builders:
            raise ConfigError(f"unknown noise schedule {str(name)[:60]!r}; expected one of "
                              f"{', '.join(SCHEDULE_NAMES)}")
        return builders[name](num_steps)

    # ---------------------------------------------------------------------------------- look-ups
    @property
    def num_steps(self) -> int:
        """T, the number of diffusion steps (valid time steps are 0 .. T-1)."""
        return self.betas.numel()

    def _at(self, table: Tensor, t: Tensor | int) -> Tensor:
        t = torch.as_tensor(t)
        return table.to(t.device)[t.long()]

    def alpha_bar(self, t: Tensor | int) -> Tensor:
        """abar_t (float64, shaped like ``t``)."""
        return self._at(self.alpha_bars, t)

    def sigma(self, t: Tensor | int) -> Tensor:
        """sqrt(1 - abar_t): the standard deviation of the noise in x_t."""
        return torch.sqrt(1 - self.alpha_bar(t))

    def snr(self, t: Tensor | int) -> Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t)."""
        abar = self.alpha_bar(t)
        return abar / (1 - abar)

    def sample_t(self, n: int, generator: torch.Generator,
                 device: torch.device | str | None = None) -> Tensor:
        """``n`` time steps drawn uniformly from {0, ..., T-1} (Ho et al. 2020, Algorithm 1), drawn on
        the generator's device and moved to ``device`` (default: the generator's)."""
        t = torch.randint(0, self.num_steps, (n,), generator=generator, device=generator.device)
        return t if device is None else t.to(device)

    @staticmethod
    def broadcast(coef: Tensor, like: Tensor) -> Tensor:
        """A per-sample coefficient (shape (B,) or scalar) reshaped and cast to multiply ``like``."""
        coef = coef.to(device=like.device, dtype=like.dtype)
        return coef.reshape(coef.shape + (1,) * (like.dim() - coef.dim()))

    # ---------------------------------------------------------------------------- the process
    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (Ho et al. 2020, eq. 4); ``t`` has shape (B,)."""
        abar = self.broadcast(self.alpha_bar(t), x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def predict_x0(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """The x_0 implied by a noise prediction: (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        abar = self.broadcast(self.alpha_bar(t), x_t)
        return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()

    def predict_eps(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """The noise implied by an x_0 prediction: (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t)."""
        abar = self.broadcast(self.alpha_bar(t), x_t)
        return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()

    def posterior_mean(self, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """Mean of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eq. 7):
        ``beta_t sqrt(abar_{t-1}) / (1 - abar_t) x_0 + (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t) x_t``."""
        abar, abar_prev = self.alpha_bar(t), self._at(self.alpha_bars_prev, t)
        beta = self._at(self.betas, t)
        coef_x0 = beta * abar_prev.sqrt() / (1 - abar)
        coef_xt = (1 - abar_prev) * (1 - beta).sqrt() / (1 - abar)
        return self.broadcast(coef_x0, x_t) * x0 + self.broadcast(coef_xt, x_t) * x_t

    def posterior_variance(self, t: Tensor | int) -> Tensor:
        """Variance of q(x_{t-1} | x_t, x_0): beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t) (eq. 7);
        zero at t = 0."""
        abar, abar_prev = self.alpha_bar(t), self._at(self.alpha_bars_prev, t)
        return self._at(self.betas, t) * (1 - abar_prev) / (1 - abar)

    # ------------------------------------------------------------------- PDAE-family constants
    def pdae_shift_coef(self, t: Tensor | int) -> Tensor:
        """PDAE's training coefficient of the predicted gradient G (Zhang et al., NeurIPS 2022;
        ``ckczzj/PDAE diffusion/gaussian_diffusion.py`` ``shift_coef``): the mean shift
        ``eps_hat = eps_theta + c_t G`` with ``c_t = -sqrt(alpha_t) (1 - abar_{t-1}) / sqrt(1 - abar_t)``
        (c_0 = 0). Sampling uses ``-sqrt(1 - abar_t)`` instead (see ``ddim_sample``)."""
        abar, abar_prev = self.alpha_bar(t), self._at(self.alpha_bars_prev, t)
        return -self._at(self.alphas, t).sqrt() * (1 - abar_prev) / (1 - abar).sqrt()

    def pdae_weight(self, t: Tensor | int, gamma: float = 0.1) -> Tensor:
        """PDAE's loss weight ``lambda_t = SNR_t^gamma / (1 + SNR_t)`` with gamma = 0.1 (PDAE,
        Zhang et al. 2022; ``ckczzj/PDAE diffusion/gaussian_diffusion.py`` ``weight``)."""
        snr = self.snr(t)
        return snr ** gamma / (1 + snr)

    def __repr__(self) -> str:
        return (f"DiscreteSchedule(T={self.num_steps}, beta {self.betas[0].item():.4g}..."
                f"{self.betas[-1].item():.4g}, abar_T-1={self.alpha_bars[-1].item():.4g})")
