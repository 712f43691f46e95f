"""The neuron update (integrate, fire, reset, count) as one fused kernel, for one time step or a chunk of them.

Written as separate tensor ops, an RMP step makes four passes over a layer's membrane tensor (add the input,
compare, scale, subtract) and a signed or burst step up to ten; on a CPU, simulating op by op costs 1.40-1.46x the
BN-folded dense forward (benchmarks/results/simulation_throughput_cpu_resnet20). Here each neuron kind's step is one
in-place function, compiled by ``torch.compile``: inductor fuses it into a single loop that reads the input and the
state once and writes the state and the output once. For multi-step simulation, ``scan`` runs a chunk of steps in
one loop that keeps the state in registers between them, adds a residual input on the way and writes each output
over its input. The compiled and the eager functions are the same code, so they do the same float operations in the
same order: outputs, potentials and spike counts are bitwise equal on CPU
(``tests/test_simulation_speed_paths.py``). Without a working compiler (or with ``RMP_ZOO_COMPILE=0``) the functions
run eagerly, op by op, with a warning when compiling failed.

Kernels see flat 1-D views in memory order, detached, with grad off, so that one compiled version per function,
dtype and device (and, for ``scan``, chunk length and input form) serves every layer shape and layout. A scan whose
layer feeds integer spike convolutions (``spike_conv``) also writes each step's spikes as their uint8 input; it sees
[pixels, channels] views of a channels-last layer instead, so that each spike lands beside its channel's pair.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch

from ..compiling import call_or_fall_back, compile_kernel, compile_wanted
from ..models.qcfs_kernel import _flatten


Codes = tuple  # (high, low, base, zero): uint8 outputs for integer spike convolutions (spike_conv)


def write_codes(spikes: torch.Tensor, codes: Codes | None) -> None:
    """Write the signed spike counts s of a step as ``spike_conv``'s input pair: base·s + zero and s + zero."""
    if codes is not None:
        high, low, base, zero = codes
        low.copy_((spikes + zero).to(torch.uint8))
        high.copy_((spikes * base + zero).to(torch.uint8))


def rmp_step(x: torch.Tensor, v: torch.Tensor, out: torch.Tensor, net: None, threshold: torch.Tensor,
             steps: None, count: torch.Tensor | None, burst: int, codes: Codes | None = None) -> None:
    """Reset by subtraction: ``out = θ·[v + x ≥ θ]``, ``v ← v + x − out``."""
    v.add_(x)
    torch.ge(v, threshold, out=out)  # 1.0 where the neuron fires, else 0.0
    if count is not None:
        count.add_(out)
    write_codes(out, codes)
    out.mul_(threshold)
    v.sub_(out)


def if_step(x: torch.Tensor, v: torch.Tensor, out: torch.Tensor, net: None, threshold: torch.Tensor, steps: None,
            count: torch.Tensor | None, burst: int, codes: Codes | None = None) -> None:
    """Reset to zero where the neuron fired."""
    v.add_(x)
    torch.ge(v, threshold, out=out)
    if count is not None:
        count.add_(out)
    v.mul_(1 - out)  # 0 where it fired (v > 0 there, so +0.0), else unchanged
    write_codes(out, codes)
    out.mul_(threshold)


def signed_step(x: torch.Tensor, v: torch.Tensor, out: torch.Tensor, net: torch.Tensor, threshold: torch.Tensor,
                steps: None, count: torch.Tensor | None, burst: int, codes: Codes | None = None) -> None:
    """RMP, plus a negative spike where the potential is below zero while more positive than negative spikes were
    fired so far (``net`` > 0)."""
    v.add_(x)
    torch.ge(v, threshold, out=out)
    out.sub_((v < 0).logical_and_(net > 0).to(out.dtype))  # -1.0 takes a spike back
    net.add_(out)
    if count is not None:
        count.add_(out.abs())
    write_codes(out, codes)
    out.mul_(threshold)
    v.sub_(out)


def burst_step(x: torch.Tensor, v: torch.Tensor, out: torch.Tensor, net: torch.Tensor, threshold: torch.Tensor,
               steps: torch.Tensor, count: torch.Tensor | None, burst: int, codes: Codes | None = None) -> None:
    """Up to ``burst`` spikes, as many as the potential holds whole thresholds, while the count ``net`` stays at most
    one spike per step so far (``steps``, this step included)."""
    v.add_(x)
    torch.minimum(torch.floor(v / threshold).clamp_(0, burst), steps - net, out=out)
    net.add_(out)
    if count is not None:
        count.add_(out)
    write_codes(out, codes)
    out.mul_(threshold)
    v.sub_(out)


def signed_burst_step(x: torch.Tensor, v: torch.Tensor, out: torch.Tensor, net: torch.Tensor,
                      threshold: torch.Tensor, steps: torch.Tensor, count: torch.Tensor | None, burst: int,
                      codes: Codes | None = None) -> None:
    """Burst spikes that a signed neuron may also take back: up to ``burst`` a step, never more than it fired."""
    v.add_(x)
    whole = torch.floor(v / threshold)
    torch.minimum(whole.clamp(0, burst), steps - net, out=out)
    out.sub_(torch.minimum(whole.neg_().clamp_(0, burst), net))  # 0 unless v < 0
    net.add_(out)
    if count is not None:
        count.add_(out.abs())
    write_codes(out, codes)
    out.mul_(threshold)
    v.sub_(out)


