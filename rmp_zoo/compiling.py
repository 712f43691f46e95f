"""``torch.compile`` for the fused element-wise kernels (QCFS training, spiking neurons), with a clean fallback.

Why one place: a compiled kernel needs a working C++ compiler (CPU) or Triton (GPU). Where compiling fails, the
same function runs eagerly, op by op, after one warning; ``RMP_ZOO_COMPILE=0`` skips the attempt. The eager and
compiled functions are the same code, so the fallback changes speed, not numbers.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Callable


def compile_wanted() -> bool:
    """False when ``RMP_ZOO_COMPILE=0``."""
    return os.environ.get("RMP_ZOO_COMPILE", "1") != "0"


def compile_kernel(fn: Callable) -> Callable:
    """One compiled version per dtype and device, whatever the tensor shapes (``dynamic``), as one graph."""
    import torch

    return torch.compile(fn, dynamic=True, fullgraph=True)


def call_or_fall_back(compiled: Callable, eager: Callable, args: tuple, *, what: str, is_compiled: bool,
                      on_failure: Callable[[], None], eager_on: tuple[type[BaseException], ...] = (),
                      stacklevel: int = 2) -> Any:
    """``compiled(*args)``; if compiling fails, warn once, call ``on_failure`` (which switches the caller to its eager
    functions) and return ``eager(*args)``. Errors listed in ``eager_on`` run this one call eagerly without
    switching; out-of-memory errors and errors of uncompiled functions propagate."""
    import torch

    try:
        return compiled(*args)
    except torch.OutOfMemoryError:
        raise
    except eager_on:
        return eager(*args)
    except Exception as err:  # no C++ compiler / Triton, unsupported platform: compute the same thing eagerly
        if not is_compiled:
            raise
        warnings.warn(f"torch.compile of the {what} failed ({type(err).__name__}: {err}); running them op by op, "
                      "which is slower but gives the same numbers. Set RMP_ZOO_COMPILE=0 to skip the attempt.",
                      RuntimeWarning, stacklevel=stacklevel + 1)
        on_failure()
        return eager(*args)
