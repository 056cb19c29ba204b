"""Loss terms shared by the VAE family.

Every reconstruction term is summed over pixels and channels and averaged over the batch; the
decoder always returns logits and the likelihood is a separate switch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Negative log-likelihood per image, averaged over the batch.

    * ``bernoulli``: binary cross-entropy with logits (dlib uses it for every dataset);
    * ``gaussian``: sum of squared errors between ``sigmoid(logits)`` and the target, what the
      PyTorch ports (1Konny, CFASL, CLG) call "gaussian"/"mse"/"l2" (2x a unit-variance
      Gaussian NLL up to a constant).
    """
    batch = target.shape[0]
    if likelihood == "bernoulli":
        return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / batch
    if likelihood == "gaussian":
        return F.mse_loss(torch.sigmoid(logits), target, reduction="sum") / batch
    raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")


def kl_normal_per_dim(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per latent dimension, averaged over the batch: (D,)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean(dim=0)


def reparameterise(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mean + exp(logvar / 2) * eps, eps ~ N(0, I)."""
    return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mean, exp(logvar)) (broadcasting)."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mean).pow(2) * torch.exp(-logvar))


# ---------------------------------------------------------------------------------------------
# beta-TCVAE: minibatch estimators of the KL decomposition (Chen et al. 2018, §3 and App. C)
# ---------------------------------------------------------------------------------------------
def log_importance_weight_matrix(batch_size: int, dataset_size: int, form: str = "paper",
                                 dtype: torch.dtype = torch.float32,
                                 device: torch.device | str | None = None) -> torch.Tensor:
    """log W for minibatch stratified sampling (MSS; Chen et al. 2018, App. C.2): (B, B).

    Row ``i`` weights ``q(z_i | x_j)``. With ``M' = B - 1``: ``W_ii = 1/N`` (the sample's own
    posterior), one designated partner ``W_{i, i+1 mod B} = (N - M') / (N M')`` and every other
    entry ``1/M'``; each row sums to 1.

    ``form="reference"`` reproduces rtqichen/beta-tcvae's ``_log_importance_weight_matrix``,
    whose strided fill ``W.view(-1)[::M+1]`` walks down *column 0* instead of the diagonal
    (stride ``M + 1 = B``; rtqichen/beta-tcvae PR #1, YannDubs/disentangling-vae#58): column 0
    gets 1/N, column 1 the stratified weight and row ``B-2`` sums to more than 1.
    """
    if batch_size < 3:
        raise ValueError(f"MSS needs a batch of at least 3 samples (M' = B - 1 >= 2), got {batch_size}")
    if dataset_size < batch_size:
        raise ValueError(
            f"dataset_size ({dataset_size}) must be at least the batch size ({batch_size}); "
            "set model.dataset_size to len(dataset) (the engine fills it when it is 0)"
        )
    n, m = float(dataset_size), float(batch_size - 1)
    strat = (n - m) / (n * m)
    w = torch.full((batch_size, batch_size), 1.0 / m, dtype=torch.float64)
    if form == "paper":
        idx = torch.arange(batch_size)
        w[idx, idx] = 1.0 / n
        w[idx, (idx + 1) % batch_size] = strat
    elif form == "reference":
        flat = w.view(-1)
        flat[:: batch_size] = 1.0 / n
        flat[1:: batch_size] = strat
        w[batch_size - 2, 0] = strat
    else:
        raise ValueError(f"form must be 'paper' or 'reference', got {form!r}")
    return w.log().to(dtype=dtype, device=device)


def tc_decomposition(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
                     dataset_size: int, estimator: str = "mss",
                     mss_form: str = "paper") -> dict[str, torch.Tensor]:
    """Minibatch estimates of MI, TC and dimension-wise KL (Chen et al. 2018, eq. 2).

    With z_i ~ q(z|x_i) and the batch matrix ``L_ijd = log q(z_id | x_j)``:

    * ``log q(z_i|x_i)``, ``log p(z_i)``: exact Gaussian log-densities (sum over d);
    * MWS: ``log q(z_i) = logsumexp_j sum_d L_ijd - log(N B)``,
      ``log prod_d q(z_id) = sum_d (logsumexp_j L_ijd - log(N B))``;
    * MSS: the same with ``log W_ij`` (:func:`log_importance_weight_matrix`) added inside the
      logsumexp instead of subtracting ``log(N B)``.

    Returns per-sample tensors ``log_qz_x``, ``log_pz``, ``log_qz``, ``log_prod_qzi`` (B,) and
    the batch means ``mi = E[log q(z|x) - log q(z)]``, ``tc = E[log q(z) - log prod q(z_d)]``,
    ``dwkl = E[log prod q(z_d) - log p(z)]``; ``mi + tc + dwkl = E[log q(z|x) - log p(z)]``
    exactly, whatever the estimator.
    """
    batch = z.shape[0]
    log_qz_x = gaussian_log_density(z, mean, logvar).sum(1)
    zeros = torch.zeros_like(z)
    log_pz = gaussian_log_density(z, zeros, zeros).sum(1)
    # mat[i, j, d] = log q(z_id | x_j)
    mat = gaussian_log_density(z.unsqueeze(1), mean.unsqueeze(0), logvar.unsqueeze(0))
    if estimator == "mws":
        const = math.log(batch * dataset_size)
        log_qz = torch.logsumexp(mat.sum(2), dim=1) - const
        log_prod_qzi = (torch.logsumexp(mat, dim=1) - const).sum(1)
    elif estimator == "mss":
        log_w = log_importance_weight_matrix(batch, dataset_size, mss_form, z.dtype, z.device)
        log_qz = torch.logsumexp(log_w + mat.sum(2), dim=1)
        log_prod_qzi = torch.logsumexp(log_w.unsqueeze(2) + mat, dim=1).sum(1)
    else:
        raise ValueError(f"estimator must be 'mws' or 'mss', got {estimator!r}")
    return {
        "log_qz_x": log_qz_x, "log_pz": log_pz, "log_qz": log_qz, "log_prod_qzi": log_prod_qzi,
        "mi": (log_qz_x - log_qz).mean(),
        "tc": (log_qz - log_prod_qzi).mean(),
        "dwkl": (log_prod_qzi - log_pz).mean(),
    }


# ---------------------------------------------------------------------------------------------
# DIP-VAE (Kumar et al. 2018, eqs. 6-7)
# ---------------------------------------------------------------------------------------------
def dip_covariance(mean: torch.Tensor, logvar: torch.Tensor, variant: str) -> torch.Tensor:
    """Covariance the DIP penalty matches to the identity: (D, D).

    * ``i``: ``Cov_batch(mu(x)) = E[mu mu^T] - E[mu] E[mu]^T`` (biased, as disentanglement_lib);
    * ``ii``: ``Cov_batch(mu(x)) + diag(E_batch[sigma^2(x)])`` (the covariance of q(z)).
    """
    centred = mean - mean.mean(0, keepdim=True)
    cov = centred.T @ centred / mean.shape[0]
    if variant == "ii":
        cov = cov + torch.diag(logvar.exp().mean(0))
    elif variant != "i":
        raise ValueError(f"DIP variant must be 'i' or 'ii', got {variant!r}")
    return cov


def dip_penalty(cov: torch.Tensor, lambda_od: float, lambda_d: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(penalty, off-diagonal sum, diagonal sum):
    ``lambda_od * sum_{i != j} C_ij**2 + lambda_d * sum_i (C_ii - 1)**2``."""
    diag = torch.diagonal(cov)
    off = (cov.pow(2).sum() - diag.pow(2).sum())
    on = (diag - 1.0).pow(2).sum()
    return lambda_od * off + lambda_d * on, off, on


# ---------------------------------------------------------------------------------------------
# AnnealedVAE (Burgess et al. 2018, §4)
# ---------------------------------------------------------------------------------------------
def capacity(step: int, c_max: float, ramp_steps: int) -> float:
    """``C(t) = min(C_max, C_max * t / T_ramp)`` (disentanglement_lib ``AnnealedVAE``), in nats."""
    if ramp_steps <= 0:
        return float(c_max)
    return float(min(c_max, c_max * max(step, 0) / ramp_steps))


# ---------------------------------------------------------------------------------------------
# FactorVAE (Kim & Mnih 2018, Alg. 1)
# ---------------------------------------------------------------------------------------------
def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """Shuffle every latent column independently across the batch (samples of prod_d q(z_d)).

    One ``argsort`` of a random matrix gives D independent permutations without a Python loop.
    """
    perm = torch.rand(z.shape, device=z.device).argsort(dim=0)
    return torch.gather(z, 0, perm)
