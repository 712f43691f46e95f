"""``simulate``: the outputs of a spiking network at every requested T, from one run of its time loop
(``SpikingNetwork.run``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch

if TYPE_CHECKING:
    from .network import SpikingNetwork

DEFAULT_T = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def simulate(snn: SpikingNetwork, x: torch.Tensor, T: int | Iterable[int] = DEFAULT_T, *,
             mode: str = "multi", fast: bool = True) -> dict[int, torch.Tensor]:
    """``{T: output averaged over T steps}`` for every requested T, from one simulation of max(T) steps.

    ``mode="multi"`` (the default) runs each layer over a chunk of time steps at once; ``mode="step"`` runs the graph
    once per step, with the least memory (``SpikingNetwork.run``). ``fast=False`` runs the whole graph at every step
    instead of computing the input layer once; it exists as the plain reference that the fast path is tested against.
    """
    return snn.run(x, T, mode=mode, fast=fast)[0]
