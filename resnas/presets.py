"""Named architectures: the papers', torchvision's and timm's networks as ArchSpecs, and the names the CLI takes.

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


# torchvision's ImageNet DenseNet-BC: layers per dense block, growth rate, stem width
_DENSENETS = {
    "densenet121": ((6, 12, 24, 16), 32, 64),
    "densenet161": ((6, 12, 36, 24), 48, 96),
    "densenet169": ((6, 12, 32, 32), 32, 64),
    "densenet201": ((6, 12, 48, 32), 32, 64),
}


def densenet(depth: int, growth: int, *, bc: bool = True, num_classes: int = 10, in_channels: int = 3) -> ArchSpec:
    """CIFAR DenseNet-depth (k = growth) of Huang et al. (2017): three dense blocks of equal size. DenseNet-BC has
    bottleneck layers (two convs each, depth = 6n + 4), compression 0.5 and a stem of 2k channels; DenseNet has
    single 3x3 layers (depth = 3n + 4), no compression and a 16-channel stem."""
    per = 6 if bc else 3
    if depth < per + 4 or (depth - 4) % per:
        raise SpecError(f"DenseNet{'-BC' if bc else ''} depth must be {per}n+4 with n >= 1 "
                        f"({', '.join(str(per * n + 4) for n in (1, 2, 3))}, ...), got {depth}")
    n = (depth - 4) // per
    return ArchSpec(blocks=(n, n, n), widths=(growth,) * 3, family="dense", dense_bottleneck=bc,
                    compression=0.5 if bc else 1.0, stem="cifar", stem_width=2 * growth if bc else 16,
                    in_channels=in_channels, num_classes=num_classes)


def imagenet_densenet(name: str, *, num_classes: int = 1000) -> ArchSpec:
    """torchvision's densenet121/161/169/201 (DenseNet-BC with the 7x7 stem)."""
    blocks, growth, stem_width = _DENSENETS[name]
    return ArchSpec(blocks=blocks, widths=(growth,) * 4, family="dense", stem="imagenet", stem_width=stem_width,
                    num_classes=num_classes)


# VoVNet-39/57 (Lee et al. 2019) and VoVNetV2 (eSE-VoVNet, Lee & Park 2020), as timm's vovnet39a, vovnet57a,
# ese_vovnet39b, ese_vovnet57b: modules per stage; every module has five 3x3 convs
_VOVNETS = {"vovnet39": (1, 1, 2, 2), "vovnet57": (1, 1, 4, 3)}


def vovnet(name: str, *, num_classes: int = 1000) -> ArchSpec:
    v2 = name.startswith("ese-")
    return ArchSpec(blocks=_VOVNETS[name.removeprefix("ese-")], widths=(256, 512, 768, 1024),
                    inner_widths=(128, 160, 192, 224), family="osa", osa_convs=5, identity=v2, ese=v2,
                    stem="vovnet", stem_width=128, num_classes=num_classes)


PRESET_PATTERNS = ("resnet18, resnet34, resnet50, resnet101, resnet152, wide_resnet50_2, wrn-DEPTH-K, resnet-DEPTH, "
                   "densenet121, densenet161, densenet169, densenet201, densenet-bc-DEPTH-K, densenet-DEPTH-K, "
                   "vovnet39, vovnet57, ese-vovnet39, ese-vovnet57")


def preset(name: str) -> ArchSpec:
    """Parse a preset name as written on the command line (see PRESET_PATTERNS)."""
    if name in _IMAGENET or name == "wide_resnet50_2":
        return imagenet_resnet(name)
    if name in _DENSENETS:
        return imagenet_densenet(name)
    if name.removeprefix("ese-") in _VOVNETS:
        return vovnet(name)
    if m := re.fullmatch(r"wrn-(\d+)-(\d+)", name):
        return wrn(int(m[1]), int(m[2]))
    if m := re.fullmatch(r"resnet-(\d+)", name):
        return resnet(int(m[1]))
    if m := re.fullmatch(r"densenet(-bc)?-(\d+)-(\d+)", name):
        return densenet(int(m[2]), int(m[3]), bc=bool(m[1]))
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
