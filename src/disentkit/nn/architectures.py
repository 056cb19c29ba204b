"""Encoder/decoder layouts by name (specs/vae_methods.md §1): one place that maps a config's
``architecture`` to networks, so every VAE-family model accepts every layout."""

from __future__ import annotations

from typing import Any

from torch import nn

from disentkit.nn.conv64 import ConvDecoder, ConvEncoder


def build(config: Any, image_shape: tuple[int, int, int]) -> tuple[nn.Module, nn.Module]:
    channels, height, width = image_shape
    if height != width or height not in (32, 64):
        raise ValueError(f"the conv encoder/decoder take square 32x32 or 64x64 images, got {height}x{width}")
    name = config.architecture
    if name == "dlib":
        encoder = ConvEncoder(channels, config.latent_dim, height, getattr(config, "dlib_kernel2", False))
        decoder = ConvDecoder(channels, config.latent_dim, height)
        return encoder, decoder
    raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")


ARCHITECTURES = ["dlib"]
