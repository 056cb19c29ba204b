"""Vector quantisation of a latent map (van den Oord et al. 2017, "Neural Discrete Representation
Learning", eq. 3), in the form DisDiff's first stage trains with: taming-transformers'
``VectorQuantizer2`` with ``legacy=True`` (``CompVis/taming-transformers
taming/modules/vqvae/quantize.py``; ``ThomasMrY/DisDiff configs/autoencoder/*_vq_4_16.yaml``).

Each position's vector ``z`` (the channels of a (B, C, H, W) map) is replaced by its nearest
codebook entry ``e`` (squared Euclidean distance). The loss is the *legacy* one, where beta
weights the codebook term rather than the commitment term of the paper::

    L_q = mean((sg[e] - z)^2) + beta * mean((e - sg[z])^2)

(``sg`` = stop-gradient; with beta = 0.25 the encoder is pulled to the codebook 4x harder than the
codebook to the encoder). The output is ``z + sg[e - z]``: the value of ``e`` with the gradient of
the identity (straight-through estimator), so the decoder's gradient reaches the encoder.
The codebook starts uniform in ``[-1/n, 1/n]`` as in the reference.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["Quantized", "VectorQuantizer"]


class Quantized(NamedTuple):
    """What :meth:`VectorQuantizer.forward` returns."""

    #: the quantised map (straight-through: the codebook's values, the identity's gradient)
    z_q: Tensor
    #: the legacy VQ loss (a scalar)
    loss: Tensor
    #: the chosen codebook index of every position, (B, H, W)
    indices: Tensor
    #: exp(entropy) of the batch's code usage: how many entries are in use (for logging)
    perplexity: Tensor


class VectorQuantizer(nn.Module):
    """``num_embeddings`` codebook vectors of ``dim`` channels; ``beta`` weights the codebook term."""

    def __init__(self, num_embeddings: int, dim: int, beta: float = 0.25) -> None:
        super().__init__()
        self.num_embeddings, self.dim, self.beta = int(num_embeddings), int(dim), float(beta)
        self.embedding = nn.Embedding(self.num_embeddings, self.dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / self.num_embeddings, 1.0 / self.num_embeddings)

    def nearest(self, z: Tensor) -> Tensor:
        """The index of the nearest codebook entry of each position of ``z`` (B, C, H, W) -> (B, H, W)."""
        # float32 even under autocast: bf16 distances would pick neighbours the reference does not
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = z.detach().float().permute(0, 2, 3, 1).reshape(-1, self.dim)
            codebook = self.embedding.weight.detach().float()
            # |z|^2 + |e|^2 - 2 z.e, the reference's expansion of the squared distance
            distance = (flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1)[None]
                        - 2.0 * flat @ codebook.t())
        b, _, h, w = z.shape
        return distance.argmin(dim=1).reshape(b, h, w)

    def lookup(self, indices: Tensor) -> Tensor:
        """Codebook vectors of ``indices`` (B, H, W) as a (B, C, H, W) map."""
        return self.embedding(indices).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: Tensor) -> Quantized:
        indices = self.nearest(z)
        e = self.lookup(indices).to(z.dtype)
        loss = torch.mean((e.detach() - z) ** 2) + self.beta * torch.mean((e - z.detach()) ** 2)
        z_q = z + (e - z).detach()
        with torch.no_grad():
            usage = torch.bincount(indices.reshape(-1), minlength=self.num_embeddings).float()
            p = usage / usage.sum()
            perplexity = torch.exp(-(p * torch.log(p + 1e-10)).sum())
        return Quantized(z_q, loss, indices, perplexity)
