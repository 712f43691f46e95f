"""Stateful spiking modules that take the place of ANN activations (and, on request, of max pooling).

A neuron's output carries its threshold as amplitude (θ·spike), so the next layer keeps the ANN's weights: the mean
output over T steps approximates the ANN activation clip(x, 0, θ) with an error of about θ/T. State lives in plain
attributes that ``reset()`` clears; nothing carries over between simulations.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NEURONS = ("rmp", "if", "signed")


class SpikingNeuron(nn.Module):
    """Integrate-and-fire neuron with threshold θ.

    ``"rmp"`` (residual membrane potential) resets by subtracting θ, so the charge above threshold is kept and the
    rate is exact to within 1/T; ``"if"`` resets to zero and loses that charge, which lowers its rate. ``"signed"`` is
    an RMP neuron that also fires a negative spike (−θ, adding θ back) when its potential falls below zero while it
    has fired more positive than negative spikes so far: a neuron that fired on an early burst of input that later
    input cancels takes the spike back, so its count tracks its summed input (the signed neuron with memory of Wang
    et al., IJCAI 2022). This undoes the over-firing from unevenly timed input that dominates the error at low T
    (``benchmarks/README.md``, conversion error). The threshold is a buffer so that it travels in ``state_dict`` and
    safetensors files.

    ``burst`` > 1 lets a neuron fire up to that many spikes in one step (burst spikes, Li & Zeng, IJCAI 2022), as
    many as its potential holds whole thresholds, and a signed neuron take back as many, while its count never
    exceeds one spike per step so far (the ANN's clip at θ). A neuron whose input arrives late can then catch up
    within T, which removes most of the under-firing at low T that single spikes leave.
    """

    def __init__(self, threshold: float, neuron: str = "rmp", initial_potential: float = 0.0, burst: int = 1) -> None:
        super().__init__()
        if neuron not in NEURONS:
            raise ValueError(f"unknown neuron {neuron!r}; choose one of {', '.join(NEURONS)}")
        if int(burst) != burst or burst < 1 or (neuron == "if" and burst > 1):
            raise ValueError(f"burst={burst!r}: a neuron fires at most `burst` spikes per step, a whole number >= 1; "
                             "bursts need a reset by subtraction (neuron rmp or signed), not if")
        self.burst = int(burst)
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self.neuron = neuron
        self.initial_potential = float(initial_potential)
        self.count_spikes = False
        self.v: torch.Tensor | None = None
        self.out: torch.Tensor | None = None
        self.net_spikes: torch.Tensor | None = None  # signed or burst neurons: positive minus negative spikes so far
        self.steps = 0
        self.spike_count: torch.Tensor | None = None  # with count_spikes: each neuron's spikes so far

    def reset(self) -> None:
        """Forget membrane potential and spike counts: the next call starts a new simulation."""
        self.v = self.out = self.net_spikes = None
        self.spike_count = None
        self.steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.burst > 1:
            return self._burst_step(x)
        # Float ops into buffers kept for the whole simulation: on CPU, boolean masks and ``bool * float`` ran many
        # times slower than the float equivalents, and a fresh output per step costs an allocation per layer and step.
        # The output buffer is overwritten next step, which is safe because a step's consumers all run within it.
        if self.v is None:  # a fresh tensor: ``x`` may be a cached value that is used again next step
            self.v = x + self.threshold * self.initial_potential if self.initial_potential else x.clone()
            self.out = torch.empty_like(self.v)
        else:
            self.v.add_(x)
        spike = torch.ge(self.v, self.threshold, out=self.out)  # 1.0 where the neuron fires, else 0.0
        if self.neuron == "signed":
            if self.net_spikes is None:
                self.net_spikes = torch.zeros_like(self.v)
            spike.sub_((self.v < 0).logical_and_(self.net_spikes > 0).to(spike.dtype))  # -1.0 takes a spike back
            self.net_spikes.add_(spike)
        if self.count_spikes:
            self._count(spike)
        if self.neuron == "if":
            self.v.addcmul_(self.v, spike, value=-1)  # v - v·1 = 0 where it fired, exactly
        out = spike.mul_(self.threshold)
        if self.neuron != "if":
            self.v.sub_(out)
        return out

    def _burst_step(self, x: torch.Tensor) -> torch.Tensor:
        """One step of a neuron that may fire several spikes (see the class docstring)."""
        if self.v is None:
            self.v = x + self.threshold * self.initial_potential
            self.net_spikes = torch.zeros_like(self.v)
        else:
            self.v.add_(x)
        self.steps += 1
        whole = torch.floor(self.v / self.threshold)
        spikes = torch.minimum(whole.clamp(0, self.burst), self.steps - self.net_spikes)
        if self.neuron == "signed":
            spikes -= torch.minimum((-whole).clamp(0, self.burst), self.net_spikes)  # 0 unless v < 0
        self.net_spikes.add_(spikes)
        if self.count_spikes:
            self._count(spikes)
        out = spikes.mul_(self.threshold)
        self.v.sub_(out)
        return out

    def _count(self, spikes: torch.Tensor) -> None:
        """Add this step's spikes (negative ones too) to each neuron's count: one add per step, no reduction."""
        if self.spike_count is None:
            self.spike_count = torch.zeros_like(spikes, dtype=torch.float32)
        self.spike_count.add_(spikes.abs() if self.neuron == "signed" else spikes)

    def extra_repr(self) -> str:
        return (f"{self.neuron}, threshold={self.threshold.item():.4g}, initial_potential={self.initial_potential:g}"
                + (f", burst={self.burst}" if self.burst > 1 else ""))


_MAX_POOL = {nn.MaxPool1d: F.max_pool1d, nn.MaxPool2d: F.max_pool2d, nn.MaxPool3d: F.max_pool3d}


class SpikingMaxPool(nn.Module):
    """Max pooling by spike gating (Rueckauer et al. 2017): each window passes on the current input of the unit whose
    input summed so far is largest.

    Once the most active unit of a window leads, the window's mean output is that unit's rate, i.e. the max of the
    rates, as in the ANN. Early on the leader can change, so this converges more slowly than average pooling. On a
    constant input (the first layer under direct encoding) it is exact.
    """

    def __init__(self, pool: nn.MaxPool1d | nn.MaxPool2d | nn.MaxPool3d) -> None:
        super().__init__()
        self.pool = pool
        self.total: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the summed input."""
        self.total = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.total = x.clone() if self.total is None else self.total.add_(x)
        p = self.pool
        _, idx = _MAX_POOL[type(p)](self.total, p.kernel_size, p.stride, p.padding, p.dilation, ceil_mode=p.ceil_mode,
                                    return_indices=True)
        return x.flatten(2).gather(2, idx.flatten(2)).view_as(idx)
