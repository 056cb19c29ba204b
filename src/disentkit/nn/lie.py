"""Commutative Lie group encoder/decoder of CLG-VAE (Zhu et al. 2021;
zhuxinqimac/CommutativeLieGroupVAE-Pytorch ``models/lie_vae.py``).

The latent space is split into subspaces; subspace ``s`` (``k_s`` latents) owns a Lie-algebra
basis ``B_{s,1..k_s}`` of ``m_s x m_s`` matrices and a *subgroup* of ``g_s = m_s**2`` features.

* :class:`LieEncoder`: four stride-2 convolutions (32, 32, 64, 64; kernel 4, padding 1) -> FC 256
  (ReLU) -> FC ``G = sum g_s`` (no activation): the flattened *group feature* ``gE``. Per
  subgroup, the posterior heads are ``Linear(g, 4g) -> ReLU -> Linear(4g, k)`` for the mean and
  for the log-variance.
* :class:`LieDecoder`: ``A_s(z) = sum_i z_{s,i} B_{s,i}``, the group element
  ``gG_s = expm(A_s(z))`` (``torch.linalg.matrix_exp``), flattened and concatenated over subgroups,
  then the *post-exp* network FC 256 -> FC 1024 -> 64x4x4 -> transposed convolutions 64, 32, 32, C
  (the disentanglement_lib decoder fed with ``G`` features), ending in logits.
  The basis is initialised N(0, 0.001**2), so ``expm(A) ~ I`` at the start of training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from disentkit.nn.conv64 import ConvDecoder


def _check_groups(subgroup_sizes: Sequence[int], subspace_sizes: Sequence[int],
                  latent_dim: int) -> list[int]:
    if len(subgroup_sizes) != len(subspace_sizes):
        raise ValueError(
            f"CLG: subgroup_sizes {list(subgroup_sizes)} and subspace_sizes "
            f"{list(subspace_sizes)} must have the same length (one subgroup per subspace)"
        )
    if sum(subspace_sizes) != latent_dim:
        raise ValueError(
            f"CLG: subspace_sizes {list(subspace_sizes)} must add up to latent_dim={latent_dim}"
        )
    sides = []
    for g in subgroup_sizes:
        m = math.isqrt(int(g))
        if m * m != g or g <= 0:
            raise ValueError(
                f"CLG: every subgroup size must be a square m*m (a flattened m x m matrix), got {g}"
            )
        sides.append(m)
    return sides


class LieEncoder(nn.Module):
    """x -> (mean, logvar); :meth:`features` also returns the group feature ``gE``."""

    def __init__(self, in_channels: int, latent_dim: int, image_size: int,
                 subgroup_sizes: Sequence[int], subspace_sizes: Sequence[int]) -> None:
        super().__init__()
        _check_groups(subgroup_sizes, subspace_sizes, latent_dim)
        self.subgroup_sizes = [int(g) for g in subgroup_sizes]
        spatial = image_size // 16
        self.image_net = nn.Sequential(
            nn.Conv2d(in_channels, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * spatial * spatial, 256), nn.ReLU(),
            nn.Linear(256, sum(self.subgroup_sizes)),
        )

        def head(g: int, k: int) -> nn.Module:
            return nn.Sequential(nn.Linear(g, 4 * g), nn.ReLU(), nn.Linear(4 * g, k))

        pairs = list(zip(self.subgroup_sizes, subspace_sizes))
        self.mean_heads = nn.ModuleList(head(g, k) for g, k in pairs)
        self.logvar_heads = nn.ModuleList(head(g, k) for g, k in pairs)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, logvar, gE) with gE the (B, G) group feature."""
        group = self.image_net(x)
        parts = group.split(self.subgroup_sizes, dim=1)
        mean = torch.cat([h(p) for h, p in zip(self.mean_heads, parts)], dim=1)
        logvar = torch.cat([h(p) for h, p in zip(self.logvar_heads, parts)], dim=1)
        return mean, logvar, group

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar, _ = self.features(x)
        return mean, logvar


class LieDecoder(nn.Module):
    """z -> expm(sum_i z_i B_i) (flattened) -> post-exp conv decoder -> logits."""

    def __init__(self, out_channels: int, latent_dim: int, image_size: int,
                 subgroup_sizes: Sequence[int], subspace_sizes: Sequence[int],
                 basis_std: float = 1e-3) -> None:
        super().__init__()
        sides = _check_groups(subgroup_sizes, subspace_sizes, latent_dim)
        self.subspace_sizes = [int(k) for k in subspace_sizes]
        self.bases = nn.ParameterList(
            nn.Parameter(torch.randn(k, m, m) * basis_std) for k, m in zip(subspace_sizes, sides)
        )
        self.post_exp = ConvDecoder(out_channels, int(sum(subgroup_sizes)), image_size)

    def group_element(self, z: torch.Tensor) -> torch.Tensor:
        """gG: (B, G) flattened ``expm(A_s(z))`` of every subgroup, concatenated."""
        out = []
        for basis, z_s in zip(self.bases, z.split(self.subspace_sizes, dim=1)):
            algebra = torch.einsum("bk,kij->bij", z_s, basis)
            out.append(torch.linalg.matrix_exp(algebra).flatten(1))
        return torch.cat(out, dim=1)

    def decode_group(self, group: torch.Tensor) -> torch.Tensor:
        """Logits for a (B, G) group feature (the post-exp network alone)."""
        return self.post_exp(group)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.post_exp(self.group_element(z))

    def basis_penalties(self, commutator: str = "commutator") -> tuple[torch.Tensor, torch.Tensor]:
        """(hessian, commute) penalties of the Lie-algebra basis, summed over subgroups.

        * hessian: mean over all k x k basis pairs (diagonal pairs set to 0) of
          ``||B_i B_j||_F**2`` (CLG's commutativity-inducing "Hessian" penalty);
        * commute: the same mean of ``||B_i B_j - B_j B_i||_F**2`` (``commutator="commutator"``),
          or of ``||B_i B_j - (B_i B_j)^T||_F**2`` as CLG's code writes it
          (``commutator="reference_transpose"``).
        """
        hessian = torch.zeros((), device=self.bases[0].device)
        commute = torch.zeros((), device=self.bases[0].device)
        for basis in self.bases:
            k = basis.shape[0]
            products = torch.einsum("aij,bjl->abil", basis, basis)  # B_a B_b
            off = 1.0 - torch.eye(k, device=basis.device, dtype=basis.dtype)
            hessian = hessian + (products.pow(2).sum((-1, -2)) * off).sum() / (k * k)
            if commutator == "commutator":
                diff = products - products.transpose(0, 1)
            elif commutator == "reference_transpose":
                diff = products - products.transpose(-1, -2)
            else:
                raise ValueError(
                    f"commutator must be 'commutator' or 'reference_transpose', got {commutator!r}"
                )
            commute = commute + (diff.pow(2).sum((-1, -2)) * off).sum() / (k * k)
        return hessian, commute
