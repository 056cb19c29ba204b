"""Samplers as free functions of a denoiser callable, a schedule and an explicit ``torch.Generator``.

Discrete (DDPM-family) denoisers are called ``denoiser(x_t, t)`` with ``t`` a long tensor of shape
(B,) holding the original time step, and return the noise prediction ``eps``, or a pair
``(eps, G)`` where ``G`` is a PDAE-style predicted gradient (mean shift) that the sampler folds in:

* DDIM / DDIM inversion: ``eps~ = eps - sqrt(1 - abar_t) G`` (``ckczzj/PDAE diffusion/ddim.py``
  ``shift_ddim_sample``; DiTi's ``guided_ddim_step``; DisDiff's sampling);
* DDPM ancestral: ``eps~ = eps + c_t G`` with PDAE's training coefficient
  (``DiscreteSchedule.pdae_shift_coef``; PDAE ``representation_learning_ddpm_sample``).

EDM denoisers are called ``denoiser(x, sigma)`` with ``sigma`` of shape (B,) and return the
denoised estimate D(x; sigma) of x_0 (wrap a raw network with ``EDM.precondition``).

Every loop runs over sampler steps only; the batch is processed at once. Randomness comes only
from the ``generator`` argument; noise is drawn on the generator's device and moved to the data's,
so a CPU generator gives the same draws whatever device the model runs on.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from disentkit.diffusion.edm import EDM
from disentkit.diffusion.edm import Denoiser as EDMDenoiser
from disentkit.diffusion.schedules import DiscreteSchedule
from disentkit.diffusion.timesteps import DDIMGrid, ddim_grid
from disentkit.errors import ConfigError

#: denoiser(x_t, t) -> eps, or (eps, G) with G the predicted gradient of a PDAE-style shift decoder
EpsDenoiser = Callable[[Tensor, Tensor], Tensor | tuple[Tensor, Tensor]]


def _randn(like: Tensor, generator: torch.Generator) -> Tensor:
    noise = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=generator.device)
    return noise.to(like.device)


def _times(t: int, like: Tensor) -> Tensor:
    return torch.full((like.shape[0],), int(t), dtype=torch.long, device=like.device)


def _split(output: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor | None]:
    """A denoiser's output as (eps, G or None)."""
    if isinstance(output, tuple | list):
        eps, shift = output
        return eps, shift
    return output, None


# --------------------------------------------------------------------------------------- DDIM
def ddim_step(x: Tensor, eps: Tensor, abar: float, abar_next: float, *, clip_x0: bool = False,
              eta: float = 0.0, noise: Tensor | None = None) -> Tensor:
    """One DDIM move from the level ``abar`` to ``abar_next`` (Song et al. 2021, eq. 12):

        x0^ = (x - sqrt(1 - abar) eps) / sqrt(abar)
              [clip_x0: clamped to [-1, 1], then eps = (x - sqrt(abar) x0^) / sqrt(1 - abar)]
        sigma = eta sqrt((1 - abar_next) / (1 - abar)) sqrt(1 - abar / abar_next)   (eq. 16)
        x'  = sqrt(abar_next) x0^ + sqrt(1 - abar_next - sigma^2) eps + sigma noise.

    With ``abar_next > abar`` this is a sampling step, with ``abar_next < abar`` (and eta = 0) an
    inversion step. The clip-and-recompute rule is PDAE's and DiTi's (``ckczzj/PDAE diffusion/ddim.py``).
    """
    x0 = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
        eps = (x - math.sqrt(abar) * x0) / math.sqrt(1 - abar)
    sigma = 0.0
    if eta > 0 and abar_next > abar:
        sigma = eta * math.sqrt((1 - abar_next) / (1 - abar) * (1 - abar / abar_next))
    out = math.sqrt(abar_next) * x0 + math.sqrt(max(1 - abar_next - sigma ** 2, 0.0)) * eps
    if sigma > 0:
        if noise is None:
            raise ValueError("a stochastic DDIM step (eta > 0) needs noise")
        out = out + sigma * noise
    return out


