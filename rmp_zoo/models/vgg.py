"""VGG-16 for CIFAR (32×32 input, small classifier) and ImageNet (224×224, 4096-wide classifier)."""
from __future__ import annotations

from torch import nn

from ._registry import register_model
from .constraints import Constraints

_VGG16_LAYERS = (64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P")
_VARIANTS = {"cifar": (1, 512), "imagenet": (7, 4096)}  # variant -> (pooled size, classifier width)


class VGG(nn.Module):
    def __init__(self, layers: tuple, num_classes: int, variant: str = "cifar", **constraints) -> None:
        super().__init__()
        if variant not in _VARIANTS:
            raise ValueError(f"unknown VGG variant {variant!r}; choose one of {', '.join(_VARIANTS)}")
        pooled, width = _VARIANTS[variant]
        c = Constraints(**constraints)
        act = c.act

        features: list[nn.Module] = []
        channels = 3
        for spec in layers:
            if spec == "P":
                features.append(c.pooling(2))
                continue
            features.append(nn.Conv2d(channels, spec, 3, padding=1, bias=c.bias or not c.batchnorm))
            if c.batchnorm:
                features.append(nn.BatchNorm2d(spec))
            features.append(act())
            channels = spec
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(pooled)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * pooled * pooled, width),
            act(),
            nn.Dropout(c.dropout),
            nn.Linear(width, width),
            act(),
            nn.Dropout(c.dropout),
            nn.Linear(width, num_classes),
        )
        _init_weights(self)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)


@register_model
def vgg16(num_classes: int = 10, variant: str = "cifar", **constraints) -> VGG:
    """VGG-16 with BatchNorm; ``variant='imagenet'`` gives the 224×224 model with the 4096-wide classifier."""
    return VGG(_VGG16_LAYERS, num_classes, variant=variant, **constraints)
