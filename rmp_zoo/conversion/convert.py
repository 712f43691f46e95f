"""ANN → SNN conversion: trace → fold BatchNorm → choose thresholds → replace activations by neurons."""
from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from .calibrate import resolve_thresholds
from .fold import fold_batchnorm
from .network import SpikingNetwork
from .neurons import NEURONS, SpikingMaxPool, SpikingNeuron
from .simulate import ENCODINGS
from .trace import MAXPOOL_MODULES, activation_names, prepare, set_module

MAXPOOL_MODES = ("error", "gate")


@torch.no_grad()
def convert(
    ann: nn.Module,
    calibration: Iterable[Any] | None = None,
    neuron: str = "rmp",
    threshold: str | Mapping[str, float] = "max",
    *,
    scale: float = 1.0,
    initial_potential: float = 0.0,
    burst: int = 1,
    encoding: str = "direct",
    seed: int = 0,
    max_batches: int | None = None,
    maxpool: str = "error",
) -> SpikingNetwork:
    """Convert ``ann`` (left untouched) into a rate-coded spiking network.

    Args:
        ann: a torch.fx-traceable CNN: conv/linear (+BatchNorm), ReLU in any spelling, ClipReLU/QCFS, residual
            additions, average pooling, reshaping, padding and slicing.
        calibration: batches ``x`` or ``(x, y, ...)`` for data-driven thresholds; not needed for ``"trained"`` or a
            dict.
        neuron: ``"rmp"`` (reset by subtraction, keeps the residual charge) or ``"if"`` (reset to zero).
        threshold: ``"max"``, a percentile such as ``"99.9%"`` of the positive activations, ``"trained"``
            (ClipReLU/QCFS thresholds), or a dict ``{layer: θ}`` as returned by ``SpikingNetwork.thresholds()``.
        scale: factor applied to every threshold (a dict's values included).
        initial_potential: membrane potential at t=0, as a fraction of θ (0.5 centres the rounding error; QCFS).
        burst: most spikes a neuron may fire in one step (1: plain spikes; 2 removes most low-T error, see
            ``SpikingNeuron``).
        encoding: ``"direct"`` (the analog input every step) or ``"poisson"`` (signed Bernoulli spikes, seeded
            with ``seed``; inputs should lie in [-1, 1]).
        seed: seed for Poisson input spikes and for the percentile's activation sample.
        max_batches: use at most this many calibration batches.
        maxpool: ``"error"`` rejects max pooling, naming the layer; ``"gate"`` approximates it by spike gating
            (``SpikingMaxPool``).
    """
    for name, value, choices in (("neuron", neuron, NEURONS), ("encoding", encoding, ENCODINGS),
                                 ("maxpool", maxpool, MAXPOOL_MODES)):
        if value not in choices:
            raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    model = copy.deepcopy(ann).eval()  # a copy: the caller's ANN keeps its weights and its train/eval mode
    gm = prepare(model, maxpool)
    fold_batchnorm(gm)
    names = activation_names(gm)
    thresholds, method = resolve_thresholds(gm, names, threshold, calibration, seed, max_batches)
    device = next(gm.parameters(), torch.empty(0)).device
    for name in names:
        set_module(gm, name, SpikingNeuron(thresholds[name] * scale, neuron, initial_potential, burst).to(device))
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), MAXPOOL_MODULES):
            set_module(gm, node.target, SpikingMaxPool(gm.get_submodule(node.target)))
    gm.recompile()
    return SpikingNetwork(gm, neuron=neuron, threshold_method=method, scale=scale,
                          initial_potential=initial_potential, burst=burst, encoding=encoding, seed=seed)
