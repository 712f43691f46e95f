"""The converted network: the ANN's fx graph with every activation replaced by a spiking neuron.

``net`` computes one time step. For the time loop it is split once into a *static* part (everything that does not
depend on any neuron, i.e. the input layer) and a *step* part, so that under direct encoding the input layer runs
once per simulation instead of once per step.
"""
from __future__ import annotations

import operator
import warnings
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
from torch import fx, nn

from .cpu_memory import keep_freed_memory
from .neurons import SpikingMaxPool, SpikingNeuron
from .settings import ConversionSettings
from .spike_conv import SpikeConv2d, codes_buffer, spike_coding
from .trace import WEIGHTED_MODULES

# Multi-step simulation: the largest activation of a chunk of time steps stacked along the batch, in bytes. On a CPU
# larger stacks fall out of the caches, and blocks of 32 MB or more are mapped afresh, page fault by page fault, for
# every call (cpu_memory), so the CPU budget is small (ResNet-20 on CIFAR: 8 steps of 32 images). A GPU keeps freed
# memory in its caching allocator and gains from larger calls (benchmarks/simulation_throughput.py).
MULTI_STEP_BYTES = {"cpu": 16 * 2**20, "cuda": 512 * 2**20}
MULTI_STEP_MAX = 8  # steps per chunk at most: compiling a neuron kernel takes longer the more steps it holds


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
        self._not_batchwise: str | None = None  # why the multi-step path failed on this graph, once it has
        self._split()

    def forward(self, x: torch.Tensor, T: int = 64) -> torch.Tensor:
        """Output averaged over ``T`` steps; a fresh simulation, so equal inputs give equal outputs."""
        return self.run(x, [T])[0][T]

    @torch.no_grad()
    def run(self, x: torch.Tensor, T: int | Iterable[int], *, mode: str = "multi", fast: bool = True,
            chunk: int | None = None, count_spikes: bool = False,
            fanout: Mapping[str, torch.Tensor] | None = None) -> tuple:
        """The time loop: one simulation up to max(T), read out at every requested T.

        Returns ``{T: output averaged over T steps}``, plus (with ``count_spikes``) the cumulative spike count of every
        layer at every T, plus (with ``fanout``, the per-neuron maps of ``measure_costs(snn, x).fanout_map``) a third
        dict, the cumulative SynOps of every layer at every T: each neuron's spikes times its fan-out, summed.

        The readout layer does not spike, its outputs are summed and the result at T is that sum / T, so several T
        from one run equal separate runs. Counting costs an addition per neuron and step, so it is off unless
        statistics are wanted. Under Poisson encoding the input spikes are counted as layer ``"input"``.

        ``mode="multi"`` (the default) runs every layer over a chunk of time steps at once: conv/linear layers, pooling
        and additions see the chunk's steps stacked along the batch dimension (one large call instead of one per
        step), and each spiking layer runs its steps in order in one fused kernel (``neuron_kernel``), residual
        addition included; where it feeds integer spike convolutions (``spike_conv``, on CPUs), the kernel also writes
        their uint8 input and adds up their outputs. Chunks hold ``chunk`` steps, by default up to ``MULTI_STEP_MAX``
        and as many as keep the stacked activations within ``MULTI_STEP_BYTES``, a batch too large for that running in
        parts (``_plan``). When
        spikes are counted, chunks end at every requested T. It gives the spikes of ``mode="step"``, which runs the
        step graph once per step: the reference, and the path with the least memory. Outputs agree up to the summation
        order a conv/linear library picks for a batch of B against one of chunk·B (bitwise in the tests,
        ``tests/test_simulation_speed_paths.py``; 1e-7 for a batch of one image on oneDNN). A network with forward
        hooks, which expect one call per step, always runs step by step. ``fast=False`` runs the whole graph every
        step, input layer included (the plain reference the others are tested against).
        """
        steps = sorted({T} if isinstance(T, int) else set(T))
        if not steps or steps[0] < 1:
            raise ValueError(f"time steps must be positive integers, got {T!r}")
        if mode not in ("multi", "step"):
            raise ValueError(f"mode={mode!r}: choose 'multi' (several time steps per layer call) or 'step'")
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk={chunk!r}: a chunk holds at least one time step")
        self.check_input(x)
        if x.dim() == 4:  # channels-last convolutions are faster on CPU (benchmarks/simulation_speed.py)
            x = x.contiguous(memory_format=torch.channels_last)
        multi = mode == "multi" and fast and not self._has_hooks() and self._not_batchwise is None
        counting = count_spikes or fanout is not None
        keep_freed_memory(x.device)  # else page faults take 14% of a CPU simulation's time in a fresh process
        try:
            try:
                if not multi:
                    return self._simulate(x, steps, False, fast, None, counting, fanout)
                chunk, images = self._plan(x, steps, chunk)
                parts = [self._simulate(part, steps, True, fast, chunk, counting, fanout) for part in x.split(images)]
                return parts[0] if len(parts) == 1 else _merge(parts)
            except _NotBatchwise as err:  # a graph that mixes the batch dimension: step by step from now on
                self._not_batchwise = str(err)
                warnings.warn(f"{type(self).__name__}: {err}, so the multi-step simulation cannot stack time steps "
                              "along the batch; simulating step by step", RuntimeWarning, stacklevel=3)
                self.reset()
                return self._simulate(x, steps, False, fast, None, counting, fanout)
        finally:
            for neuron in self.neurons().values():
                neuron.count_spikes = False
            self.reset()

    def _simulate(self, x: torch.Tensor, steps: list[int], multi: bool, fast: bool, chunk: int | None,
                  count_spikes: bool, fanout: Mapping[str, torch.Tensor] | None) -> tuple:
        neurons = self.neurons()
        self.reset()
        for neuron in neurons.values():
            neuron.count_spikes = count_spikes
        poisson = self.settings.encoding == "poisson"
        generator = torch.Generator(x.device).manual_seed(self.settings.seed) if poisson else None
        input_spikes = torch.zeros_like(x, dtype=torch.float32) if poisson and count_spikes else None
        outputs, counts, synops = {}, {}, {}
        total = None
        if multi:
            step_outputs = self._multi_step_outputs(x, steps, generator, input_spikes, chunk, count_spikes)
        else:
            step_outputs = self._step_outputs(x, steps[-1], generator, input_spikes, fast)
        for t, out in step_outputs:
            total = out.clone() if total is None else total.add_(out)
            if t in steps:  # when counting, the multi-step path ends a chunk at every requested T
                outputs[t] = total / t
                if count_spikes:
                    counts[t], synops[t] = _counts(neurons, input_spikes, fanout)
        return (outputs, counts) if fanout is None else (outputs, counts, synops)

    def _step_outputs(self, x: torch.Tensor, last: int, generator: torch.Generator | None,
                      input_spikes: torch.Tensor | None, fast: bool) -> Iterator[tuple[int, torch.Tensor]]:
        """``(t, output of step t)`` for t = 1 … last, one step graph call per step."""
        cached = self.static(x) if fast and generator is None else None  # direct encoding: the input layer runs once
        for t in range(1, last + 1):
            yield t, self._one_step(x, cached, generator, input_spikes, fast)

    def _one_step(self, x: torch.Tensor, cached: tuple | None, generator: torch.Generator | None,
                  input_spikes: torch.Tensor | None, fast: bool = True) -> torch.Tensor:
        """The output of the next time step: the step graph on the cached input layer, or (Poisson encoding) on a
        new draw; ``fast=False``: the whole graph."""
        if cached is not None:
            return self.step(*cached)
        inp = x if generator is None else _poisson(x, generator)
        if input_spikes is not None:
            input_spikes.add_(inp.abs())
        return self.step(*self.static(inp)) if fast else self.net(inp)

    def _multi_step_outputs(self, x: torch.Tensor, steps: list[int], generator: torch.Generator | None,
                            input_spikes: torch.Tensor | None, chunk: int,
                            count_spikes: bool) -> Iterator[tuple[int, torch.Tensor]]:
        """``(t, output of step t)`` for t = 1 … max(steps), a chunk of time steps at a time. Chunks hold ``chunk``
        steps, rounded down to a power of two and to at most max(steps) and ``MULTI_STEP_MAX``. They end at the last T
        and, when spikes are counted, at every requested T; steps that do not fill a chunk run one at a time. So the
        compiled neuron kernels come in one length."""
        cached = self.static(x) if generator is None else None
        step, static = _MultiStep(self.step), None if generator is None else _MultiStep(self.static)
        chunk = 1 << (min(chunk, steps[-1], MULTI_STEP_MAX).bit_length() - 1)
        stops = steps if count_spikes else steps[-1:]
        t = 0
        while t < steps[-1]:
            if next(s for s in stops if s > t) - t < chunk:
                t += 1
                yield t, self._one_step(x, cached, generator, input_spikes)
                continue
            if cached is not None:
                outs = step.run(*cached, steps=chunk, batch=len(x), held=True)
            else:
                draws = [_poisson(x, generator) for _ in range(chunk)]  # in the order the step path draws them
                if input_spikes is not None:
                    for draw in draws:
                        input_spikes.add_(draw.abs())
                stacked = static.run(torch.cat(draws), steps=chunk, batch=len(x))
                outs = step.run(*stacked, steps=chunk, batch=len(x))
            for out in outs.chunk(chunk):
                t += 1
                yield t, out

    def _plan(self, x: torch.Tensor, steps: list[int], chunk: int | None) -> tuple[int, int]:
        """(steps per chunk, images per simulation) of the multi-step path. Unless ``chunk`` is given, the largest
        stacked activation, chunk × images × its size per image, stays within ``MULTI_STEP_BYTES``: the input layer's
        output (usually a CNN's largest activation) sets it. Within that budget a chunk holds as many steps as it may
        (``MULTI_STEP_MAX``), and a larger batch is simulated in parts of as many images as then fit (direct encoding
        only: Poisson draws cover the whole batch at every step)."""
        if chunk is not None:
            return chunk, len(x)
        one = x[:1]
        per_image = max(t.numel() * t.element_size() for t in _leaves((one, self.static(one)))
                        if isinstance(t, torch.Tensor))
        budget = MULTI_STEP_BYTES.get(x.device.type, MULTI_STEP_BYTES["cpu"])
        images = len(x)
        if self.settings.encoding != "poisson":
            images = max(1, min(images, budget // (min(steps[-1], MULTI_STEP_MAX) * per_image)))
        return max(1, budget // (images * per_image)), images

    def _has_hooks(self) -> bool:
        return bool(nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks
                    or any(m._forward_hooks or m._forward_pre_hooks for m in self.net.modules()))

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


class _Held:
    """A value that is the same at every time step of a chunk (under direct encoding, the input layer's output), kept
    once instead of stacked."""

    def __init__(self, value: torch.Tensor) -> None:
        self.value = value


class _Sum:
    """``a + rest[0] + rest[1] + ...`` not yet computed (an integer convolution's terms, a residual addition): the
    neuron it feeds adds it inside its kernel. ``a`` is a fresh tensor that may be overwritten."""

    def __init__(self, a: torch.Tensor, *rest: torch.Tensor) -> None:
        self.a, self.rest = a, rest

    def total(self) -> torch.Tensor:
        """The sum, computed into ``a`` in the order the neuron kernel adds it (once: later calls return it)."""
        for term in self.rest:
            self.a.add_(term)
        self.rest = ()
        return self.a


class _NotBatchwise(Exception):
    """The graph does something along the batch dimension, so time steps cannot be stacked there."""


def _is_add(node: fx.Node) -> bool:
    return ((node.op == "call_function" and node.target in (operator.add, torch.add))
            or (node.op == "call_method" and node.target == "add"))


class _MultiStep:
    """Runs a graph over a chunk of time steps at once: values are the steps' tensors stacked along the batch dimension
    (``[steps·batch, ...]``), or ``_Held`` for a value the same at every step; spiking layers run their steps in order
    (``scan``), every other node runs once on the stack. A residual addition that only feeds a neuron is left to that
    neuron's kernel. Built once per part of a batch and run once per chunk: it walks the graph itself, with its
    modules and the last reader of every value looked up in advance, where ``fx.Interpreter`` would rebuild its
    last-use table for every chunk and run its per-node bookkeeping at every node (Python is the largest part of what
    a step costs beyond the dense forward: ``benchmarks/simulation_profile.py``)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.nodes = list(gm.graph.nodes)
        self.modules = {n: gm.get_submodule(n.target) for n in self.nodes if n.op == "call_module"}
        last_reader = {arg: node for node in self.nodes for arg in node.all_input_nodes}
        self.dropped_after: dict[fx.Node, list[fx.Node]] = {}  # values freed once their last reader has run
        for value, reader in last_reader.items():
            self.dropped_after.setdefault(reader, []).append(value)
        # integer convolutions fed by their own source layer (spike_conv), by the node that feeds them
        self.spike_convs = {n: n.args[0] for n in self.nodes
                            if isinstance(self.modules.get(n), SpikeConv2d) and isinstance(n.args[0], fx.Node)
                            and self.modules.get(n.args[0]) is self.modules[n].source}
        self.code_readers: dict[fx.Node, list[SpikeConv2d]] = {}
        for conv, neuron in self.spike_convs.items():
            self.code_readers.setdefault(neuron, []).append(self.modules[conv])
        self.codes: dict[fx.Node, torch.Tensor] = {}  # neuron outputs as integer convolution inputs (spike_conv)
        self.steps = self.batch = 0

    def run(self, *inputs: Any, steps: int, batch: int, held: bool = False) -> Any:
        """The graph's outputs for a chunk of ``steps`` steps of ``batch`` images, stacked; ``held`` inputs are each
        the same at every step."""
        self.steps, self.batch = steps, batch
        self.codes = {}
        env: dict[fx.Node, Any] = {}
        inputs_left = iter(inputs)
        for node in self.nodes:
            if node.op == "placeholder":
                value = next(inputs_left)
                env[node] = _Held(value) if held and isinstance(value, torch.Tensor) else value
            elif node.op == "output":
                return fx.node.map_aggregate(fx.node.map_arg(node.args[0], env.__getitem__), self._stacked)
            else:
                env[node] = self._run_node(node, env)
            for value in self.dropped_after.get(node, ()):
                del env[value]
                self.codes.pop(value, None)
        raise ValueError("the graph has no output node")

    def _run_node(self, node: fx.Node, env: dict[fx.Node, Any]) -> Any:
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), env.__getitem__)
        if node.op == "get_attr":
            value = self.gm
            for name in node.target.split("."):
                value = getattr(value, name)
            return _Held(value) if isinstance(value, torch.Tensor) else value
        module = self.modules.get(node)
        if isinstance(module, SpikingNeuron):
            x = args[0]
            codes = self._codes_for(node, module, x.a if isinstance(x, _Sum) else getattr(x, "value", x))
            if isinstance(x, _Sum):
                return self._checked(node, module.scan(x.a, self.steps, plus=x.rest, codes=codes))
            if isinstance(x, _Held):
                return self._checked(node, module.scan(x.value, self.steps, held=True, codes=codes))
            if not self._owned(node.args[0]):
                x = x.clone()
            return self._checked(node, module.scan(x, self.steps, codes=codes))
        if isinstance(module, SpikingMaxPool):
            x = args[0].total() if isinstance(args[0], _Sum) else args[0]
            held = isinstance(x, _Held)
            return self._checked(node, module.scan(x.value if held else x, self.steps, held=held))
        if not any(isinstance(a, (torch.Tensor, _Sum)) for a in _leaves((args, kwargs))):  # all held: so is the result
            args, kwargs = fx.node.map_aggregate((args, kwargs), lambda a: a.value if isinstance(a, _Held) else a)
            out = self._call(node, module, args, kwargs)
            return _Held(out) if isinstance(out, torch.Tensor) else out
        if self._fusable(node, args, kwargs):  # a + b, where the neuron that reads it may overwrite a
            sums = [a for a in args if isinstance(a, _Sum)]
            if sums:  # an integer convolution's terms first, then the rest in the graph's order
                second = next(a for a in args if a is not sums[0])
                return _Sum(sums[0].a, *sums[0].rest, second.total() if isinstance(second, _Sum) else second)
            return _Sum(*args) if self._owned(node.args[0]) else _Sum(args[1], args[0])
        if node in self.spike_convs and module.integer(args[0]):  # the layer's spikes as integers
            source = self.spike_convs[node]
            codes = self.codes.get(source)
            if codes is None:  # its neuron did not write them (a layout the kernel does not write codes for)
                codes = module.codes(args[0])
            out = _Sum(*module.terms(codes))
            self._checked(node, out.a)
            return out if len(node.users) == 1 else out.total()  # its reader adds it up, or that reader's neuron
        args, kwargs = fx.node.map_aggregate((args, kwargs), self._stacked)
        return self._checked(node, self._call(node, module, args, kwargs))

    def _codes_for(self, node: fx.Node, neuron: SpikingNeuron, x: torch.Tensor) -> tuple | None:
        """A buffer for the neuron to write its spikes into as integer convolution input, when a reader wants it."""
        if not (any(conv.integer(x) for conv in self.code_readers.get(node, ()))
                and x.is_contiguous(memory_format=torch.channels_last)):
            return None
        self.codes[node] = codes_buffer((self.steps * self.batch, *x.shape[1:]), x.device)
        return (self.codes[node], *spike_coding(neuron))

    @staticmethod
    def _call(node: fx.Node, module: nn.Module | None, args: tuple, kwargs: dict) -> Any:
        if node.op == "call_module":
            return module(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        return node.target(*args, **kwargs)

    def _owned(self, node: Any) -> bool:
        """Whether the value of ``node`` is a fresh tensor (a conv/linear output or a sum) read by one node only, which
        may then overwrite it."""
        if not isinstance(node, fx.Node) or len(node.users) != 1:
            return False
        if node.op == "call_module":
            return isinstance(self.modules[node], WEIGHTED_MODULES)
        return _is_add(node)

    def _fusable(self, node: fx.Node, args: tuple, kwargs: dict) -> bool:
        """An addition of two stacked tensors (or unfinished sums) of one shape and dtype, one of them owned, read only
        by a neuron."""
        if not _is_add(node) or kwargs or len(args) != 2 or len(node.users) != 1:
            return False
        user = next(iter(node.users))
        a, b = (t.a if isinstance(t, _Sum) else t for t in args)
        return (args[0] is not args[1] and isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.shape == b.shape and a.dtype == b.dtype
                and any(isinstance(t, _Sum) or self._owned(n) for t, n in zip(args, node.args))
                and user.op == "call_module" and user.args[0] is node
                and isinstance(self.modules[user], SpikingNeuron))

    def _stacked(self, value: Any) -> Any:
        """A value as a plain tensor for a node that reads it as the graph would."""
        if isinstance(value, _Sum):
            return value.total()
        return torch.cat([value.value] * self.steps) if isinstance(value, _Held) else value

    def _checked(self, node: fx.Node, out: Any) -> Any:
        """Refuse a result whose batch dimension is not ``steps·batch``: the node reshaped or reduced across it."""
        for t in _leaves(out):
            if isinstance(t, torch.Tensor) and (t.dim() == 0 or t.shape[0] != self.steps * self.batch):
                raise _NotBatchwise(f"node {node.name!r} gives shape {tuple(t.shape)} for {self.steps} time steps "
                                    f"of {self.batch} stacked along the batch")
        return out


def _leaves(value: Any) -> Iterator[Any]:
    """The values inside nested tuples, lists and dicts (node arguments and results)."""
    if isinstance(value, (tuple, list)):
        for v in value:
            yield from _leaves(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    else:
        yield value


def _merge(parts: list[tuple]) -> tuple:
    """One ``run`` result from those of parts of the batch: outputs concatenated, spike counts and SynOps added."""
    outputs = {t: torch.cat([p[0][t] for p in parts]) for t in parts[0][0]}
    totals = [{t: {name: sum(p[i][t][name] for p in parts) for name in layers} for t, layers in parts[0][i].items()}
              for i in range(1, len(parts[0]))]
    return (outputs, *totals)


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
