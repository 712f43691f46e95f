"""Per-image operation counts of a converted network, the basis of its spike and energy statistics.

An ANN layer does one multiply-accumulate (MAC) per weight use. In the SNN a spike triggers one accumulate (a
synaptic operation, SynOp) per weight use that its value reaches, so SynOps = Σ over neurons of spikes × fan-out.
Fan-out differs between neurons (at the borders of padded or strided convolutions, in pooling windows that overlap or
leave units out), so it is counted per neuron: a map the shape of the layer's output that holds how many conv/linear
weight uses a spike of each neuron reaches before the next spiking layer. On the way the value may pass average,
adaptive or global pooling, means, reshapes, slicing, padding, concatenation, constant scaling and residual additions
(one spike can reach several weighted layers). A pooled unit passes every spike on in full: a spike through
AvgPool2d(2) into Linear(·, 10) costs 10 SynOps, not 10/4. Only synapses count, as only weight uses count in the ANN's
MACs: the additions of a pooling window or an identity shortcut (one per spike, into a pooled sum or the next
neuron's membrane) do not, and a zero weight counts like any other. Two upper bounds remain: through a gated max pool
(``maxpool="gate"``) a spike counts as if it passed every window it lies in, though only a window's leading unit
passes spikes on; and a value that reaches one unit along two paths (``x + x``, two pools of one tensor added) counts
once per path.

The maps come from one backward pass: with every conv/linear weight set to 1 and no bias, averages replaced by sums
and signs and constant factors dropped, the sum of all conv/linear outputs counts weight uses, and its gradient with
respect to a neuron's output counts those that neuron reaches.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from .network import SpikingNetwork, dynamic_nodes
from .neurons import SpikingMaxPool, SpikingNeuron
from .trace import MAXPOOL_MODULES, WEIGHTED_MODULES

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_POOL_MODULES = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, *MAXPOOL_MODULES)
_ADAPTIVE_MODULES = {nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3}
_POOL_FUNCTIONS = {F.avg_pool1d: nn.AvgPool1d, F.avg_pool2d: nn.AvgPool2d, F.avg_pool3d: nn.AvgPool3d,
                   F.adaptive_avg_pool1d: nn.AdaptiveAvgPool1d, F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d,
                   F.adaptive_avg_pool3d: nn.AdaptiveAvgPool3d}
_MEAN = {torch.mean, "mean"}
_ADD = {operator.add, operator.sub, torch.add, torch.sub, "add", "sub"}
_NEG = {operator.neg, torch.neg, "neg"}
_SCALE = {operator.mul, operator.truediv, torch.mul, torch.div, "mul", "div"}


@dataclass
class Costs:
    """Per-image counts; ``fanout``, ``fanout_map`` and ``neurons`` have an ``"input"`` entry under Poisson
    encoding."""

    ann_macs: float  # all conv/linear layers
    encoding_macs: float  # conv/linear layers upstream of every neuron: run once per image under direct encoding
    neurons: dict[str, int]  # neurons per spiking layer
    fanout: dict[str, float]  # SynOps per spike of each spiking layer, averaged over its neurons (for reports)
    fanout_map: dict[str, torch.Tensor]  # SynOps per spike of each neuron, shaped like one image's layer output


def measure_costs(snn: SpikingNetwork, x: torch.Tensor) -> Costs:
    """Count operations and fan-outs on the shape of the first image of ``x`` (its values are not used)."""
    gm = snn.net
    poisson = snn.settings.encoding == "poisson"
    counter = _Synapses(gm)
    with torch.inference_mode(False), torch.enable_grad():  # also when called from a validation loop
        inp = torch.zeros(x[:1].shape, dtype=torch.float64, device=x.device, requires_grad=poisson)
        counter.run(inp)
        sources = {"input": inp, **counter.sources} if poisson else counter.sources
        total = counter.total
        grads = (torch.autograd.grad(total, list(sources.values()), allow_unused=True)
                 if isinstance(total, torch.Tensor) and total.requires_grad else [None] * len(sources))
    fanout_map = {name: (torch.zeros_like(leaf) if g is None else g).detach()[0]
                  for (name, leaf), g in zip(sources.items(), grads)}
    dynamic = dynamic_nodes(gm)
    encoding = sum(m for node, m in counter.macs.items() if node not in dynamic) if not poisson else 0.0
    return Costs(ann_macs=float(sum(counter.macs.values())), encoding_macs=float(encoding),
                 neurons={name: leaf[0].numel() for name, leaf in sources.items()},
                 fanout={name: m.mean().item() for name, m in fanout_map.items()}, fanout_map=fanout_map)


class _Synapses(fx.Interpreter):
    """Runs the graph in counting form (see the module docstring) on zeros: every neuron's output becomes a leaf tensor
    (``sources``), every conv/linear layer adds its weight uses to ``total`` and records its MACs."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.sources: dict[str, torch.Tensor] = {}
        self.macs: dict[fx.Node, float] = {}
        self.total: torch.Tensor | float = 0.0
        self.data: set[fx.Node] = set()  # nodes computed from the input, as opposed to constants
        for node in gm.graph.nodes:
            if node.op == "placeholder" or any(a in self.data for a in node.all_input_nodes):
                self.data.add(node)

    def run_node(self, node: fx.Node):
        if node.op not in ("call_module", "call_function", "call_method"):
            return super().run_node(node)
        args, kwargs = self.fetch_args_kwargs_from_env(node)
        op = self.module.get_submodule(node.target) if node.op == "call_module" else node.target
        if isinstance(op, SpikingNeuron):
            self.sources[node.target] = leaf = torch.zeros_like(args[0], requires_grad=True)
            return leaf  # a new start: nothing is counted back through a spiking layer
        if isinstance(op, SpikingMaxPool):
            op = op.pool
        if not isinstance(op, nn.Module) and op in _POOL_FUNCTIONS:
            op, args = _POOL_FUNCTIONS[op](*args[1:], **kwargs), args[:1]
        if isinstance(op, WEIGHTED_MODULES):
            return self._weight_uses(node, op, args[0])
        if isinstance(op, _POOL_MODULES):
            return _window_sum(args[0], op(args[0]).shape, op.kernel_size, op.stride, op.padding,
                               getattr(op, "dilation", 1))
        if type(op) in _ADAPTIVE_MODULES:
            return _window_sizes(args[0].shape, op(args[0]), _ADAPTIVE_MODULES[type(op)])
        if isinstance(op, nn.Module):
            return super().run_node(node)
        if op in _MEAN:
            return torch.sum(*args, **kwargs)
        if op in _ADD:  # a - b reaches the same synapses as a + b
            return args[0] + args[1]
        if op in _NEG:
            return args[0]
        if op in _SCALE:  # x·c or x/c with a constant c: the spike reaches the same synapses, scaled
            data, const = (args[0], args[1]) if node.args[0] in self.data else (args[1], args[0])
            return data * torch.ones_like(const) if isinstance(const, torch.Tensor) else data
        return super().run_node(node)

    def _weight_uses(self, node: fx.Node, m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        w = torch.ones_like(m.weight, dtype=x.dtype)
        if isinstance(m, nn.Linear):
            out, per_output = F.linear(x, w), m.in_features
        else:
            padding = m.padding
            if m.padding_mode != "zeros":  # reflected or wrapped borders are extra uses of the same inputs
                x, padding = F.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode), 0
            out = _CONV[x.dim() - 2](x, w, None, m.stride, padding, m.dilation, m.groups)
            per_output = m.in_channels // m.groups * math.prod(m.kernel_size)
        self.macs[node] = self.macs.get(node, 0.0) + out.numel() * per_output
        self.total = self.total + out.sum()
        return out.detach()  # what follows is reached through this layer's synapses, not the spike's