def ddim_sample(denoiser: EpsDenoiser, schedule: DiscreteSchedule, x_T: Tensor, steps: int, *,
                spacing: str = "pdae", eta: float = 0.0, clip_x0: bool = False, shift_stop_steps: int = 0,
                generator: torch.Generator | None = None, grid: DDIMGrid | None = None) -> Tensor:
    """DDIM sampling from the noise ``x_T`` (Song et al. 2021, eq. 12) on the ``spacing`` grid
    (``pdae``, ``diti`` or ``ldm``, see :mod:`disentkit.diffusion.timesteps`; or pass ``grid``).

    ``eta`` = 0 is the deterministic sampler, 1 the DDPM-like one (LDM/DisDiff sample with eta = 1
    and no clipping; PDAE and DiTi use eta = 0 and ``clip_x0=True``). A denoiser returning
    ``(eps, G)`` is shifted by ``-sqrt(1 - abar_t) G``, except in the last ``shift_stop_steps`` steps
    (PDAE's ``stop_percent``: pass ``int(stop_percent * steps)``). ``generator`` is required when eta > 0.
    """
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(f"DDIM eta must lie in [0, 1], got {eta!r}; 0 is deterministic, 1 DDPM-like")
    if eta > 0 and generator is None:
        raise ValueError("ddim_sample with eta > 0 draws noise and needs an explicit torch.Generator")
    grid = grid if grid is not None else ddim_grid(schedule, steps, spacing, "sample")
    x = x_T
    for level in range(len(grid), 0, -1):
        abar, abar_next = grid.alpha_bars[level].item(), grid.alpha_bars[level - 1].item()
        eps, shift = _split(denoiser(x, _times(grid.times[level].item(), x)))
        if shift is not None and level > shift_stop_steps:
            eps = eps - math.sqrt(1 - abar) * shift
        noise = _randn(x, generator) if eta > 0 else None
        x = ddim_step(x, eps, abar, abar_next, clip_x0=clip_x0, eta=eta, noise=noise)
    return x


def ddim_invert(denoiser: EpsDenoiser, schedule: DiscreteSchedule, x0: Tensor, steps: int, *,
                spacing: str = "pdae", clip_x0: bool = False, grid: DDIMGrid | None = None) -> Tensor:
    """Deterministic DDIM inversion (Song et al. 2021, Sec. 4.3 / 5.4): run the eta = 0 step towards
    more noise, from the data ``x0`` placed on the grid's cleanest level, returning the code x_T.

    PDAE (``diffusion/ddim.py`` ``shift_ddim_encode_loop``) starts at time 0 and ends on the last
    map entry, so ``ddim_sample`` with the same ``pdae`` grid retraces the path; DiTi's inversion ends
    on abar = 0 (``spacing="diti"``). A ``(eps, G)`` denoiser is shifted as in :func:`ddim_sample`.
    """
    grid = grid if grid is not None else ddim_grid(schedule, steps, spacing, "invert")
    x = x0
    for level in range(len(grid)):
        abar, abar_next = grid.alpha_bars[level].item(), grid.alpha_bars[level + 1].item()
        eps, shift = _split(denoiser(x, _times(grid.times[level].item(), x)))
        if shift is not None:
            eps = eps - math.sqrt(1 - abar) * shift
        x = ddim_step(x, eps, abar, abar_next, clip_x0=clip_x0)
    return x


# --------------------------------------------------------------------------------------- DDPM
def ddpm_sample(denoiser: EpsDenoiser, schedule: DiscreteSchedule, x_T: Tensor, generator: torch.Generator,
                *, variance: str = "posterior", clip_x0: bool = False) -> Tensor:
    """Ancestral sampling over all T steps (Ho et al. 2020, Algorithm 2):

        x_{t-1} = mu~(x_t, x0^) + sigma_t z,   x0^ = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),

    with the posterior mean mu~ of eq. 7 (equal to eq. 11 when x0^ is not clipped), z ~ N(0, I) for
    t > 0 and z = 0 at t = 0. ``variance`` is ``posterior`` (sigma_t^2 = beta~_t, PDAE's choice) or
    ``beta`` (sigma_t^2 = beta_t); ``clip_x0`` clamps x0^ to [-1, 1] first. A ``(eps, G)`` denoiser is
    shifted by PDAE's training coefficient, ``eps + c_t G``.
    """
    if variance not in ("posterior", "beta"):
        raise ConfigError(f"DDPM variance must be 'posterior' or 'beta', got {str(variance)[:60]!r}")
    x = x_T
    for t in range(schedule.num_steps - 1, -1, -1):
        eps, shift = _split(denoiser(x, _times(t, x)))
        if shift is not None:
            eps = eps + schedule.pdae_shift_coef(t).item() * shift
        abar, abar_prev = schedule.alpha_bars[t].item(), schedule.alpha_bars_prev[t].item()
        beta = schedule.betas[t].item()
        x0 = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
        if clip_x0:
            x0 = x0.clamp(-1, 1)
        mean = (beta * math.sqrt(abar_prev) / (1 - abar)) * x0 \
            + ((1 - abar_prev) * math.sqrt(1 - beta) / (1 - abar)) * x
        if t == 0:
            x = mean  # beta~_0 = 0: the last step adds no noise
            continue
        var = beta * (1 - abar_prev) / (1 - abar) if variance == "posterior" else beta
        x = mean + math.sqrt(var) * _randn(x, generator)
    return x


