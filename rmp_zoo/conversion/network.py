"""The converted network: the ANN's fx graph with every activation replaced by a spiking neuron.

``net`` computes one time step. For the time loop it is split once into a *static* part (everything that does not
depend on any neuron, i.e. the input layer) and a *step* part, so that under direct encoding the input layer runs
once per simulation instead of once per step.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import fx, nn

from .neurons import SpikingMaxPool, SpikingNeuron
from .simulate import simulate


class SpikingNetwork(nn.Module):
    """Rate-coded spiking network; ``snn(x, T)`` is the output averaged over ``T`` steps, shape [batch, classes].

    Thresholds are buffers of the neuron modules (``state_dict`` keys ``net.<layer>.threshold``), so saved weights
    carry them. The conversion settings are recorded as attributes: ``neuron``, ``threshold_method``, ``scale``,
    ``initial_potential``, ``burst``, ``encoding``, ``seed`` and ``bias_correction``.
    """

    def __init__(self, net: fx.GraphModule, *, neuron: str, threshold_method: str, scale: float,
                 initial_potential: float, encoding: str, seed: int, burst: int = 1) -> None:
        super().__init__()
        self.net = net
        self.neuron = neuron
        self.threshold_method = threshold_method
        self.scale = scale
        self.initial_potential = initial_potential
        self.burst = burst
        self.encoding = encoding
        self.seed = seed
        self.bias_correction: dict[str, int] | None = None  # set by correct_bias: its T and image count
        self._split()

    def forward(self, x: torch.Tensor, T: int = 64) -> torch.Tensor:
        """Output averaged over ``T`` steps; a fresh simulation, so equal inputs give equal outputs."""
        return simulate(self, x, [T])[T]

    def neurons(self) -> dict[str, SpikingNeuron]:
        """The spiking layers by name, in execution order."""
        return {n.target: self.net.get_submodule(n.target) for n in self.net.graph.nodes if is_neuron(n, self.net)}

    def thresholds(self) -> dict[str, float]:
        """Per-layer thresholds, scale included: ``convert(ann, threshold=snn.thresholds())`` (with the same neuron,
        initial potential and encoding, and scale 1) rebuilds this network."""
        return {name: float(m.threshold) for name, m in self.neurons().items()}

    def reset(self) -> None:
        """Clear all membrane potentials and other state; every simulation starts from here."""
        for m in self.net.modules():
            if isinstance(m, (SpikingNeuron, SpikingMaxPool)):
                m.reset()

    def config(self) -> dict[str, Any]:
        """The conversion settings, e.g. for a model card or an evaluation record."""
        return {"neuron": self.neuron, "threshold_method": self.threshold_method, "scale": self.scale,
                "initial_potential": self.initial_potential, "burst": self.burst, "encoding": self.encoding,
                "seed": self.seed, "bias_correction": self.bias_correction}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items())

    @property
    def static(self) -> fx.GraphModule:
        """Input → the values the step part reads (a tuple); constant over time under direct encoding."""
        return self._parts[0]

    @property
    def step(self) -> fx.GraphModule:
        """One time step of everything downstream of the first neurons, fed with ``*static(x)``."""
        return self._parts[1]

    def _apply(self, fn: Callable, recurse: bool = True) -> SpikingNetwork:
        # .to()/.half() may replace buffers that the split parts hold as their own attributes: split again.
        super()._apply(fn, recurse)
        self._split()
        return self

    def _split(self) -> None:
        # A tuple, so that nn.Module does not register the parts: they share ``net``'s layers, and registering them
        # would put every weight into the state dict three times.
        self._parts = split_static(self.net)


def is_neuron(node: fx.Node, gm: fx.GraphModule) -> bool:
    return node.op == "call_module" and isinstance(gm.get_submodule(node.target), SpikingNeuron)


def dynamic_nodes(gm: fx.GraphModule) -> set[fx.Node]:
    """Nodes whose value changes from step to step: the neurons and everything downstream of them."""
    dynamic: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op != "output" and (is_neuron(node, gm) or any(a in dynamic for a in node.all_input_nodes)):
            dynamic.add(node)
    return dynamic


def split_static(gm: fx.GraphModule) -> tuple[fx.GraphModule, fx.GraphModule]:
    """Split ``gm`` into (static, step) graph modules that share its layers; see the module docstring."""
    dynamic = dynamic_nodes(gm)
    nodes = list(gm.graph.nodes)
    boundary = [n for n in nodes if n.op != "output" and n not in dynamic
                and any(u in dynamic or u.op == "output" for u in n.users)]
    static, env = fx.Graph(), {}
    for node in nodes:
        if node.op != "output" and node not in dynamic:
            env[node] = static.node_copy(node, env.__getitem__)
    static.output(tuple(env[n] for n in boundary))
    step, env = fx.Graph(), {}
    for node in boundary:
        env[node] = step.placeholder(node.name)
    for node in nodes:
        if node in dynamic or node.op == "output":
            env[node] = step.node_copy(node, env.__getitem__)
    return fx.GraphModule(gm, static, "StaticPart"), fx.GraphModule(gm, step, "StepPart")
