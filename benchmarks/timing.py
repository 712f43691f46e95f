"""Timing shared by the speed benchmarks.

Wall-clock timers wait for the GPU (kernels run asynchronously, so a timer must synchronise on both ends), and
contenders take turns round after round, so that drifting machine load hits all of them alike.
"""
from __future__ import annotations

import copy
import resource
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


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


def minor_faults() -> int:
    """Minor page faults of this process so far: pages the allocator had handed back to the system and took again
    (each one zero-filled by the kernel)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def dense_forwards(ann: nn.Module) -> dict[str, Callable]:
    """The dense ANN forward in both memory formats: the baseline a spiking time step is compared with."""
    ann_cl = copy.deepcopy(ann).to(memory_format=torch.channels_last)
    return {"ANN NCHW": lambda x: ann(x),
            "ANN channels_last": lambda x: ann_cl(x.contiguous(memory_format=torch.channels_last))}


@torch.no_grad()
def median_seconds_per_item(contenders: dict[str, tuple[int, Callable]], images: torch.Tensor,
                            batch_sizes: list[int], repeats: int) -> dict[tuple[int, str], float]:
    """``{(batch size, name): median seconds per image-step}`` of ``contenders``, each ``name: (steps per call,
    fn)``: one untimed warm-up call each (cuDNN algorithm search, allocator growth), then ``repeats`` rounds."""
    for b in batch_sizes:
        for _, fn in contenders.values():
            fn(images[:b])
    times = {(b, name): [] for b in batch_sizes for name in contenders}
    for _ in range(repeats):
        for b in batch_sizes:
            for name, (steps, fn) in contenders.items():
                times[b, name].append(timed(fn, images[:b]) / (b * steps))
    return {key: statistics.median(t) for key, t in times.items()}
