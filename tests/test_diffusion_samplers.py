"""Samplers against denoisers whose answer is known in closed form.

* delta data (one point x0* per sample): the exact noise prediction is
  eps = (x_t - sqrt(abar_t) x0*) / sqrt(1 - abar_t), the exact EDM denoiser is D = x0*, and every
  exact sampler stays on the straight line through x0* and the starting noise;
* Gaussian data N(mu, s^2): E[eps | x_t] = sqrt(1 - abar)(x_t - sqrt(abar) mu) / (abar s^2 + 1 - abar),
  D(x; sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu), and the probability-flow map is affine.
"""

from __future__ import annotations

import math

import pytest
import torch

from disentkit.diffusion import (
    EDM,
    DiscreteSchedule,
    ddim_grid,
    ddim_invert,
    ddim_sample,
    ddpm_sample,
    euler_sample,
    heun_sample,
)
from disentkit.errors import UserError

LINEAR = DiscreteSchedule.linear()
MU, S = 0.3, 0.5


def _abar(schedule, t, like):
    return schedule.alpha_bar(t).view(-1, *[1] * (like.dim() - 1)).to(like.dtype)


def delta_eps(target, schedule=LINEAR, calls=None):
    """The exact eps-denoiser of data that is the single point ``target`` (per sample)."""

    def denoiser(x, t):
        if calls is not None:
            calls.append((x.clone(), t.clone()))
        a = _abar(schedule, t, x)
        return (x - a.sqrt() * target) / (1 - a).sqrt()

    return denoiser


def gauss_eps(x, t):
    a = LINEAR.alpha_bars[t[0]].item()  # every sample of a step shares its time step
    return math.sqrt(1 - a) * (x - math.sqrt(a) * MU) / (a * S * S + 1 - a)


def gauss_flow(x_T, abar_T, abar_0):
    """Exact probability-flow map of Gaussian data from level abar_T to level abar_0."""
    std = lambda a: math.sqrt(a * S * S + 1 - a)  # noqa: E731
    return math.sqrt(abar_0) * MU + std(abar_0) * (x_T - math.sqrt(abar_T) * MU) / std(abar_T)


def _batch(seed, shape=(4, 3, 2, 2)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), g


# ------------------------------------------------------------------------------------ grids
def test_pdae_grid_is_the_s_plus_1_map():
    grid = ddim_grid(LINEAR, 10, "pdae")
    assert grid.times.tolist() == [0, 99, 199, 299, 399, 499, 599, 699, 799, 899, 999]
    assert len(grid) == 10
    assert grid.alpha_bars[0].item() == pytest.approx(0.9999, abs=1e-15)  # sampling ends on abar_0
    # PDAE's "ddim1000" on T = 1000: int(linspace(0, 999, 1001)) repeats one step -> 999 steps
    assert len(ddim_grid(LINEAR, 1000, "pdae")) == 999
    assert ddim_grid(LINEAR, 1000, "pdae").times.tolist() == list(range(1000))
    # the reference truncates numpy's float linspace: 41 * 999 / 123 = 333 exactly, yet its map has 332
    times = ddim_grid(LINEAR, 123, "pdae").times.tolist()
    assert 332 in times and 665 in times and 333 not in times and 666 not in times


def test_diti_grid_endpoints():
    sample, invert = ddim_grid(LINEAR, 10, "diti", "sample"), ddim_grid(LINEAR, 10, "diti", "invert")
    assert sample.times.tolist() == [-1] + list(range(0, 1000, 100))
    assert sample.alpha_bars[0].item() == 1.0  # lands on the clean image
    assert invert.times.tolist() == list(range(0, 1000, 100)) + [-1]
    assert invert.alpha_bars[-1].item() == 0.0  # ends on pure noise
    assert len(ddim_grid(LINEAR, 300, "diti")) == 334  # range(0, 1000, 3)


def test_ldm_grid_is_leading_plus_one():
    grid = ddim_grid(LINEAR, 10, "ldm")
    assert grid.times.tolist() == [0] + list(range(1, 1000, 100))
    assert grid.alpha_bars[0].item() == LINEAR.alpha_bars[0].item()  # alphas_prev[0] = abar(t=0)
    assert len(grid) == 10


