"""Weight-initialisation schemes of the reference implementations.

* ``xavier_zero``: Glorot-uniform weights, zero biases (TensorFlow defaults; disentanglement_lib).
* ``normal002``: weights N(0, 0.02), zero biases (1Konny/FactorVAE ``normal_init``).
* ``kaiming``: Kaiming-normal weights, zero biases (1Konny/Beta-VAE ``kaiming_init``).
* ``xavier``: Xavier-uniform weights, PyTorch's default biases (CFASL baselines' ``init_weights``).
* ``xavier_u01``: Xavier-uniform weights and U(0, 1) biases (CFASL "group" models).
* ``torch``: leave PyTorch's default initialisation (beta-TCVAE and CLG-VAE code).
"""

from __future__ import annotations

from typing import Literal

from torch import nn

InitScheme = Literal["xavier_zero", "normal002", "kaiming", "xavier", "xavier_u01", "torch"]
INIT_SCHEMES: tuple[str, ...] = ("xavier_zero", "normal002", "kaiming", "xavier", "xavier_u01",
                                 "torch")

_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def initialise(module: nn.Module, scheme: str) -> None:
    """Re-initialise every conv/linear layer of ``module`` with ``scheme`` (see module doc)."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; known: {', '.join(INIT_SCHEMES)}")
    if scheme == "torch":
        return
    for m in module.modules():
        if not isinstance(m, _LAYERS):
            continue
        if scheme in ("xavier_zero", "xavier", "xavier_u01"):
            nn.init.xavier_uniform_(m.weight)
        elif scheme == "normal002":
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif scheme == "kaiming":
            nn.init.kaiming_normal_(m.weight)
        if m.bias is None or scheme == "xavier":
            continue
        if scheme == "xavier_u01":
            nn.init.uniform_(m.bias, 0.0, 1.0)
        else:
            nn.init.zeros_(m.bias)
