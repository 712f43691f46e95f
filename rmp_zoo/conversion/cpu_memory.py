"""Keep freed CPU memory for reuse, as a GPU's caching allocator does (glibc only).

Why: a multi-step simulation allocates and frees activations of several MB at every layer. glibc's malloc hands the
top of its heap back to the system whenever more than its trim threshold lies free there, and maps blocks above its
mmap threshold on their own and unmaps them when freed (both thresholds adjust to the blocks a process has freed so
far); every page it takes again is a page fault that zero-fills it. In fresh processes on a 2-core CPU that cost a
ResNet-20 simulation 54 faults per image-step and 14% of its time, and the dense forwards run in the same processes
17% of theirs (``benchmarks/results/page_faults_cpu_resnet20``).

So before its first simulation on a CPU, rmp_zoo sets glibc's trim threshold to 256 MB (each malloc arena keeps up to
that much free memory at its top for the next allocation) and its mmap threshold to 32 MB (smaller blocks come from
the heap, where freed memory is reused; 32 MB is the ceiling of glibc's own adjustment on 64-bit systems). This holds
for the rest of the process and for all code in it, like a caching allocator: glibc stops adjusting the thresholds,
and the process's resident memory no longer shrinks back after a simulation. It changes how fast memory is found,
never what is computed. Nothing is changed with ``RMP_ZOO_KEEP_MEMORY=0``, when the user has tuned malloc already
(``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_`` or ``GLIBC_TUNABLES`` set), or where the C library is not
glibc (macOS, musl, Windows).
"""
from __future__ import annotations

import ctypes
import os
import sys

import torch

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
TRIM_THRESHOLD = 256 * 2**20
MMAP_THRESHOLD = 32 * 2**20  # DEFAULT_MMAP_THRESHOLD_MAX of 64-bit glibc
_USER_TUNING = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def _glibc() -> ctypes.CDLL | None:
    """glibc when it is the C library of this process (it has ``gnu_get_libc_version``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


_LIBC = _glibc()
_kept = False


def wanted() -> bool:
    """False where the C library is not glibc, with ``RMP_ZOO_KEEP_MEMORY=0``, or when malloc is tuned by the user."""
    return (_LIBC is not None and os.environ.get("RMP_ZOO_KEEP_MEMORY", "1") != "0"
            and not any(name in os.environ for name in _USER_TUNING))


def keep_freed_memory(device: torch.device) -> bool:
    """Before a simulation on ``device``: on a CPU with glibc, set the thresholds of the module docstring (once per
    process). Returns whether they are set."""
    global _kept
    if not _kept and device.type == "cpu" and wanted():
        _kept = bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(
            _LIBC.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _kept
