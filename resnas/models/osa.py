"""The osa family: VoVNet's One-Shot Aggregation (Lee et al. 2019) and VoVNetV2's identity shortcut and effective
squeeze-excitation (Lee & Park 2020, CenterMask).

Keys follow timm's VovNet so its weights map across by name: `stem.{i}.{conv,bn}` (vovnet stem),
`stages.{s}.blocks.{j}.conv_mid.{i}.{conv,bn}`, `stages.{s}.blocks.{j}.conv_concat.{conv,bn}`,
`stages.{s}.blocks.{j}.attn.fc` (eSE), then `fc` (timm's `head.fc`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import ArchSpec
from .common import Network, classifier, conv_bn_relu, head, init_weights, stem


class EffectiveSE(nn.Module):
    """x * hard_sigmoid(fc(mean of x)): squeeze-excitation with one full-width 1x1 conv instead of SE's two
    reduced ones, which CenterMask found to lose channel information."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.hardsigmoid(self.fc(x.mean((2, 3), keepdim=True)))


class OSAModule(nn.Module):
    """n 3x3 conv-BN-ReLU in sequence; the input and all n outputs concatenated once; a 1x1 conv-BN-ReLU to the
    stage width; then eSE and the identity shortcut where the spec has them."""

    def __init__(self, cin: int, inner: int, cout: int, convs: int, *, identity: bool, ese: bool) -> None:
        super().__init__()
        self.conv_mid = nn.ModuleList(conv_bn_relu(cin if i == 0 else inner, inner, 3) for i in range(convs))
        self.conv_concat = conv_bn_relu(cin + convs * inner, cout, 1)
        self.attn = EffectiveSE(cout) if ese else None
        self.identity = identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x]
        for layer in self.conv_mid:
            outputs.append(layer(outputs[-1]))
        out = self.conv_concat(torch.cat(outputs, 1))
        if self.attn is not None:
            out = self.attn(out)
        return out + x if self.identity else out


class OSAStage(nn.Module):
    def __init__(self, pool: nn.Module | None, blocks: nn.Sequential) -> None:
        super().__init__()
        self.pool = pool
        self.blocks = blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.pool(x) if self.pool is not None else x)


class VoVNet(Network):
    """stem -> OSA stages -> pool -> fc."""


def build_osa(spec: ArchSpec) -> VoVNet:
    stages = nn.ModuleList()
    for s, n in enumerate(spec.blocks):
        inner, cout = spec.inner_channels(s), spec.out_channels(s)
        modules = [OSAModule(spec.block_in_channels(s, j), inner, cout, spec.osa_convs,
                             identity=spec.identity and j > 0, ese=spec.ese and j == n - 1) for j in range(n)]
        pool = nn.MaxPool2d(3, stride=2, ceil_mode=True) if s else None  # VoVNet's down-sampling
        stages.append(OSAStage(pool, nn.Sequential(*modules)))
    c_last = spec.out_channels(len(spec.blocks) - 1)
    model = VoVNet(spec, stem(spec), stages, head(spec, c_last, normalise=False), classifier(spec, c_last))
    init_weights(model)
    return model
