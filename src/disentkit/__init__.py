"""disentkit: unsupervised disentangled representation learning on one modern PyTorch code base."""

__version__ = "0.1.0"

from disentkit.api import load_run, train  # noqa: E402

__all__ = ["__version__", "load_run", "train"]
