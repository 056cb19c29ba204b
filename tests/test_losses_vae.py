"""Loss terms of the VAE family against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from disentkit.models.losses import (
    capacity,
    dip_covariance,
    dip_penalty,
    gaussian_log_density,
    kl_normal_per_dim,
    log_importance_weight_matrix,
    permute_dims,
    reconstruction_loss,
    tc_decomposition,
)

torch.set_default_dtype(torch.float32)


def test_kl_of_known_gaussians() -> None:
    mean = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [math.log(0.25), 0.0]])
    # 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2) per entry, averaged over the batch
    row1 = [0.5, 0.5 * (3.0 - math.log(4.0))]
    row2 = [0.5 * (0.25 - 1.0 - math.log(0.25)), 2.0]
    expected = torch.tensor([(row1[0] + row2[0]) / 2, (row1[1] + row2[1]) / 2])
    torch.testing.assert_close(kl_normal_per_dim(mean, logvar), expected)
    assert kl_normal_per_dim(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() == 0


def test_reconstruction_losses_sum_pixels_mean_batch() -> None:
    logits = torch.zeros(2, 1, 4, 4)
    target = torch.ones(2, 1, 4, 4)
    # BCE at logit 0 is log 2 per pixel; 16 pixels per image.
    assert reconstruction_loss(logits, target, "bernoulli").item() == pytest.approx(16 * math.log(2))
    # sigmoid(0) = 0.5 -> squared error 0.25 per pixel.
    assert reconstruction_loss(logits, target, "gaussian").item() == pytest.approx(16 * 0.25)
    with pytest.raises(ValueError, match="bernoulli"):
        reconstruction_loss(logits, target, "laplace")


def _posterior(batch: int, dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    logvar = torch.randn(batch, dim, generator=g, dtype=torch.float64) * 0.3 - 1.0
    z = mean + (0.5 * logvar).exp() * torch.randn(batch, dim, generator=g, dtype=torch.float64)
    return z, mean, logvar


@pytest.mark.parametrize("estimator,form", [("mws", "paper"), ("mss", "paper"),
                                            ("mss", "reference")])
def test_tc_decomposition_telescopes_exactly(estimator: str, form: str) -> None:
    z, mean, logvar = _posterior(16, 5)
    t = tc_decomposition(z, mean, logvar, dataset_size=1000, estimator=estimator, mss_form=form)
    total = t["mi"] + t["tc"] + t["dwkl"]
    direct = (gaussian_log_density(z, mean, logvar).sum(1)
              - gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)).mean()
    torch.testing.assert_close(total, direct, rtol=0, atol=1e-10)


def test_log_qz_minus_log_pz_matches_analytic_kl_on_average() -> None:
    z, mean, logvar = _posterior(1500, 3, seed=1)
    t = tc_decomposition(z, mean, logvar, dataset_size=10**6, estimator="mss")
    analytic = kl_normal_per_dim(mean, logvar).sum()
    assert (t["mi"] + t["tc"] + t["dwkl"]).item() == pytest.approx(analytic.item(), abs=0.1)


def test_mss_weight_matrix_paper_and_reference() -> None:
    n, b = 100, 5
    w = log_importance_weight_matrix(b, n).exp().double()
    torch.testing.assert_close(w.sum(1), torch.ones(b, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.diagonal(w), torch.full((b,), 1 / n, dtype=torch.float64))
    m = b - 1
    strat = (n - m) / (n * m)
    for i in range(b):
        assert w[i, (i + 1) % b].item() == pytest.approx(strat, rel=1e-6)
        others = [j for j in range(b) if j not in (i, (i + 1) % b)]
        torch.testing.assert_close(w[i, others], torch.full((b - 2,), 1 / m, dtype=torch.float64))
    ref = log_importance_weight_matrix(b, n, form="reference").exp().double()
    # The authors' strided fill walks down column 0 (1/N) and column 1 (stratified weight).
    torch.testing.assert_close(ref[:, 0][[0, 1, 2, 4]], torch.full((4,), 1 / n, dtype=torch.float64))
    assert ref[b - 2, 0].item() == pytest.approx(strat, rel=1e-6)
    torch.testing.assert_close(ref[:, 1], torch.full((b,), strat, dtype=torch.float64))
    assert ref.sum(1)[b - 2].item() > 1.1
    with pytest.raises(ValueError, match="at least 3"):
        log_importance_weight_matrix(2, n)
    with pytest.raises(ValueError, match="dataset_size"):
        log_importance_weight_matrix(8, 4)


def _correlated_codes(rho: float, batch: int = 2000, sigma: float = 0.3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    mean = torch.randn(batch, 2, generator=g, dtype=torch.float64) @ chol.T
    logvar = torch.full_like(mean, 2 * math.log(sigma))
    z = mean + sigma * torch.randn(batch, 2, generator=g, dtype=torch.float64)
    # q(z) = N(0, cov + sigma^2 I): TC = -1/2 log(1 - rho'^2)
    rho_q = rho / (1 + sigma**2)
    return z, mean, logvar, -0.5 * math.log(1 - rho_q**2)


@pytest.mark.parametrize("rho", [0.0, 0.9])
def test_tc_estimators_recover_known_total_correlation(rho: float) -> None:
    z, mean, logvar, true_tc = _correlated_codes(rho)
    mss = tc_decomposition(z, mean, logvar, dataset_size=10**7, estimator="mss")["tc"].item()
    assert mss == pytest.approx(true_tc, abs=0.05)
    # MWS weights every posterior 1/(N M): with N = 1 it is the plain minibatch mixture.
    mws = tc_decomposition(z, mean, logvar, dataset_size=1, estimator="mws")["tc"].item()
    assert mws == pytest.approx(true_tc, abs=0.05)
    # ... and for a dataset of N images its TC carries the (D - 1) log N offset of the constants.
    mws_n = tc_decomposition(z, mean, logvar, dataset_size=1000, estimator="mws")["tc"].item()
    assert mws_n == pytest.approx(mws + math.log(1000), abs=1e-9)


def test_dip_penalty_zero_at_identity_covariance() -> None:
    mean = math.sqrt(2.0) * torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    logvar = torch.full_like(mean, math.log(0.5))
    cov_i = dip_covariance(mean, logvar, "i")
    torch.testing.assert_close(cov_i, torch.eye(2))
    penalty, off, on = dip_penalty(cov_i, 10.0, 100.0)
    assert penalty.item() == pytest.approx(0.0, abs=1e-10)
    # DIP-II adds E[sigma^2] = 0.5 to the diagonal: lambda_d * 2 * 0.5^2.
    penalty, off, on = dip_penalty(dip_covariance(mean, logvar, "ii"), 10.0, 3.0)
    assert penalty.item() == pytest.approx(3.0 * 2 * 0.25)
    assert off.item() == pytest.approx(0.0, abs=1e-10)


def test_dip_penalty_hand_computed_off_diagonal() -> None:
    cov = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    penalty, off, on = dip_penalty(cov, 2.0, 3.0)
    assert off.item() == pytest.approx(0.5)          # 2 * 0.5^2
    assert on.item() == pytest.approx(1.0)           # (2 - 1)^2 + 0
    assert penalty.item() == pytest.approx(2.0 * 0.5 + 3.0 * 1.0)
    mean = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    # biased batch covariance: centred rows (-1, 1), (1, -1)
    torch.testing.assert_close(dip_covariance(mean, torch.zeros_like(mean), "i"),
                               torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))


def test_capacity_schedule_values() -> None:
    assert capacity(0, 25.0, 100_000) == 0.0
    assert capacity(50_000, 25.0, 100_000) == pytest.approx(12.5)
    assert capacity(100_000, 25.0, 100_000) == pytest.approx(25.0)
    assert capacity(300_000, 25.0, 100_000) == pytest.approx(25.0)
    assert capacity(7, 5.0, 0) == 5.0


def test_permute_dims_shuffles_each_column_independently() -> None:
    torch.manual_seed(0)
    z = torch.arange(200.0).view(50, 4) + torch.tensor([0.0, 1000.0, 2000.0, 3000.0])
    p = permute_dims(z)
    for d in range(4):
        assert torch.equal(p[:, d].sort().values, z[:, d].sort().values)
    # columns are permuted with different permutations: rows are broken apart
    assert not torch.equal(p[:, 0].argsort(), p[:, 1].argsort())
