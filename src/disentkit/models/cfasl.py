"""CFASL: Composite Factor-Aligned Symmetry Learning (Jung, Jeong & Kim, TMLR 2024;
GIST-IRR/CFASL ``models/group*.py``), as a wrapper over any Gaussian VAE of this package.

``make_cfasl(Base)`` returns a subclass of ``Base`` that adds CFASL's symmetry terms to the base
objective. One training step on a batch of B images (B even):

1. Pairs: x1 = first B/2 images, x2 = last B/2, paired index-wise (random pairs; the same split
   as the reference, so the run's ``batch_size`` is the reference's ``per_gpu_train_batch_size``).
2. Encoder on all B images -> (mu, logvar), sampled z.
3. Codebook regularisers on all B sampled codes (:mod:`disentkit.models.symmetry`):
   Omega = sparsity + parallel + orthogonal + commutator, weight ``alpha``.
4. Composite symmetry of each pair: [mu1, sigma1, mu2, sigma2] -> linear head -> switch logits
   and factor logits; switch pseudo-labels 1[|z1_d - z2_d| > th] train the switches
   (cross-entropy, weight ``gamma``); A = sum_{s,p} switch_s softmax_s(p) g_{s,p};
   G = exp(A), G^-1 = exp(-A).
5. Encoder equivariance (weight ``lamb``): MSE(z1 G, z2) + MSE(z2 G^-1, z1).
6. The decoder runs once on the 2B codes [z ; z2 G^-1 ; z1 G]: the first B give the base
   model's reconstruction term, the last B must reconstruct [x1 ; x2] with the same likelihood
   (decoder equivariance, weight ``epsilon``).

Objective: base objective (REC + the base model's regulariser) + alpha Omega + gamma L_switch +
lamb L_enc + epsilon L_dec (``CF:src/train/training.py``).

Options that reproduce the reference code's published behaviour (all off by default, all on with
``reference_quirks: true``; docs/cfasl.md explains each):

* ``quirk_sigma2_from_mean``: sigma2 = exp(mu2 / 2) instead of exp(logvar2 / 2);
* ``quirk_double_softmax``: the switch cross-entropy is applied to softmax probabilities;
* ``quirk_commutator``: the reference's commutator term (mis-shaped products, first P elements,
  cumulative loop weights), see :func:`~disentkit.models.symmetry.reference_commutator_loss`;
* ``encode_sampled``: ``encode`` returns a posterior sample (CF evaluates sampled z), not the mean;
* ``quirk_frozen_integral`` (``cfasl_controlvae``): CF's PI integral never accumulates;
* ``quirk_clg_plain_decoder_term`` (``cfasl_commutativevae``): the transformed codes are never
  decoded and the decoder term is the plain reconstruction.
The reference also hard-codes P = 16 whatever ``--sub_sec`` says: set ``sub_sec: 16`` for parity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F

from disentkit.models.base import DataFacts, OptimiserSpec
from disentkit.models.betatcvae import BetaTCVAE, BetaTCVAEConfig
from disentkit.models.clgvae import CLGVAE, CLGVAEConfig
from disentkit.models.controlvae import ControlVAE, ControlVAEConfig, setpoint
from disentkit.models.losses import (
    kl_normal_per_dim,
    reconstruction_loss,
    reparameterise,
)
from disentkit.models.symmetry import (
    SymmetryCodebook,
    SymmetryPredictor,
    act,
    commutator_loss,
    composite_weights,
    orthogonal_loss,
    parallel_loss,
    reference_commutator_loss,
    sparsity_loss,
    switch_loss,
    switch_targets,
)
from disentkit.models.vae import BetaVAE, BetaVAEConfig, GaussianVAE
from disentkit.nn.architectures import DEFAULT_INIT
from disentkit.nn.init import initialise
from disentkit.ranges import Count, NonNegative, Positive, Weight
from disentkit.registry import MODELS


@dataclass
class CFASLOptions:
    """CFASL's hyperparameters, with the names of the paper and its code (README values)."""

    #: P, codebook elements per section (README: 16 on 3D Shapes, 10 elsewhere; the reference
    #: code always uses 16)
    sub_sec: Count = 10
    #: weight of the codebook regularisers (sparsity + parallel + orthogonal + commutator)
    alpha: Weight = 1.0
    #: weight of the switch pseudo-label loss
    gamma: Weight = 1.0
    #: weight of the encoder equivariance loss
    lamb: Weight = 1.0
    #: weight of the decoder equivariance loss (README: 0.1 or 0.01)
    epsilon: Weight = 0.1
    #: switch pseudo-label threshold on |z1_d - z2_d| (README: 0.2 or 0.5)
    th: NonNegative = 0.2
    #: Gumbel-softmax temperature of the switches
    tau: Positive = 1e-4
    #: learning rate of the switch/factor prediction layer (its own Adam param group)
    head_lr: Positive = 2e-5
    #: standard deviation of the codebook's truncated-normal initialisation (cut at +-2)
    codebook_std: Positive = 1.0
    #: evaluate on a posterior sample instead of the mean (what the reference's metrics use)
    encode_sampled: bool = False
    #: turn every quirk below on (the reference code's behaviour)
    reference_quirks: bool = False
    #: sigma2 = exp(mu2 / 2) in the pair features (reference bug)
    quirk_sigma2_from_mean: bool = False
    #: softmax before cross_entropy in the switch loss (reference: double softmax)
    quirk_double_softmax: bool = False
    #: the reference's commutator construction instead of sum_{i<j} mean([g_i, g_j]^2)
    quirk_commutator: bool = False


