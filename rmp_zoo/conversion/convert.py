"""ANN → SNN conversion: trace → fold BatchNorm → choose thresholds → replace activations by neurons (and the
convolutions they feed by integer spike convolutions)."""
from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from .bias_correction import correct_bias
from .calibrate import resolve_thresholds
from .fold import fold_batchnorm
from .network import SpikingNetwork
from .neurons import SpikingMaxPool, SpikingNeuron
from .settings import ConversionSettings
from .spike_conv import use_spike_convs
from .trace import MAXPOOL_MODULES, activation_names, prepare, set_module


@torch.no_grad()
def convert(ann: nn.Module, calibration: Iterable[Any] | None = None, *,
            settings: ConversionSettings | Mapping[str, Any] | None = None, max_batches: int | None = None,
            **options: Any) -> SpikingNetwork:
    """Convert ``ann`` (left untouched) into a rate-coded spiking network.

    Args:
        ann: a torch.fx-traceable CNN: conv/linear (+BatchNorm), ReLU in any spelling, ClipReLU/QCFS, residual
            additions, average and max pooling, reshaping, padding and slicing.
        calibration: batches ``x`` or ``(x, y, ...)`` of training images, for data-driven thresholds and bias
            correction; not needed for trained or given thresholds.
        settings: a ``ConversionSettings`` (or a dict of its fields); the defaults where None.
        max_batches: use at most this many calibration batches.
        **options: single settings on top of ``settings``, e.g. ``neuron="if", threshold="max"``.
    """
    settings = ConversionSettings.of(settings, **options).resolve(ann)
    if settings.bias_correction is not None:
        if calibration is None:
            raise ValueError(f"bias_correction={settings.bias_correction} measures each layer on calibration images; "
                             "pass calibration=<training batches>, or set bias_correction=None")
        calibration = list(calibration)[:max_batches]  # read twice: thresholds, then the correction
    model = copy.deepcopy(ann).eval()  # a copy: the caller's ANN keeps its weights and its train/eval mode
    gm = prepare(model, settings.maxpool)
    fold_batchnorm(gm)
    names = activation_names(gm)
    thresholds, method = resolve_thresholds(gm, names, settings.threshold, calibration, settings.seed, max_batches)
    device = next(gm.parameters(), torch.empty(0)).device
    for name in names:
        set_module(gm, name, SpikingNeuron(thresholds[name] * settings.scale, settings.neuron,
                                           settings.initial_potential, settings.burst).to(device))
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), MAXPOOL_MODULES):
            set_module(gm, node.target, SpikingMaxPool(gm.get_submodule(node.target)))
    use_spike_convs(gm)
    gm.recompile()
    snn = SpikingNetwork(gm, settings, threshold_method=method)
    if settings.bias_correction is not None:
        correct_bias(snn, calibration, settings.bias_correction)
    return snn
