"""Fold inference-mode BatchNorm into the conv/linear layer before it.

In eval mode BatchNorm is a per-channel affine map, so ``bn(conv(x))`` is one conv with rescaled weights and a new
bias. Folding removes a layer from every time step and leaves weights and thresholds as the only parameters.
"""
from __future__ import annotations

import torch
from torch import fx, nn

from .trace import BATCHNORM_MODULES, WEIGHTED_MODULES, describe


def fold_batchnorm(gm: fx.GraphModule) -> None:
    """Fold every BatchNorm of ``gm`` into its producer, in place; raise for one that cannot be folded."""
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), BATCHNORM_MODULES):
            continue
        bn = gm.get_submodule(node.target)
        producer = node.args[0]
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(f"BatchNorm without running statistics cannot be folded ({describe(node, gm)})")
        foldable = (isinstance(producer, fx.Node) and producer.op == "call_module"
                    and isinstance(gm.get_submodule(producer.target), WEIGHTED_MODULES)
                    and len(producer.users) == 1
                    and sum(n.target == producer.target for n in gm.graph.nodes if n.op == "call_module") == 1)
        if not foldable:
            raise ValueError(f"BatchNorm must directly follow a conv/linear layer used only by it to be folded "
                             f"({describe(node, gm)})")
        _fold(gm.get_submodule(producer.target), bn)
        node.replace_all_uses_with(producer)
        gm.graph.erase_node(node)
    gm.delete_all_unused_submodules()
    gm.recompile()


@torch.no_grad()
def _fold(layer: nn.Module, bn: nn.Module) -> None:
    """``W' = W·γ/σ`` per output channel and ``b' = (b - μ)·γ/σ + β``, computed in float64."""
    w = layer.weight
    std = torch.sqrt(bn.running_var.double() + bn.eps)
    gamma = bn.weight.double() if bn.affine else torch.ones_like(std)
    beta = bn.bias.double() if bn.affine else torch.zeros_like(std)
    factor = gamma / std
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(std)
    w.copy_((w.double() * factor.reshape(-1, *([1] * (w.dim() - 1)))).to(w.dtype))
    layer.bias = nn.Parameter(((bias - bn.running_mean.double()) * factor + beta).to(w.dtype),
                              requires_grad=w.requires_grad)
