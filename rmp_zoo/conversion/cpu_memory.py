"""Keep freed CPU memory for reuse, as a GPU's caching allocator does (glibc only).

Why: a multi-step simulation allocates and frees activations of several MB at every layer. glibc's malloc hands the
top of its heap back to the system whenever more than its trim threshold lies free there (by default twice the
largest block it has mapped and freed so far), and every page it takes again is a page fault that zero-fills it. In
fresh processes on a 2-core CPU that cost a ResNet-20 simulation 54 faults per image-step and 14% of its time, and
the dense forwards run in the same processes 17% (``benchmarks/results/page_faults_cpu_resnet20``).

So before its first simulation on a CPU, rmp_zoo sets glibc's trim threshold to 256 MB (the heap keeps up to that
much free memory at its top for the next allocation) and its mmap threshold to 32 MB (smaller blocks come from the
heap, where freed memory is reused; 32 MB is the ceiling of glibc's own adjustment). This holds for the rest of the
process, like a caching allocator. It changes how fast memory is found, never what is computed. With
``RMP_ZOO_KEEP_MEMORY=0``, or where the C library is not glibc (macOS, musl, Windows), nothing is changed.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

import torch

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
TRIM_THRESHOLD = 256 * 2**20
MMAP_THRESHOLD = 32 * 2**20  # DEFAULT_MMAP_THRESHOLD_MAX of 64-bit glibc


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``mallopt``), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


_LIBC = _glibc()
_kept = False


def wanted() -> bool:
    """False where the C library is not glibc, or with ``RMP_ZOO_KEEP_MEMORY=0``."""
    return _LIBC is not None and os.environ.get("RMP_ZOO_KEEP_MEMORY", "1") != "0"


def keep_freed_memory(device: torch.device) -> bool:
    """Before a simulation on ``device``: on a CPU with glibc, set the thresholds of the module docstring (once per
    process). Returns whether they are set."""
    global _kept
    if not _kept and device.type == "cpu" and wanted():
        _kept = bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(
            _LIBC.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _kept