# ------------------------------------------------------------------------------------- DDIM
@pytest.mark.parametrize("spacing", ["pdae", "diti", "ldm"])
@pytest.mark.parametrize("clip", [False, True])
def test_ddim_follows_the_exact_line_on_delta_data(spacing, clip):
    target, _ = _batch(0)
    target = target.clamp(-1, 1)
    x_T, _ = _batch(1)
    calls = []
    out = ddim_sample(delta_eps(target, calls=calls), LINEAR, x_T, 10, spacing=spacing, clip_x0=clip)
    grid = ddim_grid(LINEAR, 10, spacing)
    a_T, a_0 = grid.alpha_bars[-1].item(), grid.alpha_bars[0].item()
    e = (x_T - math.sqrt(a_T) * target) / math.sqrt(1 - a_T)  # the noise direction never changes
    torch.testing.assert_close(out, math.sqrt(a_0) * target + math.sqrt(1 - a_0) * e, rtol=0, atol=1e-10)
    assert [int(t[0]) for _, t in calls] == grid.times.flip(0)[:-1].tolist()
    for x, t in calls:  # each evaluated state lies on the exact path
        a = LINEAR.alpha_bars[t[0]].item()
        torch.testing.assert_close(x, math.sqrt(a) * target + math.sqrt(1 - a) * e, rtol=0, atol=1e-10)
    if spacing == "diti":
        torch.testing.assert_close(out, target, rtol=0, atol=1e-12)


def test_ddim_clips_x0_and_recomputes_eps():
    target = torch.tensor([[2.0], [-3.0], [0.5]], dtype=torch.float64)
    x_T, _ = _batch(2, (3, 1))
    clipped = ddim_sample(delta_eps(target), LINEAR, x_T, 20, spacing="diti", clip_x0=True)
    torch.testing.assert_close(clipped, target.clamp(-1, 1), rtol=0, atol=1e-12)
    free = ddim_sample(delta_eps(target), LINEAR, x_T, 20, spacing="diti")
    torch.testing.assert_close(free, target, rtol=0, atol=1e-12)
    # with eps recomputed from the clamped x0^ the path is the exact one of the clamped point
    c = target.clamp(-1, 1)
    grid = ddim_grid(LINEAR, 20, "pdae")
    a_T, a_0 = grid.alpha_bars[-1].item(), grid.alpha_bars[0].item()
    e = (x_T - math.sqrt(a_T) * c) / math.sqrt(1 - a_T)
    out = ddim_sample(delta_eps(target), LINEAR, x_T, 20, spacing="pdae", clip_x0=True)
    torch.testing.assert_close(out, math.sqrt(a_0) * c + math.sqrt(1 - a_0) * e, rtol=0, atol=1e-10)


def test_ddim_on_gaussian_data_converges_to_the_probability_flow_map():
    x_T, _ = _batch(3, (256,))
    errors = {}
    for steps in (100, 999):
        grid = ddim_grid(LINEAR, steps, "pdae")
        exact = gauss_flow(x_T, grid.alpha_bars[-1].item(), grid.alpha_bars[0].item())
        errors[steps] = (ddim_sample(gauss_eps, LINEAR, x_T, steps) - exact).abs().max().item()
    assert errors[999] < 6e-3
    assert 5 < errors[100] / errors[999] < 20  # first order in the step size


def test_ddim_with_a_zero_shift_equals_plain_ddim():
    x_T, _ = _batch(4)
    shifted = lambda x, t: (gauss_eps(x, t), torch.zeros_like(x))  # noqa: E731
    for eta in (0.0, 1.0):
        plain = ddim_sample(gauss_eps, LINEAR, x_T, 10, eta=eta, generator=torch.Generator().manual_seed(9))
        zero = ddim_sample(shifted, LINEAR, x_T, 10, eta=eta, generator=torch.Generator().manual_seed(9))
        assert torch.equal(plain, zero)


def _shift_to(source, target):
    """A denoiser returning (eps for data `source`, G) where eps - sqrt(1 - abar) G is exact for
    data `target`: G = sqrt(abar) (target - source) / (1 - abar)."""
    base = delta_eps(source)

    def denoiser(x, t):
        a = _abar(LINEAR, t, x)
        return base(x, t), a.sqrt() * (target - source) / (1 - a)

    return denoiser


