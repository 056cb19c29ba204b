"""Datasets: the ground-truth protocol, file formats, downloads and procedural generators."""

from disentkit.data.base import ArrayGroundTruthData, GroundTruthData

__all__ = ["ArrayGroundTruthData", "GroundTruthData"]
