"""The conversion settings: one object with one set of defaults, from the training callback to the zoo folder.

The callback (``callbacks.snn.conversion`` in the recipes), ``convert``, ``rmp-zoo export``, the zoo folder's
``config.json`` and ``rmp_zoo.load`` all pass this object around, so a run, its export and a loaded copy convert the
same way.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from torch import nn

from ..models.activations import QCFS, ClipReLU
from .neurons import NEURONS, SpikingNeuron

ENCODINGS = ("direct", "poisson")
MAXPOOL_MODES = ("gate", "error")
THRESHOLD_HINT = "'auto', 'trained', 'max', a percentile like '99.9%' or a dict {layer: θ}"


@dataclass(frozen=True)
class ConversionSettings:
    """How an ANN becomes a spiking network.

    Attributes:
        neuron: ``"rmp"`` (reset by subtraction: keeps the residual charge), ``"if"`` (reset to zero) or ``"signed"``
            (RMP that may take a spike back with a negative one when it has over-fired).
        threshold: ``"auto"`` (the trained thresholds of ClipReLU/QCFS networks, else ``"max"``, the lossless limit
            of threshold balancing as in the RMP paper), ``"trained"``,
            ``"max"``, a percentile such as ``"99.9%"`` of the positive activations, or a dict ``{layer: θ}``.
        scale: factor applied to every threshold.
        initial_potential: membrane potential at t=0 as a fraction of θ; 0.5 centres the rounding error (QCFS).
        burst: most spikes a neuron may fire in one step (rmp and signed); 2 removes most low-T error.
        encoding: ``"direct"`` (the analog input every step) or ``"poisson"`` (signed Bernoulli spikes).
        seed: seed of Poisson input spikes and of the percentile's activation sample.
        maxpool: ``"gate"`` turns max pooling into spike gating (Rueckauer et al. 2017); ``"error"`` refuses it.
        bias_correction: a T at which to correct each spiking layer's mean output on the calibration images
            (Li et al., ICML 2021), or None.
    """

    neuron: str = "rmp"
    threshold: str | Mapping[str, float] = "auto"
    scale: float = 1.0
    initial_potential: float = 0.5
    burst: int = 1
    encoding: str = "direct"
    seed: int = 0
    maxpool: str = "gate"
    bias_correction: int | None = None

    def __post_init__(self) -> None:
        for name, choices in (("neuron", NEURONS), ("encoding", ENCODINGS), ("maxpool", MAXPOOL_MODES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(choices)}")
        if not isinstance(self.threshold, Mapping) and not _is_threshold_rule(self.threshold):
            raise ValueError(f"unknown threshold {self.threshold!r}; use {THRESHOLD_HINT}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if self.bias_correction is not None and (int(self.bias_correction) != self.bias_correction
                                                 or self.bias_correction < 1):
            raise ValueError(f"bias_correction is the T to correct at, a whole number >= 1 (or None), got "
                             f"{self.bias_correction!r}")
        SpikingNeuron(1.0, self.neuron, self.initial_potential, self.burst)  # checks the burst against the neuron

    @classmethod
    def of(cls, settings: ConversionSettings | Mapping[str, Any] | None = None, **changes: Any) -> ConversionSettings:
        """``settings`` (an object, a dict of fields, or the defaults) with ``changes`` applied; unknown names fail
        with the list of known ones."""
        fields = {f.name for f in dataclasses.fields(cls)}
        if isinstance(settings, cls):
            settings = dataclasses.asdict(settings)
        given = {k: v for k, v in (settings or {}).items() if k != "_target_"}
        unknown = sorted(set(given) - fields) + sorted(set(changes) - fields)
        if unknown:
            raise ValueError(f"unknown conversion setting(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
        return cls(**{**given, **changes})

    @classmethod
    def parse(cls, spec: str) -> ConversionSettings:
        """``NEURON:THRESHOLD[:INITIAL[:BURST]]`` (``if:max``, ``rmp:99.9%:0``, ``signed:trained:0.5:2``); what
        a spec leaves out takes the defaults."""
        parts = spec.split(":")
        if len(parts) not in (2, 3, 4) or parts[0] not in NEURONS:
            raise ValueError(f"conversion {spec!r}: expected NEURON:THRESHOLD[:INITIAL_POTENTIAL[:BURST]] with NEURON "
                             f"one of {', '.join(NEURONS)}, e.g. if:max or signed:trained:0.5:2")
        try:
            initial = float(parts[2]) if len(parts) >= 3 else cls.initial_potential
            burst = int(parts[3]) if len(parts) == 4 else cls.burst
        except ValueError:
            raise ValueError(f"conversion {spec!r}: the initial potential must be a number and the burst a whole "
                             "number") from None
        try:
            return cls(neuron=parts[0], threshold=parts[1], initial_potential=initial, burst=burst)
        except ValueError as err:
            raise ValueError(f"conversion {spec!r}: {err}") from None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ConversionSettings:
        """The settings a ``config.json`` "conversion" section (``SpikingNetwork.config()``) records; folders from
        before a setting existed get the value they were made with."""
        method = record.get("threshold_method", record.get("threshold", "auto"))
        correction = record.get("bias_correction")
        return cls(neuron=record["neuron"], threshold="auto" if method == "given" else method,
                   scale=record.get("scale", 1.0), initial_potential=record.get("initial_potential", 0.0),
                   burst=record.get("burst", 1), encoding=record.get("encoding", "direct"), seed=record.get("seed", 0),
                   maxpool=record.get("maxpool", "error"),
                   bias_correction=correction["T"] if isinstance(correction, Mapping) else correction)

    def resolve(self, ann: nn.Module) -> ConversionSettings:
        """``threshold="auto"`` made concrete for ``ann``: trained thresholds where it learned them."""
        if self.threshold != "auto":
            return self
        trained = any(isinstance(m, (ClipReLU, QCFS)) for m in ann.modules())
        return dataclasses.replace(self, threshold="trained" if trained else "max")

    def needs_data(self, ann: nn.Module) -> bool:
        """Whether converting ``ann`` measures activations (data-driven thresholds, bias correction)."""
        threshold = self.resolve(ann).threshold
        return self.bias_correction is not None or not (isinstance(threshold, Mapping) or threshold == "trained")


def _is_threshold_rule(threshold: Any) -> bool:
    if threshold in ("auto", "trained", "max"):
        return True
    if not isinstance(threshold, str) or not threshold.endswith("%"):
        return False
    try:
        return 0 < float(threshold[:-1]) <= 100
    except ValueError:
        return False
