"""Timing shared by the speed benchmarks, and how they record a result.

Wall-clock timers wait for the GPU (kernels run asynchronously, so a timer must synchronise on both ends), and
contenders take turns round after round, so that drifting machine load hits all of them alike.
"""
from __future__ import annotations

import argparse
import copy
import json
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

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


def command() -> str:
    """The command line that ran this benchmark, as its results quote it."""
    return " ".join(["python", *map(shlex.quote, sys.argv)])


def save_results(out: str | Path, text: str, args: argparse.Namespace, where: dict, **record) -> None:
    """Write ``results.json`` (the machine, the arguments, the command line, then ``record``) and ``results.md``
    (``text``) into ``out``, and print ``text``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"machine": where, "args": vars(args), "argv": sys.argv, **record},
                                                 indent=2))
    (out / "results.md").write_text(text)
    print(text.rstrip("\n"))
