"""Argument types and options shared by the commands that open one trained run."""

from __future__ import annotations

import argparse


def positive_int(value: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return number


def seed_int(value: str) -> int:
    """An argparse type: a seed, a whole number in [0, 2^63)."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number < 2**63:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}")
    return number


def add_weights_options(parser: argparse.ArgumentParser) -> None:
    """``--no-ema`` and ``--device``: which weights of the run to load, and where."""
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    parser.add_argument("--device", default="cpu", help="torch device for the model (cpu, cuda)")
