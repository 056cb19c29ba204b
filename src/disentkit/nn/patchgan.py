"""The PatchGAN discriminator of pix2pix (Isola et al. 2017, "Image-to-Image Translation with
Conditional Adversarial Networks", Sec. 3.2.2), as taming-transformers builds it for VQGAN
(``CompVis/taming-transformers taming/modules/discriminator/model.py`` ``NLayerDiscriminator``)
and DisDiff's first stage trains it.

``Conv4x4/2 (ndf) -> LeakyReLU(0.2)``, then ``n_layers - 1`` blocks ``Conv4x4/2 -> BatchNorm ->
LeakyReLU(0.2)`` doubling the width (at most 8 ndf), one more such block with stride 1, and a
stride-1 ``Conv4x4`` to one logit per patch. Convolutions followed by BatchNorm carry no bias.
Weights start as in the reference: convolutions N(0, 0.02), BatchNorm scales N(1, 0.02), shifts 0.

Each stride-2 layer halves the side and each stride-1 4x4 layer (padding 1) takes one pixel off,
so the input side must be at least ``3 * 2**n_layers`` (:func:`patchgan_min_side`).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PatchDiscriminator", "patchgan_min_side"]


def patchgan_min_side(n_layers: int) -> int:
    """The smallest image side that leaves at least one output patch."""
    # n_layers halvings, then the two stride-1 4x4 convolutions take one pixel each
    return 3 * 2 ** n_layers


class PatchDiscriminator(nn.Module):
    """Images (B, C, H, W) -> patch logits (B, 1, h, w)."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"the PatchGAN needs n_layers >= 1, got {n_layers}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, inplace=True)]
        mult = 1
        for n in range(1, n_layers + 1):
            previous, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * previous, ndf * mult, 4, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)
