"""CFASL's learnable symmetry codebook and its regularisers (GIST-IRR/CFASL ``models/group_action_layer.py``).

Notation (Jung, Jeong & Kim, TMLR 2024): a latent code is a row vector z in R^D. The codebook has
D *sections* (one per latent dimension), each with P = ``sub_sec`` Lie-algebra elements
g_{s,p} in R^{D x D}, K = D * P elements in all, stored section-major (k = s * P + p). A codebook
symmetry acts on z by right multiplication with the group element exp(g_k)
(``torch.linalg.matrix_exp``); a composite symmetry is exp(sum_k w_k g_k).

Codebook regularisers (weight ``alpha`` in the objective), all on the sampled z of the whole batch
and on the displacements delta_kb = z_b - z_b exp(g_k):

* :func:`sparsity_loss`: each symmetry moves one coordinate (sum_d delta^2 equals max_d delta^2);
* :func:`parallel_loss`: within a section all displacements are colinear (-log cos^2);
* :func:`orthogonal_loss`: displacements of different sections are orthogonal (cos^2);
* :func:`commutator_loss`: codebook elements commute ([g_i, g_j] = 0).

Everything is vectorised: no Python loop runs over samples, elements or element pairs (the
parallel loss walks over slabs of 32 rows of its cosine matrices, each slab one batched
computation over all sections).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: the constant inside CFASL's parallel loss, -log(cos^2 + PARALLEL_EPS)
PARALLEL_EPS = 1e-9


class SymmetryCodebook(nn.Module):
    """K = D * P learnable Lie-algebra elements, ``elements[s * P + p]`` = g_{s,p} (D x D).

    Initialised from a normal distribution with standard deviation ``init_std`` truncated at
    +-2 (PyTorch's ``trunc_normal_`` defaults, what CFASL's ``init_weights`` uses).
    """

    def __init__(self, latent_dim: int, sub_sec: int, init_std: float = 1.0) -> None:
        super().__init__()
        if latent_dim < 1 or sub_sec < 1:
            raise ValueError(
                f"the symmetry codebook needs latent_dim >= 1 and sub_sec >= 1, got "
                f"latent_dim={latent_dim}, sub_sec={sub_sec}"
            )
        self.latent_dim = latent_dim
        self.sub_sec = sub_sec
        self.init_std = init_std
        self.elements = nn.Parameter(torch.empty(latent_dim * sub_sec, latent_dim, latent_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.elements, mean=0.0, std=self.init_std, a=-2.0, b=2.0)

    @property
    def num_elements(self) -> int:
        return self.latent_dim * self.sub_sec

    def group_elements(self) -> torch.Tensor:
        """exp(g_k) for every codebook element: (K, D, D)."""
        return torch.linalg.matrix_exp(self.elements)

    def algebra(self, weights: torch.Tensor) -> torch.Tensor:
        """The composite Lie-algebra element A = sum_{s,p} w_{s,p} g_{s,p} per row of ``weights``.

        ``weights``: (n, D, P) or (n, K) -> (n, D, D).
        """
        flat = weights.reshape(weights.shape[0], self.num_elements)
        return torch.einsum("nk,kij->nij", flat, self.elements)

    def displacements(self, z: torch.Tensor) -> torch.Tensor:
        """delta_{s,p,b} = z_b - z_b exp(g_{s,p}): (D, P, B, D) for codes ``z`` of shape (B, D)."""
        moved = torch.matmul(z.unsqueeze(0), self.group_elements())  # (K, B, D)
        delta = z.unsqueeze(0) - moved
        return delta.view(self.latent_dim, self.sub_sec, z.shape[0], self.latent_dim)


def act(z: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Right action of group elements on row vectors: z (n, D), group (n, D, D) -> z G (n, D)."""
    return torch.bmm(z.unsqueeze(1), group).squeeze(1)


