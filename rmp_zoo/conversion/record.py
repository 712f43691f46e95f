"""The evaluation record (ANN and per-T SNN accuracy, spikes, SynOps, energy, command, machine) that the training
callback, ``metrics.json`` and ``rmp-zoo eval`` all write, so that they compare: same function, same fields.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from ..machine import machine
from .evaluate import evaluate
from .network import SpikingNetwork


@dataclass(frozen=True)
class Sharding:
    """How one evaluation is split over processes: this one's rank, their number, and a sum over all of them."""

    rank: int = 0
    world: int = 1
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


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
