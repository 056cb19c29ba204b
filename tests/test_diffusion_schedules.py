"""Noise schedules and EDM preconditioning: every published constant (float64), the process
identities, reproducible draws from an explicit generator, and the one-line config errors."""

from __future__ import annotations

import math

import pytest
import torch

from disentkit.diffusion import EDM, DiscreteSchedule
from disentkit.errors import UserError

LINEAR = DiscreteSchedule.linear()


# ------------------------------------------------------------------------------- constants
def test_linear_schedule_constants():
    # Ho et al. 2020 betas 1e-4..0.02, T = 1000 (PDAE/DiTi): abar_0 = 1 - 1e-4, abar_999 = 4.036e-5
    assert LINEAR.alpha_bars.dtype == torch.float64
    assert LINEAR.num_steps == 1000
    assert LINEAR.alpha_bar(0).item() == pytest.approx(0.9999, abs=1e-15)
    assert LINEAR.alpha_bar(999).item() == pytest.approx(4.036e-5, rel=2e-4)
    assert LINEAR.sigma(999).item() == pytest.approx(math.sqrt(1 - 4.0358e-5), rel=1e-6)


def test_ldm_scaled_linear_constant():
    # DisDiff's LDM: betas = linspace(sqrt(0.0015), sqrt(0.0155))^2 -> abar_999 = 6.687e-4
    ldm = DiscreteSchedule.named("scaled_linear")
    assert ldm.alpha_bar(999).item() == pytest.approx(6.687e-4, rel=2e-4)
    assert ldm.betas[0].item() == pytest.approx(0.0015, rel=1e-12)
    assert ldm.betas[-1].item() == pytest.approx(0.0155, rel=1e-12)


def test_pdae_shift_coefficient_and_weight_constants():
    # c_t = -sqrt(alpha_t)(1 - abar_{t-1})/sqrt(1 - abar_t); lambda_t = SNR^0.1/(1 + SNR)
    assert LINEAR.pdae_shift_coef(0).item() == 0.0
    assert LINEAR.pdae_shift_coef(1).item() == pytest.approx(-0.00674, rel=1e-3)
    assert LINEAR.pdae_shift_coef(500).item() == pytest.approx(-0.95465, rel=1e-5)
    assert LINEAR.pdae_weight(0).item() == pytest.approx(2.512e-4, rel=1e-3)
    assert LINEAR.pdae_weight(500).item() == pytest.approx(0.72018, rel=1e-5)
    assert LINEAR.pdae_weight(999).item() == pytest.approx(0.3636, rel=1e-3)
    t = torch.tensor([0, 1, 500])
    assert torch.equal(LINEAR.pdae_shift_coef(t)[2], LINEAR.pdae_shift_coef(500))


def test_cosine_schedule_follows_nichol_dhariwal():
    cos = DiscreteSchedule.cosine(1000)
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 500, 900):
        assert cos.alpha_bar(t).item() == pytest.approx(f((t + 1) / 1000) / f(0), rel=1e-10)
    assert cos.betas.max().item() == 0.999  # the cap of their Sec. 3.2 bites at the end
    assert bool((cos.alpha_bars[1:] < cos.alpha_bars[:-1]).all())


def test_edm_preconditioning_identities():
    edm = EDM()
    for sigma in (0.002, 0.5, 80.0):
        assert (edm.loss_weight(sigma) * edm.c_out(sigma) ** 2).item() == pytest.approx(1.0, rel=1e-12)
        # sd^2/(s^2+sd^2) + s^2/(s^2+sd^2) = 1 (Table 1 values; sd = 0.5)
        assert (edm.c_skip(sigma) + edm.c_out(sigma) ** 2 / 0.25).item() == pytest.approx(1.0, rel=1e-12)
        assert edm.c_in(sigma).item() == pytest.approx(1 / math.sqrt(sigma ** 2 + 0.25), rel=1e-12)
    assert edm.c_noise(0.5).item() == pytest.approx(-173.29, abs=5e-3)  # FDAE: 250 ln sigma
    assert EDM(c_noise_scale=0.25).c_noise(0.5).item() == pytest.approx(math.log(0.5) / 4, rel=1e-12)