STEPS: dict[str, Callable] = {"rmp": rmp_step, "if": if_step, "signed": signed_step, "rmp_burst": burst_step,
                              "signed_burst": signed_burst_step}


def scan(step: Callable, rows: list[torch.Tensor], held: torch.Tensor | None, plus: list[list[torch.Tensor]] | None,
         v: torch.Tensor, net: torch.Tensor | None, threshold: torch.Tensor, steps: torch.Tensor | None,
         count: torch.Tensor | None, burst: int, codes: list[Codes] | None = None) -> None:
    """``len(rows)`` time steps of ``step`` in one kernel, the state kept in registers between them. Step i reads its
    input from ``rows[i]`` (or ``held``, the same input at every step), plus the terms ``plus[i]`` if given, in order
    (the second half of an integer convolution, a residual addition: additions fused into the neuron, made as the
    unfused graph makes them), and writes its output into ``rows[i]`` (and, given ``codes``,
    its spikes into ``codes[i]``)."""
    for i, row in enumerate(rows):
        inp = row if held is None else held
        for term in () if plus is None else plus[i]:
            inp = inp + term
        if steps is not None:
            steps.add_(1)
        step(inp, v, row, net, threshold, steps, count, burst, None if codes is None else codes[i])


# One function per kind, so that each has torch.compile's cache of versions (one per chunk length, input form and
# dtype) to itself.
def rmp_scan(*args) -> None:
    scan(rmp_step, *args)


def if_scan(*args) -> None:
    scan(if_step, *args)


def signed_scan(*args) -> None:
    scan(signed_step, *args)


def burst_scan(*args) -> None:
    scan(burst_step, *args)


def signed_burst_scan(*args) -> None:
    scan(signed_burst_step, *args)


SCANS: dict[str, Callable] = {"rmp": rmp_scan, "if": if_scan, "signed": signed_scan, "rmp_burst": burst_scan,
                              "signed_burst": signed_burst_scan}
_MAX_VERSIONS = 64  # compiled versions per scan function (torch.compile's default recompile_limit is 8)


class _Kernels:
    """The compiled functions when ``torch.compile`` works here, else the eager ones; decided at first use."""

    def __init__(self, compiled: bool | None = None) -> None:
        self.compiled = compile_wanted() if compiled is None else compiled
        compile_ = compile_kernel if self.compiled else (lambda fn: fn)
        self.steps = {kind: compile_(fn) for kind, fn in STEPS.items()}
        self.scans = {kind: compile_(fn) for kind, fn in SCANS.items()}

    def step(self, kind: str, *args) -> None:
        """One step: ``STEPS[kind](*args)`` on flat views (``flat``)."""
        self._call(self.steps[kind], STEPS[kind], args)

    def scan(self, kind: str, *args) -> None:
        """A chunk of steps: ``SCANS[kind](*args)``, allowed ``_MAX_VERSIONS`` compiled versions (for this call only:
        ``recompile_limit`` is global)."""
        limit = torch._dynamo.config.recompile_limit
        torch._dynamo.config.recompile_limit = max(limit, _MAX_VERSIONS)
        try:
            self._call(self.scans[kind], SCANS[kind], args)
        finally:
            torch._dynamo.config.recompile_limit = limit

    def _call(self, fn: Callable, eager: Callable, args: tuple) -> None:
        # a call unlike all compiled versions so far (recompile limit) runs eagerly, the kernels stay compiled
        with torch.no_grad():
            call_or_fall_back(fn, eager, args, what="spiking neuron kernels", is_compiled=self.compiled,
                              on_failure=self._use_eager, eager_on=(torch._dynamo.exc.FailOnRecompileLimitHit,),
                              stacklevel=4)

    def _use_eager(self) -> None:
        self.steps, self.scans, self.compiled = dict(STEPS), dict(SCANS), False


_KERNELS: _Kernels | None = None


def kernels() -> _Kernels:
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _Kernels()
    return _KERNELS


@contextlib.contextmanager
def op_by_op() -> Iterator[None]:
    """Run the neuron updates eagerly, op by op, inside this block: what the fused kernels are measured against."""
    global _KERNELS
    saved, _KERNELS = _KERNELS, _Kernels(compiled=False)
    try:
        yield
    finally:
        _KERNELS = saved


def flat(x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` as a 1-D view in the memory order of ``like`` (default: its own), copied only when it must be, and
    detached: a compiled kernel then sees a plain tensor, not a view of a base whose shape it would guard on."""
    return _flatten(x, like)[0].detach()


def flat_steps(x: torch.Tensor, like: torch.Tensor, length: int) -> torch.Tensor:
    """``[length·B, ...]``, ``length`` tensors shaped like ``like`` stacked along dim 0, as ``[length, N]`` rows in the
    memory order of ``like``: a view of ``x`` when it is laid out that way, else a copy."""
    return flat(x.reshape(length, *like.shape), like.unsqueeze(0)).view(length, -1)


def unflat_steps(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The inverse of ``flat_steps``: rows ``[length, N]`` as ``[length·B, ...]`` laid out like ``like`` per step."""
    length = rows.shape[0]
    order = sorted(range(like.dim()), key=lambda d: -like.stride(d))
    permuted = rows.view(length, *(like.shape[d] for d in order))
    stacked = permuted.permute(0, *(1 + order.index(d) for d in range(like.dim())))
    return stacked.reshape(length * like.shape[0], *like.shape[1:])
