"""Diffusion building blocks kept apart from any network: discrete DDPM-family noise schedules
(:mod:`~disentkit.diffusion.schedules`), EDM preconditioning and noise levels
(:mod:`~disentkit.diffusion.edm`), DDIM time-step grids (:mod:`~disentkit.diffusion.timesteps`) and
samplers as free functions of a denoiser callable (:mod:`~disentkit.diffusion.samplers`).
See docs/diffusion.md."""

from disentkit.diffusion.edm import EDM
from disentkit.diffusion.samplers import (
    ddim_invert,
    ddim_sample,
    ddim_step,
    ddpm_sample,
    euler_sample,
    heun_sample,
)
from disentkit.diffusion.schedules import (
    SCHEDULE_NAMES,
    DiscreteSchedule,
    cosine_betas,
    linear_betas,
    scaled_linear_betas,
)
from disentkit.diffusion.timesteps import SPACINGS, DDIMGrid, ddim_grid

__all__ = [
    "EDM",
    "SCHEDULE_NAMES",
    "SPACINGS",
    "DDIMGrid",
    "DiscreteSchedule",
    "cosine_betas",
    "ddim_grid",
    "ddim_invert",
    "ddim_sample",
    "ddim_step",
    "ddpm_sample",
    "euler_sample",
    "heun_sample",
    "linear_betas",
    "scaled_linear_betas",
]
