"""The QCFS activation as one fused kernel forward and one backward.

Written with separate tensor ops, QCFS makes about ten passes over every activation tensor per training step; fusing
them alone trains a CIFAR ResNet-20 1.74x faster on a CPU (benchmarks/results/train_throughput_resnet20_cifar10).
Here the forward and the backward are each one element-wise function compiled by ``torch.compile`` (inductor fuses
them into a single loop), with the same arithmetic as the op-by-op formula, so on CPU outputs are bitwise equal and
the SNN still reproduces the trained ANN (on CUDA, Triton may fuse a multiply-add, which can move a value on a
level's edge). Without a working compiler (or with ``RMP_ZOO_COMPILE=0``) the same functions run eagerly.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..compiling import call_or_fall_back, compile_kernel, compile_wanted


def qcfs_forward(x: torch.Tensor, threshold: torch.Tensor, levels: int) -> torch.Tensor:
    """``θ/L · clip(floor(x·L/θ + 1/2), 0, L)``, rounded in float32 whatever the input's dtype (bf16 under
    mixed precision), so that training picks the levels that the float32 SNN will fire."""
    z = x.to(_compute_dtype(x)) * (levels / threshold) + 0.5
    return (torch.clamp(torch.floor(z), 0, levels) * (threshold / levels)).to(x.dtype)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32, or the input's own dtype when that is wider (float64)."""
    return torch.promote_types(x.dtype, torch.float32)


def qcfs_backward(grad: torch.Tensor, x: torch.Tensor, threshold: torch.Tensor,
                  levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-through gradients of ``qcfs_forward`` for x and θ.

    They are the gradients autograd gives the op-by-op formula with ``floor`` made straight-through: the floor passes
    the gradient unchanged and ``torch.clamp`` passes it strictly inside (0, L), so the lowest and the highest level
    give x no gradient. θ gets ``Σ g·q/L − Σ g·[0<q<L]·x·L/θ²`` (q the clipped level), in autograd's order of
    operations.
    """
    scale_in, scale_out = levels / threshold, threshold / levels
    x32, grad32 = x.to(_compute_dtype(x)), grad.to(_compute_dtype(x))
    level = torch.floor(x32 * scale_in + 0.5)
    inside = (level > 0) & (level < levels)
    grad_level = torch.where(inside, grad32 * scale_out, 0.0)
    grad_threshold = ((grad32 * torch.clamp(level, 0, levels)).sum() / levels
                      - (grad_level * x32).sum() * levels / (threshold * threshold))
    return (grad_level * scale_in).to(x.dtype), grad_threshold


EAGER: dict[str, Callable] = {"forward": qcfs_forward, "backward": qcfs_backward}


class _Kernels:
    """The compiled pair when ``torch.compile`` works here, else the eager one; decided once, at first use."""

    def __init__(self) -> None:
        self.compiled = compile_wanted()
        self.forward: Callable = compile_kernel(qcfs_forward) if self.compiled else qcfs_forward
        self.backward: Callable = compile_kernel(qcfs_backward) if self.compiled else qcfs_backward

    def run(self, name: str, *tensors: torch.Tensor, levels: int):
        """Call a kernel on detached tensors with grad and autocast off: they are what the kernels compute on anyway,
        and a compiled kernel then needs one version per dtype and device only, not one per autograd/autocast state
        and view base (torch.compile keeps at most ``recompile_limit`` versions)."""
        tensors = tuple(t.detach() for t in tensors)
        with torch.no_grad(), torch.autocast(tensors[0].device.type, enabled=False):
            return call_or_fall_back(getattr(self, name), EAGER[name], (*tensors, levels), what="QCFS kernels",
                                     is_compiled=self.compiled, on_failure=self._use_eager, stacklevel=2)

    def _use_eager(self) -> None:
        self.forward, self.backward, self.compiled = qcfs_forward, qcfs_backward, False


_KERNELS: _Kernels | None = None


def _kernels() -> _Kernels:
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _Kernels()
    return _KERNELS


class QCFSFunction(torch.autograd.Function):
    """Saves only the input and θ; the backward recomputes the level, which is cheaper than storing it.

    The kernels see flat 1-D views in the input's memory order, so one compiled kernel serves every layer shape and
    layout (only a new dtype or device compiles again).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, threshold: torch.Tensor, levels: int) -> torch.Tensor:
        ctx.save_for_backward(x, threshold)
        ctx.levels = levels
        flat, unflatten = _flatten(x)
        return unflatten(_kernels().run("forward", flat, threshold, levels=levels))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, threshold = ctx.saved_tensors
        flat, unflatten = _flatten(x)
        flat_grad, _ = _flatten(grad, like=x)
        grad_x, grad_threshold = _kernels().run("backward", flat_grad, flat, threshold, levels=ctx.levels)
        return unflatten(grad_x), grad_threshold.reshape(threshold.shape), None


def _flatten(x: torch.Tensor, like: torch.Tensor | None = None) -> tuple[torch.Tensor, Callable]:
    """``x`` as a 1-D view in the memory order of ``like`` (default: its own), and the function that turns a flat
    result back into ``x``'s shape and layout. Copies only when ``x`` is laid out differently."""
    ref = x if like is None else like
    order = sorted(range(ref.dim()), key=lambda d: -ref.stride(d))
    permuted = x.permute(order).contiguous()
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return permuted.view(-1), lambda flat: flat.view(permuted.shape).permute(inverse)


def qcfs(x: torch.Tensor, threshold: torch.Tensor, levels: int) -> torch.Tensor:
    """QCFS with fused kernels; differentiable in x and θ."""
    return QCFSFunction.apply(x, threshold, levels)
