"""Parameters and multiply-accumulates of a network, computed from its ArchSpec alone, family by family.

Counts exactly what `models.build(spec)` makes: every parameter, and the MACs of convolutions and linear layers
(not BatchNorm, activations, pooling, additions, concatenations or eSE's gating product; see measure.py).
"""

from __future__ import annotations

import math

from .spec import DENSE_BOTTLENECK, ArchSpec


class Tally:
    def __init__(self) -> None:
        self.params = 0
        self.macs = 0
        self.layers = 0  # convolutions, BatchNorms and linear layers
        self.largest = 0  # elements per image of the largest tensor any of them reads or writes

    def conv(self, cin: int, cout: int, kernel: int, stride: int, size: int, *, bias: bool = False) -> int:
        """Count one convolution with 'same' padding on a `size` x `size` input; return its output side."""
        out = (size + 2 * (kernel // 2) - kernel) // stride + 1
        self.params += cin * cout * kernel * kernel + (cout if bias else 0)
        self.macs += cin * cout * kernel * kernel * out * out
        self.layers += 1
        self.largest = max(self.largest, cin * size * size, cout * out * out)
        return out

    def bn(self, channels: int) -> None:
        self.params += 2 * channels
        self.layers += 1

    def linear(self, cin: int, cout: int) -> None:
        self.params += cin * cout + cout
        self.macs += cin * cout
        self.layers += 1
        self.largest = max(self.largest, cin, cout)


def count(spec: ArchSpec, input_size: int) -> Tally:
    """The tally of the whole network on square inputs of side `input_size`."""
    t = Tally()
    size = _stem(t, spec, input_size)
    channels, size = {"residual": _residual, "dense": _dense, "osa": _osa}[spec.family](t, spec, size)
    t.largest = max(t.largest, channels * size * size)  # the last features (a dense block's concatenation)
    if spec.family == "dense" or (spec.family == "residual" and spec.preact):
        t.bn(channels)  # the head's BN-ReLU
    side = size if spec.head == "flatten" else 1
    t.linear(channels * side * side, spec.num_classes)
    return t


def _stem(t: Tally, spec: ArchSpec, size: int) -> int:
    w = spec.stem_width
    if spec.stem == "imagenet":
        size = t.conv(spec.in_channels, w, 7, 2, size)
        t.bn(w)
        return (size + 2 - 3) // 2 + 1  # 3x3 max pool, stride 2, padding 1
    if spec.stem == "vovnet":
        for cin, cout, stride in ((spec.in_channels, w // 2, 2), (w // 2, w // 2, 1), (w // 2, w, 2)):
            size = t.conv(cin, cout, 3, stride, size)
            t.bn(cout)
        return size
    size = t.conv(spec.in_channels, w, 3, 1, size)
    if spec.post_activation:
        t.bn(w)
    return size


def _residual(t: Tally, spec: ArchSpec, size: int) -> tuple[int, int]:
    strided = next((i for i, kern in enumerate(spec.kernels) if kern > 1), 0)
    for s, n in enumerate(spec.blocks):
        cout, inner = spec.out_channels(s), spec.inner_channels(s)
        for b in range(n):
            cin, stride = spec.block_in_channels(s, b), spec.stride(s, b)
            chans = [cin] + [inner] * (len(spec.kernels) - 1) + [cout]
            branch_size = size
            for i, kern in enumerate(spec.kernels):
                t.bn(chans[i] if spec.preact else chans[i + 1])
                branch_size = t.conv(chans[i], chans[i + 1], kern, stride if i == strided else 1, branch_size)
            reshapes = stride != 1 or cin != cout
            if spec.shortcut == "C" or (spec.shortcut == "B" and reshapes):
                t.conv(cin, cout, 1, stride, size)
                if not spec.preact:
                    t.bn(cout)
            if spec.gates:
                t.params += 1
            size = branch_size
    return spec.out_channels(len(spec.blocks) - 1), size


def _dense(t: Tally, spec: ArchSpec, size: int) -> tuple[int, int]:
    channels = spec.stem_width
    for s, n in enumerate(spec.blocks):
        if s:  # transition: BN-ReLU, 1x1 conv, 2x2 average pool
            t.bn(channels)
            channels = spec.stage_in_channels(s)
            t.conv(spec.out_channels(s - 1), channels, 1, 1, size)
            size //= 2
        growth = spec.inner_channels(s)
        for _ in range(n):
            if spec.dense_bottleneck:
                t.bn(channels)
                t.conv(channels, DENSE_BOTTLENECK * growth, 1, 1, size)
                t.bn(DENSE_BOTTLENECK * growth)
                t.conv(DENSE_BOTTLENECK * growth, growth, 3, 1, size)
            else:
                t.bn(channels)
                t.conv(channels, growth, 3, 1, size)
            channels += growth
    return channels, size


def _osa(t: Tally, spec: ArchSpec, size: int) -> tuple[int, int]:
    channels = spec.stem_width
    for s, n in enumerate(spec.blocks):
        if s:
            size = math.ceil((size - 3) / 2) + 1  # 3x3 stride-2 max pool, ceil mode
        inner, out = spec.inner_channels(s), spec.out_channels(s)
        for j in range(n):
            cin = channels
            for i in range(spec.osa_convs):
                t.conv(cin if i == 0 else inner, inner, 3, 1, size)
                t.bn(inner)
            t.conv(cin + spec.osa_convs * inner, out, 1, 1, size)
            t.bn(out)
            if spec.ese and j == n - 1:
                t.conv(out, out, 1, 1, 1, bias=True)  # eSE's fc, on the pooled 1x1 map
            channels = out
    return channels, size
