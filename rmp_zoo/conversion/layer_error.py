"""Per-layer conversion error: where, and in which direction, a converted network departs from its ANN.

For every spiking layer, the SNN's mean output over T steps (rate × θ) is compared with the ANN's activation of the
same layer on the same images, at every requested T from one simulation. Errors are measured in the network as it
runs, so a layer's error includes what it inherited from the layers before it: the layer where the error first
grows is where the conversion loses accuracy.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from .fold import fold_batchnorm
from .network import SpikingNetwork
from .neurons import SpikingMaxPool
from .trace import activation_names, prepare

OUTPUT = "output"  # the readout layer's name in the results (it does not spike)


@dataclass
class LayerError:
    """Errors of one layer at one T, averaged over all its neurons and images.

    ``mse`` and ``mean_error`` are in activation units; ``mean_error`` > 0 means the SNN fires more than the ANN's
    activation asks for. ``off_by_spike`` is the share of neurons whose spike count differs from the count the ANN
    activation implies (T·a/θ) by one spike or more; ``over``/``under`` split it by sign. For the readout layer,
    ``agreement`` is the share of images whose SNN class is the ANN's.
    """

    layer: str
    T: int
    threshold: float
    mse: float
    mean_error: float
    off_by_spike: float
    over: float
    under: float
    agreement: float | None = None


@dataclass
class ConversionError:
    """All rows of a ``conversion_error`` run, layers in execution order."""

    rows: list[LayerError]
    num_images: int
    layers: list[str] = field(default_factory=list)

    def at(self, T: int) -> list[LayerError]:
        return [r for r in self.rows if r.T == T]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [vars(r).copy() for r in self.rows]


class _Totals:
    """Running sums of the error statistics of one layer at one T (per neuron sums would not fit in memory)."""

    def __init__(self) -> None:
        self.count = 0
        self.sq = self.signed = self.over = self.under = 0.0
        self.agree = 0

    def add(self, snn: torch.Tensor, ann: torch.Tensor, threshold: float, T: int) -> None:
        diff = (snn - ann).double()
        spikes = diff * (T / threshold)
        tol = 1e-4  # a whole-spike difference computed in float32 may land just below 1
        self.count += diff.numel()
        self.sq += float(diff.square().sum())
        self.signed += float(diff.sum())
        self.over += float((spikes >= 1 - tol).sum())
        self.under += float((spikes <= -1 + tol).sum())

    def row(self, layer: str, T: int, threshold: float, images: int | None = None) -> LayerError:
        n = max(self.count, 1)
        return LayerError(layer, T, threshold, self.sq / n, self.signed / n, (self.over + self.under) / n,
                          self.over / n, self.under / n, None if images is None else self.agree / max(images, 1))


@torch.no_grad()
def conversion_error(ann: nn.Module, snn: SpikingNetwork, batches: Iterable[Any],
                     T: Sequence[int] = (1, 2, 4, 8, 16, 32), max_batches: int | None = None) -> ConversionError:
    """Per-layer error of ``snn`` against the ANN it was converted from, at every T in ``T``.

    ``batches`` yield ``x`` or ``(x, ...)`` normalised model inputs. The ANN must be the one ``snn`` was converted
    from (a zoo model: ``rmp_zoo.load_pair``), so that its layers line up with the spiking ones by name.
    """
    steps = sorted(set(T))
    neurons = snn.neurons()
    names = list(neurons)
    device = next(snn.parameters()).device
    reference = _reference_graph(ann, snn, names).to(device)
    thresholds = {name: float(m.threshold) for name, m in neurons.items()}
    totals = {(name, t): _Totals() for name in [*names, OUTPUT] for t in steps}
    images = 0
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        x = (batch[0] if isinstance(batch, (tuple, list)) else batch).to(device)
        ann_out, ann_acts = _activations(reference, names, x)

        def score(name: str, t: int, rate: torch.Tensor) -> None:
            totals[name, t].add(rate, ann_acts[name], thresholds[name], t)

        hooks = [m.register_forward_hook(_rate_recorder(name, steps, score)) for name, m in neurons.items()]
        try:
            readouts, _ = snn.run(x, steps)
        finally:
            for h in hooks:
                h.remove()
        for t in steps:
            out = totals[OUTPUT, t]
            out.add(readouts[t], ann_out, 1.0, t)
            out.agree += int((readouts[t].argmax(1) == ann_out.argmax(1)).sum())
        images += len(x)
    rows = [totals[name, t].row(name, t, thresholds[name]) for name in names for t in steps]
    rows += [totals[OUTPUT, t].row(OUTPUT, t, float("nan"), images) for t in steps]
    return ConversionError(rows, images, names)


def _reference_graph(ann: nn.Module, snn: SpikingNetwork, names: list[str]) -> torch.fx.GraphModule:
    """The ANN traced and folded as ``convert`` does, so its activation layers carry the spiking layers' names."""
    gated = any(isinstance(m, SpikingMaxPool) for m in snn.modules())
    gm = prepare(copy.deepcopy(ann).eval(), "gate" if gated else "error")
    fold_batchnorm(gm)
    missing = set(names) - set(activation_names(gm))
    if missing:
        raise ValueError(f"the ANN has no activation layers named {sorted(missing)[:3]}: pass the ANN that this SNN "
                         "was converted from (for a zoo model, rmp_zoo.load_pair(name))")
    return gm


def _activations(gm: torch.fx.GraphModule, names: list[str], x: torch.Tensor):
    acts: dict[str, torch.Tensor] = {}
    hooks = [gm.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o.clone()))
             for n in names]
    try:
        out = gm(x)
    finally:
        for h in hooks:
            h.remove()
    return out, acts


def _rate_recorder(name: str, steps: list[int], score: Callable[[str, int, torch.Tensor], None]):
    """A forward hook that sums a neuron's outputs step by step and scores the mean at every requested T as it
    passes (a neuron runs once per step, so its call count is the time step)."""
    state: dict[str, Any] = {"t": 0, "sum": None}

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        state["t"] += 1
        state["sum"] = output.clone() if state["sum"] is None else state["sum"].add_(output)
        if state["t"] in steps:
            score(name, state["t"], state["sum"] / state["t"])
    return hook
