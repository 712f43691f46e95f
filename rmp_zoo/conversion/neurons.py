"""Stateful spiking modules that take the place of ANN activations (and, on request, of max pooling).

A neuron's output carries its threshold as amplitude (θ·spike), so the next layer keeps the ANN's weights: the mean
output over T steps approximates the ANN activation clip(x, 0, θ) with an error of about θ/T. State lives in plain
attributes that ``reset()`` clears; nothing carries over between simulations.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import neuron_kernel

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
        self.count_spikes = False  # when set, spike_count holds each neuron's spikes so far (negative ones too)
        self.v: torch.Tensor | None = None
        self.out: torch.Tensor | None = None
        self.net_spikes: torch.Tensor | None = None  # signed or burst neurons: positive minus negative spikes so far
        self.spike_count: torch.Tensor | None = None
        self.reset()

    def reset(self) -> None:
        """Forget membrane potential and spike counts: the next call starts a new simulation."""
        self.v = self.out = self.net_spikes = None
        self.spike_count = None
        self.steps = 0
        self._state: tuple | None = None  # flat views of v, out and net_spikes, for the kernels
        self._elapsed: torch.Tensor | None = None  # burst neurons: ``steps`` as a tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One time step. The output is a buffer kept for the whole simulation and overwritten next step (no
        allocation per layer and step), which is safe because a step's consumers all run within it."""
        if self.v is None:
            self._start(x)
        if self.out is None:  # the multi-step path writes its outputs elsewhere and never needs this buffer
            self.out = torch.empty_like(self.v)
            self._state = (self._state[0], neuron_kernel.flat(self.out), self._state[2])
        self._step(x, self._state[1])
        return self.out

    def scan(self, x: torch.Tensor, steps: int, held: bool = False, plus: tuple[torch.Tensor, ...] = (),
             codes: tuple[torch.Tensor, int, int] | None = None) -> torch.Tensor:
        """``steps`` time steps at once (multi-step simulation), in one kernel: ``x`` holds their inputs stacked along
        the batch dimension, step after step (``[steps·B, ...]``), or with ``held`` the one input ``[B, ...]`` of all
        of them; the tensors ``plus``, stacked like ``x``, are added to it in order (additions fused into the neuron).
        Returns the outputs stacked the same way, written into ``x`` unless ``held``: the caller hands over a tensor
        nothing else reads. Bitwise the same as ``steps`` calls of ``forward`` (on ``x + plus[0] + ...``). ``codes``
        (a uint8 tensor ``[steps·B, 2·C, H, W]`` in channels-last order, base, zero point) also receives the spikes as
        the input of integer spike convolutions (``spike_conv.spike_codes``), for channels-last 4-d layers."""
        if self.v is None:
            self._start(x if held else x[:len(x) // steps])
        if held:
            rows = torch.empty((steps, self.v.numel()), dtype=self.v.dtype, device=self.v.device)
        else:
            rows = neuron_kernel.flat_steps(x, self.v, steps)
        v, _, net = self._state
        shape = (-1,)
        if codes is not None:  # per step, [pixels, C] views of everything, so that the codes' pairs line up
            buffer, base, zero = codes
            shape = (-1, self.v.shape[1])
            if not self.v.is_contiguous(memory_format=torch.channels_last):
                raise ValueError("spike codes need a channels-last layer")
            pairs = buffer.permute(0, 2, 3, 1).view(steps, -1, 2, shape[1])
            codes = [(pair[:, 0], pair[:, 1], base, zero) for pair in pairs.unbind(0)]
        view = (lambda t: None if t is None else t.view(shape))
        terms = [[view(r.detach()) for r in neuron_kernel.flat_steps(t, self.v, steps).unbind(0)] for t in plus]
        extra = [list(step_terms) for step_terms in zip(*terms)] if plus else None
        neuron_kernel.kernels().scan(self._kind, [view(r.detach()) for r in rows.unbind(0)],
                                     view(neuron_kernel.flat(x, like=self.v)) if held else None, extra, view(v),
                                     view(net), self.threshold, self._elapsed, view(self._counter()), self.burst,
                                     codes)
        self.steps += steps
        return neuron_kernel.unflat_steps(rows, self.v)

    def _start(self, x: torch.Tensor) -> None:
        """State for a new simulation, laid out like ``x``; the potential starts at θ·initial_potential."""
        self.v = torch.empty_like(x).copy_(self.threshold * self.initial_potential)
        if self.neuron == "signed" or self.burst > 1:
            self.net_spikes = torch.zeros_like(self.v)  # positive minus negative spikes so far
        if self.burst > 1:
            self._elapsed = torch.zeros((), dtype=self.v.dtype, device=self.v.device)
        flat = neuron_kernel.flat
        self._state = (flat(self.v), None, None if self.net_spikes is None else flat(self.net_spikes))

    def _step(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """Integrate ``x``, fire into the flat ``out`` and reset: one fused kernel (``neuron_kernel``)."""
        self.steps += 1
        if self._elapsed is not None:
            self._elapsed.fill_(self.steps)
        v, _, net = self._state
        neuron_kernel.kernels().step(self._kind, neuron_kernel.flat(x, like=self.v), v, out, net, self.threshold,
                                     self._elapsed, self._counter(), self.burst)

    def _counter(self) -> torch.Tensor | None:
        """The flat spike count when spikes are counted."""
        if not self.count_spikes:
            return None
        if self.spike_count is None:
            self.spike_count = torch.zeros_like(self.v, dtype=torch.float32)
        return neuron_kernel.flat(self.spike_count)

    @property
    def _kind(self) -> str:
        return self.neuron + ("_burst" if self.burst > 1 else "")

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

    def scan(self, x: torch.Tensor, steps: int, held: bool = False) -> torch.Tensor:
        """``steps`` time steps at once, stacked along the batch as in ``SpikingNeuron.scan``: the gate runs step by
        step, since each step's choice depends on the inputs summed so far."""
        return torch.cat([self(inp) for inp in ([x] * steps if held else x.chunk(steps))])

