"""Trace an ANN with torch.fx and bring its graph into the form conversion expects.

After ``prepare`` every activation is a call of its own module (nn.ReLU, ClipReLU or QCFS) whose qualified name is
the layer's name, dropout and identity are gone, in-place operations are out of place, and every other node is known
to be linear (or affine) in its tensor inputs, which is what makes a rate-coded simulation exact on average. Anything
else is rejected with the node's name and the source line it came from.
"""
from __future__ import annotations

import copy
import operator
import os
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..models.activations import QCFS, ClipReLU

ACTIVATION_MODULES = (nn.ReLU, ClipReLU, QCFS)
WEIGHTED_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
BATCHNORM_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
MAXPOOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)

_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_}
_RELU_METHODS = {"relu", "relu_"}
_IDENTITY_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)
_IDENTITY_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout}
_MAXPOOL_FUNCTIONS = {F.max_pool1d: nn.MaxPool1d, F.max_pool2d: nn.MaxPool2d, F.max_pool3d: nn.MaxPool3d}
_LINEAR_MODULES = (*WEIGHTED_MODULES, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
                   nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Flatten, nn.Unflatten)
_LINEAR_FUNCTIONS = {
    operator.add, operator.sub, operator.neg, operator.getitem, getattr, torch.add, torch.sub, torch.neg, torch.cat,
    torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze, torch.mean, F.pad,
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
}
_LINEAR_METHODS = {"add", "sub", "neg", "view", "reshape", "flatten", "size", "dim", "contiguous", "mean", "permute",
                   "transpose", "squeeze", "unsqueeze", "view_as", "reshape_as"}
_SCALING_FUNCTIONS = {operator.mul, operator.truediv, torch.mul, torch.div}  # linear only when scaling by a constant
_SCALING_METHODS = {"mul", "div"}
_INPLACE_METHODS = {"add_": "add", "sub_": "sub", "mul_": "mul", "div_": "div", "neg_": "neg"}

_TORCH_DIR = os.path.dirname(torch.__file__)
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<fn>\S+)\n(?P<code>[^\n]*)')


class _Tracer(fx.Tracer):
    """Keeps our activations as single calls and records where each node came from, for error messages."""

    record_stack_traces = True

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, (ClipReLU, QCFS)) or super().is_leaf_module(m, module_qualified_name)


def source_of(node: fx.Node) -> str:
    """`` at file:line (function): code`` of the user code that created ``node`` (empty when it all ran inside
    torch, e.g. in nn.Sequential), for error messages."""
    frames = [m for m in _FRAME.finditer(node.stack_trace or "") if not m["file"].startswith(_TORCH_DIR)]
    if not frames:
        return ""
    f = frames[-1]
    return f" at {f['file']}:{f['line']} (in {f['fn']}): {f['code'].strip()}"


def describe(node: fx.Node, gm: fx.GraphModule) -> str:
    """Name a node the way a user recognises it: layer name or call, and its source line."""
    if node.op == "call_module":
        what = f"layer {node.target!r} ({type(gm.get_submodule(node.target)).__name__})"
    elif node.op == "call_method":
        what = f"method .{node.target}()"
    else:
        module = getattr(node.target, "__module__", None) or ""
        what = f"function {module}.{getattr(node.target, '__name__', node.target)}"
    return f"node {node.name!r}, {what}{source_of(node)}"


def prepare(model: nn.Module, maxpool: str) -> fx.GraphModule:
    """Trace ``model`` (which the caller owns exclusively) and normalise its graph; see the module docstring."""
    try:
        gm = fx.GraphModule(model, _Tracer().trace(model), type(model).__name__)
    except Exception as err:  # tracing errors come in many types; all mean the same thing to the user
        raise TypeError(f"could not trace {type(model).__name__} with torch.fx ({err}); conversion needs a model "
                        "without data-dependent control flow") from err
    _check_output(gm)
    _remove_identities(gm)
    _functionalize(gm)
    _activations_to_modules(gm)
    _maxpool_to_modules(gm, maxpool)
    _check_supported(gm)
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def activation_names(gm: fx.GraphModule) -> list[str]:
    """Qualified names of the activation layers, in execution order; these become the spiking layers."""
    return [n.target for n in gm.graph.nodes
            if n.op == "call_module" and isinstance(gm.get_submodule(n.target), ACTIVATION_MODULES)]


