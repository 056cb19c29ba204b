"""beta-TCVAE (Chen et al. 2018; specs/vae_methods.md §4.4; rtqichen/beta-tcvae ``vae_quant.py``,
disentanglement_lib ``BetaTCVAE``).

The KL term of the ELBO decomposes (Chen et al., eq. 2) as

    E_x KL(q(z|x) || p(z)) = MI(x; z) + TC(z) + sum_d KL(q(z_d) || p(z_d)),

with the aggregate posterior q(z) estimated on the minibatch (``tc_decomposition`` in
:mod:`disentkit.models.losses`) by *minibatch weighted sampling* (MWS) or *minibatch stratified
sampling* (MSS, App. C.2). Both need the dataset size N: ``dataset_size`` is filled by the
engine from ``len(data)`` when left at 0 (``disentkit.builders.build_model``).

Objectives (``objective``):

* ``decomposed`` (authors' ``--tcvae`` and CFASL's baseline):
  ``REC + alpha * MI + beta * TC + gamma * dwKL`` (alpha = gamma = 1);
* ``dlib`` (Locatello et al.): ``REC + KL_analytic + (beta - 1) * TC``; beta = 1 is the VAE.

``beta_warmup_steps > 0`` ramps beta linearly from 0 (the authors' ``--beta-anneal``).
MSS weights follow the paper (``mss_weights="paper"``); the authors' code fills column 0 rather
than the diagonal of the weight matrix (``mss_weights="reference"`` reproduces it; see
:func:`disentkit.models.losses.log_importance_weight_matrix`).

``encode`` returns the posterior mean. Logged: ``mi``, ``tc``, ``dwkl`` (estimates in nats),
``kl`` (analytic), ``beta`` (current weight).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from disentkit.models.losses import tc_decomposition
from disentkit.models.vae import GaussianVAE, VAEConfig
from disentkit.registry import MODELS


@dataclass
class BetaTCVAEConfig(VAEConfig):
    beta: float = 6.0
    #: weights of MI and dimension-wise KL in the "decomposed" objective
    alpha: float = 1.0
    gamma: float = 1.0
    estimator: Literal["mss", "mws"] = "mss"
    objective: Literal["decomposed", "dlib"] = "decomposed"
    #: N, the number of training images (0: filled by the engine from the dataset)
    dataset_size: int = 0
    #: paper: the MSS weights of Chen et al. App. C.2; reference: the authors' code's matrix
    mss_weights: Literal["paper", "reference"] = "paper"
    #: linear warm-up of beta from 0 over this many steps (0: none)
    beta_warmup_steps: int = 0


@MODELS.register("betatcvae")
class BetaTCVAE(GaussianVAE):
    """beta-TCVAE with MWS or MSS estimators. ``encode``: posterior mean."""

    Config = BetaTCVAEConfig

    def current_beta(self, step: int) -> float:
        cfg = self.config
        if cfg.beta_warmup_steps > 0:
            return float(min(cfg.beta, cfg.beta * step / cfg.beta_warmup_steps))
        return float(cfg.beta)

    def regulariser(self, mean, logvar, z, kl_per_dim, step, extra):  # noqa: D102
        cfg = self.config
        if cfg.dataset_size <= 0:
            raise ValueError(
                "betatcvae needs model.dataset_size (N, the number of training images) for its "
                "q(z) estimator; the training engine fills it from the dataset, or set it explicitly"
            )
        terms = tc_decomposition(z, mean, logvar, cfg.dataset_size, cfg.estimator,
                                 cfg.mss_weights)
        beta = self.current_beta(step)
        extra["mi"], extra["tc"], extra["dwkl"] = (terms[k].detach() for k in ("mi", "tc", "dwkl"))
        extra["beta"] = torch.tensor(beta, device=z.device)
        if cfg.objective == "dlib":
            return kl_per_dim.sum() + (beta - 1.0) * terms["tc"]
        return cfg.alpha * terms["mi"] + beta * terms["tc"] + cfg.gamma * terms["dwkl"]
