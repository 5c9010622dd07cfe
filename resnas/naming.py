"""Short names for architectures in the papers' words: 'WRN-16-4 B(3,3)', 'DenseNet-BC-100 k=12', 'VoVNet-39'."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spec import ArchSpec

LONG_BRANCH = 8  # kernels written out one by one up to this many


def describe(spec: ArchSpec) -> str:
    """A short name for `spec`, e.g. 'WRN-16-4 B(3,3)', 'ResNet-20 (A, post-act)', 'DenseNet-BC-100 k=12'."""
    text = {"residual": _residual, "dense": _dense, "osa": _osa}[spec.family](spec)
    if spec.dropout:
        text += f" dropout {spec.dropout:g}"
    if spec.gates:
        text += " gated"
    if spec.head == "flatten":
        text += f" flatten head ({spec.input_size}x{spec.input_size})"
    return text


def _stages(spec: ArchSpec) -> str:
    return "-".join(map(str, spec.blocks))


def _kernels(kernels: tuple[int, ...]) -> str:
    """'3,3' or '3,1,3'; a long branch as runs, '3x5000' (a name of thousands of digits helps no one)."""
    if len(kernels) <= LONG_BRANCH:
        return ",".join(map(str, kernels))
    runs = [(k, len(list(group))) for k, group in itertools.groupby(kernels)]
    parts = [f"{k}x{n}" if n > 1 else str(k) for k, n in runs]
    if len(parts) <= LONG_BRANCH:
        return ",".join(parts)
    return ",".join([*parts[:3], "...", parts[-1]]) + f"; l={len(kernels)}"


def _residual(spec: ArchSpec) -> str:
    kern = f"B({_kernels(spec.kernels)})"
    uniform = len(set(spec.blocks)) == 1
    wrn_family = spec.block == "basic" and spec.preact and spec.shortcut == "B" and spec.stem == "cifar" \
        and spec.widths == (16, 32, 64) and uniform
    if wrn_family:  # the WRN paper counts 6N+4 layers for B(3,3): the branch convs plus stem, head and 2 more
        return f"WRN-{spec.depth + 2}-{spec.k} {kern}"
    kind = "Plain" if spec.shortcut == "none" else "ResNet"
    text = f"{kind}-{spec.depth} {spec.block if spec.block == 'bottleneck' else kern} blocks {_stages(spec)}"
    text += f" k={spec.k}" if spec.k != 1 else ""
    text += f" ({spec.shortcut if spec.shortcut != 'none' else 'no'} shortcut, "
    return text + ("pre-act)" if spec.preact else "post-act)")


def _dense(spec: ArchSpec) -> str:
    # the DenseNet paper's names: B for bottleneck layers, C for compression below 1
    suffix = ("B" if spec.dense_bottleneck else "") + ("C" if spec.compression < 1 else "")
    growth = sorted({spec.inner_channels(s) for s in range(len(spec.blocks))})
    text = f"DenseNet{'-' + suffix if suffix else ''}-{spec.depth} k={'/'.join(map(str, growth))}"
    if len(set(spec.blocks)) > 1:
        text += f" layers {_stages(spec)}"
    if spec.compression not in (0.5, 1.0):
        text += f" theta={spec.compression:g}"
    return text


def _osa(spec: ArchSpec) -> str:
    extras = [name for name, on in (("identity", spec.identity), ("eSE", spec.ese)) if on]
    if spec.stem == "vovnet":  # the VoVNet papers count the stem and module convolutions, not the classifier
        version = "V2" if spec.identity else ""
        return f"VoVNet{version}-{spec.depth - 1}" + (" eSE" if spec.ese else "")
    text = f"OSA-{spec.depth} modules {_stages(spec)} x{spec.osa_convs} convs"
    text += f" k={spec.k}" if spec.k != 1 else ""
    return text + (f" ({', '.join(extras)})" if extras else "")
