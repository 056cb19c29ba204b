"""ProbMask: a sparse linear attribute classifier on standardised codes, and editing along it.

DiTi's modular manipulation (Yue et al., ICLR 2024; ``yue-zhongqi/diti``, ``eval/manipulation.py``
and the ``ProMask`` class of ``eval/src/eval_utils.py``), after ProbMask (Zhou et al., "Effective
Sparsification of Neural Networks with Global Sparsity Constraint", CVPR 2021):

* the codes are standardised with the training mean and (unbiased) std;
* every code dimension has a keep-probability score ``s`` (initialised to 1); during training the
  classifier sees ``z * m`` with the relaxed Bernoulli mask
  ``m = sigmoid((logit s + logistic noise) * tau)``;
* after every optimiser step (step ``it`` of ``max_iters = epochs * batches + 1``) the temperature
  is ``tau = 1 / ((1 - 0.03)(1 - it / max_iters) + 0.03)`` (1 -> ~33) and the keep-rate ``pr``
  falls from 1 to ``keep / D`` cubically between 10 % and 40 % of the iterations
  (:func:`keep_rate`); the scores are then projected so that ``sum clamp(s - v, 0, 1) = D * pr``,
  ``v`` found by bisection (:func:`project_scores`);
* Adam 1e-4 over classifier and scores, the scores' gradient clipped to norm 3, an EMA (0.999)
  of the classifier kept beside it, 10 epochs of shuffled batches of 128, BCE on one attribute;
* after every epoch a hard mask is drawn, ``m ~ Bernoulli(s)``; the last one is the learned mask.

Editing (:func:`edit_codes`): ``z' = std * (z_n + scale * sqrt(D) * w / ||w||) + mean`` with
``w`` the classifier weight times the mask (the reference edits with the raw classifier, not its
EMA). Randomness comes from one ``torch.Generator`` seeded with ``seed``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from disentkit.errors import ConfigError

__all__ = ["edit_codes", "edit_direction", "hard_mask", "keep_rate", "project_scores",
           "relaxed_mask", "temperature", "train_probmask_classifier"]

_EPS = 1e-20


def temperature(it: int, max_iters: int) -> float:
    """The inverse temperature at step ``it``: 1 at the start, 1/0.03 at ``max_iters``."""
    return 1.0 / ((1 - 0.03) * (1 - it / max_iters) + 0.03)


def keep_rate(it: int, max_iters: int, min_rate: float, start: float = 0.1, end: float = 0.4) -> float:
    """1 before ``start * max_iters``, ``min_rate`` from ``end * max_iters``, cubic in between."""
    ts, te = int(start * max_iters), int(end * max_iters)
    if it < ts:
        return 1.0
    if it < te:
        return min_rate + (1.0 - min_rate) * (1 - (it - ts) / (te - ts)) ** 3
    return min_rate


def project_scores(scores: torch.Tensor, target: float, tol: float = 1e-3,
                   max_steps: int = 20) -> torch.Tensor:
    """``clamp(scores - v, 0, 1)`` with ``v >= 0`` found by bisection on [0, max(scores)] so the
    sum is ``target`` (within ``tol``, at most ``max_steps`` halvings); ``v = 0`` when the clamped
    scores already sum to less than ``target``."""
    def excess(v: float) -> float:
        return float((scores - v).clamp(0, 1).sum()) - target

    if excess(0.0) < 0:
        return scores.clamp(0, 1)
    low, high, v = 0.0, float(scores.max()), 0.0
    for _ in range(max_steps):
        v = (low + high) / 2
        gap = excess(v)
        if abs(gap) < tol:
            break
        low, high = (low, v) if gap < 0 else (v, high)
    return (scores - max(v, 0.0)).clamp(0, 1)


def relaxed_mask(scores: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """``sigmoid((logit s + logistic noise) * tau)``, differentiable in ``scores``."""
    u0 = torch.rand(scores.shape, generator=generator)
    u1 = torch.rand(scores.shape, generator=generator)
    noise = -torch.log(torch.log(u0 + _EPS) / torch.log(u1 + _EPS) + _EPS)
    logit = torch.log(scores + _EPS) - torch.log(1.0 - scores + _EPS)
    return torch.sigmoid((logit + noise) * tau)


def hard_mask(scores: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A {0, 1} mask with ``P(m_d = 1) = s_d``."""
    return (torch.rand(scores.shape, generator=generator) < scores).float()