# ---------------------------------------------------------------------------------------- EDM
def _sigmas(edm: EDM, steps: int, sigmas: Tensor | None) -> list[float]:
    sigmas = edm.karras_sigmas(steps) if sigmas is None else sigmas
    return [float(s) for s in sigmas]


def _denoise(denoiser: EDMDenoiser, x: Tensor, sigma: float, clip: bool) -> Tensor:
    sigma_b = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
    d = denoiser(x, sigma_b)
    return d.clamp(-1, 1) if clip else d


def euler_sample(denoiser: EDMDenoiser, edm: EDM, noise: Tensor, steps: int = 40, *,
                 clip_denoised: bool = False, sigmas: Tensor | None = None) -> Tensor:
    """First-order Euler integration of the EDM probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma
    on the Karras sigmas (Karras et al. 2022, Algorithm 1 without the second-order correction),
    starting from ``sigma_0 * noise`` (``noise`` ~ N(0, I)); ``steps`` network evaluations.
    ``clip_denoised`` clamps D to [-1, 1] (FDAE). ``sigmas`` (decreasing, ending in 0) overrides the grid."""
    levels = _sigmas(edm, steps, sigmas)
    x = levels[0] * noise
    for sigma, sigma_next in zip(levels[:-1], levels[1:]):
        d = (x - _denoise(denoiser, x, sigma, clip_denoised)) / sigma
        x = x + (sigma_next - sigma) * d
    return x


def heun_sample(denoiser: EDMDenoiser, edm: EDM, noise: Tensor, steps: int = 40, *,
                clip_denoised: bool = False, sigmas: Tensor | None = None, s_churn: float = 0.0,
                s_tmin: float = 0.0, s_tmax: float = math.inf, s_noise: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
    """Karras et al. 2022 Heun sampler: Algorithm 1 (deterministic, ``s_churn = 0``, FDAE's setting) or
    Algorithm 2 (``s_churn > 0``: noise is first raised to sigma^ = sigma (1 + gamma),
    gamma = min(s_churn / steps, sqrt(2) - 1) for sigma in [s_tmin, s_tmax], which needs ``generator``).

    Starts from ``sigma_0 * noise``; every step but the last is a Heun (trapezoidal) step, the last one
    (to sigma = 0) an Euler step, so 40 steps cost 79 network evaluations (FDAE
    ``edm/karras_diffusion.py`` ``sample_heun``). ``clip_denoised`` clamps D to [-1, 1] (FDAE).
    """
    if s_churn < 0 or s_noise < 0:
        raise ConfigError(f"EDM s_churn and s_noise must be >= 0, got {s_churn} and {s_noise}")
    if s_churn > 0 and generator is None:
        raise ValueError("heun_sample with s_churn > 0 draws noise and needs an explicit torch.Generator")
    levels = _sigmas(edm, steps, sigmas)
    x = levels[0] * noise
    n = len(levels) - 1
    for sigma, sigma_next in zip(levels[:-1], levels[1:]):
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
        if gamma > 0:
            sigma_hat = sigma * (1 + gamma)
            x = x + math.sqrt(sigma_hat ** 2 - sigma ** 2) * s_noise * _randn(x, generator)
            sigma = sigma_hat
        d = (x - _denoise(denoiser, x, sigma, clip_denoised)) / sigma
        x_next = x + (sigma_next - sigma) * d
        if sigma_next > 0:
            d_next = (x_next - _denoise(denoiser, x_next, sigma_next, clip_denoised)) / sigma_next
            x_next = x + (sigma_next - sigma) * (d + d_next) / 2
        x = x_next
    return x