def _window_sum(x: torch.Tensor, out_shape: torch.Size, kernel, stride, padding, dilation) -> torch.Tensor:
    """The sum over each window of a pool (average or max) that gives ``out_shape``: a depthwise convolution with
    ones, padded at the end as far as ``ceil_mode`` windows reach."""
    d = x.dim() - 2
    k, s, p, dl = (tuple(v) if isinstance(v, (tuple, list)) else (v,) * d for v in (kernel, stride, padding, dilation))
    pad = []
    for n, o, k_, s_, p_, d_ in reversed(list(zip(x.shape[2:], out_shape[2:], k, s, p, dl))):
        pad += [p_, max(p_, (o - 1) * s_ + d_ * (k_ - 1) + 1 - n - p_)]
    ones = x.new_ones(x.shape[1], 1, *k)
    return _CONV[d](F.pad(x, pad), ones, None, s, 0, dl, x.shape[1])


def _window_sizes(in_shape: torch.Size, mean: torch.Tensor, d: int) -> torch.Tensor:
    """An adaptive average turned into a sum: times the size of each window, which runs from ⌊i·n/o⌋ to
    ⌈(i+1)·n/o⌉ along each of the last ``d`` dimensions."""
    for axis in range(-d, 0):
        n, o = in_shape[axis], mean.shape[axis]
        i = torch.arange(o, device=mean.device)
        size = -(-(i + 1) * n // o) - i * n // o
        mean = mean * size.view(-1, *[1] * (-axis - 1))
    return mean
