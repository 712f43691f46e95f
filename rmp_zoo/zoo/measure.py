"""The measurement that ``metrics.json`` records, run the same way by ``rmp-zoo export`` and ``rmp-zoo eval``.

Sharing one function (and one datamodule recipe, kept in ``config.json``) is what makes an evaluation reproduce the
published numbers: same test images, same order, same batch size.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from ..conversion import ConversionSettings, SpikingNetwork, evaluate
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


def calibration_batches(datamodule, ann: nn.Module, settings: Iterable[ConversionSettings], images: int):
    """Unaugmented training batches when any of ``settings`` measures activations of ``ann``, else None
    (calibration never sees test images)."""
    return datamodule.eval_batches("train", images) if any(s.needs_data(ann) for s in settings) else None


@dataclass(frozen=True)
class Sharding:
    """How one evaluation is split over processes: this one's rank, their number, and a sum over all of them."""

    rank: int = 0
    world: int = 1
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launch(accelerator: str, devices: int | str = 1, strategy: str = "auto",
           num_nodes: int = 1) -> tuple[Sharding, torch.device]:
    """Start the processes of a Lightning strategy (``ddp`` over ``devices`` × ``num_nodes``, or one process) and
    return this process's sharding and device; an evaluation sharded this way equals one process's."""
    from lightning_fabric import Fabric  # here: Lightning is only needed to evaluate, not to load

    fabric = Fabric(accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes)
    fabric.launch()
    return Sharding(fabric.global_rank, fabric.world_size,
                    lambda v: fabric.all_reduce(v, reduce_op="sum")), fabric.device


def measure(snn: SpikingNetwork, ann: nn.Module, batches: Iterable[Any], T: Iterable[int], *, dataset: str,
            batch_size: int, command: str, progress: bool = True, sharding: Sharding = Sharding()) -> dict[str, Any]:
    """ANN and per-T SNN top-1 (percent), spikes, SynOps and energy per image on ``batches`` of the test split,
    shared out over the processes of ``sharding``."""
    r = evaluate(snn, batches, T=T, ann=ann, progress=progress and sharding.is_main,
                 shard=(sharding.rank, sharding.world), all_reduce=sharding.all_reduce)
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
                        progress: bool = True, sharding: Sharding = Sharding()) -> dict[str, Any]:
    """Another conversion of the same ANN on the same batches: what the published one is compared against."""
    r = evaluate(snn, batches, T=T, progress=progress and sharding.is_main, shard=(sharding.rank, sharding.world),
                 all_reduce=sharding.all_reduce)
    return {"label": conversion_label(snn.config()), "conversion": snn.config(), "snn": per_step_rows(r)}


def conversion_label(conv: Mapping[str, Any]) -> str:
    """``RMP, max θ`` / ``RMP, trained θ, 0.5θ initial``: a column heading for a conversion."""
    label = f"{conv['neuron'].upper()}, {conv['threshold_method']} θ"
    label += f", {conv['initial_potential']:g}θ initial" if conv["initial_potential"] else ""
    label += f", bursts of {conv['burst']}" if conv.get("burst", 1) > 1 else ""
    return label + (f", bias corrected at T={conv['bias_correction']['T']}" if conv.get("bias_correction") else "")


def top1_by_T(metrics: Mapping[str, Any]) -> dict[int, float]:
    return {row["T"]: row["top1"] for row in metrics["snn"]}
