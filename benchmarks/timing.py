"""Wall-clock timing that waits for the GPU: kernels run asynchronously, so a timer must synchronise on both ends."""
from __future__ import annotations

import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable, *args) -> float:
    """Seconds one call of ``fn(*args)`` takes, on the device of its first tensor argument."""
    device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
    synchronize(device)
    start = time.perf_counter()
    fn(*args)
    synchronize(device)
    return time.perf_counter() - start
