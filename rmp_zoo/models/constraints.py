"""The conversion-friendly options that every architecture accepts, in one place.

Architectures take them as keyword arguments (``create_model("vgg16", activation="qcfs", pool="avg")``) and turn
them into layers through this class, so a new constraint is added once, not once per model.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from torch import nn

from .activations import make_activation

POOLS = ("avg", "max")


@dataclass(frozen=True)
class Constraints:
    activation: str = "relu"  # relu | clip | qcfs
    act_threshold: float = 8.0  # initial trainable threshold of clip/qcfs
    qcfs_levels: int = 8
    pool: str = "avg"  # avg converts exactly; max needs a spiking approximation
    bias: bool = False
    batchnorm: bool = True  # folded into the preceding conv/linear at conversion
    dropout: float = 0.0

    def __post_init__(self) -> None:
        make_activation(self.activation)  # validates the name
        if self.pool not in POOLS:
            raise ValueError(f"unknown pooling {self.pool!r}; choose 'avg' (converts exactly) or 'max'")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def act(self) -> nn.Module:
        """A fresh activation layer, with its own threshold."""
        return make_activation(self.activation, self.act_threshold, self.qcfs_levels)

    def pooling(self, kernel_size: int, stride: int | None = None, padding: int = 0) -> nn.Module:
        cls = nn.AvgPool2d if self.pool == "avg" else nn.MaxPool2d
        return cls(kernel_size, stride, padding)
