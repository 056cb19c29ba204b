"""beta-TCVAE (Chen et al. 2018; rtqichen/beta-tcvae ``vae_quant.py``,
disentanglement_lib ``BetaTCVAE``).

The KL term of the ELBO decomposes (Chen et al., eq. 2) as

    E_x KL(q(z|x) || p(z)) = MI(x; z) + TC(z) + sum_d KL(q(z_d) || p(z_d)),

with the aggregate posterior q(z) estimated on the minibatch (``tc_decomposition`` in
:mod:`disentkit.models.losses`) by *minibatch weighted sampling* (MWS) or *minibatch stratified
sampling* (MSS, App. C.2). Both need the dataset size N: the training data's size, which the
model is told (``DataFacts.dataset_size``), unless ``dataset_size`` sets it.

Objectives (``objective``):

* ``decomposed`` (authors' ``--tcvae`` and CFASL's baseline):
  ``REC + alpha * MI + beta * TC + gamma * dwKL`` (alpha = gamma = 1);
* ``dlib`` (Locatello et al.): ``REC + KL_analytic + (beta - 1) * TC``; beta = 1 is the VAE.

Warm-up schedules of the authors' code (``vae_quant.py anneal_kl``; both off by default, as in
the README's command; the authors use T = 7000 iterations on dSprites, 2500 on 3D faces), with t
the 0-based training step (the authors' loop counts from 1, one step of difference):

* ``beta_warmup_steps = T > 0`` (``--beta-anneal``): ``beta(t) = min(beta, beta * t / T)``;
* ``lambda_anneal_steps = T > 0`` (``--lambda-anneal``): ``lambda(t) = max(0, 0.95 - t / T)``
  and the dimension-wise KL is weighted by ``gamma * (1 - lambda(t))`` (0.05 -> 1 over 0.95 T
  steps), so the marginals are pulled to the prior only gradually. Only defined for the
  ``decomposed`` objective.

Estimator default: MWS, as in the authors' code (``--mss`` is opt-in) and disentanglement_lib;
CFASL's baseline uses MSS (its presets set it). MSS weights follow the paper
(``mss_weights="paper"``); the authors' code fills column 0 rather than the diagonal of the
weight matrix (``mss_weights="reference"`` reproduces it; see
:func:`disentkit.models.losses.log_importance_weight_matrix`). The authors' ``--exclude-mutinfo``
is ``alpha = 0``.

``encode`` returns the posterior mean. Logged: ``mi``, ``tc``, ``dwkl`` (estimates in nats),
``kl`` (analytic), ``beta`` (current weight) and, for ``decomposed``, ``dwkl_weight``
(``gamma * (1 - lambda(t))``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch

from disentkit.models.base import DataFacts
from disentkit.models.losses import tc_decomposition
from disentkit.models.vae import GaussianVAE, VAEConfig
from disentkit.ranges import NonNegInt, Weight
from disentkit.registry import MODELS


@dataclass
class BetaTCVAEConfig(VAEConfig):
    beta: Annotated[Weight, "the weight of the total correlation"] = 6.0
    #: weights of MI and dimension-wise KL in the "decomposed" objective
    alpha: Weight = 1.0
    gamma: Weight = 1.0
    #: mws (the authors' default and disentanglement_lib's) or mss (the authors' --mss; CFASL)
    estimator: Literal["mss", "mws"] = "mws"
    objective: Literal["decomposed", "dlib"] = "decomposed"
    #: N, the number of training images (0: the training data's size, DataFacts.dataset_size)
    dataset_size: NonNegInt = 0
    #: paper: the MSS weights of Chen et al. App. C.2; reference: the authors' code's matrix
    mss_weights: Literal["paper", "reference"] = "paper"
    #: linear warm-up of beta from 0 over this many steps (0: none; authors' --beta-anneal)
    beta_warmup_steps: NonNegInt = 0
    #: the authors' --lambda-anneal: dwKL weight gamma * (1 - max(0, 0.95 - t / T)) (0: none)
    lambda_anneal_steps: NonNegInt = 0


@MODELS.register("betatcvae")
class BetaTCVAE(GaussianVAE):
    """beta-TCVAE with MWS or MSS estimators. ``encode``: posterior mean."""

    Config = BetaTCVAEConfig

    def __init__(self, config: BetaTCVAEConfig, data: DataFacts) -> None:
        if config.beta_warmup_steps < 0 or config.lambda_anneal_steps < 0:
            raise ValueError(
                "betatcvae: beta_warmup_steps and lambda_anneal_steps are step counts (0 turns the "
                f"schedule off), got {config.beta_warmup_steps} and {config.lambda_anneal_steps}"
            )
        if config.lambda_anneal_steps > 0 and config.objective != "decomposed":
            raise ValueError(
                "betatcvae: lambda_anneal_steps weights the dimension-wise KL term, which only the "
                f"'decomposed' objective has; got objective={config.objective!r}. Set "
                "model.objective=decomposed or model.lambda_anneal_steps=0"
            )
        super().__init__(config, data)

    @property
    def dataset_size(self) -> int:
        """N of the q(z) estimator: ``model.dataset_size`` when set, else the training data's."""
        return int(self.config.dataset_size or self.data_facts.dataset_size)

    def tc_weights(self) -> tuple[float, float]:
        """(weight of MI, weight of the dimension-wise KL) in the ``decomposed`` objective."""
        return float(self.config.alpha), float(self.config.gamma)

    def current_beta(self, step: int) -> float:
        """beta(t) = min(beta, beta * t / T) with the warm-up, else beta (authors' anneal_kl)."""
        cfg = self.config
        if cfg.beta_warmup_steps > 0:
            return float(min(cfg.beta, cfg.beta * max(step, 0) / cfg.beta_warmup_steps))
        return float(cfg.beta)

    def current_lambda(self, step: int) -> float:
        """lambda(t) = max(0, 0.95 - t / T) with the anneal, else 0 (authors' anneal_kl)."""
        cfg = self.config
        if cfg.lambda_anneal_steps > 0:
            return float(max(0.0, 0.95 - max(step, 0) / cfg.lambda_anneal_steps))
        return 0.0

    def regulariser(self, mean, logvar, z, kl_per_dim, step, extra):  # noqa: D102
        cfg = self.config
        size = self.dataset_size
        if size <= 0:
            raise ValueError(
                "betatcvae needs N, the number of training images, for its q(z) estimator: build "
                "it with DataFacts(image_shape, dataset_size) (the engine does), or set "
                "model.dataset_size"
            )
        terms = tc_decomposition(z, mean, logvar, size, cfg.estimator, cfg.mss_weights)
        beta = self.current_beta(step)
        extra["mi"], extra["tc"], extra["dwkl"] = (terms[k].detach() for k in ("mi", "tc", "dwkl"))
        extra["beta"] = torch.tensor(beta, device=z.device)
        if cfg.objective == "dlib":
            return kl_per_dim.sum() + (beta - 1.0) * terms["tc"]
        alpha, gamma = self.tc_weights()
        dwkl_weight = gamma * (1.0 - self.current_lambda(step))
        extra["dwkl_weight"] = torch.tensor(dwkl_weight, device=z.device)
        return alpha * terms["mi"] + beta * terms["tc"] + dwkl_weight * terms["dwkl"]
