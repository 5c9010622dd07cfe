"""The residual family: ResNet, pre-activation ResNet, Wide ResNet, plain networks (shortcut none).

State-dict keys are an API (pruning rewrites them): `stem.*`, `stages.{s}.{b}.branch.*`,
`stages.{s}.{b}.shortcut.*`, `stages.{s}.{b}.gate`, `head.*`, `fc.*`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import ArchSpec
from .common import Network, classifier, conv, head, init_weights, stem


class ZeroPadShortcut(nn.Module):
    """Option A of He et al. (2016): subsample spatially, zero-pad new channels; no parameters."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x


class Block(nn.Module):
    """y = shortcut(x) + gate * branch(x), followed by ReLU in post-activation networks.

    `branch` is the learned residual function F; `shortcut` is None in a plain network.
    """

    def __init__(self, branch: nn.Sequential, shortcut: nn.Module | None, *, post_relu: bool, gated: bool) -> None:
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.post_relu = post_relu
        self.gate = nn.Parameter(torch.ones(())) if gated else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.gate is not None:
            out = out * self.gate
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out) if self.post_relu else out


class ResNet(Network):
    def blocks(self) -> list[tuple[int, int, Block]]:
        """Every residual block as (stage, index, block)."""
        return [(s, i, blk) for s, stage in enumerate(self.stages) for i, blk in enumerate(stage)]


def stride_position(kernels: tuple[int, ...]) -> int:
    """Index of the conv that carries a block's stride: the first with a spatial kernel (V1.5 rule)."""
    return next((i for i, kern in enumerate(kernels) if kern > 1), 0)


def _branch(spec: ArchSpec, cin: int, inner: int, cout: int, stride: int) -> nn.Sequential:
    kernels = spec.kernels
    chans = [cin] + [inner] * (len(kernels) - 1) + [cout]
    strided = stride_position(kernels)
    layers: list[nn.Module] = []
    for i, kern in enumerate(kernels):
        c_in, c_out, s = chans[i], chans[i + 1], stride if i == strided else 1
        if spec.preact:
            layers += [nn.BatchNorm2d(c_in), nn.ReLU(inplace=True)]
            if i > 0 and spec.dropout:
                layers.append(nn.Dropout(spec.dropout))
            layers.append(conv(c_in, c_out, kern, s))
        else:
            if i > 0 and spec.dropout:
                layers.append(nn.Dropout(spec.dropout))
            layers += [conv(c_in, c_out, kern, s), nn.BatchNorm2d(c_out)]
            if i < len(kernels) - 1:
                layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _shortcut(spec: ArchSpec, cin: int, cout: int, stride: int) -> nn.Module | None:
    if spec.shortcut == "none":
        return None
    reshapes = stride != 1 or cin != cout
    if spec.shortcut == "C" or (spec.shortcut == "B" and reshapes):
        proj = conv(cin, cout, 1, stride)
        # Pre-activation nets (Identity Mappings, WRN) project without a BN; torchvision's post-act nets add one.
        return proj if spec.preact else nn.Sequential(proj, nn.BatchNorm2d(cout))
    if reshapes:  # shortcut A
        return ZeroPadShortcut(stride, cout - cin)
    return nn.Identity()


def last_bn(branch: nn.Sequential) -> nn.BatchNorm2d:
    """The branch's final BatchNorm: it scales the branch output (post-act) or the last conv's input (pre-act)."""
    return [m for m in branch if isinstance(m, nn.BatchNorm2d)][-1]


def build_residual(spec: ArchSpec) -> ResNet:
    stages = nn.ModuleList()
    for s, n in enumerate(spec.blocks):
        cout, inner = spec.out_channels(s), spec.inner_channels(s)
        blocks = []
        for i in range(n):
            cin, stride = spec.block_in_channels(s, i), spec.stride(s, i)
            blocks.append(Block(_branch(spec, cin, inner, cout, stride), _shortcut(spec, cin, cout, stride),
                                post_relu=not spec.preact, gated=spec.gates))
        stages.append(nn.Sequential(*blocks))
    c_last = spec.out_channels(len(spec.blocks) - 1)
    model = ResNet(spec, stem(spec), stages, head(spec, c_last, normalise=spec.preact), classifier(spec, c_last))
    init_weights(model)
    if spec.zero_init_residual:
        # Goyal et al. (2017): each block starts as the identity. In a pre-act branch the last BN feeds the last
        # conv through a ReLU, so zeroing its scale zeroes the branch output too.
        for _, _, blk in model.blocks():
            nn.init.zeros_(last_bn(blk.branch).weight)
    return model
