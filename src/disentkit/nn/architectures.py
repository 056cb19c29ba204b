"""Encoder/decoder layouts by name: one place that maps a config's
``architecture`` to networks, so every VAE-family model accepts every layout.

| name | source | inputs |
|---|---|---|
| ``dlib`` | disentanglement_lib ``conv_encoder``/``deconv_decoder`` (``architectures.py``) | 32x32, 64x64 |
| ``kim`` | 1Konny FactorVAE/Beta-VAE "H" nets (``model.py``) | 32x32, 64x64 |
| ``burgess`` | 1Konny Beta-VAE "B" nets, Burgess et al. 2018 (``model.py``) | 32x32, 64x64 |
| ``cfasl`` | GIST-IRR/CFASL backbone, padding 0, ``dense_dim`` (``models/encoder.py``) | 64x64 |
| ``mlp`` | beta-VAE paper / beta-TCVAE dSprites MLPs 1200-1200 (``vae_quant.py``) | any |
| ``clg`` | CLG-VAE Lie-group encoder/decoder (``lie_vae.py``, :mod:`disentkit.nn.lie`) | 32x32, 64x64 |

Every encoder maps x (B, C, H, W) to (mean, logvar); every decoder maps z to logits.
Config fields read (``getattr`` with defaults, so any model config works): ``latent_dim``,
``architecture``, ``dlib_kernel2``, ``dlib_stages``, ``hidden_dim`` (0: the architecture's own width),
``init`` ("auto": the source's scheme, see :mod:`disentkit.nn.init`) and, for ``clg``,
``subgroup_sizes``/``subspace_sizes``.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import nn

from disentkit.nn.conv64 import ConvDecoder, ConvEncoder
from disentkit.nn.conv_burgess import BurgessDecoder, BurgessEncoder
from disentkit.nn.conv_cfasl import CFASLDecoder, CFASLEncoder
from disentkit.nn.conv_kim import KimDecoder, KimEncoder
from disentkit.nn.init import initialise
from disentkit.nn.lie import LieDecoder, LieEncoder
from disentkit.nn.mlp import MLPDecoder, MLPEncoder

Architecture = Literal["dlib", "kim", "burgess", "cfasl", "mlp", "clg"]
ARCHITECTURES: tuple[str, ...] = ("dlib", "kim", "burgess", "cfasl", "mlp", "clg")

#: the initialisation each source uses ("auto")
DEFAULT_INIT = {
    "dlib": "xavier_zero",   # TF defaults (glorot uniform, zero bias)
    "kim": "normal002",      # 1Konny/FactorVAE normal_init
    "burgess": "kaiming",    # 1Konny/Beta-VAE kaiming_init
    "cfasl": "xavier",       # CFASL init_weights (baselines)
    "mlp": "torch",          # beta-TCVAE code keeps PyTorch defaults
    "clg": "torch",          # CLG-VAE code keeps PyTorch defaults (basis N(0, 1e-3))
}

#: default hidden width (``hidden_dim: 0``)
DEFAULT_HIDDEN = {"dlib": 256, "kim": 256, "burgess": 256, "cfasl": 256, "mlp": 1200, "clg": 256}


def build(config: Any, image_shape: tuple[int, int, int]) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) for ``config.architecture`` and images of ``image_shape`` (C, H, W)."""
    channels, height, width = image_shape
    name = getattr(config, "architecture", "dlib")
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    if name != "mlp":
        allowed = (64,) if name == "cfasl" else (32, 64)
        if height != width or height not in allowed:
            raise ValueError(
                f"architecture {name!r} takes square images of size "
                f"{' or '.join(f'{s}x{s}' for s in allowed)}, got {height}x{width}; "
                "set data.image_size accordingly or choose architecture=mlp/dlib"
            )
    if name != "dlib" and int(getattr(config, "dlib_stages", 4)) != 4:
        raise ValueError(
            f"dlib_stages applies to architecture 'dlib' only, got architecture {name!r}; "
            "leave dlib_stages=4 or set architecture=dlib"
        )
    latent = int(config.latent_dim)
    hidden = int(getattr(config, "hidden_dim", 0) or DEFAULT_HIDDEN[name])
    encoder: nn.Module
    decoder: nn.Module
    if name == "dlib":
        if hidden != 256:
            raise ValueError("architecture 'dlib' has a fixed FC width of 256; leave hidden_dim=0")
        stages = int(getattr(config, "dlib_stages", 4))
        encoder = ConvEncoder(channels, latent, height,
                              bool(getattr(config, "dlib_kernel2", False)), stages)
        decoder = ConvDecoder(channels, latent, height, stages)
    elif name == "kim":
        encoder = KimEncoder(channels, latent, height, hidden)
        decoder = KimDecoder(channels, latent, height, hidden)
    elif name == "burgess":
        encoder = BurgessEncoder(channels, latent, height, hidden)
        decoder = BurgessDecoder(channels, latent, height, hidden)
    elif name == "cfasl":
        encoder = CFASLEncoder(channels, latent, hidden)
        decoder = CFASLDecoder(channels, latent, hidden)
    elif name == "mlp":
        encoder = MLPEncoder(image_shape, latent, hidden)
        decoder = MLPDecoder(image_shape, latent, hidden)
    else:  # clg
        groups = list(getattr(config, "subgroup_sizes", [100]))
        spaces = list(getattr(config, "subspace_sizes", [latent]))
        encoder = LieEncoder(channels, latent, height, groups, spaces)
        decoder = LieDecoder(channels, latent, height, groups, spaces)
    scheme = getattr(config, "init", "auto")
    scheme = DEFAULT_INIT[name] if scheme == "auto" else scheme
    initialise(encoder, scheme)
    initialise(decoder, scheme)
    return encoder, decoder
