"""Accuracy, spike statistics and an energy estimate of a converted network at several T."""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from rich.progress import track
from torch import nn

from .network import SpikingNetwork
from .simulate import DEFAULT_T
from .stats import measure_costs

MAC_PJ = 4.6  # 32-bit float multiply (3.7 pJ) + add (0.9 pJ), 45 nm, Horowitz (ISSCC 2014)
AC_PJ = 0.9  # 32-bit float add, same source
ENERGY_MODEL = {
    "mac_pJ": MAC_PJ,
    "ac_pJ": AC_PJ,
    "source": "Horowitz, ISSCC 2014, 45 nm CMOS, 32-bit floating point",
    "ann": "MACs x mac_pJ",
    "snn": "SynOps x ac_pJ + input-layer MACs x mac_pJ, the latter once per image under direct encoding "
           "(the input layer runs once); memory access and neuron updates are not counted",
}


@dataclass
class EvalResult:
    """Evaluation of an SNN; dicts keyed by T are per image and cumulative over the first T steps."""

    T: list[int]
    num_images: int
    top1: dict[int, float]  # percent
    ann_top1: float | None  # percent, when an ANN was given
    firing_rate: dict[int, dict[str, float]]  # spikes per neuron per step, by layer
    spikes_per_image: dict[int, float]  # all spiking layers, input spikes excluded
    synops_per_image: dict[int, float]
    ann_macs_per_image: float
    encoding_macs_per_image: float
    energy_uJ_per_image: dict[int, float]
    ann_energy_uJ_per_image: float
    energy_model: dict[str, Any]
    config: dict[str, Any]  # the SNN's conversion settings

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict (for model cards and result files)."""
        return dataclasses.asdict(self)


def evaluate(snn: SpikingNetwork, dataloader: Iterable[Any], T: Iterable[int] = DEFAULT_T,
             ann: nn.Module | None = None, progress: bool = True, max_batches: int | None = None, *,
             shard: tuple[int, int] = (0, 1),
             all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> EvalResult:
    """Top-1 accuracy of ``snn`` at every T (one simulation per batch), its spike statistics and energy estimate;
    with ``ann``, also the ANN's top-1 on the same batches. ``dataloader`` yields ``(x, y, ...)``.

    Across processes: with ``shard=(rank, world)`` this process takes every world-th image of each batch, and
    ``all_reduce`` (a sum over processes, e.g. ``fabric.all_reduce(v, reduce_op="sum")``) adds up the counts, so every
    process returns the result of one process over all images.
    """
    steps = sorted(set(T))
    rank, world = shard
    device = next(snn.parameters(), torch.empty(0)).device
    ann_device = next(ann.parameters(), torch.empty(0)).device if ann is not None else device
    ann_mode = ann.training if ann is not None else False
    total = len(dataloader) if hasattr(dataloader, "__len__") else None
    batches = dataloader
    if max_batches is not None:
        total = max_batches if total is None else min(total, max_batches)
        batches = itertools.islice(dataloader, max_batches)
    costs, layers, tally = None, None, None
    try:
        if ann is not None:
            ann.eval()
        for x, y, *_ in track(batches, description="SNN evaluation", total=total, disable=not progress):
            if costs is None:
                costs = measure_costs(snn, x.to(device))  # shapes only: from the whole batch, on every process
                layers = list(costs.neurons)
                tally = torch.zeros(_tally_size(steps, layers), dtype=torch.float64)
            x, y = x[rank::world].to(device), y[rank::world].to(device)
            if not len(y):
                continue
            outputs, counts, ops = snn.run(x, steps, fanout=costs.fanout_map)
            ann_correct = 0
            if ann is not None:
                with torch.no_grad():
                    ann_correct = int((ann(x.to(ann_device)).argmax(1).to(device) == y).sum())
            tally += torch.tensor([len(y), ann_correct, *((outputs[t].argmax(1) == y).sum().item() for t in steps),
                                   *(counts[t].get(name, 0) for t in steps for name in layers),
                                   *(sum(ops[t].values()) for t in steps)], dtype=torch.float64)
    finally:
        if ann is not None:
            ann.train(ann_mode)
    if costs is None:
        raise ValueError("the dataloader yielded no batches")
    if all_reduce is not None:
        tally = all_reduce(tally.to(device)).cpu()
    return _result(snn, costs, steps, layers, tally.tolist(), ann is not None)


def _tally_size(steps: list[int], layers: list[str]) -> int:
    """images, ANN correct, correct per T, spikes per T and layer, SynOps per T: sums that add across processes."""
    return 2 + len(steps) * (2 + len(layers))


def _result(snn: SpikingNetwork, costs: Any, steps: list[int], layers: list[str], tally: list[float],
            with_ann: bool) -> EvalResult:
    values = iter(tally)
    images, ann_correct = int(next(values)), next(values)
    correct = {t: next(values) for t in steps}
    spikes = {t: {name: next(values) for name in layers} for t in steps}
    synops = {t: next(values) / images for t in steps}  # each neuron's spikes × its fan-out (stats.py)
    encoding = costs.encoding_macs
    return EvalResult(
        T=steps,
        num_images=images,
        top1={t: 100 * correct[t] / images for t in steps},
        ann_top1=100 * ann_correct / images if with_ann else None,
        firing_rate={t: {name: spikes[t][name] / (images * n * t) for name, n in costs.neurons.items()}
                     for t in steps},
        spikes_per_image={t: sum(c for name, c in spikes[t].items() if name != "input") / images for t in steps},
        synops_per_image=synops,
        ann_macs_per_image=costs.ann_macs,
        encoding_macs_per_image=encoding,
        energy_uJ_per_image={t: (synops[t] * AC_PJ + encoding * MAC_PJ) * 1e-6 for t in steps},
        ann_energy_uJ_per_image=costs.ann_macs * MAC_PJ * 1e-6,
        energy_model=dict(ENERGY_MODEL),
        config=snn.config(),
    )
