"""The time loop: one simulation up to max(T), read out at every requested T.

Each step runs the network's step graph once; the readout layer does not spike, its outputs are summed and the
result at T is that sum / T. Reading several T from one run therefore gives exactly what separate runs would.
Image batches are simulated in channels-last layout, which this CPU runs faster (``benchmarks/simulation_speed.py``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

import torch

if TYPE_CHECKING:
    from .network import SpikingNetwork

DEFAULT_T = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def simulate(snn: SpikingNetwork, x: torch.Tensor, T: int | Iterable[int] = DEFAULT_T, *,
             fast: bool = True) -> dict[int, torch.Tensor]:
    """``{T: output averaged over T steps}`` for every requested T, from one simulation of max(T) steps.

    ``fast=False`` runs the whole graph at every step instead of computing the input layer once; it exists as the
    plain reference that the fast path is tested against.
    """
    return run(snn, x, T, fast=fast)[0]


@torch.no_grad()
def run(snn: SpikingNetwork, x: torch.Tensor, T: int | Iterable[int], *, fast: bool = True,
        count_spikes: bool = False, fanout: Mapping[str, torch.Tensor] | None = None) -> tuple:
    """``simulate``, plus (with ``count_spikes``) the cumulative spike count of every layer at every T, plus (with
    ``fanout``, the per-neuron maps of ``measure_costs(snn, x).fanout_map``) a third dict, the cumulative SynOps of
    every layer at every T: each neuron's spikes times its fan-out, summed.

    Counting costs an addition per layer and step (each neuron's count), so it is off unless statistics are wanted.
    Under Poisson encoding the input spikes are counted as layer ``"input"``.
    """
    steps = sorted({T} if isinstance(T, int) else set(T))
    if not steps or steps[0] < 1:
        raise ValueError(f"time steps must be positive integers, got {T!r}")
    snn.check_input(x)
    if x.dim() == 4:  # channels-last convolutions are faster on CPU (benchmarks/simulation_speed.py)
        x = x.contiguous(memory_format=torch.channels_last)
    neurons = snn.neurons()
    snn.reset()
    count_spikes = count_spikes or fanout is not None
    for neuron in neurons.values():
        neuron.count_spikes = count_spikes
    generator = torch.Generator(x.device).manual_seed(snn.settings.seed) if snn.settings.encoding == "poisson" else None
    outputs, counts, synops = {}, {}, {}
    input_spikes = torch.zeros_like(x, dtype=torch.float32) if generator is not None and count_spikes else None
    total = None
    try:
        cached = snn.static(x) if fast and generator is None else None  # direct encoding: the input layer runs once
        for t in range(1, steps[-1] + 1):
            inp = x if generator is None else _poisson(x, generator)
            if input_spikes is not None:
                input_spikes.add_(inp.abs())
            if not fast:
                out = snn.net(inp)
            elif cached is not None:
                out = snn.step(*cached)
            else:
                out = snn.step(*snn.static(inp))
            total = out.clone() if total is None else total.add_(out)
            if t in steps:
                outputs[t] = total / t
                if count_spikes:
                    counts[t], synops[t] = _counts(neurons, input_spikes, fanout)
    finally:
        for neuron in neurons.values():
            neuron.count_spikes = False
        snn.reset()
    return (outputs, counts) if fanout is None else (outputs, counts, synops)


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
