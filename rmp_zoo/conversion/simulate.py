"""The time loop: one simulation up to max(T), read out at every requested T.

Each step runs the network's step graph once; the readout layer does not spike, its outputs are summed and the
result at T is that sum / T. Reading several T from one run therefore gives exactly what separate runs would.
Image batches are simulated in channels-last layout, which this CPU runs faster (``benchmarks/simulation_speed.py``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch

if TYPE_CHECKING:
    from .network import SpikingNetwork

DEFAULT_T = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ENCODINGS = ("direct", "poisson")


def simulate(snn: SpikingNetwork, x: torch.Tensor, T: int | Iterable[int] = DEFAULT_T, *,
             fast: bool = True) -> dict[int, torch.Tensor]:
    """``{T: output averaged over T steps}`` for every requested T, from one simulation of max(T) steps.

    ``fast=False`` runs the whole graph at every step instead of computing the input layer once; it exists as the
    plain reference that the fast path is tested against.
    """
    return run(snn, x, T, fast=fast)[0]


@torch.no_grad()
def run(snn: SpikingNetwork, x: torch.Tensor, T: int | Iterable[int], *, fast: bool = True,
        count_spikes: bool = False) -> tuple[dict[int, torch.Tensor], dict[int, dict[str, int]]]:
    """``simulate``, plus (with ``count_spikes``) the cumulative spike count of every layer at every T.

    Counting costs a reduction per layer and step, so it is off unless statistics are wanted. Under Poisson
    encoding the input spikes are counted as layer ``"input"``.
    """
    steps = sorted({T} if isinstance(T, int) else set(T))
    if not steps or steps[0] < 1:
        raise ValueError(f"time steps must be positive integers, got {T!r}")
    if x.dim() == 4:  # channels-last convolutions are faster on CPU (benchmarks/simulation_speed.py)
        x = x.contiguous(memory_format=torch.channels_last)
    neurons = snn.neurons()
    snn.reset()
    for neuron in neurons.values():
        neuron.count_spikes = count_spikes
    generator = torch.Generator(x.device).manual_seed(snn.seed) if snn.encoding == "poisson" else None
    outputs, counts = {}, {}
    input_spikes = torch.zeros((), dtype=torch.long, device=x.device)
    total = None
    try:
        cached = snn.static(x) if fast and generator is None else None  # direct encoding: the input layer runs once
        for t in range(1, steps[-1] + 1):
            inp = x if generator is None else _poisson(x, generator)
            if generator is not None and count_spikes:
                input_spikes += inp.count_nonzero()
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
                    counts[t] = _counts(neurons, input_spikes if generator is not None else None)
    finally:
        for neuron in neurons.values():
            neuron.count_spikes = False
        snn.reset()
    return outputs, counts


def _poisson(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Signed Bernoulli spikes: ±1 with probability |x| (clipped to 1), so the mean input is clip(x, -1, 1).

    Inputs should lie in [-1, 1] (e.g. images in [0, 1]); larger magnitudes saturate.
    """
    return torch.bernoulli(x.abs().clamp(max=1), generator=generator).mul_(x.sign())


def _counts(neurons: dict, input_spikes: torch.Tensor | None) -> dict[str, int]:
    counts = {name: int(n.spike_count) if n.spike_count is not None else 0 for name, n in neurons.items()}
    if input_spikes is not None:
        counts = {"input": int(input_spikes), **counts}
    return counts
