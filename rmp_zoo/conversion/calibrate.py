"""Choose each spiking layer's threshold θ.

A neuron fires at most once per step, so it represents activations in [0, θ]. θ too low clips large activations; θ
too high needs many steps to resolve small ones. ``"max"`` (threshold balancing) takes the largest activation seen
on calibration data; a percentile such as ``"99.9%"`` (robust normalisation, Rueckauer et al. 2017) ignores rare
outliers; ``"trained"`` uses the thresholds a ClipReLU/QCFS network learned; a dict gives them explicitly.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
from torch import fx, nn

from .trace import source_of

_SAMPLE_CAP = 1 << 20  # activation values kept per layer for percentiles: 4 MB of float32


def resolve_thresholds(
    gm: fx.GraphModule,
    names: list[str],
    threshold: str | Mapping[str, float],
    calibration: Iterable[Any] | None,
    seed: int,
    max_batches: int | None,
) -> tuple[dict[str, float], str]:
    """Thresholds for the activation layers ``names`` of ``gm`` and the label of the method that chose them."""
    if isinstance(threshold, Mapping):
        missing, extra = set(names) - set(threshold), set(threshold) - set(names)
        if missing or extra:
            raise ValueError(f"threshold dict does not match the model's spiking layers: missing {sorted(missing)}, "
                             f"unknown {sorted(extra)}")
        return _positive({n: float(threshold[n]) for n in names}, "given"), "given"
    if threshold == "trained":
        return _positive(_trained(gm, names), threshold), threshold
    if threshold == "max":
        q = None
    elif isinstance(threshold, str) and threshold.endswith("%"):
        q = float(threshold[:-1]) / 100
        if not 0 < q <= 1:
            raise ValueError(f"percentile threshold must lie in (0%, 100%], got {threshold!r}")
    else:
        raise ValueError(f"unknown threshold {threshold!r}; use 'max', a percentile like '99.9%', 'trained' or a "
                         "dict {layer: threshold}")
    if calibration is None:
        raise ValueError(f"threshold={threshold!r} measures activations and needs calibration data; pass "
                         "calibration=<DataLoader>, or use threshold='trained' or a threshold dict")
    return _positive(_observe(gm, names, calibration, q, seed, max_batches), threshold), threshold


def _positive(thresholds: dict[str, float], method: str) -> dict[str, float]:
    bad = {n: t for n, t in thresholds.items() if not t > 0}
    if bad and method == "trained":
        raise ValueError(f"thresholds must be positive, but training left {bad}: no spiking neuron can stand for an "
                         "activation with θ <= 0. Retrain with this version of rmp_zoo, which keeps trained thresholds "
                         "positive, or convert with threshold='max' or a percentile")
    if bad:
        raise ValueError(f"thresholds must be positive, but {method!r} gave {bad}; a layer that never activates "
                         "on the calibration data needs more (or other) data or an explicit threshold dict")
    return thresholds


def _trained(gm: fx.GraphModule, names: list[str]) -> dict[str, float]:
    out = {}
    for name in names:
        module = gm.get_submodule(name)
        if not hasattr(module, "threshold"):
            node = next(n for n in gm.graph.nodes if n.target == name)
            raise ValueError(f"threshold='trained' needs ClipReLU/QCFS activations, but layer {name!r} is a plain "
                             f"{type(module).__name__}{source_of(node)}; use threshold='max' or a percentile")
        out[name] = float(module.threshold)
    return out


def _observe(gm: fx.GraphModule, names: list[str], calibration: Iterable[Any], q: float | None, seed: int,
             max_batches: int | None) -> dict[str, float]:
    """Run the ANN on the calibration batches and reduce each activation layer's outputs to the max or a percentile."""
    observers = {name: _MaxObserver() if q is None else _PercentileObserver(q, seed) for name in names}
    hooks = [gm.get_submodule(name).register_forward_hook(obs) for name, obs in observers.items()]
    param = next(gm.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    batches = 0
    try:
        for batch in calibration:
            if max_batches is not None and batches >= max_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            gm(x.to(device))
            batches += 1
    finally:
        for hook in hooks:
            hook.remove()
    if batches == 0:
        raise ValueError("calibration data yielded no batches")
    return {name: obs.result() for name, obs in observers.items()}


class _MaxObserver:
    def __init__(self) -> None:
        self.max: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        m = out.detach().max()
        self.max = m if self.max is None else torch.maximum(self.max, m)

    def result(self) -> float:
        return float(self.max)


class _PercentileObserver:
    """Keeps a uniform random sample of a layer's positive activations (zeros excluded, as in robust normalisation:
    a sparse layer would otherwise get a percentile of 0).

    Every element is drawn at the same rate; whenever the sample outgrows ``_SAMPLE_CAP`` the rate and the sample are
    halved, so memory stays bounded for any amount of calibration data.
    """

    def __init__(self, q: float, seed: int) -> None:
        self.q, self.seed = q, seed
        self.rate: float | None = None
        self.samples: list[torch.Tensor] = []
        self.generator: torch.Generator | None = None

    def __call__(self, module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        flat = out.detach().reshape(-1)
        if self.generator is None:
            self.generator = torch.Generator(flat.device).manual_seed(self.seed)
            self.rate = min(1.0, _SAMPLE_CAP / flat.numel())
        n = round(self.rate * flat.numel())
        if n < flat.numel():
            flat = flat[torch.randint(flat.numel(), (n,), device=flat.device, generator=self.generator)]
        self.samples.append(flat[flat > 0].float())
        while sum(s.numel() for s in self.samples) > _SAMPLE_CAP:
            self.rate /= 2
            self.samples = [s[torch.rand(s.shape, device=s.device, generator=self.generator) < 0.5]
                            for s in self.samples]

    def result(self) -> float:
        values = torch.cat(self.samples)
        return float(torch.quantile(values, self.q)) if values.numel() else 0.0
