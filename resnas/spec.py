"""ArchSpec: a frozen, validated description of one network that round-trips to JSON.

Three block families share one layout (stem, stages, head, classifier); `blocks` counts each stage's units and
`widths` gives each stage's width, both read the family's way:
- residual: `blocks` residual blocks; a basic block's convolutions all have `widths[i] * k` channels, `kernels`
  lists their kernel sizes (so `len(kernels)` is the Wide ResNet paper's deepening factor `l`). A bottleneck block
  reduces to `widths[i] * k` channels (1x1), convolves (3x3) and expands to `widths[i] * 4` (1x1), as in
  torchvision's wide_resnet50_2. A down-sampling block's stride sits on its first convolution with a kernel larger
  than 1 (torchvision's "ResNet V1.5"; the original paper strided the first 1x1).
- dense (Huang et al. 2017): `blocks` layers per dense block, each adding `widths[i] * k` channels (the growth
  rate) to the concatenation it reads; DenseNet-B layers first reduce to 4 x growth with a 1x1 convolution. Every
  later stage starts with a transition (BN-ReLU, 1x1 convolution to `compression` of the channels, 2x2 average pool).
- osa (Lee et al. 2019, VoVNet): `blocks` One-Shot Aggregation modules, each `osa_convs` 3x3 conv-BN-ReLU of
  `inner_widths[i] * k` channels in sequence, whose input and outputs are concatenated once and reduced by a 1x1
  conv-BN-ReLU to the stage width `widths[i] * k`. Every later stage starts with a 3x3 stride-2 max pool.
  VoVNetV2 (Lee & Park 2020) adds an identity shortcut to every module but a stage's first, and effective
  squeeze-excitation (eSE) to a stage's last module, as timm builds it.
Stage 0 keeps the stem's resolution; every later stage halves it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from .naming import describe
from .spec_rules import (
    BLOCK_TYPES,
    BOTTLENECK_EXPANSION,
    BOTTLENECK_KERNELS,
    DENSE_BOTTLENECK,
    FAMILIES,
    HEADS,
    SHORTCUTS,
    STEMS,
    SpecError,
    applies,
    coerce,
    not_applicable,
    validate,
)

__all__ = ["ArchSpec", "SpecError", "describe", "BLOCK_TYPES", "BOTTLENECK_EXPANSION", "BOTTLENECK_KERNELS",
           "DENSE_BOTTLENECK", "FAMILIES", "HEADS", "SHORTCUTS", "STEMS"]

# Written by to_dict only where they differ from their defaults, so that a residual network's JSON is the same as
# before families and heads existed (search deduplicates trials by it, and old studies resume).
_LATER_FIELDS = ("family", "head", "input_size")


@dataclass(frozen=True)
class ArchSpec:
    """One network. Every field is plain data; `to_dict`/`from_dict` round-trip through JSON."""

    blocks: tuple[int, ...]  # units per stage: residual blocks, dense layers or OSA modules
    widths: tuple[int, ...]  # per stage, before k: residual width, dense growth rate, OSA output width
    k: int = 1  # widening factor: multiplies every width of every family
    block: str = "basic"  # residual: "basic" or "bottleneck"
    kernels: tuple[int, ...] = (3, 3)  # residual: kernel size of each conv in a branch (basic: len = l)
    shortcut: str = "B"  # residual: A zero-pad, B projection where shape changes, C projection always, none
    preact: bool = True  # residual: BN-ReLU-conv (Identity Mappings, WRN) vs conv-BN-ReLU (original ResNet)
    dropout: float = 0.0  # residual: between a branch's convolutions; dense: after every convolution
    stem: str = "cifar"  # "cifar": 3x3 conv; "imagenet": 7x7 stride 2 + 3x3 max pool; "vovnet": three 3x3 convs
    stem_width: int = 16
    in_channels: int = 3
    num_classes: int = 10
    gates: bool = False  # residual: a learnable scalar on each branch (block-sparsity training, pruning)
    zero_init_residual: bool = False  # residual: zero the last BN of each branch at init (Goyal et al. 2017)
    family: str = "residual"  # "residual", "dense" or "osa"
    head: str = "gap"  # "gap": global average pool then linear; "flatten": the whole last map into the linear
    input_size: int | None = None  # flatten head: the side of the square inputs its linear layer is built for
    compression: float = 0.5  # dense: theta, the fraction of channels a transition keeps (DenseNet-C: < 1)
    dense_bottleneck: bool = True  # dense: a 1x1 conv to 4 x growth before each 3x3 (DenseNet-B)
    osa_convs: int = 5  # osa: 3x3 convolutions per module
    inner_widths: tuple[int, ...] = ()  # osa: per stage, before k, the 3x3 convs' width; empty: half the width
    identity: bool = False  # osa: VoVNetV2 identity shortcut on every module but a stage's first
    ese: bool = False  # osa: VoVNetV2 effective squeeze-excitation on each stage's last module

    def __post_init__(self) -> None:
        validate(self)

    # ---- derived quantities -------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Weighted layers on the longest path: stem convs + the stages' convs + classifier (ResNet counting)."""
        stem = 3 if self.stem == "vovnet" else 1
        if self.family == "dense":
            per_layer = 2 if self.dense_bottleneck else 1
            return stem + sum(self.blocks) * per_layer + len(self.blocks) - 1 + 1  # transitions are convs too
        if self.family == "osa":
            return stem + sum(self.blocks) * (self.osa_convs + 1) + 1
        return stem + sum(self.blocks) * len(self.kernels) + 1

    @property
    def post_activation(self) -> bool:
        """conv-BN-ReLU layers (original ResNet, VoVNet) rather than BN-ReLU-conv (pre-act ResNet, DenseNet)."""
        return self.family == "osa" or (self.family == "residual" and not self.preact)

    def out_channels(self, stage: int) -> int:
        """Channels leaving every block of `stage` (dense: leaving the dense block, the concatenation)."""
        if self.family == "dense":
            return self.stage_in_channels(stage) + self.blocks[stage] * self.inner_channels(stage)
        if self.family == "residual" and self.block == "bottleneck":
            return self.widths[stage] * BOTTLENECK_EXPANSION
        return self.widths[stage] * self.k

    def inner_channels(self, stage: int) -> int:
        """Channels of the convolutions inside a unit of `stage` (dense: the growth rate; osa: the 3x3 convs)."""
        if self.family == "osa":
            return self.inner_widths[stage] * self.k if self.inner_widths else max(1, self.widths[stage] * self.k // 2)
        return self.widths[stage] * self.k

    def stage_in_channels(self, stage: int) -> int:
        """Channels entering `stage` (dense: after its transition)."""
        if stage == 0:
            return self.stem_width
        previous = self.out_channels(stage - 1)
        return int(self.compression * previous + 1e-9) if self.family == "dense" else previous

    def stride(self, stage: int, index: int) -> int:
        return 2 if stage > 0 and index == 0 else 1

    def block_in_channels(self, stage: int, index: int) -> int:
        if self.family == "dense":
            return self.stage_in_channels(stage) + index * self.inner_channels(stage)
        return self.out_channels(stage) if index > 0 else self.stage_in_channels(stage)

    def changes_shape(self, stage: int, index: int) -> bool:
        """True where a block's output shape differs from its input (stride or channels)."""
        return self.stride(stage, index) != 1 or self.block_in_channels(stage, index) != self.out_channels(stage)

    def feature_sizes(self, input_size: int) -> list[int]:
        """The side of each stage's feature maps for square inputs of `input_size`; SpecError where one vanishes."""
        half = lambda n: (n - 1) // 2 + 1  # noqa: E731  a stride-2 conv with 'same' padding, or x[::2]
        n = half(half(input_size)) if self.stem in ("imagenet", "vovnet") else input_size
        sizes = [n]
        for _ in self.blocks[1:]:
            if self.family == "dense":
                n //= 2  # 2x2 average pool
            elif self.family == "osa":
                n = math.ceil((n - 3) / 2) + 1  # 3x3 stride-2 max pool in ceil mode, as VoVNet's code has it
            else:
                n = half(n)
            sizes.append(n)
        if min(sizes) < 1:
            stage = next(i for i, v in enumerate(sizes) if v < 1)
            raise SpecError(f"input size {input_size}x{input_size} is too small for this network: stage {stage} "
                            "would have no pixels left; use larger inputs or fewer stages")
        return sizes

    # ---- serialisation --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The fields this network uses (those of its family and head), as plain JSON data."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not applies(f.name, self.family, self.head) or (f.name in _LATER_FIELDS and value == f.default):
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "spec") -> ArchSpec:
        """Build from plain data, naming `source` (a file, say) and the offending key in any error.

        A field the family (or head) does not use is an error when it is written at all, even at its default."""
        if not isinstance(data, dict):
            raise SpecError(f"{source}: expected a JSON object of ArchSpec fields, got {type(data).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise SpecError(f"{source}: unknown field {unknown[0]!r}; allowed: {', '.join(allowed)}")
        missing = [n for n in ("blocks", "widths") if n not in data]
        if missing:
            raise SpecError(f"{source}: missing required field {missing[0]!r}")
        kwargs = {f.name: coerce(f.name, data[f.name], source) for f in dataclasses.fields(cls) if f.name in data}
        family, head = kwargs.get("family", "residual"), kwargs.get("head", "gap")
        if family in FAMILIES and head in HEADS:
            for name in kwargs:
                if not applies(name, family, head):
                    raise SpecError(f"{source}: {not_applicable(name, data[name], family, head)}")
        try:
            return cls(**kwargs)
        except SpecError as e:
            raise SpecError(f"{source}: {e}") from None

    @classmethod
    def from_json(cls, text: str, *, source: str = "spec") -> ArchSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"{source}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
        return cls.from_dict(data, source=source)

    def replace(self, **changes: Any) -> ArchSpec:
        return dataclasses.replace(self, **changes)
