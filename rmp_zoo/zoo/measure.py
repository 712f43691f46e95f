"""The measurement that ``metrics.json`` records, run the same way by ``rmp-zoo export`` and ``rmp-zoo eval``.

Sharing one function (and one datamodule recipe, kept in ``config.json``) is what makes an evaluation reproduce the
published numbers: same test images, same order, same batch size.
"""
from __future__ import annotations

import os
import platform
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from ..conversion import SpikingNetwork, evaluate
from ..conversion.neurons import NEURONS, SpikingNeuron
from .errors import ZooError


def build_datamodule(dataset: Mapping[str, Any], data_root: str | None = None, batch_size: int | None = None):
    """The datamodule ``config.json``'s ``dataset`` section describes, reading from ``data_root``."""
    from ..data import create_datamodule  # here: the data stack imports Lightning, which `load` does not need

    kwargs = dict(dataset["datamodule"])
    if dataset.get("needs_data_root"):
        if data_root is None:
            raise ZooError(f"dataset {dataset['name']} needs its data: pass --data-root DIR ({dataset['data']})")
        kwargs.update(root=data_root, download=False)
    if batch_size is not None:
        kwargs["eval_batch_size"] = batch_size
    return create_datamodule(dataset["name"], **kwargs)


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


def calibration_batches(datamodule, thresholds: Iterable[str], images: int):
    """Unaugmented training batches for data-driven thresholds, or None when every threshold is ``"trained"``
    (calibration never sees test images)."""
    return None if set(thresholds) <= {"trained"} else datamodule.eval_batches("train", images)


def measure(snn: SpikingNetwork, ann: nn.Module, batches: Iterable[Any], T: Iterable[int], *, dataset: str,
            batch_size: int, command: str, progress: bool = True) -> dict[str, Any]:
    """ANN and per-T SNN top-1 (percent), spikes, SynOps and energy per image on ``batches`` of the test split."""
    r = evaluate(snn, batches, T=T, ann=ann, progress=progress)
    rows = per_step_rows(r)
    return {"dataset": dataset, "split": "test", "num_images": r.num_images, "batch_size": batch_size,
            "ann_top1": r.ann_top1, "ann_macs_per_image": r.ann_macs_per_image,
            "ann_energy_uJ_per_image": r.ann_energy_uJ_per_image,
            "encoding_macs_per_image": r.encoding_macs_per_image, "snn": rows, "energy_model": r.energy_model,
            "conversion": r.config, "command": command, "machine": machine()}


def per_step_rows(r) -> list[dict[str, float]]:
    """One row per T of an ``EvalResult``: top-1, spikes, SynOps, energy and firing rate per image."""
    return [{"T": t, "top1": r.top1[t], "spikes_per_image": r.spikes_per_image[t],
             "synops_per_image": r.synops_per_image[t], "energy_uJ_per_image": r.energy_uJ_per_image[t],
             "firing_rate": r.firing_rate[t]} for t in r.T]


def measure_alternative(snn: SpikingNetwork, batches: Iterable[Any], T: Iterable[int], *,
                        progress: bool = True) -> dict[str, Any]:
    """Another conversion of the same ANN on the same batches: what the published one is compared against."""
    return {"label": conversion_label(snn.config()), "conversion": snn.config(),
            "snn": per_step_rows(evaluate(snn, batches, T=T, progress=progress))}


def conversion_label(conv: Mapping[str, Any]) -> str:
    """``RMP, max θ`` / ``RMP, trained θ, 0.5θ initial``: a column heading for a conversion."""
    label = f"{conv['neuron'].upper()}, {conv['threshold_method']} θ"
    label += f", {conv['initial_potential']:g}θ initial" if conv["initial_potential"] else ""
    return label + (f", bursts of {conv['burst']}" if conv.get("burst", 1) > 1 else "")


def parse_conversion(spec: str) -> dict[str, Any]:
    """``NEURON:THRESHOLD[:INITIAL[:BURST]]`` (``if:max``, ``rmp:99.9%:0.5``, ``signed:trained:0.5:2``) as
    ``convert`` keyword arguments."""
    parts = spec.split(":")
    if len(parts) not in (2, 3, 4) or parts[0] not in NEURONS:
        raise ValueError(f"conversion {spec!r}: expected NEURON:THRESHOLD[:INITIAL_POTENTIAL[:BURST]] with NEURON "
                         f"one of {', '.join(NEURONS)}, e.g. if:max or signed:trained:0.5:2")
    try:
        initial = float(parts[2]) if len(parts) >= 3 else 0.0
        burst = int(parts[3]) if len(parts) == 4 else 1
    except ValueError:
        raise ValueError(f"conversion {spec!r}: the initial potential must be a number and the burst a whole "
                         "number") from None
    try:
        SpikingNeuron(1.0, parts[0], initial, burst)
    except ValueError as err:
        raise ValueError(f"conversion {spec!r}: {err}") from None
    return {"neuron": parts[0], "threshold": parts[1], "initial_potential": initial, "burst": burst}


def top1_by_T(metrics: Mapping[str, Any]) -> dict[int, float]:
    return {row["T"]: row["top1"] for row in metrics["snn"]}
