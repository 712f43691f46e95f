"""The fused QCFS kernels must compute exactly what the op-by-op formula computed, forward and backward, compiled
or eager: conversion relies on the forward, and training on the gradients."""
import pytest
import torch

from rmp_zoo.models import qcfs_kernel
from rmp_zoo.models.qcfs_kernel import qcfs_backward, qcfs_forward


def reference(x: torch.Tensor, threshold: torch.Tensor, levels: int) -> torch.Tensor:
    """QCFS as separate autograd ops with a straight-through floor (how the activation was written before)."""
    z = x * (levels / threshold) + 0.5
    z = z + (torch.floor(z) - z).detach()
    return torch.clamp(z, 0, levels) * (threshold / levels)


@pytest.mark.parametrize("levels,threshold", [(4, 1.7), (8, 0.37)])
def test_fused_qcfs_equals_the_op_by_op_formula(kernels, levels, threshold):
    gen = torch.Generator().manual_seed(levels)
    x = torch.randn(16, 8, 12, 12, generator=gen) * 2 * threshold
    # inputs exactly on the rounding edges, where floor and clamp decide
    edges = torch.tensor([k - 0.5 for k in range(-1, levels + 2)]) * threshold / levels
    x.view(-1)[:len(edges)] = edges
    x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(x.shape, generator=gen)

    x_ref, t_ref = x.clone().requires_grad_(), torch.tensor(threshold, requires_grad=True)
    y_ref = reference(x_ref, t_ref, levels)
    y_ref.backward(grad)
    x_new, t_new = x.clone().requires_grad_(), torch.tensor(threshold, requires_grad=True)
    y_new = qcfs_kernel.qcfs(x_new, t_new, levels)
    y_new.backward(grad)

    assert qcfs_kernel._kernels().compiled == (kernels == "compiled")
    assert torch.equal(y_new, y_ref)
    assert torch.equal(x_new.grad, x_ref.grad)
    assert t_new.grad == pytest.approx(t_ref.grad.item(), rel=1e-4, abs=1e-3)
    assert x_new.grad.abs().sum() > 0 and t_new.grad != 0


def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch):
    monkeypatch.setattr(qcfs_kernel, "_KERNELS", None)

    def broken(*args):
        raise RuntimeError("no C++ compiler")

    kernels = qcfs_kernel._kernels()
    monkeypatch.setattr(kernels, "forward", broken)
    x, threshold = torch.randn(4, 3), torch.tensor(2.0)
    with pytest.warns(RuntimeWarning, match="RMP_ZOO_COMPILE=0"):
        y = qcfs_kernel.qcfs(x, threshold, 4)
    assert torch.equal(y, qcfs_forward(x, threshold, 4)) and not kernels.compiled
    monkeypatch.setattr(qcfs_kernel, "_KERNELS", None)


def test_threshold_gradient_matches_finite_differences():
    """Away from the rounding edges, the output is linear in θ at fixed levels: dy/dθ = q/L."""
    x = torch.tensor([0.3, 0.9, 1.4, 5.0, -1.0])
    threshold = torch.tensor(2.0)
    grad_x, grad_t = qcfs_backward(torch.ones_like(x), x, threshold, 4)
    assert grad_x.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]   # levels 1, 2, 3 pass; 4 (top) and 0 do not
    levels = torch.floor(x * 2 + 0.5).clamp(0, 4)
    expected = (levels / 4).sum() - (x[:3]).sum() / 2.0
    assert grad_t.item() == pytest.approx(expected.item(), rel=1e-6)
