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
from .settings import ConversionSettings
from .simulate import simulate


class SpikingNetwork(nn.Module):
    """Rate-coded spiking network; ``snn(x, T)`` is the output averaged over ``T`` steps, shape [batch, classes].

    Thresholds are buffers of the neuron modules (``state_dict`` keys ``net.<layer>.threshold``), so saved weights
    carry them. ``settings`` are the ``ConversionSettings`` it was converted with (``threshold="auto"`` resolved);
    ``threshold_method`` names what chose the thresholds ("given" for a dict).
    """

    def __init__(self, net: fx.GraphModule, settings: ConversionSettings, *, threshold_method: str) -> None:
        super().__init__()
        self.net = net
        self.settings = settings
        self.threshold_method = threshold_method
        self.bias_correction: dict[str, int] | None = None  # set by correct_bias: its T and image count
        self.bias_shifts: dict[str, torch.Tensor] = {}  # what correct_bias added to the bias feeding each layer
        self._split()

    def forward(self, x: torch.Tensor, T: int = 64) -> torch.Tensor:
        """Output averaged over ``T`` steps; a fresh simulation, so equal inputs give equal outputs."""
        return simulate(self, x, [T])[T]

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse, naming the expected input, what would otherwise fail deep in the graph or pass silently: images
        that are not float, a missing batch dimension, the wrong channels or (for zoo models) size, NaN or inf."""
        cfg = getattr(self, "pretrained_cfg", None) or {}
        rank, features = _input_layout(self.net)
        size = tuple(cfg["input_size"]) if "input_size" in cfg else None
        expected = (f"a float tensor [batch, {', '.join(map(str, size))}]" if size else
                    f"a float tensor of rank {rank}" + (f" with {features} channels in dim 1" if rank > 2 else
                                                        f" with {features} features last") if rank else "a float tensor")
        how = (f"; preprocess images as {cfg['name']} was trained: scale to [0, 1], then normalise with mean "
               f"{cfg['mean']} and std {cfg['std']} (rmp_zoo.transforms(model) does both)" if "mean" in cfg else "")
        problem = None
        if not torch.is_floating_point(x):
            problem = f"got dtype {x.dtype}"
        elif rank and (x.dim() != rank if rank > 2 else x.dim() < 2):
            problem = f"got shape {tuple(x.shape)}" + (" (no batch dimension? use x.unsqueeze(0))"
                                                      if x.dim() == rank - 1 else "")
        elif features and x.shape[1 if rank > 2 else -1] != features:
            problem = f"got shape {tuple(x.shape)}"
        elif size and tuple(x.shape[1:]) != size:
            problem = f"got shape {tuple(x.shape)}"
        elif not torch.isfinite(x).all():
            problem = "got NaN or infinite values, which no neuron can integrate"
        if problem:
            raise ValueError(f"{type(self).__name__} expects {expected}: {problem}{how}")

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
        """The conversion record of ``config.json``, cards and evaluations; ``ConversionSettings.from_record`` reads
        it back."""
        s = self.settings
        return {"neuron": s.neuron, "threshold_method": self.threshold_method, "scale": s.scale,
                "initial_potential": s.initial_potential, "burst": s.burst, "encoding": s.encoding, "seed": s.seed,
                "maxpool": s.maxpool, "bias_correction": self.bias_correction}

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


def _input_layout(gm: fx.GraphModule) -> tuple[int | None, int | None]:
    """(rank, channels) a conv layer fed directly by the input expects, (2, features) for such a linear layer, and
    (None, None) when the input reaches no weighted layer directly."""
    x = next(n for n in gm.graph.nodes if n.op == "placeholder")
    for node in x.users:
        m = gm.get_submodule(node.target) if node.op == "call_module" else None
        if isinstance(m, nn.modules.conv._ConvNd):
            return len(m.kernel_size) + 2, m.in_channels
        if isinstance(m, nn.Linear):
            return 2, m.in_features
    return None, None


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
