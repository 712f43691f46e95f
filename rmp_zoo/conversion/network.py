"""The converted network: the ANN's fx graph with every activation replaced by a spiking neuron.

``net`` computes one time step. For the time loop it is split once into a *static* part (everything that does not
depend on any neuron, i.e. the input layer) and a *step* part, so that under direct encoding the input layer runs
once per simulation instead of once per step.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import torch
from torch import fx, nn

from .neurons import SpikingMaxPool, SpikingNeuron
from .settings import ConversionSettings


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
        return self.run(x, [T])[0][T]

    @torch.no_grad()
    def run(self, x: torch.Tensor, T: int | Iterable[int], *, fast: bool = True, count_spikes: bool = False,
            fanout: Mapping[str, torch.Tensor] | None = None) -> tuple:
        """The time loop: one simulation up to max(T), read out at every requested T.

        Returns ``{T: output averaged over T steps}``, plus (with ``count_spikes``) the cumulative spike count of every
        layer at every T, plus (with ``fanout``, the per-neuron maps of ``measure_costs(snn, x).fanout_map``) a third
        dict, the cumulative SynOps of every layer at every T: each neuron's spikes times its fan-out, summed.

        Each step runs the step graph once; the readout layer does not spike, its outputs are summed and the result at
        T is that sum / T, so several T from one run equal separate runs. Counting costs an addition per layer and
        step, so it is off unless statistics are wanted. Under Poisson encoding the input spikes are counted as layer
        ``"input"``. ``fast=False`` runs the whole graph every step (the reference the fast path is tested against).
        """
        steps = sorted({T} if isinstance(T, int) else set(T))
        if not steps or steps[0] < 1:
            raise ValueError(f"time steps must be positive integers, got {T!r}")
        self.check_input(x)
        if x.dim() == 4:  # channels-last convolutions are faster on CPU (benchmarks/simulation_speed.py)
            x = x.contiguous(memory_format=torch.channels_last)
        neurons = self.neurons()
        self.reset()
        count_spikes = count_spikes or fanout is not None
        for neuron in neurons.values():
            neuron.count_spikes = count_spikes
        poisson = self.settings.encoding == "poisson"
        generator = torch.Generator(x.device).manual_seed(self.settings.seed) if poisson else None
        outputs, counts, synops = {}, {}, {}
        input_spikes = torch.zeros_like(x, dtype=torch.float32) if generator is not None and count_spikes else None
        total = None
        try:
            cached = self.static(x) if fast and not poisson else None  # direct encoding: the input layer runs once
            for t in range(1, steps[-1] + 1):
                inp = x if generator is None else _poisson(x, generator)
                if input_spikes is not None:
                    input_spikes.add_(inp.abs())
                if not fast:
                    out = self.net(inp)
                elif cached is not None:
                    out = self.step(*cached)
                else:
                    out = self.step(*self.static(inp))
                total = out.clone() if total is None else total.add_(out)
                if t in steps:
                    outputs[t] = total / t
                    if count_spikes:
                        counts[t], synops[t] = _counts(neurons, input_spikes, fanout)
        finally:
            for neuron in neurons.values():
                neuron.count_spikes = False
            self.reset()
        return (outputs, counts) if fanout is None else (outputs, counts, synops)

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse, naming the expected input, what would otherwise fail deep in the graph or pass silently: images
        that are not float, a missing batch dimension, the wrong channels or (for zoo models) size, NaN or inf."""
        cfg = getattr(self, "pretrained_cfg", None) or {}
        rank, features = _input_layout(self.net)
        size = tuple(cfg["input_size"]) if "input_size" in cfg else None
        expected = "a float tensor"
        if size:
            expected += f" [batch, {', '.join(map(str, size))}]"
        elif rank:
            expected += f" of rank {rank} with {features} " + ("channels in dim 1" if rank > 2 else "features last")
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


def _poisson(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Signed Bernoulli spikes: ±1 with probability |x| (clipped to 1), so the mean input is clip(x, -1, 1).

    Inputs should lie in [-1, 1] (e.g. images in [0, 1]); larger magnitudes saturate.
    """
    return torch.bernoulli(x.abs().clamp(max=1), generator=generator).mul_(x.sign())


def _counts(neurons: dict, input_spikes: torch.Tensor | None,
            fanout: Mapping[str, torch.Tensor] | None) -> tuple[dict[str, int], dict[str, float]]:
    """Spikes and (with ``fanout``) SynOps of every layer so far, from each neuron's count."""
    per_neuron = {name: n.spike_count for name, n in neurons.items()}
    if input_spikes is not None:
        per_neuron = {"input": input_spikes, **per_neuron}
    counts = {name: int(c.sum(dtype=torch.float64)) if c is not None else 0 for name, c in per_neuron.items()}
    synops = {name: float((c * fanout[name]).sum(dtype=torch.float64)) if c is not None else 0.0
              for name, c in per_neuron.items()} if fanout is not None else {}
    return counts, synops