class SymmetryTerms(NamedTuple):
    """The CFASL terms of one step (all scalars except the tensors noted)."""

    sparsity: torch.Tensor
    parallel: torch.Tensor
    orthogonal: torch.Tensor
    commutator: torch.Tensor
    switch: torch.Tensor
    encoder_equivariance: torch.Tensor
    #: [z2 G^-1 ; z1 G], (B, D): decoded, should reconstruct [x1 ; x2]
    transformed: torch.Tensor
    #: G for each pair, (B/2, D, D)
    group: torch.Tensor
    #: switch values (B/2, D) and their pseudo-labels (B/2, D)
    switches: torch.Tensor
    targets: torch.Tensor


class CFASLMixin:
    """Adds CFASL to a :class:`~disentkit.models.vae.GaussianVAE` subclass (see module doc).

    Subclasses of the mixed class can override :meth:`cfasl_base_terms` when the base model's
    objective needs more than (mean, logvar, z, KL) (e.g. the Commutative Lie Group VAE).
    """

    config: Any

    def __init__(self, config: Any, data: DataFacts) -> None:
        super().__init__(config, data)  # type: ignore[call-arg]
        dim = int(config.latent_dim)
        if config.sub_sec < 1:
            raise ValueError(f"model.sub_sec must be >= 1, got {config.sub_sec}")
        self.codebook = SymmetryCodebook(dim, config.sub_sec, config.codebook_std)
        self.predictor = SymmetryPredictor(dim, config.sub_sec)
        scheme = getattr(config, "init", "auto")
        if scheme == "auto":
            scheme = DEFAULT_INIT.get(getattr(config, "architecture", "dlib"), "xavier")
        initialise(self.predictor, scheme)

    # ---- options --------------------------------------------------------------------------
    def _quirk(self, name: str) -> bool:
        return bool(self.config.reference_quirks or getattr(self.config, name))

    # ---- CFASL ----------------------------------------------------------------------------
    def codebook_terms(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(sparsity, parallel, orthogonal, commutator) on the sampled codes ``z`` (B, D)."""
        delta = self.codebook.displacements(z)  # (D, P, B, D)
        sections, sub = delta.shape[0], delta.shape[1]
        choice = torch.randint(sub, (sections,), device=z.device)
        if self._quirk("quirk_commutator"):
            commut = reference_commutator_loss(self.codebook.elements, self.config.sub_sec)
        else:
            commut = commutator_loss(self.codebook.elements)
        return sparsity_loss(delta), parallel_loss(delta), orthogonal_loss(delta, choice), commut

    def symmetry_terms(self, mean: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor
                       ) -> SymmetryTerms:
        """Codebook regularisers, switch loss, composite symmetry and encoder equivariance."""
        half = z.shape[0] // 2
        mean1, mean2 = mean[:half], mean[half:]
        z1, z2 = z[:half], z[half:]
        sigma1 = torch.exp(0.5 * logvar[:half])
        sigma2 = torch.exp(0.5 * (mean2 if self._quirk("quirk_sigma2_from_mean") else logvar[half:]))
        switch_logits, factor_logits = self.predictor(torch.cat([mean1, sigma1, mean2, sigma2], -1))
        targets = switch_targets(z1, z2, self.config.th)
        l_switch = switch_loss(switch_logits, targets, self._quirk("quirk_double_softmax"))
        weights, switches, _ = composite_weights(switch_logits, factor_logits, self.config.tau)
        algebra = self.codebook.algebra(weights)
        # exp(A) and exp(-A) in one batched call (each matrix is exponentiated on its own: the
        # same values and gradients as two calls, one dispatch fewer each way)
        group, inverse = torch.linalg.matrix_exp(torch.cat([algebra, -algebra])).chunk(2)
        z1_moved = act(z1, group)  # should equal z2
        z2_moved = act(z2, inverse)  # should equal z1
        l_enc = F.mse_loss(z2_moved, z1) + F.mse_loss(z1_moved, z2)
        sparse, par, orth, commut = self.codebook_terms(z)
        return SymmetryTerms(sparse, par, orth, commut, l_switch, l_enc,
                             torch.cat([z2_moved, z1_moved]), group, switches, targets)

    # ---- objective ------------------------------------------------------------------------
    def _check_pairs(self, batch: torch.Tensor) -> None:
        size = batch.shape[0]
        if size < 2 or size % 2:
            raise ValueError(
                f"CFASL pairs the first and second half of each batch, so it needs an even batch "
                f"of at least 2 images; got {size}. Set train.batch_size to an even number."
            )

    def cfasl_base_terms(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, ...]:
        """The base model's encoder pass: (mean, logvar, z, finish).

        ``finish(transformed)`` runs the decoder once on the 2B codes [z ; transformed] and
        returns (base objective, decoder-equivariance term, logged terms). Override both for a
        base whose objective needs more than (mean, logvar, z, KL), as the CLG-VAE does.
        """
        mean, logvar = self.posterior(batch)  # type: ignore[attr-defined]
        z = reparameterise(mean, logvar)
        likelihood = self.config.likelihood
        size = batch.shape[0]

        def finish(transformed: torch.Tensor):
            logits = self.decoder(torch.cat([z, transformed]))  # type: ignore[attr-defined]
            rec = reconstruction_loss(logits[:size], batch, likelihood)
            dec_eq = reconstruction_loss(logits[size:], batch, likelihood)
            kl_per_dim = kl_normal_per_dim(mean, logvar)
            extra: dict[str, torch.Tensor] = {}
            reg = self.regulariser(mean, logvar, z, kl_per_dim, step, extra)  # type: ignore[attr-defined]
            logs = {"reconstruction": rec, "kl": kl_per_dim.sum(), "kl_per_dim": kl_per_dim,
                    **extra}
            return rec + reg, dec_eq, logs

        return mean, logvar, z, finish

    def training_losses(self, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        self._check_pairs(batch)
        cfg = self.config
        mean, logvar, z, finish = self.cfasl_base_terms(batch, step)
        sym = self.symmetry_terms(mean, logvar, z)
        base_loss, dec_eq, logs = finish(sym.transformed)
        codebook = sym.sparsity + sym.parallel + sym.orthogonal + sym.commutator
        loss = (base_loss + cfg.alpha * codebook + cfg.gamma * sym.switch
                + cfg.lamb * sym.encoder_equivariance + cfg.epsilon * dec_eq)
        eye = torch.eye(z.shape[1], device=z.device, dtype=z.dtype)
        with torch.no_grad():
            stats = {
                "switch_target_on": sym.targets.float().mean(),
                "switch_accuracy": (sym.switches.round() == sym.targets).float().mean(),
                "symmetry_identity_gap": (sym.group - eye).abs().sum(dim=(-1, -2)).mean(),
            }
        return {
            "loss": loss, **logs,
            "codebook_sparsity": sym.sparsity, "codebook_parallel": sym.parallel,
            "codebook_orthogonal": sym.orthogonal, "codebook_commutator": sym.commutator,
            "switch": sym.switch, "equivariance_encoder": sym.encoder_equivariance,
            "equivariance_decoder": dec_eq, **stats,
        }

    # ---- optimiser ------------------------------------------------------------------------
    def optimiser_specs(self) -> list[OptimiserSpec]:
        """The base model's optimisers, with the prediction head moved into its own param group
        of the first optimiser at ``head_lr`` (CF: every parameter named '*linear*' at 2e-5)."""
        specs = super().optimiser_specs()  # type: ignore[misc]
        head = list(self.predictor.parameters())
        head_ids = {id(p) for p in head}
        for spec in specs:
            spec.param_groups = [
                {**group, "params": [p for p in group["params"] if id(p) not in head_ids]}
                for group in spec.param_groups
            ]
            spec.param_groups = [g for g in spec.param_groups if g["params"]]
        specs[0].param_groups.append({"params": head, "lr": self.config.head_lr})
        return specs

    # ---- inference ------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior mean (default) or, with ``encode_sampled``, a posterior sample (CF)."""
        if self.config.encode_sampled or self.config.reference_quirks:
            mean, logvar = self.posterior(x)  # type: ignore[attr-defined]
            return reparameterise(mean, logvar)
        return super().encode(x)  # type: ignore[misc]


def make_cfasl(base: type[GaussianVAE], config_cls: type, name: str | None = None) -> type:
    """A CFASL model class over ``base`` with hyperparameters ``config_cls`` (which must combine
    the base's Config with :class:`CFASLOptions`)."""
    cls = type(f"CFASL{base.__name__}", (CFASLMixin, base), {"Config": config_cls})
    cls.__doc__ = f"CFASL over {base.__name__} (Jung, Jeong & Kim 2024; see disentkit.models.cfasl)."
    cls.__module__ = __name__
    if name:
        MODELS.register(name)(cls)
    return cls


# ---------------------------------------------------------------------------------------------
# Registered models
# ---------------------------------------------------------------------------------------------
@dataclass
class CFASLBetaVAEConfig(BetaVAEConfig, CFASLOptions):
    """beta-VAE + CFASL (CF ``groupvae``): REC + beta KL + CFASL terms."""


CFASLBetaVAE = make_cfasl(BetaVAE, CFASLBetaVAEConfig, "cfasl_betavae")


@dataclass
class CFASLBetaTCVAEConfig(BetaTCVAEConfig, CFASLOptions):
    """beta-TCVAE + CFASL (CF ``groupbetatcvae``): REC + mi_weight MI + beta TC + dwkl_weight dwKL
    + CFASL terms. ``alpha`` and ``gamma`` are CFASL's weights here (codebook, switch), as in the
    reference's objective, so the MI and dimension-wise KL weights have their own names."""

    #: CF's betatcvae uses minibatch stratified sampling (the plain betatcvae defaults to MWS)
    estimator: Literal["mss", "mws"] = "mss"
    #: weight of the mutual-information term (the base model's ``alpha``; CF: 1)
    mi_weight: Weight = 1.0
    #: weight of the dimension-wise KL term (the base model's ``gamma``; CF: 1)
    dwkl_weight: Weight = 1.0


class CFASLBetaTCVAE(make_cfasl(BetaTCVAE, CFASLBetaTCVAEConfig)):
    """CFASL over beta-TCVAE (MSS or MWS estimator of the base model)."""

    def tc_weights(self) -> tuple[float, float]:
        """The MI and dimension-wise KL weights: ``mi_weight`` and ``dwkl_weight`` (``alpha`` and
        ``gamma`` weigh CFASL's codebook and switch terms here)."""
        return float(self.config.mi_weight), float(self.config.dwkl_weight)


MODELS.register("cfasl_betatcvae")(CFASLBetaTCVAE)


@dataclass
class CFASLControlVAEConfig(ControlVAEConfig, CFASLOptions):
    """ControlVAE + CFASL (CF ``groupcontrolvae``): REC + beta_PI(t) KL + CFASL terms.

    Defaults follow CF's controller where it differs from ControlVAE's own code: the KL set-point
    ramps linearly from 0.5 to ``kl_target`` (CF ``--const_kld``, 16) over ``ramp_steps`` (CF: all
    training steps; set it to ``train.steps``) and beta is clamped to [beta_min, 100]
    (CF ``--max_beta``)."""

    setpoint_schedule: Literal["staircase", "linear", "constant"] = "linear"
    beta_max: NonNegative | None = 100.0
    #: CF's controller bug: its anti-windup test reads a variable that is never updated, so the
    #: integral never accumulates and beta = clamp(beta_min + P) with a gradient through P
    quirk_frozen_integral: bool = False


class CFASLControlVAE(make_cfasl(ControlVAE, CFASLControlVAEConfig)):
    """CFASL over ControlVAE (PI-controlled beta, controller state in buffers)."""

    def regulariser(self, mean, logvar, z, kl_per_dim, step, extra):  # noqa: D102
        if not self._quirk("quirk_frozen_integral"):
            return super().regulariser(mean, logvar, z, kl_per_dim, step, extra)
        cfg = self.config
        kl = kl_per_dim.sum()
        target = setpoint(step, cfg)
        p_term = cfg.kp * torch.sigmoid(kl - target)  # Kp / (1 + exp(C - KL)), not detached (CF)
        beta = (p_term + cfg.beta_min).clamp(min=cfg.beta_min, max=cfg.beta_max)
        extra["beta"] = beta.detach()
        extra["setpoint"] = torch.tensor(target, device=kl.device)
        return beta * kl


MODELS.register("cfasl_controlvae")(CFASLControlVAE)


@dataclass
class CFASLCLGVAEConfig(CLGVAEConfig, CFASLOptions):
    """Commutative Lie Group VAE + CFASL (CF ``groupcommutativevae``): REC + beta KL + CLG group
    loss + CFASL terms; the codebook acts on z, and [z ; transformed z] go through the Lie
    decoder (exp of the learnt basis, then the post-exp network) in one 2B pass.

    Defaults follow CF's ``main.py`` and ``groupcommutativevae.py`` where they differ from the
    plain CLG-VAE's: ``hy_commute`` 20 (CLG's published runs: 0) and a codebook drawn from
    N(0, 1e-6^2) (``codebook_std``; the other CFASL models: 1)."""

    hy_commute: Weight = 20.0
    codebook_std: Positive = 1e-6
    #: CF's CLG variant never decodes the transformed codes: its "decoder equivariance" term is
    #: the plain reconstruction of x from z
    quirk_clg_plain_decoder_term: bool = False


class CFASLCLGVAE(make_cfasl(CLGVAE, CFASLCLGVAEConfig)):
    """CFASL over the Commutative Lie Group VAE."""

    def cfasl_base_terms(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, ...]:
        cfg = self.config
        mean, logvar, group_enc = self.encoder.features(batch)
        z = reparameterise(mean, logvar)
        size = batch.shape[0]

        def finish(transformed: torch.Tensor):
            plain = self._quirk("quirk_clg_plain_decoder_term")
            use_eg = self.training and bool(torch.rand(()) < cfg.forward_eg_prob)
            group_dec = self.decoder.group_element(z if plain else torch.cat([z, transformed]))
            if plain:  # decode z (for the "equivariance" term) and gE when REC uses it
                feats = torch.cat([group_dec, group_enc]) if use_eg else group_dec
            else:
                first = group_enc if use_eg else group_dec[:size]
                feats = torch.cat([first, group_dec[size:]])
            logits = self.decoder.decode_group(feats)
            if plain:
                dec_eq = reconstruction_loss(logits[:size], batch, cfg.likelihood)
                rec = reconstruction_loss(logits[size:], batch, cfg.likelihood) if use_eg else dec_eq
            else:
                rec = reconstruction_loss(logits[:size], batch, cfg.likelihood)
                dec_eq = reconstruction_loss(logits[size:], batch, cfg.likelihood)
            regulariser, logs = self.clg_regulariser(mean, logvar, group_enc, group_dec[:size], step)
            base = rec + regulariser
            logs.update({"reconstruction": rec,
                         "forward_eg": torch.tensor(float(use_eg), device=rec.device)})
            return base, dec_eq, logs

        return mean, logvar, z, finish


MODELS.register("cfasl_commutativevae")(CFASLCLGVAE)
