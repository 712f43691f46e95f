"""Convolutions of spikes in exact integer arithmetic, on the int8 units of x86 CPUs (oneDNN, VNNI/AMX).

Why: a convolution fed by a spiking neuron layer sees θ·s with s a small whole number (0 or 1; also −1 for signed
neurons; up to the burst), so its output θ·Σ w·s is a sum of weights, not of products. Each fp32 weight is split, per
output channel, into signed int8 digits with power-of-two scales, paired as base·hi + lo against the uint8 inputs
[base·s + zero, s + zero] (base 128 for binary spikes, less for signed and burst ones, so that the codes fit uint8);
two such pairs (three for bursts of 5 or more signed spikes, or 9 or more unsigned ones) keep each weight to within
2^-24 of its channel's largest (2^-28 for binary spikes). oneDNN sums the digits exactly in int32, several times
faster than fp32 multiply-adds on CPUs with VNNI or AMX, one call per pair; the fp32 outputs are added up after, by
the neuron kernel that reads them in a multi-step simulation. The result differs from the fp32 convolution by
rounding only (``tests/test_spike_conv.py`` bounds both errors). Everything else runs the plain fp32 convolution:
other devices and dtypes, CPUs without VNNI, grouped convolutions, layers that sum fewer than ``_MIN_FAN_IN`` inputs,
inputs that are not the source layer's spikes, and ``RMP_ZOO_INTEGER_CONVS=0`` or ``float_convs()``.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from typing import Iterator

import torch
from torch import fx, nn

from .neurons import SpikingNeuron
from .trace import set_module

_PRECISION = 17  # bits below the first digit's unit the last one reaches: about fp32's 24 below the largest weight
_ENABLED = contextvars.ContextVar("rmp_zoo_integer_convs", default=True)  # per thread, for float_convs()
# Inputs summed per output below which the fp32 convolution is faster: the integer one writes two fp32 outputs, which
# costs more than it saves where there is little to sum (3x3 over 16 channels, 1x1 shortcuts; benchmarks/spike_conv.py)
_MIN_FAN_IN = 256


@functools.cache
def integer_convs_supported() -> bool:
    """Whether this CPU and build run int8 convolutions fast: oneDNN's int8 kernels and VNNI or AMX."""
    cpu = getattr(torch, "cpu", None)
    fast_int8 = any(getattr(cpu, name, lambda: False)() for name in ("_is_vnni_supported", "_is_amx_tile_supported"))
    return (fast_int8 and torch.backends.mkldnn.is_available() and hasattr(torch.ops, "onednn")
            and hasattr(torch.ops.onednn, "qconv2d_pointwise"))


@contextlib.contextmanager
def float_convs() -> Iterator[None]:
    """Inside this block (in this thread) spike convolutions run in fp32, as the ANN does: the reference they are
    tested against."""
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