def set_module(gm: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the qualified ``name``, creating nothing but the last attribute."""
    parent, _, leaf = name.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, module)


def _check_output(gm: fx.GraphModule) -> None:
    out = next(n for n in gm.graph.nodes if n.op == "output")
    if not isinstance(out.args[0], fx.Node):
        raise TypeError(f"{type(gm).__name__} returns {type(out.args[0]).__name__}; conversion needs a model that "
                        "returns a single tensor of class scores")


def _replace(gm: fx.GraphModule, node: fx.Node, new: fx.Node) -> None:
    new.meta = dict(node.meta)
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)


def _remove_identities(gm: fx.GraphModule) -> None:
    """Dropout is the identity at inference; dropping it also keeps in-place dropout off shared values."""
    for node in list(gm.graph.nodes):
        if ((node.op == "call_module" and isinstance(gm.get_submodule(node.target), _IDENTITY_MODULES))
                or (node.op == "call_function" and node.target in _IDENTITY_FUNCTIONS)):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)


def _is_inplace(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_method":
        return node.target in _INPLACE_METHODS or node.target == "relu_"
    if node.op == "call_function":
        return node.target is torch.relu_ or (node.target is F.relu and node.kwargs.get("inplace", False))
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        return isinstance(module, nn.ReLU) and module.inplace
    return False


def _functionalize(gm: fx.GraphModule) -> None:
    """Make in-place ops out of place; later readers of the mutated tensor read the op's result instead.

    The time loop caches the first layer's output and reuses it every step, so nothing may write into it.
    """
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    for node in list(gm.graph.nodes):
        if not _is_inplace(node, gm) or not isinstance(node.args[0], fx.Node):
            continue
        mutated = node.args[0]
        for user in list(mutated.users):
            if order[user] > order[node]:
                user.replace_input_with(mutated, node)
        if node.op == "call_method":
            node.target = _INPLACE_METHODS.get(node.target, "relu")
        elif node.op == "call_function":
            node.target, node.kwargs = F.relu, {**node.kwargs, "inplace": False}
        # in-place nn.ReLU modules become neurons, which never write into their input


def _free_name(gm: nn.Module, base: str) -> str:
    name, k = base, 0
    while _has_attr(gm, name):
        k += 1
        name = f"{base}_{k}"
    return name


def _has_attr(module: nn.Module, name: str) -> bool:
    parent, _, leaf = name.rpartition(".")
    try:
        return hasattr(module.get_submodule(parent) if parent else module, leaf)
    except AttributeError:
        return False


def _scoped_name(node: fx.Node, base: str) -> str:
    """``base`` inside the module whose forward made the call, e.g. ``layer1.0.relu`` for an F.relu in a block."""
    stack = node.meta.get("nn_module_stack")
    return f"{list(stack.values())[-1][0]}.{base}" if stack else base


def _add_module_call(gm: fx.GraphModule, node: fx.Node, name: str, module: nn.Module) -> fx.Node:
    """Replace ``node`` by a call of ``module`` registered under a free name based on ``name``."""
    name = _free_name(gm, name)
    gm.add_submodule(name, module)
    with gm.graph.inserting_before(node):
        new = gm.graph.call_module(name, (node.args[0],))
    _replace(gm, node, new)
    return new


def _activations_to_modules(gm: fx.GraphModule) -> None:
    """Give each activation call site its own module: each becomes a spiking layer with its own threshold and state.

    Functional ReLUs get an nn.ReLU named ``relu`` (``relu_1``, ...) inside the module that calls them; a module
    called at several sites (torchvision's ResNet reuses ``relu``) is copied for every site after the first.
    """
    seen: set[str] = set()
    for node in list(gm.graph.nodes):
        if ((node.op == "call_function" and node.target in _RELU_FUNCTIONS)
                or (node.op == "call_method" and node.target in _RELU_METHODS)):
            _add_module_call(gm, node, _scoped_name(node, "relu"), nn.ReLU())
        elif node.op == "call_module" and isinstance(gm.get_submodule(node.target), ACTIVATION_MODULES):
            if node.target in seen:
                _add_module_call(gm, node, node.target, copy.deepcopy(gm.get_submodule(node.target)))
            seen.add(node.target)


def _maxpool_to_modules(gm: fx.GraphModule, maxpool: str) -> None:
    """Max pooling has no exact spiking form: refuse it, or (``maxpool="gate"``) give every call site a module of
    its own, to be replaced by a stateful gate."""
    seen: set[str] = set()
    for node in list(gm.graph.nodes):
        functional = node.op == "call_function" and node.target in _MAXPOOL_FUNCTIONS
        if not functional and not (node.op == "call_module" and
                                   isinstance(gm.get_submodule(node.target), MAXPOOL_MODULES)):
            continue
        if maxpool == "error":
            raise ValueError(f"max pooling ({describe(node, gm)}) has no exact spiking equivalent; build the model "
                             "with average pooling (e.g. create_model(..., pool='avg')) or pass maxpool='gate' for "
                             "approximate spike gating")
        if functional:
            kwargs: dict[str, Any] = dict(node.kwargs)
            if kwargs.pop("return_indices", False):
                raise ValueError(f"max pooling that returns indices cannot be converted ({describe(node, gm)})")
            kernel, *rest = node.args[1:]
            for key, value in zip(("stride", "padding", "dilation", "ceil_mode"), rest):
                kwargs[key] = value
            pool = _MAXPOOL_FUNCTIONS[node.target](kernel, **kwargs)
            _add_module_call(gm, node, _scoped_name(node, type(pool).__name__.lower()), pool)
        elif node.target in seen:
            _add_module_call(gm, node, node.target, copy.deepcopy(gm.get_submodule(node.target)))
        else:
            seen.add(node.target)


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    """Inputs that carry the signal: sizes and stored tensors (get_attr) are constants."""
    return [a for a in node.all_input_nodes
            if a.op != "get_attr" and not (a.op == "call_method" and a.target in ("size", "dim"))]


def _check_supported(gm: fx.GraphModule) -> None:
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if isinstance(module, (*_LINEAR_MODULES, *ACTIVATION_MODULES, *BATCHNORM_MODULES, *MAXPOOL_MODULES)):
                continue
        elif node.op == "call_function":
            if node.target in _LINEAR_FUNCTIONS:
                if node.target is F.pad and node.kwargs.get("mode", "constant") != "constant":
                    raise ValueError(f"only constant padding is supported ({describe(node, gm)})")
                continue
            if node.target in _SCALING_FUNCTIONS and _scales_by_constant(node):
                continue
        elif node.op == "call_method":
            if node.target in _LINEAR_METHODS or (node.target in _SCALING_METHODS and _scales_by_constant(node)):
                continue
        raise ValueError(f"cannot convert {describe(node, gm)}: a spiking network can only represent ReLU-like "
                         "activations, residual additions, average pooling and linear reshaping between "
                         "conv/linear layers")


def _scales_by_constant(node: fx.Node) -> bool:
    tensors = _tensor_args(node)
    if node.target in (operator.truediv, torch.div, "div"):
        return len(tensors) == 1 and isinstance(node.args[0], fx.Node)
    return len(tensors) == 1
