"""Per-image operation counts of a converted network, the basis of its spike and energy statistics.

An ANN layer does one multiply-accumulate (MAC) per weight use. In the SNN a spike triggers one accumulate (a
synaptic operation, SynOp) in every neuron it reaches, so SynOps = spikes × fan-out. The fan-out of a spiking layer
is taken as the MACs of the conv/linear layers it feeds divided by its number of neurons: exact for dense layers and
stride-1 convolutions away from the border, the usual approximation elsewhere (pooling or slicing in between).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import fx, nn

from .network import SpikingNetwork, dynamic_nodes, is_neuron
from .neurons import SpikingNeuron
from .trace import WEIGHTED_MODULES


@dataclass
class Costs:
    """Per-image counts; ``fanout`` and ``neurons`` have an ``"input"`` entry under Poisson encoding."""

    ann_macs: float  # all conv/linear layers
    encoding_macs: float  # conv/linear layers upstream of every neuron: run once per image under direct encoding
    neurons: dict[str, int]  # neurons per spiking layer
    fanout: dict[str, float]  # SynOps per spike of each spiking layer


@torch.no_grad()
def measure_costs(snn: SpikingNetwork, x: torch.Tensor) -> Costs:
    """Count operations by running one step of ``snn`` on the first image of ``x`` (shapes are all it needs)."""
    macs: dict[str, float] = defaultdict(float)
    neurons: dict[str, int] = {}

    def count_macs(name: str):
        def hook(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            per_output = m.in_features if isinstance(m, nn.Linear) else m.in_channels // m.groups * math.prod(
                m.kernel_size)
            macs[name] += out.numel() * per_output
        return hook

    def count_neurons(name: str):
        def hook(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            neurons[name] = out.numel()
        return hook

    hooks = []
    for name, m in snn.net.named_modules():
        if isinstance(m, WEIGHTED_MODULES):
            hooks.append(m.register_forward_hook(count_macs(name)))
        elif isinstance(m, SpikingNeuron):
            hooks.append(m.register_forward_hook(count_neurons(name)))
    snn.reset()
    try:
        snn.net(x[:1])
    finally:
        snn.reset()
        for hook in hooks:
            hook.remove()

    gm = snn.net
    dynamic = dynamic_nodes(gm)
    weighted = [n for n in gm.graph.nodes if n.op == "call_module" and n.target in macs]
    sources = {n.target: n for n in gm.graph.nodes if is_neuron(n, gm)}
    if snn.encoding == "poisson":
        sources = {"input": next(n for n in gm.graph.nodes if n.op == "placeholder"), **sources}
        neurons = {"input": x[0].numel(), **neurons}
    fanout = {name: sum(macs[t] for t in _receivers(node, gm)) / neurons[name] for name, node in sources.items()}
    encoding = sum(macs[n.target] for n in weighted if n not in dynamic) if snn.encoding == "direct" else 0.0
    return Costs(ann_macs=sum(macs.values()), encoding_macs=encoding, neurons=neurons, fanout=fanout)


def _receivers(source: fx.Node, gm: fx.GraphModule) -> set[str]:
    """The conv/linear layers that ``source``'s spikes reach before passing another weighted or spiking layer."""
    found, stack, seen = set(), list(source.users), set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), WEIGHTED_MODULES):
            found.add(node.target)
        elif not is_neuron(node, gm):
            stack.extend(node.users)
    return found
