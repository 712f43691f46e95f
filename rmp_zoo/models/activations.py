"""Conversion-friendly activations.

A spiking neuron can only represent rates in [0, θ], so an ANN whose activations are clipped at a per-layer
threshold θ converts with far less error than one with an unbounded ReLU. The thresholds are parameters, so they
are trained with the weights and travel in the state dict; the converter reads them with ``threshold="trained"``.

Nothing stops SGD from pushing a θ through zero. QCFS still computes with a negative θ (its outputs turn
non-positive), so training carries on, but no spiking neuron can stand for that layer and the network cannot be
converted. So each activation projects its own θ back to at least ``MIN_THRESHOLD`` before it computes: whatever
loop trains it, every forward pass sees θ >= 0.01 (``tests/test_train.py`` drives every θ below zero and back).
"""
from __future__ import annotations

import torch
from torch import nn

from .qcfs_kernel import qcfs

ACTIVATIONS = ("relu", "clip", "qcfs")
MIN_THRESHOLD = 1e-2  # smallest trained activation threshold; post-BN activations are of order 1


def _project(threshold: nn.Parameter) -> torch.Tensor:
    """Clamp θ in place to at least ``MIN_THRESHOLD``: a projection of the optimiser's last step, not a gradient
    path."""
    threshold.data.clamp_(min=MIN_THRESHOLD)
    return threshold


class ClipReLU(nn.Module):
    """ReLU clipped at a trainable per-layer threshold θ: ``min(max(x, 0), θ)``."""

    def __init__(self, threshold: float = 8.0) -> None:
        super().__init__()
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.relu(x), _project(self.threshold))

    def extra_repr(self) -> str:
        return f"threshold={self.threshold.item():.4g}"


class QCFS(nn.Module):
    """Quantisation-clip-floor-shift activation (Bu et al., ICLR 2022).

    ``θ/L · clip(floor(x·L/θ + 1/2), 0, L)``: an IF neuron with threshold θ and initial potential θ/2 reproduces it
    in expectation after L steps, which is why QCFS-trained ANNs convert at low T. The floor uses a straight-through
    gradient; forward and backward each run as one fused kernel (``qcfs_kernel``).
    """

    def __init__(self, levels: int = 8, threshold: float = 8.0) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"QCFS needs levels >= 1, got {levels}")
        self.levels = int(levels)
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return qcfs(x, _project(self.threshold), self.levels)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={self.threshold.item():.4g}"


def make_activation(name: str, threshold: float = 8.0, levels: int = 8) -> nn.Module:
    """Build the activation named in a recipe; unknown names list the valid ones."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "clip":
        return ClipReLU(threshold)
    if name == "qcfs":
        return QCFS(levels, threshold)
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
