"""Layer-wise bias correction of the conversion error at a target T (the bias calibration of Li et al., ICML 2021).

After T steps a spiking layer's mean output differs from the clipped ANN activation it stands for: rates are
quantised to multiples of θ/T, and the errors of the layers below add up. Their mean per channel can be measured on
a few calibration images and cancelled by moving the bias of the layer that feeds the neurons. Going layer by layer
in execution order lets each correction absorb what is left of the errors upstream. The network keeps the shifts
(``snn.bias_shifts``): ``rmp-zoo export`` stores them next to the ANN weights and ``rmp_zoo.load`` adds them back.
"""
from __future__ import annotations

import copy
import dataclasses
import operator
from typing import Any, Iterable

import torch
from torch import fx, nn

from .network import SpikingNetwork
from .neurons import SpikingMaxPool
from .simulate import simulate
from .trace import WEIGHTED_MODULES, set_module

_ADDS = {operator.add, torch.add}


@torch.no_grad()
def correct_bias(snn: SpikingNetwork, calibration: Iterable[Any], T: int, *,
                 max_batches: int | None = None) -> dict[str, torch.Tensor]:
    """Shift, in place, the bias feeding each spiking layer so that its mean output per channel after ``T`` steps
    matches the ANN's ``clip(x, 0, θ)`` on ``calibration`` batches (``x`` or ``(x, y, ...)``).

    Costs one simulation of ``T`` steps over the calibration images per spiking layer. Returns the shift applied to
    each layer's bias, by spiking-layer name; the network records ``T`` and the image count in ``snn.bias_correction``
    and adds the shifts to ``snn.bias_shifts``.
    """
    if T < 1:
        raise ValueError(f"T must be a positive number of steps, got {T}")
    batches = [b[0] if isinstance(b, (tuple, list)) else b for b in calibration][:max_batches]
    if not batches:
        raise ValueError("correct_bias needs at least one calibration batch")
    device = next(snn.parameters()).device
    batches = [x.to(device) for x in batches]
    neurons = snn.neurons()
    for name in neurons:  # a layer that cannot be corrected fails before any bias moves
        _feeding_layer(snn.net, name)
    targets = _ann_channel_means(snn.net, neurons, batches)
    shifts = {}
    for name, neuron in neurons.items():
        shifts[name] = targets[name] - _snn_channel_means(snn, neuron, batches, T)
        apply_bias_shifts(snn, {name: shifts[name]})
    snn.bias_correction = {"T": int(T), "images": sum(len(x) for x in batches)}
    snn.settings = dataclasses.replace(snn.settings, bias_correction=int(T))
    return shifts


@torch.no_grad()
def apply_bias_shifts(snn: SpikingNetwork, shifts: dict[str, torch.Tensor]) -> None:
    """Add ``shifts`` (by spiking-layer name) to the biases feeding those layers, and record them in
    ``snn.bias_shifts``; how a loaded network gets the correction its export measured."""
    for name, shift in shifts.items():
        layer = _feeding_layer(snn.net, name)
        layer.bias.add_(shift.to(layer.bias))
        previous = snn.bias_shifts.get(name)
        snn.bias_shifts[name] = shift.detach().clone() if previous is None else previous + shift


def _feeding_layer(gm: fx.GraphModule, neuron: str) -> nn.Module:
    """The conv/linear layer whose bias shifts the neuron's input: its direct input, or a weighted term of the
    residual sum it receives."""
    node = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == neuron)
    source = node.args[0]
    candidates = [source]
    if isinstance(source, fx.Node) and (
            (source.op == "call_function" and source.target in _ADDS) or
            (source.op == "call_method" and source.target == "add")):
        candidates = list(source.args)
    for cand in candidates:
        if isinstance(cand, fx.Node) and cand.op == "call_module":
            layer = gm.get_submodule(cand.target)
            if isinstance(layer, WEIGHTED_MODULES):
                if layer.bias is None:  # a bias-free layer without BatchNorm: give it a zero bias to move
                    layer.bias = nn.Parameter(layer.weight.new_zeros(layer.weight.shape[0]), requires_grad=False)
                return layer
    raise ValueError(f"cannot correct the bias of spiking layer {neuron!r}: its input ({source}) is neither a conv "
                     "or linear layer nor a sum with one; use the network without bias correction")


def _channel_mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=[d for d in range(x.dim()) if d != 1], dtype=torch.float64)


class _Clip(nn.Module):
    """The ANN activation a spiking layer approximates."""

    def __init__(self, threshold: torch.Tensor) -> None:
        super().__init__()
        self.threshold = float(threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0, self.threshold)


def _ann_channel_means(net: fx.GraphModule, neurons: dict[str, nn.Module],
                       batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-channel mean of every spiking layer's ANN counterpart, measured before any bias moves."""
    ann = copy.deepcopy(net)
    for name, neuron in neurons.items():
        set_module(ann, name, _Clip(neuron.threshold))
    for name, m in net.named_modules():  # the ANN's own max pooling, without the spiking copy's running state
        if isinstance(m, SpikingMaxPool):
            set_module(ann, name, m.pool)
    ann.recompile()
    sums: dict[str, torch.Tensor] = {}
    hooks = [ann.get_submodule(name).register_forward_hook(
        lambda m, i, out, name=name: sums.__setitem__(name, sums.get(name, 0) + _channel_mean(out) * len(out)))
        for name in neurons]
    try:
        for x in batches:
            ann(x)
    finally:
        for h in hooks:
            h.remove()
    images = sum(len(x) for x in batches)
    return {name: s / images for name, s in sums.items()}


def _snn_channel_means(snn: SpikingNetwork, neuron: nn.Module, batches: list[torch.Tensor], T: int) -> torch.Tensor:
    """Per-channel mean output of one spiking layer over ``T`` steps (its rate times θ)."""
    total: list[torch.Tensor] = []
    hook = neuron.register_forward_hook(lambda m, i, out: total.append(_channel_mean(out) * len(out)))
    try:
        for x in batches:
            simulate(snn, x, [T])
    finally:
        hook.remove()
    return torch.stack(total).sum(0) / (T * sum(len(x) for x in batches))
