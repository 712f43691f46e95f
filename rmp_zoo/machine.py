"""What ran a measurement or a training run, for the record: numbers can differ slightly between devices.

At the bottom of the package: training, evaluation and the zoo all record it.
"""
from __future__ import annotations

import os
import platform

import torch


def machine() -> dict[str, str]:
    """What ran a measurement, for the record (numbers can differ slightly between devices)."""
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else _cpu_name()
    return {"device": device, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform()}


def _cpu_name() -> str:
    """``AMD EPYC 7B13 (2 cores)``: the CPU model from /proc/cpuinfo where there is one."""
    name = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name or 'CPU'} ({os.cpu_count()} cores)"