def train_probmask_classifier(
    codes: np.ndarray,
    labels: np.ndarray,
    *,
    keep: int = 16,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-4,
    ema_decay: float = 0.999,
    clip: float = 3.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Train the ProbMask classifier of one binary attribute (module docstring).

    ``codes`` (N, D), ``labels`` (N,) (positive = ``> 0``). Returns ``weight`` (D,), ``bias``,
    ``ema_weight`` (D,), ``mask`` (D,) {0, 1}, ``scores`` (D,), ``mean`` / ``std`` (D,) of the
    standardisation, ``mask_sums`` (expected kept dimensions after each step, sampled every
    ``max(1, steps // 50)`` steps) and ``max_iters``.
    """
    codes = np.asarray(codes, np.float64)
    labels = np.asarray(labels).reshape(-1)
    if codes.ndim != 2 or len(codes) != len(labels) or len(codes) < 2:
        raise ConfigError(f"probmask: expected codes (N, D) and N labels with N >= 2, found "
                          f"{codes.shape} and {labels.shape}")
    dim = codes.shape[1]
    if not 1 <= keep <= dim:
        raise ConfigError(f"probmask: keep must be between 1 and the code size {dim}, got {keep}; "
                          "pass a smaller --keep")
    positive = labels > 0
    if positive.all() or not positive.any():
        raise ConfigError(f"probmask: the attribute is {'positive' if positive.all() else 'negative'} "
                          f"on all {len(labels)} images; choose an attribute with both values")
    mean = codes.mean(axis=0)
    std = codes.std(axis=0, ddof=1)
    std = np.where(std > 0, std, 1.0)
    x = torch.as_tensor((codes - mean) / std, dtype=torch.float32)
    y = torch.as_tensor(positive, dtype=torch.float32)[:, None]
    g = torch.Generator().manual_seed(seed)
    classifier = torch.nn.utils.skip_init(torch.nn.Linear, dim, 1)  # no global-RNG draw
    bound = 1.0 / math.sqrt(dim)
    with torch.no_grad():
        for param in classifier.parameters():
            param.copy_((torch.rand(param.shape, generator=g) * 2 - 1) * bound)
    ema = [p.detach().clone() for p in classifier.parameters()]
    scores = torch.nn.Parameter(torch.ones(dim))
    optimiser = torch.optim.Adam([*classifier.parameters(), scores], lr=lr)
    batches = math.ceil(len(x) / batch_size)
    max_iters = epochs * batches + 1
    every = max(1, (epochs * batches) // 50)
    loss_fn, step, sums = torch.nn.BCEWithLogitsLoss(), 0, []
    mask = torch.ones(dim)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            optimiser.zero_grad()
            tau = temperature(step, max_iters)
            loss_fn(classifier(x[rows] * relaxed_mask(scores, tau, g)), y[rows]).backward()
            torch.nn.utils.clip_grad_norm_([scores], clip)
            optimiser.step()
            step += 1
            with torch.no_grad():
                for avg, p in zip(ema, classifier.parameters()):
                    avg.mul_(ema_decay).add_(p.detach(), alpha=1 - ema_decay)
                scores.copy_(project_scores(scores.detach(), dim * keep_rate(step, max_iters, keep / dim)))
            if step % every == 0:
                sums.append(float(scores.detach().sum()))
        mask = hard_mask(scores.detach(), g)
    return {"weight": classifier.weight.detach()[0].clone(), "bias": float(classifier.bias.detach()[0]),
            "ema_weight": ema[0][0].clone(), "mask": mask, "scores": scores.detach().clone(),
            "mean": torch.as_tensor(mean, dtype=torch.float32),
            "std": torch.as_tensor(std, dtype=torch.float32), "mask_sums": sums, "max_iters": max_iters}


def edit_direction(weight: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The unit editing direction ``w / ||w||`` with ``w = weight * mask`` (D,)."""
    w = weight if mask is None else weight * mask
    norm = w.norm()
    if not norm > 0:
        raise ConfigError("probmask: the masked classifier weight is zero, so there is no editing "
                          "direction; train longer or keep more dimensions (--keep)")
    return w / norm


def edit_codes(codes: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, direction: torch.Tensor,
               scale: float) -> torch.Tensor:
    """``std * ((z - mean) / std + scale * sqrt(D) * direction) + mean`` for (B, D) codes."""
    z_n = (codes - mean) / std
    return (z_n + scale * math.sqrt(codes.shape[-1]) * direction) * std + mean