def test_ddim_folds_the_shift_in_with_minus_sqrt_one_minus_abar():
    source, _ = _batch(5)
    target = source.flip(0)
    x_T, _ = _batch(6)
    out = ddim_sample(_shift_to(source, target), LINEAR, x_T, 10, spacing="diti")
    torch.testing.assert_close(out, target, rtol=0, atol=1e-10)
    # PDAE's stop_percent: without the shift in every step the sampler follows eps alone
    unshifted = ddim_sample(_shift_to(source, target), LINEAR, x_T, 10, spacing="diti", shift_stop_steps=10)
    torch.testing.assert_close(unshifted, source, rtol=0, atol=1e-10)
    # dropping it in the last step only: on the target's path until then, so neither result
    whole = ddim_sample(_shift_to(source, target), LINEAR, x_T, 10)
    never = ddim_sample(_shift_to(source, target), LINEAR, x_T, 10, shift_stop_steps=10)
    partly = ddim_sample(_shift_to(source, target), LINEAR, x_T, 10, shift_stop_steps=1)
    assert not torch.allclose(partly, whole) and not torch.allclose(partly, never)


def test_ddim_eta_one_on_the_full_grid_is_ddpm_ancestral_sampling():
    # Song et al. 2021 Sec. 4.1: eta = 1 gives the DDPM posterior; same generator -> same draws
    x_T, _ = _batch(7, (64,))
    ddim = ddim_sample(gauss_eps, LINEAR, x_T, 1000, spacing="diti", eta=1.0,
                       generator=torch.Generator().manual_seed(11))
    ddpm = ddpm_sample(gauss_eps, LINEAR, x_T, torch.Generator().manual_seed(11))
    torch.testing.assert_close(ddim, ddpm, rtol=0, atol=1e-10)


# -------------------------------------------------------------------------------- inversion
@pytest.mark.parametrize("spacing", ["pdae", "ldm"])
def test_inversion_then_sampling_returns_the_input(spacing):
    target, _ = _batch(8)
    x0, _ = _batch(9)  # any input: the exact denoiser explains it as point + noise
    code = ddim_invert(delta_eps(target), LINEAR, x0, 25, spacing=spacing, clip_x0=True)
    grid = ddim_grid(LINEAR, 25, spacing)
    a_0, a_T = grid.alpha_bars[0].item(), grid.alpha_bars[-1].item()
    e = (x0 - math.sqrt(a_0) * target.clamp(-1, 1)) / math.sqrt(1 - a_0)
    torch.testing.assert_close(code, math.sqrt(a_T) * target.clamp(-1, 1) + math.sqrt(1 - a_T) * e,
                               rtol=0, atol=1e-10)
    back = ddim_sample(delta_eps(target), LINEAR, code, 25, spacing=spacing, clip_x0=True)
    torch.testing.assert_close(back, x0, rtol=0, atol=1e-10)


def test_inversion_with_a_shift_and_diti_endpoint():
    source, _ = _batch(10)
    target = 0.5 * source
    x0, _ = _batch(11)
    code = ddim_invert(_shift_to(source, target), LINEAR, x0, 10)
    back = ddim_sample(_shift_to(source, target), LINEAR, code, 10)
    torch.testing.assert_close(back, x0, rtol=0, atol=1e-10)
    # DiTi inverts to abar = 0: the code is the pure noise direction of x0 about the point
    noise = ddim_invert(delta_eps(target), LINEAR, x0, 10, spacing="diti")
    a_0 = LINEAR.alpha_bars[0].item()
    torch.testing.assert_close(noise, (x0 - math.sqrt(a_0) * target) / math.sqrt(1 - a_0), rtol=0, atol=1e-10)


def test_inversion_on_gaussian_data_is_nearly_invertible():
    x0 = MU + S * _batch(12, (128,))[0]
    back = ddim_sample(gauss_eps, LINEAR, ddim_invert(gauss_eps, LINEAR, x0, 999), 999)
    assert (back - x0).abs().max().item() < 2e-2  # discretisation error only (first order)