# ---------------------------------------------------------------------------------------------
# Codebook regularisers
# ---------------------------------------------------------------------------------------------
def sparsity_loss(delta: torch.Tensor) -> torch.Tensor:
    """Factor alignment: mean over (k, b) of (sum_d delta_kbd^2 - max_d delta_kbd^2)^2.

    Zero exactly when every displacement moves at most one latent coordinate.
    """
    sq = delta.reshape(-1, delta.shape[-1]).pow(2)
    return F.mse_loss(sq.sum(-1), sq.max(-1).values)


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)


#: rows of the cosine matrix handled per pass by :func:`parallel_loss` on the CPU: a
#: (sections, 32, P B) slab of cosines (1.3 MiB at D = 10, P = 16, B = 64) stays close to a core's
#: L2 cache (16 to 64 rows measured within 5% of each other, 128 rows 20% slower)
PARALLEL_ROWS = 32
#: on other devices the slabs are as tall as fit in this many cosines (fewer kernel launches)
PARALLEL_SLAB_ELEMENTS = 1 << 24


def _slab_rows(sections: int, num: int, device: torch.device) -> int:
    """Rows per slab of :class:`_ParallelLoss` (a multiple of 4 where possible, see
    :func:`_log_sum_of_products`)."""
    rows = PARALLEL_ROWS
    if device.type != "cpu":
        rows = max(rows, PARALLEL_SLAB_ELEMENTS // (sections * num) // 4 * 4)
    return max(1, min(rows, num))


def _log_sum_of_products(values: torch.Tensor, out: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """sum(log(values)) for a (n, rows, cols) tensor of values in [PARALLEL_EPS, ~1], with one
    log per four values: log a + log b + log c + log d = log(a b c d).

    The rows are multiplied in halves twice (the products of 4 values stay >= 1e-36, above the
    smallest normal float32, 1.2e-38, so nothing underflows); a block with an odd number of rows
    at some level takes the plain log there. ``out`` holds two flat scratch buffers.
    """
    prod = values
    if torch.finfo(values.dtype).tiny < PARALLEL_EPS**4:
        for buf in out:
            rows = prod.shape[1]
            if rows % 2:
                break
            half = rows // 2
            target = buf[: prod.shape[0] * half * prod.shape[2]].view(prod.shape[0], half, prod.shape[2])
            prod = torch.mul(prod[:, :half], prod[:, half:], out=target)
    return (prod.log_() if prod is not values else prod.log()).sum()


class _ParallelLoss(torch.autograd.Function):
    """-scale * sum_s sum_{i,j} log(cos_s[i, j]^2 + eps) over the N x N cosine matrices of the
    S sections, ``unit``: (S, N, D) unit vectors.

    The cosine matrix is symmetric, so the forward pass walks down it in slabs of rows i
    (:func:`_slab_rows`) and keeps only the columns j >= the slab's first row: the square diagonal
    block of a slab counts once, the rest twice. Every slab is one batched product over the
    sections into reused buffers. When a gradient is needed it is computed in the same pass
    (d/dc log(c^2 + eps) = 2c / (c^2 + eps)): the slab's rows take the weighted sum over all its
    columns, the columns right of the diagonal block take the weighted sum over the slab's rows
    (so every pair i != j reaches both vectors, the diagonal block once), both accumulated in the
    transposed (S, D, N) layout where the products are wide (D x N outputs) instead of tall. No
    (S, N, N) tensor is ever stored and the backward pass only rescales the saved gradient.
    """

    @staticmethod
    def forward(ctx, unit, scale):  # type: ignore[override]
        need_grad = ctx.needs_input_grad[0]
        sections, num, dim = unit.shape
        rows = _slab_rows(sections, num, unit.device)
        unit_t = unit.transpose(1, 2).contiguous()  # (S, D, N)
        grad_t = torch.zeros_like(unit_t) if need_grad else None
        slab = sections * rows * num
        cos_buf, den_buf = unit.new_empty(slab), unit.new_empty(slab)
        scratch = (unit.new_empty(slab // 2), unit.new_empty(slab // 4))
        col_buf = unit.new_empty(sections * dim * num) if need_grad else None
        diag_buf = unit.new_empty(sections * rows * num)  # the square diagonal blocks, end to end
        eps = unit.new_tensor(PARALLEL_EPS)
        total = unit.new_zeros(())  # sum over slabs (all columns j >= first row)
        filled = 0
        for start in range(0, num, rows):
            stop = min(start + rows, num)
            height, width = stop - start, num - start
            shape = (sections, height, width)
            size = sections * height * width
            cos = torch.bmm(unit[:, start:stop], unit_t[:, :, start:], out=cos_buf[:size].view(shape))
            den = torch.addcmul(eps, cos, cos, out=den_buf[:size].view(shape))  # cos^2 + eps
            block = sections * height * height
            diag_buf[filled : filled + block].view(sections, height, height).copy_(den[:, :, :height])
            filled += block
            total += _log_sum_of_products(den, scratch)
            if need_grad:
                ratio = cos.div_(den)  # cos / (cos^2 + eps); cos is not needed again
                # rows of the slab against every column j >= start (its diagonal block once) ...
                grad_t[:, :, start:stop] += torch.bmm(unit_t[:, :, start:], ratio.transpose(1, 2))
                # ... and the columns right of the diagonal block against the slab's rows
                if stop < num:
                    cols = col_buf[: sections * dim * (num - stop)].view(sections, dim, num - stop)
                    grad_t[:, :, stop:] += torch.bmm(unit_t[:, :, start:stop], ratio[:, :, height:],
                                                     out=cols)
        # the diagonal blocks count once: subtract one copy (full-height blocks with products too)
        full = num // rows * sections * rows * rows
        diag = _log_sum_of_products(diag_buf[:full].view(-1, rows, rows), scratch)
        if filled > full:
            diag = diag + diag_buf[full:filled].log().sum()
        total = 2.0 * total - diag
        if need_grad:
            # weight 2 per off-diagonal entry, d/dc = 2c / (c^2 + eps), overall factor -scale
            grad_t.mul_(-4.0 * scale)
            ctx.save_for_backward(grad_t)
        return -total * scale

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        (grad_t,) = ctx.saved_tensors
        return grad_t.transpose(1, 2) * grad_out, None


def parallel_loss(delta: torch.Tensor) -> torch.Tensor:
    """Within each section, all P * B displacement vectors are colinear.

    ``delta``: (S, P, B, D). Returns the mean over sections and over all (P B)^2 ordered pairs of
    a section (self-pairs included) of -log(cos^2 + 1e-9), CFASL's parallel loss. The cosine
    matrix is symmetric, so only its upper slabs are computed (about half the pairs), in
    cache-sized passes with the gradient fused in and one log per four cosines (see
    :class:`_ParallelLoss` and :func:`_log_sum_of_products`): the same value as
    :func:`parallel_loss_dense` up to float rounding.
    """
    sections, sub, batch, dim = delta.shape
    unit = _unit(delta).reshape(sections, sub * batch, dim)
    return _ParallelLoss.apply(unit, 1.0 / (sections * (sub * batch) ** 2))


def parallel_loss_dense(delta: torch.Tensor) -> torch.Tensor:
    """The parallel loss written directly from its definition (a test oracle, O(S (PB)^2) memory
    in autograd); equals :func:`parallel_loss`."""
    sections, sub, batch, dim = delta.shape
    unit = _unit(delta.reshape(sections, sub * batch, dim))
    cos = torch.bmm(unit, unit.transpose(-1, -2))
    return -torch.log(cos.square() + PARALLEL_EPS).mean()


def orthogonal_loss(delta: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """Displacements of different sections are orthogonal.

    ``delta``: (S, P, B, D); ``choice``: (S,) the sub-section element picked in each section
    (CFASL draws it uniformly at random every step). With u the unit displacements of the picked
    elements (S * B vectors), the loss is the mean over the full (S B)^2 matrix of cos^2 with the
    same-section blocks set to zero. Computed exactly without that matrix:
    sum_{i,j} (u_i . u_j)^2 = ||U^T U||_F^2, so the loss is
    (||U^T U||_F^2 - sum_s ||U_s^T U_s||_F^2) / (S B)^2, O(S B D^2) instead of O((S B)^2 D).
    """
    sections, _, batch, dim = delta.shape
    picked = delta[torch.arange(sections, device=delta.device), choice]  # (S, B, D)
    unit = _unit(picked)
    per_section = torch.matmul(unit.transpose(-1, -2), unit)  # (S, D, D)
    total = per_section.sum(0).square().sum()
    same = per_section.square().sum()
    return (total - same) / (sections * batch) ** 2


def orthogonal_loss_dense(delta: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """:func:`orthogonal_loss` written from its definition (test oracle)."""
    sections, _, batch, dim = delta.shape
    picked = delta[torch.arange(sections, device=delta.device), choice].reshape(-1, dim)
    unit = _unit(picked)
    cos2 = (unit @ unit.T).square()
    block = torch.arange(sections, device=delta.device).repeat_interleave(batch)
    mask = (block[:, None] != block[None, :]).to(cos2.dtype)
    return (cos2 * mask).mean()


def commutator_loss(elements: torch.Tensor) -> torch.Tensor:
    """sum over element pairs i < j of mean_{ab} ([g_i, g_j]_{ab})^2, [A, B] = AB - BA.

    Exact, without forming the K^2 products: over all ordered pairs,
    sum_{ij} ||g_i g_j - g_j g_i||^2 = 2 sum_{ij} ||g_i g_j||^2 - 2 sum_{ij} <g_i g_j, g_j g_i>, with
    sum_{ij} ||g_i g_j||^2 = <sum_i g_i^T g_i, sum_j g_j g_j^T> and
    sum_{ij} <g_i g_j, g_j g_i> = sum_{abcd} M[a,b,d,c] M[b,c,a,d], M[a,b,c,d] = sum_i g_i[a,b] g_i[c,d].
    That is O(K D^4) instead of O(K^2 D^3); the two sums are formed in float64 so that their
    difference keeps full float32 precision even when the codebook nearly commutes. The diagonal
    pairs contribute zero and each unordered pair appears twice, hence (T1 - T2) / D^2.
    """
    num, dim, _ = elements.shape
    g = elements.double()
    gram_cols = torch.einsum("iab,iac->bc", g, g)  # sum_i g_i^T g_i
    gram_rows = torch.einsum("iba,ica->bc", g, g)  # sum_i g_i g_i^T
    flat = g.reshape(num, dim * dim)
    moments = (flat.T @ flat).reshape(dim, dim, dim, dim)  # M[a,b,c,d]
    t1 = (gram_cols * gram_rows).sum()
    t2 = torch.einsum("abdc,bcad->", moments, moments)
    return ((t1 - t2) / (dim * dim)).to(elements.dtype)


def commutator_loss_dense(elements: torch.Tensor) -> torch.Tensor:
    """:func:`commutator_loss` from its definition with all K^2 products (test oracle)."""
    num, dim, _ = elements.shape
    products = torch.einsum("iab,jbc->ijac", elements, elements)  # g_i g_j
    commutators = products - products.transpose(0, 1)
    return 0.5 * commutators.square().sum() / (dim * dim)


def reference_commutator_loss(elements: torch.Tensor, sub_sec: int) -> torch.Tensor:
    """The commutativity term exactly as the CFASL code computes it (``Group_Elements.commutative``).

    The reference reshapes the (K, D, D) codebook into a (D, K D) matrix (which does not place
    g_j in column block j), multiplies every g_i by it, and loops over the pairs i < j of the
    first P = ``sub_sec`` elements, swapping blocks (i, j) and (j, i) of a running copy and adding
    the mean squared difference over the whole (K D)^2 matrix after every swap. The n-th pair in
    loop order is therefore counted (M - n) times, M = P (P - 1) / 2. Here the same value comes
    from one batched product and a weighted sum.
    """
    num, dim, _ = elements.shape
    p = min(sub_sec, num)
    # column block j of the reference's reshaped "basis": flat codebook memory read as (D, K*D)
    blocks_h = elements.reshape(dim, num, dim).permute(1, 0, 2)[:p]  # (P, D, D)
    blocks = torch.einsum("iab,jbc->ijac", elements[:p], blocks_h)  # block (i, j) of the product
    left, right = torch.triu_indices(p, p, offset=1, device=elements.device)
    pairs = left.numel()
    if pairs == 0:
        return elements.sum() * 0.0
    diff = (blocks[left, right] - blocks[right, left]).square().sum(dim=(-1, -2))  # (M,)
    repeats = torch.arange(pairs, 0, -1, device=elements.device, dtype=elements.dtype)
    return 2.0 * (repeats * diff).sum() / (num * dim) ** 2


# ---------------------------------------------------------------------------------------------
# Composite symmetry of a pair (the "group action layer")
# ---------------------------------------------------------------------------------------------
class SymmetryPredictor(nn.Module):
    """One linear layer from the pair's posterior statistics [mu1, sigma1, mu2, sigma2] (4D) to
    2 D switch logits (off/on per latent dimension) and D * P factor logits (one softmax over the
    P elements of each section)."""

    def __init__(self, latent_dim: int, sub_sec: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.sub_sec = sub_sec
        self.linear = nn.Linear(4 * latent_dim, (sub_sec + 2) * latent_dim)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (n, 4D) -> switch logits (n, D, 2), factor logits (n, D, P)."""
        out = self.linear(features)
        dim = self.latent_dim
        switch_logits = out[:, : 2 * dim].reshape(-1, dim, 2)
        factor_logits = out[:, 2 * dim :].reshape(-1, dim, self.sub_sec)
        return switch_logits, factor_logits


def switch_targets(z1: torch.Tensor, z2: torch.Tensor, th: float) -> torch.Tensor:
    """Pseudo-labels of the switches: 1 ("on") where |z1_d - z2_d| > th, else 0; (n, D) int64."""
    return ((z1 - z2).abs() > th).long()


def switch_loss(switch_logits: torch.Tensor, targets: torch.Tensor, double_softmax: bool = False
                ) -> torch.Tensor:
    """Cross-entropy of the switch logits against the pseudo-labels, summed over pairs and
    dimensions and divided by the number of pairs.

    ``double_softmax=True`` reproduces the reference, which feeds softmax probabilities (not
    logits) to ``cross_entropy`` and so applies the softmax twice.
    """
    logits = switch_logits.reshape(-1, 2)
    if double_softmax:
        logits = torch.softmax(logits, dim=-1)
    return F.cross_entropy(logits, targets.reshape(-1), reduction="sum") / switch_logits.shape[0]


def composite_weights(
    switch_logits: torch.Tensor, factor_logits: torch.Tensor, tau: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights w_{s,p} = switch_s * softmax_p(factor logits of section s).

    The switch value is the "on" component of a Gumbel-softmax sample at temperature ``tau``
    (1e-4 in CFASL: practically a hard 0/1 draw). Returns (weights (n, D, P), switches (n, D),
    factor probabilities (n, D, P)).
    """
    switches = F.gumbel_softmax(switch_logits, tau=tau, dim=-1)[..., 1]
    probs = torch.softmax(factor_logits, dim=-1)
    return switches.unsqueeze(-1) * probs, switches, probs