def test_karras_sigmas():
    sigmas = EDM().karras_sigmas(40)
    assert sigmas.dtype == torch.float64 and sigmas.numel() == 41
    assert sigmas[0].item() == pytest.approx(80.0, rel=1e-12)
    assert sigmas[1].item() == pytest.approx(69.451, abs=5e-4)
    assert sigmas[39].item() == pytest.approx(0.002, rel=1e-9)
    assert sigmas[40].item() == 0.0
    assert bool((sigmas[1:] < sigmas[:-1]).all())


# ----------------------------------------------------------------------- process identities
def test_q_sample_and_predictions_invert_each_other_per_sample():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 250, 998, 999])
    x_t = LINEAR.q_sample(x0, t, noise)
    abar = LINEAR.alpha_bars[t].view(5, 1, 1, 1)
    torch.testing.assert_close(x_t, abar.sqrt() * x0 + (1 - abar).sqrt() * noise, rtol=0, atol=1e-14)
    torch.testing.assert_close(LINEAR.predict_x0(x_t, t, noise), x0, rtol=0, atol=1e-9)
    torch.testing.assert_close(LINEAR.predict_eps(x_t, t, x0), noise, rtol=0, atol=1e-12)
    # float32 data stays float32 (the float64 table is cast to the data)
    assert LINEAR.q_sample(x0.float(), t, noise.float()).dtype == torch.float32


def test_posterior_matches_ho_eq_11_and_ends_on_x0():
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(3, 2, dtype=torch.float64, generator=g)
    eps = torch.randn(3, 2, dtype=torch.float64, generator=g)
    t = torch.tensor([1, 400, 999])
    mean = LINEAR.posterior_mean(LINEAR.predict_x0(x_t, t, eps), x_t, t)
    alpha, abar = LINEAR.alphas[t].view(3, 1), LINEAR.alpha_bars[t].view(3, 1)
    eq11 = (x_t - (1 - alpha) / (1 - abar).sqrt() * eps) / alpha.sqrt()
    torch.testing.assert_close(mean, eq11, rtol=0, atol=1e-12)
    # at t = 0 the posterior is the point x_0 itself
    x0 = torch.randn(3, 2, dtype=torch.float64, generator=g)
    zero = torch.zeros(3, dtype=torch.long)
    torch.testing.assert_close(LINEAR.posterior_mean(x0, x_t, zero), x0, rtol=0, atol=1e-12)
    assert LINEAR.posterior_variance(0).item() == 0.0
    assert LINEAR.posterior_variance(500).item() < LINEAR.betas[500].item()


# ------------------------------------------------------------------------------- draws
def test_sample_t_is_uniform_and_reproducible():
    t = LINEAR.sample_t(200_000, torch.Generator().manual_seed(3))
    again = LINEAR.sample_t(200_000, torch.Generator().manual_seed(3))
    assert torch.equal(t, again) and t.dtype == torch.long
    assert t.min().item() == 0 and t.max().item() == 999
    counts = torch.bincount(t, minlength=1000).double()
    # 200 expected per step; a 10-sigma band cannot flake with a fixed seed yet catches a skewed draw
    assert counts.min().item() > 200 - 10 * math.sqrt(200) and counts.max().item() < 200 + 10 * math.sqrt(200)
    assert not torch.equal(t, LINEAR.sample_t(200_000, torch.Generator().manual_seed(4)))


def test_lognormal_sigmas_use_the_generator():
    edm = EDM()
    sigma = edm.sample_sigma(100_000, torch.Generator().manual_seed(5), dtype=torch.float64)
    z = torch.randn(100_000, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(sigma, torch.exp(-1.2 + 1.2 * z), rtol=1e-12, atol=0)
    log = sigma.log()
    se = 1.2 / math.sqrt(100_000)
    assert abs(log.mean().item() + 1.2) < 6 * se
    assert abs(log.std().item() - 1.2) < 6 * se


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("build, words", [
    (lambda: DiscreteSchedule.named("quadratic"), "unknown noise schedule"),
    (lambda: DiscreteSchedule(torch.tensor([0.1, 1.5])), "(0, 1)"),
    (lambda: DiscreteSchedule.linear(1), ">= 2"),
    (lambda: EDM(sigma_min=1.0, sigma_max=0.5), "sigma_min < sigma_max"),
    (lambda: EDM().karras_sigmas(1), ">= 2"),
])
def test_bad_settings_are_one_line_user_errors(build, words):
    with pytest.raises(UserError) as info:
        build()
    message = str(info.value)
    assert words in message and "\n" not in message and len(message) < 200