# ------------------------------------------------------------------------------------- DDPM
def test_ddpm_lands_on_delta_data_and_is_reproducible():
    target, _ = _batch(13)
    x_T, _ = _batch(14)
    out = ddpm_sample(delta_eps(target), LINEAR, x_T, torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, target, rtol=0, atol=1e-9)
    a = ddpm_sample(gauss_eps, LINEAR, x_T, torch.Generator().manual_seed(2))
    b = ddpm_sample(gauss_eps, LINEAR, x_T, torch.Generator().manual_seed(2))
    c = ddpm_sample(gauss_eps, LINEAR, x_T, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def _ddpm_output_law(variance):
    """Mean and variance of exact-denoiser DDPM samples started from N(0, 1), by the affine
    recursion x_{t-1} = A_t x_t + b_t + sigma_t z (the sampler is linear-Gaussian on Gaussian data)."""
    m, v = 0.0, 1.0
    for t in range(999, -1, -1):
        a, ap, beta = (LINEAR.alpha_bars[t].item(), LINEAR.alpha_bars_prev[t].item(), LINEAR.betas[t].item())
        k = math.sqrt(1 - a) / (a * S * S + 1 - a)
        c0, c1 = beta * math.sqrt(ap) / (1 - a), (1 - ap) * math.sqrt(1 - beta) / (1 - a)
        gain = c0 * (1 - math.sqrt(1 - a) * k) / math.sqrt(a) + c1
        var = 0.0 if t == 0 else (beta * (1 - ap) / (1 - a) if variance == "posterior" else beta)
        m, v = gain * m + c0 * math.sqrt(1 - a) * k * MU, gain * gain * v + var
    return m, v


@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_ddpm_on_gaussian_data_has_the_right_mean_and_variance(variance):
    n = 20_000
    g = torch.Generator().manual_seed(21)
    x_T = torch.randn(n, generator=g, dtype=torch.float64)
    out = ddpm_sample(gauss_eps, LINEAR, x_T, g, variance=variance)
    m, v = _ddpm_output_law(variance)
    assert abs(m - MU) < 1e-3 and abs(v - S * S) < 0.02 * S * S  # the sampler's law is the data's
    se_mean, se_var = math.sqrt(v / n), v * math.sqrt(2 / n)
    assert abs(out.mean().item() - m) < 5 * se_mean  # fixed generator: deterministic, 5 SE wide
    assert abs(out.var().item() - v) < 5 * se_var


def test_ddpm_shift_uses_pdae_training_coefficient():
    x_T, _ = _batch(15, (8,))
    shifted = lambda x, t: (gauss_eps(x, t), torch.ones_like(x))  # noqa: E731
    folded = lambda x, t: gauss_eps(x, t) + LINEAR.pdae_shift_coef(t[0]).item()  # noqa: E731
    a = ddpm_sample(shifted, LINEAR, x_T, torch.Generator().manual_seed(4))
    b = ddpm_sample(folded, LINEAR, x_T, torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


# -------------------------------------------------------------------------------------- EDM
def delta_denoiser(target, calls=None):
    def denoiser(x, sigma):
        if calls is not None:
            calls.append((x.clone(), sigma.clone()))
        return target.expand_as(x).clone()

    return denoiser


def gauss_denoiser(x, sigma):
    sigma = sigma.view(-1, *[1] * (x.dim() - 1))
    return MU + S * S / (S * S + sigma ** 2) * (x - MU)


@pytest.mark.parametrize("sampler, nfe", [(heun_sample, 79), (euler_sample, 40)])
def test_edm_samplers_are_exact_on_delta_data(sampler, nfe):
    edm = EDM()
    target, _ = _batch(16)
    noise, _ = _batch(17)
    calls = []
    out = sampler(delta_denoiser(target, calls), edm, noise, 40)
    torch.testing.assert_close(out, target, rtol=0, atol=1e-12)
    assert len(calls) == nfe  # Heun: 39 corrected steps + a final Euler step (FDAE)
    x_T = 80.0 * noise
    sigmas = edm.karras_sigmas(40)
    assert calls[0][1].tolist() == [80.0] * 4
    for x, sigma in calls:  # on the exact path x = x0* + (x_T - x0*) sigma / 80
        s = sigma[0].item()
        assert s in sigmas.tolist()
        torch.testing.assert_close(x, target + (x_T - target) * s / 80.0, rtol=0, atol=1e-10)


def test_heun_is_second_order_and_euler_first_on_gaussian_data():
    edm = EDM()
    noise, _ = _batch(18, (256,))
    exact = MU + (80.0 * noise - MU) * S / math.sqrt(S * S + 80.0 ** 2)
    err = {(f.__name__, n): (f(gauss_denoiser, edm, noise, n) - exact).abs().max().item()
           for f in (heun_sample, euler_sample) for n in (40, 80)}
    assert err["heun_sample", 40] < 0.03
    assert err["heun_sample", 40] / err["heun_sample", 80] > 3.0  # ~4: second order
    assert 1.5 < err["euler_sample", 40] / err["euler_sample", 80] < 2.5  # ~2: first order
    assert err["heun_sample", 40] < err["euler_sample", 40] / 5


def test_heun_churn_is_reproducible_and_stays_exact_on_delta_data():
    edm = EDM()
    target, _ = _batch(19)
    noise, _ = _batch(20)
    out = heun_sample(delta_denoiser(target), edm, noise, 10, s_churn=5.0,
                      generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, target, rtol=0, atol=1e-12)
    a = heun_sample(gauss_denoiser, edm, noise, 10, s_churn=5.0, generator=torch.Generator().manual_seed(1))
    b = heun_sample(gauss_denoiser, edm, noise, 10, s_churn=5.0, generator=torch.Generator().manual_seed(1))
    c = heun_sample(gauss_denoiser, edm, noise, 10, s_churn=5.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    with pytest.raises(ValueError, match="Generator"):
        heun_sample(gauss_denoiser, edm, noise, 10, s_churn=5.0)


def test_edm_clip_and_preconditioning():
    edm = EDM()
    target = torch.tensor([[2.0], [-0.5]], dtype=torch.float64)
    noise, _ = _batch(22, (2, 1))
    out = heun_sample(delta_denoiser(target), edm, noise, 5, clip_denoised=True)
    torch.testing.assert_close(out, target.clamp(-1, 1), rtol=0, atol=1e-12)
    # D = c_skip x + c_out F(c_in x, 250 ln sigma)
    seen = []

    def network(x_in, c_noise):
        seen.append((x_in, c_noise))
        return torch.ones_like(x_in)

    x = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    sigma = torch.tensor([0.5, 80.0], dtype=torch.float64)
    d = edm.precondition(network)(x, sigma)
    s2 = sigma.view(2, 1) ** 2
    torch.testing.assert_close(d, 0.25 / (s2 + 0.25) * x + sigma.view(2, 1) * 0.5 / (s2 + 0.25).sqrt())
    torch.testing.assert_close(seen[0][0], x / (s2 + 0.25).sqrt())
    torch.testing.assert_close(seen[0][1], 250 * sigma.log())


# ----------------------------------------------------------------------- dtype and errors
def test_samplers_keep_float32():
    x = torch.randn(2, 1, 4, 4)
    target = torch.zeros(2, 1, 4, 4)
    assert ddim_sample(delta_eps(target), LINEAR, x, 3).dtype == torch.float32
    assert ddpm_sample(gauss_eps, DiscreteSchedule.linear(50), x, torch.Generator()).dtype == torch.float32
    assert heun_sample(delta_denoiser(target), EDM(), x, 3).dtype == torch.float32


@pytest.mark.parametrize("call, words", [
    (lambda x: ddim_sample(gauss_eps, LINEAR, x, 10, eta=1.5), "eta must lie in [0, 1]"),
    (lambda x: ddim_sample(gauss_eps, LINEAR, x, 0), "from 1 to 1000"),
    (lambda x: ddim_sample(gauss_eps, LINEAR, x, 600, spacing="ldm"), "T // steps >= 2"),
    (lambda x: ddim_invert(gauss_eps, LINEAR, x, 10, spacing="karras"), "unknown DDIM spacing"),
    (lambda x: ddpm_sample(gauss_eps, LINEAR, x, torch.Generator(), variance="learned"), "'posterior' or"),
])
def test_bad_sampler_settings_are_one_line_user_errors(call, words):
    with pytest.raises(UserError) as info:
        call(torch.zeros(2))
    assert words in str(info.value) and "\n" not in str(info.value)


def test_stochastic_ddim_needs_a_generator():
    with pytest.raises(ValueError, match="Generator"):
        ddim_sample(gauss_eps, LINEAR, torch.zeros(2), 10, eta=0.5)
