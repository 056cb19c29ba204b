"""Commutative Lie Group VAE, CLG-VAE (Zhu, Xu & Tao 2021;
zhuxinqimac/CommutativeLieGroupVAE-Pytorch ``models/lie_vae.py``, ``trainer.py``).

Networks (:mod:`disentkit.nn.lie`): the encoder maps x to a group feature ``gE`` (a flattened
m x m matrix per subgroup) and from it to the posterior (mean, logvar); the decoder maps a code z
to the group element ``gG = expm(sum_i z_i B_i)`` with a learnt Lie-algebra basis ``B_i`` and
decodes gG with the post-exp network.

    loss = REC + beta * KL
           + hy_rec     * mean_b ||gE - gG||^2                   (group-feature reconstruction)
           + hy_hes     * mean_{i,j; i != j} ||B_i B_j||_F^2     ("Hessian" penalty)
           + hy_commute * mean_{i,j; i != j} ||[B_i, B_j]||_F^2  (commutator penalty)

With probability ``forward_eg_prob`` per training step, REC is computed on the post-exp decoding
of the encoder's group feature ``gE`` instead of the decoding of z (CLG's ``forward_eg``).
CLG's code writes the commutator penalty as ``||B_i B_j - (B_i B_j)^T||^2`` (it transposes the
product instead of swapping i and j); ``commutator="reference_transpose"`` reproduces that, the
default is the true commutator. The published runs use ``hy_commute = 0``.
``capacity_c_max`` (optional, CLG's ``control_capacity``) replaces ``beta * KL`` by
``beta * |KL - C(t)|`` with the AnnealedVAE ramp over ``capacity_ramp_steps``.

``encode`` returns the posterior mean. Logged: ``group_rec``, ``hessian``, ``commute``,
``forward_eg`` (1 when the step reconstructed from gE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from disentkit.models.base import DataFacts
from disentkit.models.losses import capacity, kl_normal_per_dim, reconstruction_loss, reparameterise
from disentkit.models.vae import GaussianVAE, VAEConfig
from disentkit.nn.architectures import Architecture
from disentkit.ranges import Count, NonNegative, NonNegInt, Probability, Weight
from disentkit.registry import MODELS


@dataclass
class CLGVAEConfig(VAEConfig):
    architecture: Architecture = "clg"
    #: flattened sizes of the group features, one per subgroup (each m*m): 100 = 10x10
    subgroup_sizes: list[Count] = field(default_factory=lambda: [100])
    #: latents per subgroup; must add up to latent_dim
    subspace_sizes: list[Count] = field(default_factory=lambda: [10])
    beta: Weight = 1.0
    hy_rec: Weight = 0.1
    hy_hes: Weight = 40.0
    hy_commute: Weight = 0.0
    forward_eg_prob: Probability = 0.2
    commutator: Literal["commutator", "reference_transpose"] = "commutator"
    #: capacity C_max in nats (null: plain beta * KL)
    capacity_c_max: NonNegative | None = None
    capacity_ramp_steps: NonNegInt = 100000


@MODELS.register("clgvae")
class CLGVAE(GaussianVAE):
    """CLG-VAE: a VAE whose decoder goes through a commutative Lie group. ``encode``: mean."""

    Config = CLGVAEConfig

    def __init__(self, config: CLGVAEConfig, data: DataFacts) -> None:
        if config.architecture != "clg":
            raise ValueError(
                f"clgvae needs architecture='clg' (the Lie-group encoder/decoder), "
                f"got {config.architecture!r}"
            )
        if not 0.0 <= config.forward_eg_prob <= 1.0:
            raise ValueError(f"forward_eg_prob must be in [0, 1], got {config.forward_eg_prob}")
        super().__init__(config, data)

    def training_losses(self, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        mean, logvar, group_enc = self.encoder.features(batch)
        z = reparameterise(mean, logvar)
        group_dec = self.decoder.group_element(z)
        use_eg = self.training and bool(torch.rand(()) < cfg.forward_eg_prob)
        logits = self.decoder.decode_group(group_enc if use_eg else group_dec)
        rec = reconstruction_loss(logits, batch, cfg.likelihood)
        regulariser, out = self.clg_regulariser(mean, logvar, group_enc, group_dec, step)
        out.update({
            "loss": rec + regulariser, "reconstruction": rec,
            "forward_eg": torch.tensor(float(use_eg), device=rec.device),
        })
        return out

    def clg_regulariser(
        self, mean: torch.Tensor, logvar: torch.Tensor, group_enc: torch.Tensor,
        group_dec: torch.Tensor, step: int,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Everything but REC: beta * KL (or the capacity form) + hy_rec * ||gE - gD||^2 +
        hy_hes * Hessian penalty + hy_commute * commutator penalty, with the logged terms."""
        cfg = self.config
        kl_per_dim = kl_normal_per_dim(mean, logvar)
        kl = kl_per_dim.sum()
        logs: dict[str, torch.Tensor] = {}
        if cfg.capacity_c_max is not None:
            c = capacity(step, cfg.capacity_c_max, cfg.capacity_ramp_steps)
            kl_term = cfg.beta * (kl - c).abs()
            logs["capacity"] = torch.tensor(c, device=kl.device)
        else:
            kl_term = cfg.beta * kl
        group_rec = (group_enc - group_dec).pow(2).sum(1).mean()
        hessian, commute = self.decoder.basis_penalties(cfg.commutator)
        total = kl_term + cfg.hy_rec * group_rec + cfg.hy_hes * hessian + cfg.hy_commute * commute
        logs.update({
            "kl": kl, "kl_per_dim": kl_per_dim, "group_rec": group_rec.detach(),
            "hessian": hessian.detach(), "commute": commute.detach(),
        })
        return total, logs
