"""Reusable networks: the standard 64x64 convolutional encoder/decoder and its variants."""
