"""The dense family: DenseNet and DenseNet-BC (Huang et al. 2017).

Keys follow torchvision's DenseNet so its weights map across by name: `stages.{s}.transition.{norm,conv}` (stages
after the first), `stages.{s}.layers.{j}.{norm1,conv1,norm2,conv2}` (a layer without the bottleneck has only
`norm1`/`conv1`, its 3x3), then `head.0` (torchvision's norm5) and `fc` (its classifier).
"""

from __future__ import annotations

import torch
from torch import nn

from ..spec import DENSE_BOTTLENECK, ArchSpec
from .common import Network, classifier, conv, head, init_weights, stem


class DenseLayer(nn.Module):
    """BN-ReLU-conv(1x1, 4k)-BN-ReLU-conv(3x3, k) with the bottleneck, BN-ReLU-conv(3x3, k) without; the paper's
    dropout follows each convolution."""

    def __init__(self, cin: int, growth: int, *, bottleneck: bool, dropout: float) -> None:
        super().__init__()
        mid = DENSE_BOTTLENECK * growth if bottleneck else cin
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = conv(cin, mid, 1) if bottleneck else conv(cin, growth, 3)
        if bottleneck:
            self.norm2 = nn.BatchNorm2d(mid)
            self.conv2 = conv(mid, growth, 3)
        self.bottleneck = bottleneck
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop(self.conv1(self.relu(self.norm1(x))))
        if self.bottleneck:
            out = self.drop(self.conv2(self.relu(self.norm2(out))))
        return out


class Transition(nn.Module):
    """BN-ReLU, 1x1 convolution to theta of the channels (DenseNet-C), 2x2 average pool."""

    def __init__(self, cin: int, cout: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.conv = conv(cin, cout, 1)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.pool = nn.AvgPool2d(2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.drop(self.conv(torch.relu(self.norm(x)))))


class DenseStage(nn.Module):
    """An optional transition, then a dense block: each layer reads the concatenation of the block's input and
    every earlier layer's output, and the block returns that concatenation grown by the last layer."""

    def __init__(self, transition: Transition | None, layers: nn.ModuleList) -> None:
        super().__init__()
        self.transition = transition
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transition is not None:
            x = self.transition(x)
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return x


class DenseNet(Network):
    """stem -> dense stages -> BN-ReLU head -> fc."""


def build_dense(spec: ArchSpec) -> DenseNet:
    stages = nn.ModuleList()
    for s, n in enumerate(spec.blocks):
        transition = Transition(spec.out_channels(s - 1), spec.stage_in_channels(s), spec.dropout) if s else None
        layers = nn.ModuleList(DenseLayer(spec.block_in_channels(s, j), spec.inner_channels(s),
                                          bottleneck=spec.dense_bottleneck, dropout=spec.dropout) for j in range(n))
        stages.append(DenseStage(transition, layers))
    c_last = spec.out_channels(len(spec.blocks) - 1)
    model = DenseNet(spec, stem(spec), stages, head(spec, c_last, normalise=True), classifier(spec, c_last))
    init_weights(model)
    return model
