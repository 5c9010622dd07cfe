"""What every family shares: the network container (stem -> stages -> head -> fc), the stems, the head and the
initialisation. State-dict prefixes are the same for every family: `stem.*`, `stages.{s}.*`, `head.*`, `fc.*`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..spec import ArchSpec, SpecError


class Network(nn.Module):
    def __init__(self, spec: ArchSpec, stem: nn.Sequential, stages: nn.ModuleList, head: nn.Sequential,
                 fc: nn.Linear) -> None:
        super().__init__()
        self.spec = spec
        self.stem = stem
        self.stages = stages
        self.head = head
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.head == "flatten" and x.shape[-2:] != (self.spec.input_size, self.spec.input_size):
            side = self.spec.input_size
            raise SpecError(f"this network's flatten head takes {side}x{side} inputs (spec input_size), got "
                            f"{x.shape[-2]}x{x.shape[-1]}; a gap head takes any size")
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        x = self.head(x)
        return self.fc(torch.flatten(x, 1))


def conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Named `conv`/`bn` like timm's ConvNormAct, so VoVNet weights map across by name."""
    return nn.Sequential(OrderedDict(conv=conv(cin, cout, kernel, stride), bn=nn.BatchNorm2d(cout),
                                     relu=nn.ReLU(inplace=True)))


def stem(spec: ArchSpec) -> nn.Sequential:
    w = spec.stem_width
    if spec.stem == "imagenet":
        return nn.Sequential(nn.Conv2d(spec.in_channels, w, 7, stride=2, padding=3, bias=False),
                             nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1))
    if spec.stem == "vovnet":  # Lee et al. 2019: three 3x3 convs, strides 2, 1, 2, in place of 7x7 conv + pool
        return nn.Sequential(conv_bn_relu(spec.in_channels, w // 2, 3, 2), conv_bn_relu(w // 2, w // 2, 3),
                             conv_bn_relu(w // 2, w, 3, 2))
    layers: list[nn.Module] = [conv(spec.in_channels, w, 3)]
    if spec.post_activation:  # a pre-activation net normalises at the start of the first unit instead
        layers += [nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def head(spec: ArchSpec, channels: int, *, normalise: bool) -> nn.Sequential:
    """BN-ReLU where the last stage ends un-normalised (pre-activation), then the global average pool (gap) or
    nothing (flatten: the linear layer sees every position)."""
    layers: list[nn.Module] = [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)] if normalise else []
    if spec.head == "gap":
        layers.append(nn.AdaptiveAvgPool2d(1))
    return nn.Sequential(*layers)


def classifier(spec: ArchSpec, channels: int) -> nn.Linear:
    side = spec.feature_sizes(spec.input_size)[-1] if spec.head == "flatten" else 1
    return nn.Linear(channels * side * side, spec.num_classes)


def init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")  # He et al. (2015)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
