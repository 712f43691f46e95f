"""ResNets: the CIFAR ResNet-20 (16-32-64 channels, parameter-free zero-padded shortcuts) and the ImageNet
ResNet-34. Module names follow torchvision, so its ResNet-34 weights load directly; every activation is its own
module so that each layer keeps its own threshold."""
from __future__ import annotations

import os
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .constraints import Constraints


class PadShortcut(nn.Module):
    """Option-A shortcut of the CIFAR ResNets: subsample by 2 and zero-pad the channels (no parameters)."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.extra // 2
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.extra - half))


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, shortcut: str, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = act()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = act()
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            if shortcut == "pad":
                self.downsample = PadShortcut(planes - inplanes)
            elif shortcut == "conv":
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
            else:
                raise ValueError(f"unknown shortcut {shortcut!r}; choose 'pad' or 'conv'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.act2(out + identity)


class ResNet(nn.Module):
    def __init__(
        self,
        depths: tuple[int, ...],
        widths: tuple[int, ...],
        num_classes: int,
        stem: str,
        shortcut: str,
        **constraints,
    ) -> None:
        super().__init__()
        c = Constraints(**constraints)
        if not c.batchnorm or c.bias:
            raise ValueError("ResNets here always use BatchNorm without conv bias (conversion folds BN); "
                             "drop the bias/batchnorm overrides")
        act = c.act
        if stem == "cifar":
            self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        elif stem == "imagenet":  # named as in torchvision, whose weights load; avg pooling unless pool="max"
            self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
            self.maxpool = c.pooling(3, 2, 1)
        else:
            raise ValueError(f"unknown stem {stem!r}; choose 'cifar' or 'imagenet'")
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = act()
        inplanes = widths[0]
        for i, (depth, planes) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(inplanes, planes, stride, shortcut, act))
                inplanes = planes
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_stages = len(depths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(c.dropout)
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


def load_pretrained(model: nn.Module, source: str) -> None:
    """Load ImageNet weights from ``"torchvision"`` (downloaded by torchvision) or a local file.

    Only the activation thresholds may be missing (torchvision has none); they keep their initial value.
    Local files are read as safetensors, or with ``torch.load(weights_only=True)``: never unpickled.
    """
    if source == "torchvision":
        from torchvision.models import ResNet34_Weights

        state = ResNet34_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    elif os.path.isfile(source):
        if source.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(source)
        else:
            state = torch.load(source, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state)
    else:
        raise FileNotFoundError(f"pretrained weights {source!r} not found; pass 'torchvision' or a local "
                                ".safetensors/.pth file")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(".threshold")]
    if missing or result.unexpected_keys:
        raise ValueError(f"pretrained weights {source!r} do not fit: missing {missing[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")


@register_model
def resnet20(num_classes: int = 10, **constraints) -> ResNet:
    """CIFAR ResNet-20 (He et al. 2016): 3 stages of 3 basic blocks, 16-32-64 channels, zero-padded shortcuts."""
    constraints.setdefault("shortcut", "pad")
    return ResNet((3, 3, 3), (16, 32, 64), num_classes, stem="cifar", **constraints)


@register_model
def resnet34(num_classes: int = 1000, pretrained: str | None = None, **constraints) -> ResNet:
    """ImageNet ResNet-34; ``pretrained`` is ``"torchvision"`` or a local weights file (None: random init)."""
    constraints.setdefault("shortcut", "conv")
    model = ResNet((3, 4, 6, 3), (64, 128, 256, 512), num_classes, stem="imagenet", **constraints)
    if pretrained:
        load_pretrained(model, pretrained)
    return model
