"""EDM: the variance-exploding noise process and preconditioning of Karras et al. 2022 ("Elucidating
the Design Space of Diffusion-Based Generative Models", Table 1), as FDAE uses it
(``wuancong/FDAE edm/karras_diffusion.py``, ``edm/resample.py``).

    x_sigma = x_0 + sigma n,
    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)),
    c_skip = sd^2 / (sigma^2 + sd^2),  c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2),
    loss weight lambda(sigma) = 1/sigma^2 + 1/sd^2  (so lambda c_out^2 = 1),
    training sigmas: ln sigma ~ N(P_mean, P_std^2).

Karras et al. feed ``c_noise = ln(sigma)/4`` to the network; FDAE (via openai/consistency_models)
feeds ``1000 * ln(sigma)/4 = 250 ln(sigma)``, the default here (``c_noise_scale``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from disentkit.errors import ConfigError

#: F(c_in x, c_noise) -> raw network output (same shape as x)
Network = Callable[[Tensor, Tensor], Tensor]
#: D(x, sigma) -> denoised estimate of x_0; sigma has shape (B,)
Denoiser = Callable[[Tensor, Tensor], Tensor]


def _as_tensor(sigma: Tensor | float) -> Tensor:
    """Noise levels given as numbers become float64 tensors (constants are checked in float64)."""
    return sigma if isinstance(sigma, Tensor) else torch.tensor(sigma, dtype=torch.float64)


def _per_sample(coef: Tensor, like: Tensor) -> Tensor:
    coef = torch.as_tensor(coef).to(device=like.device, dtype=like.dtype)
    return coef.reshape(coef.shape + (1,) * (like.dim() - coef.dim()))


@dataclass(frozen=True)
class EDM:
    """EDM hyper-parameters (defaults: Karras et al. 2022 Table 1 and FDAE's ``train.sh``)."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    rho: float = 7.0
    p_mean: float = -1.2
    p_std: float = 1.2
    #: c_noise = c_noise_scale * ln(sigma): 250 for FDAE, 0.25 for Karras et al.
    c_noise_scale: float = 250.0

    def __post_init__(self) -> None:
        if not 0 < self.sigma_min < self.sigma_max:
            raise ConfigError(f"EDM needs 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min} and "
                              f"sigma_max={self.sigma_max}")
        if self.sigma_data <= 0 or self.rho <= 0 or self.p_std <= 0:
            raise ConfigError(f"EDM sigma_data, rho and p_std must be positive, got {self.sigma_data}, "
                              f"{self.rho} and {self.p_std}")

    # -------------------------------------------------------------------- preconditioning
    def c_skip(self, sigma: Tensor | float) -> Tensor:
        """sd^2 / (sigma^2 + sd^2)."""
        sigma = _as_tensor(sigma)
        return self.sigma_data ** 2 / (sigma ** 2 + self.sigma_data ** 2)

    def c_out(self, sigma: Tensor | float) -> Tensor:
        """sigma sd / sqrt(sigma^2 + sd^2)."""
        sigma = _as_tensor(sigma)
        return sigma * self.sigma_data / torch.sqrt(sigma ** 2 + self.sigma_data ** 2)

    def c_in(self, sigma: Tensor | float) -> Tensor:
        """1 / sqrt(sigma^2 + sd^2)."""
        sigma = _as_tensor(sigma)
        return 1 / torch.sqrt(sigma ** 2 + self.sigma_data ** 2)

    def c_noise(self, sigma: Tensor | float) -> Tensor:
        """The network's noise-level input, ``c_noise_scale * ln(sigma)``."""
        sigma = _as_tensor(sigma)
        return self.c_noise_scale * torch.log(sigma)

    def loss_weight(self, sigma: Tensor | float) -> Tensor:
        """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 = 1/sigma^2 + 1/sd^2 (FDAE's "karras"
        weighting)."""
        sigma = _as_tensor(sigma)
        return 1 / sigma ** 2 + 1 / self.sigma_data ** 2

    def network_input(self, x: Tensor, sigma: Tensor) -> Tensor:
        """c_in(sigma) x, with ``sigma`` of shape (B,)."""
        return _per_sample(self.c_in(sigma), x) * x

    def denoised(self, network_output: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
        """D = c_skip x + c_out F, with F the network's output for ``network_input(x, sigma)``."""
        return _per_sample(self.c_skip(sigma), x) * x + _per_sample(self.c_out(sigma), x) * network_output

    def precondition(self, network: Network) -> Denoiser:
        """Wrap a raw network ``F(c_in x, c_noise)`` into the denoiser ``D(x, sigma)`` the samplers take."""

        def denoiser(x: Tensor, sigma: Tensor) -> Tensor:
            return self.denoised(network(self.network_input(x, sigma), self.c_noise(sigma)), x, sigma)

        return denoiser

    # ------------------------------------------------------------------------- noise levels
    def add_noise(self, x0: Tensor, sigma: Tensor, noise: Tensor) -> Tensor:
        """x_sigma = x_0 + sigma n, with ``sigma`` of shape (B,)."""
        return x0 + _per_sample(sigma, x0) * noise

    def sample_sigma(self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> Tensor:
        """Training noise levels ``sigma = exp(P_mean + P_std z)``, z ~ N(0, 1) (Karras et al. Table 1,
        "log-normal"; FDAE ``edm/resample.py`` ``LogNormalSampler``), drawn on the generator's device."""
        z = torch.randn(n, generator=generator, dtype=dtype, device=generator.device)
        sigma = torch.exp(self.p_mean + self.p_std * z)
        return sigma if device is None else sigma.to(device)

    def karras_sigmas(self, steps: int, dtype: torch.dtype = torch.float64) -> Tensor:
        """The ``steps`` sampling noise levels of Karras et al. eq. 5 followed by a final 0:
        ``sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho``, i = 0..N-1, sigma_N = 0."""
        if int(steps) != steps or steps < 2:
            raise ConfigError(f"EDM sampling needs an integer number of steps >= 2, got {steps!r}; "
                              "FDAE uses 40")
        ramp = torch.linspace(0, 1, int(steps), dtype=torch.float64)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        sigmas = (hi + ramp * (lo - hi)) ** self.rho
        return torch.cat([sigmas, sigmas.new_zeros(1)]).to(dtype)
