"""glibc allocator settings for CPU training.

With glibc's defaults, the large activation buffers of a training step are returned to the kernel
when freed and page-faulted back in at the next step (tens of thousands of faults per step for a
64x64 conv VAE). Raising the mmap threshold to its maximum (32 MiB) and the trim threshold to
1 GiB keeps that memory in the process, which makes CPU steps faster and steadier
(benchmarks/results/cfasl_step.md). The catch: freed memory stays with the process.
"""

from __future__ import annotations

import ctypes
import sys

#: glibc ``mallopt`` parameter numbers
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def tune_glibc_malloc() -> bool:
    """Set the mmap threshold to 32 MiB and the trim threshold to 1 GiB (glibc on Linux only).

    Returns whether both settings were accepted; elsewhere it does nothing and returns False.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))