class SpikeConv2d(nn.Conv2d):
    """A Conv2d whose input is the output of one spiking neuron layer (``source``): θ·s, s a small whole number.

    The same parameters and state-dict keys as the Conv2d it replaces; only how it computes differs (see the module
    docstring). ``source`` is kept outside the module tree (it is registered where the graph holds it), and its
    threshold is read at every call, so calibration and ``.to()`` need no update here. Called with anything but the
    source's output tensor (``source.out``; the multi-step simulation hands over codes instead), it runs in fp32.
    """

    @classmethod
    def of(cls, conv: nn.Conv2d, source: SpikingNeuron) -> SpikeConv2d:
        new = cls.__new__(cls)
        new.__dict__.update({k: v.copy() if isinstance(v, dict) else v for k, v in conv.__dict__.items()})
        new.__dict__["source"] = source
        new.__dict__["_packed"] = None
        return new

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_packed": None}  # prepacked oneDNN weights neither copy nor pickle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x is not self.source.out or not self.integer(x):
            return super().forward(x)
        return self.of_codes(self.codes(x))

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """The source layer's output ``x`` as ``spike_codes``, made op by op (the neuron kernels write them too)."""
        return spike_codes(x, float(self.source.threshold), *spike_coding(self.source))

    def of_codes(self, spikes: torch.Tensor) -> torch.Tensor:
        """The output for the input given as ``spike_codes``."""
        first, *rest = self.terms(spikes)
        for term in rest:
            first.add_(term)
        return first

    def terms(self, spikes: torch.Tensor) -> list[torch.Tensor]:
        """The output as a sum of terms, one per digit pair, most significant (with the bias) first: the multi-step
        simulation leaves the additions to the neuron that reads it, and ``of_codes`` makes them in the same order."""
        base, zero = spike_coding(self.source)
        theta = float(self.source.threshold)
        conv = (self.stride, self.padding, self.dilation, self.groups)
        zeros = torch.zeros(self.out_channels, dtype=torch.int64)
        return [torch.ops.onednn.qconv2d_pointwise(spikes, theta, zero, digits, scale, zeros,
                                                   self.bias if k == 0 else None, *conv, 1.0, 0, torch.float32,
                                                   "none", [], "")
                for k, (digits, scale) in enumerate(self._digits(base))]

    def integer(self, x: torch.Tensor) -> bool:
        """Whether the input ``x`` goes through the integer convolution."""
        return (_ENABLED.get() and x.device.type == "cpu" and x.dim() == 4
                and x.dtype == self.weight.dtype == torch.float32
                and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))
                and self.groups == 1 and self.padding_mode == "zeros" and not isinstance(self.padding, str)
                and self.source.burst <= 63
                and self.weight[0].numel() >= _MIN_FAN_IN
                and float(self.source.threshold) > 0 and os.environ.get("RMP_ZOO_INTEGER_CONVS", "1") != "0"
                and integer_convs_supported())

    def _digits(self, base: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The weight as prepacked int8 digit pairs with their per-channel scales, made again when it changed (compared
        by value: edits through ``.data`` and inference tensors bump no version counter)."""
        w = self.weight.detach()
        if self._packed is None or self._packed[1] != base or not torch.equal(self._packed[0], w):
            self.__dict__["_packed"] = (w.clone(), base, [(self._pack(d), s) for d, s in digit_pairs(w, base)])
        return self._packed[2]

    def _pack(self, digits: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(len(digits))
        return torch.ops.onednn.qconv_prepack(digits.contiguous(memory_format=torch.channels_last), ones, 1.0, 0,
                                              list(self.stride), list(self.padding), list(self.dilation),
                                              self.groups, None)


def spike_coding(neuron: SpikingNeuron) -> tuple[int, int]:
    """(base, zero point) of a neuron's spikes s as the uint8 pair [base·s + zero, s + zero]: the largest power-of-two
    base for which the pair fits uint8 (at least 2, for at most 63 spikes a step)."""
    signed = neuron.neuron == "signed"
    room = (127 if signed else 255) // neuron.burst
    return 1 << (room.bit_length() - 1), 128 if signed else 0


def codes_buffer(shape: torch.Size | tuple[int, ...], device: torch.device) -> torch.Tensor:
    """An uninitialised ``spike_codes`` tensor for spikes of ``shape`` [N, C, H, W]."""
    return torch.empty((shape[0], 2 * shape[1], *shape[2:]), dtype=torch.uint8, device=device,
                       memory_format=torch.channels_last)


def spike_codes(x: torch.Tensor, theta: float, base: int, zero: int) -> torch.Tensor:
    """Spikes ``x`` = θ·s [N, C, H, W] as the uint8 input [base·s + zero, s + zero] [N, 2·C, H, W] of ``digit_pairs``,
    channels-last. uint8 arithmetic wraps: with zero 128 and an even base, base·(s + 128) + 128 = base·s + 128."""
    out = codes_buffer(x.shape, x.device)
    pairs = out.movedim(1, -1).unflatten(-1, (2, x.shape[1]))  # [..., 2, C], a view
    q = x.movedim(1, -1).mul(1 / theta).add_(zero + 0.5).to(torch.uint8)  # s + zero, rounded
    pairs[..., 1, :] = q
    pairs[..., 0, :] = q.mul_(base).add_(zero)
    return out


def digit_pairs(weight: torch.Tensor, base: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``weight`` [out, in, ...] as (int8 digits [out, 2·in, ...], fp32 scale per output channel) pairs, most
    significant first: against inputs [base·s, s], a pair sums (base·hi + lo)·s in units of its scale. As many pairs
    as bring the remainder below 2^-18 of the first digit's unit, i.e. about 2^-24 of each channel's largest |w|."""
    w = weight.double()
    shape = (-1,) + (1,) * (w.dim() - 1)
    largest = w.abs().flatten(1).amax(1).clamp_min(torch.finfo(torch.float32).tiny)
    unit = torch.exp2(torch.ceil(torch.log2(largest / 127)))  # the first digit's: |w / unit| <= 127
    last = unit * 2.0**-_PRECISION
    pairs, rest = [], w
    while True:  # every remainder is at most half a unit, so later digits stay within 64 (hi) and base/2 (lo)
        hi = torch.round(rest / unit.view(shape))
        rest = rest - hi * unit.view(shape)
        unit = unit / base
        lo = torch.round(rest / unit.view(shape))
        rest = rest - lo * unit.view(shape)
        pairs.append((torch.cat([hi, lo], 1).to(torch.int8), unit.float()))
        if bool((unit <= last).all()):
            return pairs
        unit = unit / 128


def use_spike_convs(gm: fx.GraphModule) -> None:
    """Replace every Conv2d called at one place only, with a spiking neuron layer as its only input, by a
    ``SpikeConv2d`` reading that layer."""
    calls: dict[str, list[fx.Node]] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls.setdefault(node.target, []).append(node)
    for target, (node, *others) in calls.items():
        if others or type(gm.get_submodule(target)) is not nn.Conv2d:
            continue
        source = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        if isinstance(source, fx.Node) and source.op == "call_module":
            neuron = gm.get_submodule(source.target)
            if isinstance(neuron, SpikingNeuron):
                set_module(gm, target, SpikeConv2d.of(gm.get_submodule(target), neuron))
