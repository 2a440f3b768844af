"""Keep freed memory in the process, so training steps stop paying page faults (Linux, glibc).

glibc's ``malloc`` maps allocations above a threshold (at most 32 MiB, lower for small tensors
until it adapts) straight from the kernel and unmaps them when they are freed, and it returns the
top of its heap to the kernel once more than a threshold is free. A training step allocates and
frees the same activations every time, so every step faults its pages in again: at 64 px and
batch 256 the default O2-VAE took about 0.9 million minor page faults and 1.5 s of system time per
step. Raising both thresholds lets ``free`` keep the memory for the next step. Measured on a
2-core CPU (BENCHMARKS.md, "Freed memory kept"): about 2.2x faster training steps at 64 px, batch
256, for 30-50 % more peak memory; 1.3-1.4x for the vanilla VAE and 1.0-1.1x for the default
O2-VAE at the smaller settings, where peak memory stays within a few percent.
"""

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30


def glibc():
    """This process's C library through ``ctypes`` if it is glibc (on Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "gnu_get_libc_version") else None  # musl's mallopt differs or is absent


def keep_freed_memory(limit_bytes=KEEP_BYTES):
    """Have glibc keep freed memory for reuse instead of returning it to the kernel.

    Sets ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` (``mallopt(3)``) for the whole process:
    allocations below ``limit_bytes`` come from the heap, and free memory at its top is returned
    to the kernel only beyond ``limit_bytes``. Later allocations of the same sizes then reuse pages
    that are already mapped. Memory of the process stays near its peak until it exits. Calling it
    again is harmless.

    Parameters
    ----------
    limit_bytes : int
        Both thresholds, in bytes (at most ``2**31 - 1``, the range of ``mallopt``'s argument).

    Returns
    -------
    bool
        Whether the thresholds were set: False off Linux or with a C library other than glibc
        (where this does nothing).
    """
    if not 0 < limit_bytes < 2**31:
        raise ValueError(f"limit_bytes must be in (0, 2**31), got {limit_bytes}")
    libc = glibc()
    if libc is None:
        return False
    return all(libc.mallopt(param, limit_bytes) == 1 for param in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD))
