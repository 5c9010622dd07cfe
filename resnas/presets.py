"""Named architectures: the papers' and torchvision's networks as ArchSpecs, and the names the command line takes.

`resolve(text)` turns what a user typed (a preset name or the path of an ArchSpec JSON file) into a spec.
"""

from __future__ import annotations

import re
from pathlib import Path

from .spec import BOTTLENECK_KERNELS, ArchSpec, SpecError

# ---- presets ----------------------------------------------------------------------------------------------

_IMAGENET = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}


def wrn(depth: int, k: int, *, dropout: float = 0.0, num_classes: int = 10, in_channels: int = 3) -> ArchSpec:
    """WRN-depth-k of Zagoruyko & Komodakis (2016): pre-activation B(3,3), depth = 6n + 4."""
    if depth < 10 or (depth - 4) % 6:
        raise SpecError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
    n = (depth - 4) // 6
    return ArchSpec(blocks=(n, n, n), widths=(16, 32, 64), k=k, kernels=(3, 3), shortcut="B", preact=True,
                    dropout=dropout, stem="cifar", stem_width=16, in_channels=in_channels, num_classes=num_classes)


def resnet(depth: int, *, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> ArchSpec:
    """CIFAR ResNet-depth of He et al. (2016), section 4.2: post-activation basic blocks, depth = 6n + 2."""
    if depth < 8 or (depth - 2) % 6:
        raise SpecError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}")
    n = (depth - 2) // 6
    return ArchSpec(blocks=(n, n, n), widths=(16, 32, 64), k=1, kernels=(3, 3), shortcut=shortcut, preact=False,
                    stem="cifar", stem_width=16, in_channels=in_channels, num_classes=num_classes)


def imagenet_resnet(name: str, *, num_classes: int = 1000) -> ArchSpec:
    """torchvision's ImageNet ResNets (V1.5 stride placement), including wide_resnet50_2."""
    k = 1
    if name == "wide_resnet50_2":
        name, k = "resnet50", 2
    block, blocks = _IMAGENET[name]
    return ArchSpec(blocks=blocks, widths=(64, 128, 256, 512), k=k, block=block,
                    kernels=(3, 3) if block == "basic" else BOTTLENECK_KERNELS, shortcut="B", preact=False,
                    stem="imagenet", stem_width=64, in_channels=3, num_classes=num_classes)


PRESET_PATTERNS = "resnet18, resnet34, resnet50, resnet101, resnet152, wide_resnet50_2, wrn-DEPTH-K, resnet-DEPTH"


def preset(name: str) -> ArchSpec:
    """Parse a preset name as written on the command line (see PRESET_PATTERNS)."""
    if name in _IMAGENET or name == "wide_resnet50_2":
        return imagenet_resnet(name)
    if m := re.fullmatch(r"wrn-(\d+)-(\d+)", name):
        return wrn(int(m[1]), int(m[2]))
    if m := re.fullmatch(r"resnet-(\d+)", name):
        return resnet(int(m[1]))
    raise SpecError(f"unknown preset {name!r}; presets are {PRESET_PATTERNS}")


def resolve(text: str, *, in_channels: int | None = None, num_classes: int | None = None) -> ArchSpec:
    """The spec a user named: a preset (adapted to the dataset's channels and classes where given) or the path of
    an ArchSpec JSON file (which must already match them)."""
    if not text:
        raise SpecError("name an architecture: a preset (e.g. wrn-16-4) or an ArchSpec .json file")
    path = Path(text)
    if text.endswith(".json") or path.is_file():
        if not path.is_file():
            raise SpecError(f"spec file {path}: no such file")
        try:
            spec = ArchSpec.from_json(path.read_text(), source=str(path))
        except (OSError, UnicodeDecodeError) as e:
            raise SpecError(f"spec file {path}: cannot read it ({e})") from None
        for field, want in (("in_channels", in_channels), ("num_classes", num_classes)):
            if want is not None and getattr(spec, field) != want:
                raise SpecError(f"spec file {path}: {field} is {getattr(spec, field)} but the dataset has {want}")
        return spec
    changes = {k: v for k, v in (("in_channels", in_channels), ("num_classes", num_classes)) if v is not None}
    return preset(text).replace(**changes)
