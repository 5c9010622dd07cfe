"""ArchSpec: a frozen, validated description of one residual network that round-trips to JSON.

Conventions (held by `models.build` and `measure.analytic_cost` alike):
- Stage 0 keeps the stem's resolution; every later stage halves it in its first block.
- A basic block's convolutions all have `widths[i] * k` channels; `kernels` lists their kernel sizes, so
  `len(kernels)` is the Wide ResNet paper's deepening factor `l` and (3, 3) is its B(3,3).
- A bottleneck block reduces to `widths[i] * k` channels (1x1), convolves (3x3) and expands to
  `widths[i] * 4` (1x1): `k` widens only its inner convolutions, as in torchvision's wide_resnet50_2.
- The stride of a down-sampling block sits on its first convolution with a kernel larger than 1 (the 3x3 of a
  bottleneck: torchvision's "ResNet V1.5"; the original paper strided the first 1x1).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .errors import UserError

BLOCK_TYPES = ("basic", "bottleneck")
SHORTCUTS = ("A", "B", "C", "none")
STEMS = ("cifar", "imagenet")
BOTTLENECK_EXPANSION = 4
BOTTLENECK_KERNELS = (1, 3, 1)


class SpecError(UserError, ValueError):
    """An architecture description names a field or value that is not allowed."""


@dataclass(frozen=True)
class ArchSpec:
    """One residual network. Every field is plain data; `to_dict`/`from_dict` round-trip through JSON."""

    blocks: tuple[int, ...]  # residual blocks per stage
    widths: tuple[int, ...]  # base width per stage, before the widening factor
    k: int = 1  # widening factor
    block: str = "basic"  # "basic" or "bottleneck"
    kernels: tuple[int, ...] = (3, 3)  # kernel size of each conv in a branch (basic: len = l)
    shortcut: str = "B"  # A zero-pad, B projection where shape changes, C projection always, none
    preact: bool = True  # BN-ReLU-conv (Identity Mappings, WRN) vs conv-BN-ReLU (original ResNet)
    dropout: float = 0.0  # between the convolutions of a branch, never on the shortcut
    stem: str = "cifar"  # "cifar": 3x3 conv; "imagenet": 7x7 stride 2 + 3x3 max pool
    stem_width: int = 16
    in_channels: int = 3
    num_classes: int = 10
    gates: bool = False  # a learnable scalar on each branch (block-sparsity training, pruning)
    zero_init_residual: bool = False  # zero the last BN of each branch at init (Goyal et al. 2017)

    def __post_init__(self) -> None:
        _validate(self)

    # ---- derived quantities -------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Weighted layers on the longest path: stem conv + branch convs + classifier (ResNet counting)."""
        return 1 + sum(self.blocks) * len(self.kernels) + 1

    def out_channels(self, stage: int) -> int:
        """Channels leaving every block of `stage`."""
        if self.block == "bottleneck":
            return self.widths[stage] * BOTTLENECK_EXPANSION
        return self.widths[stage] * self.k

    def inner_channels(self, stage: int) -> int:
        """Channels of the convolutions inside a branch of `stage`."""
        return self.widths[stage] * self.k

    def stride(self, stage: int, index: int) -> int:
        return 2 if stage > 0 and index == 0 else 1

    def block_in_channels(self, stage: int, index: int) -> int:
        if index > 0:
            return self.out_channels(stage)
        return self.stem_width if stage == 0 else self.out_channels(stage - 1)

    def changes_shape(self, stage: int, index: int) -> bool:
        """True where a block's output shape differs from its input (stride or channels)."""
        return self.stride(stage, index) != 1 or self.block_in_channels(stage, index) != self.out_channels(stage)

    # ---- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for name in ("blocks", "widths", "kernels"):
            d[name] = list(d[name])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "spec") -> ArchSpec:
        """Build from plain data, naming `source` (a file, say) and the offending key in any error."""
        if not isinstance(data, dict):
            raise SpecError(f"{source}: expected a JSON object of ArchSpec fields, got {type(data).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise SpecError(f"{source}: unknown field {unknown[0]!r}; allowed: {', '.join(allowed)}")
        missing = [n for n in ("blocks", "widths") if n not in data]
        if missing:
            raise SpecError(f"{source}: missing required field {missing[0]!r}")
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                kwargs[f.name] = _coerce(f.name, data[f.name], source)
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


_TUPLE_FIELDS = {"blocks", "widths", "kernels"}
_INT_FIELDS = {"k", "stem_width", "in_channels", "num_classes"}
_BOOL_FIELDS = {"preact", "gates", "zero_init_residual"}
_STR_FIELDS = {"block", "shortcut", "stem"}


def _coerce(name: str, value: Any, source: str) -> Any:
    """JSON carries lists and numbers loosely; turn them into the field's type or say what is wrong."""

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if name in _TUPLE_FIELDS:
        if not isinstance(value, list | tuple) or not all(is_int(v) for v in value):
            raise SpecError(f"{source}: {name} must be a list of integers, got {value!r}")
        return tuple(value)
    if name in _INT_FIELDS and not is_int(value):
        raise SpecError(f"{source}: {name} must be an integer, got {value!r}")
    if name in _BOOL_FIELDS and not isinstance(value, bool):
        raise SpecError(f"{source}: {name} must be true or false, got {value!r}")
    if name in _STR_FIELDS and not isinstance(value, str):
        raise SpecError(f"{source}: {name} must be a string, got {value!r}")
    if name == "dropout":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SpecError(f"{source}: dropout must be a number in [0, 1), got {value!r}")
        return float(value)
    return value


def _validate(s: ArchSpec) -> None:
    if not isinstance(s.blocks, tuple) or not s.blocks:
        raise SpecError(f"blocks must be a non-empty tuple of block counts per stage, got {s.blocks!r}")
    for i, n in enumerate(s.blocks):
        if not isinstance(n, int) or n < 1:
            raise SpecError(f"blocks: stage {i} has {n!r} blocks; every stage needs an integer >= 1")
    if not isinstance(s.widths, tuple) or len(s.widths) != len(s.blocks):
        raise SpecError(f"widths must give one width per stage ({len(s.blocks)} stages), got {s.widths!r}")
    for i, w in enumerate(s.widths):
        if not isinstance(w, int) or w < 1:
            raise SpecError(f"widths: stage {i} has width {w!r}; widths must be integers >= 1")
    if not isinstance(s.k, int) or isinstance(s.k, bool) or s.k < 1:
        raise SpecError(f"k (widening factor) must be an integer >= 1, got {s.k!r}")
    if s.block not in BLOCK_TYPES:
        raise SpecError(f"block must be one of {', '.join(BLOCK_TYPES)}, got {s.block!r}")
    if not isinstance(s.kernels, tuple) or not s.kernels:
        raise SpecError(f"kernels must be a non-empty tuple of kernel sizes, got {s.kernels!r}")
    for kern in s.kernels:
        if not isinstance(kern, int) or kern < 1 or kern % 2 == 0:
            raise SpecError(f"kernels: {kern!r} is not allowed; kernel sizes are odd integers >= 1")
    if s.block == "bottleneck" and s.kernels != BOTTLENECK_KERNELS:
        raise SpecError(f"kernels must be {list(BOTTLENECK_KERNELS)} for bottleneck blocks, got {list(s.kernels)}")
    if s.shortcut not in SHORTCUTS:
        raise SpecError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {s.shortcut!r}")
    if not isinstance(s.dropout, int | float) or not 0.0 <= s.dropout < 1.0:
        raise SpecError(f"dropout must be in [0, 1), got {s.dropout!r}")
    if s.stem not in STEMS:
        raise SpecError(f"stem must be one of {', '.join(STEMS)}, got {s.stem!r}")
    for name in ("stem_width", "in_channels"):
        v = getattr(s, name)
        if not isinstance(v, int) or v < 1:
            raise SpecError(f"{name} must be an integer >= 1, got {v!r}")
    if not isinstance(s.num_classes, int) or s.num_classes < 2:
        raise SpecError(f"num_classes must be an integer >= 2, got {s.num_classes!r}")
    if s.shortcut == "A":
        for stage in range(len(s.blocks)):
            cin, cout = s.block_in_channels(stage, 0), s.out_channels(stage)
            if cout < cin:
                raise SpecError(
                    f"shortcut A zero-pads channels, so it cannot shrink them (stage {stage}: {cin} -> {cout}); "
                    "use shortcut B or C, or non-decreasing widths"
                )
    if s.gates and s.shortcut == "none":
        raise SpecError("gates scale a residual branch; a plain network (shortcut none) has none to gate")


def describe(spec: ArchSpec) -> str:
    """A short name in the papers' words, e.g. 'WRN-16-4 B(3,3)' or 'ResNet-20 (A, post-act)'."""
    kern = "B(" + ",".join(map(str, spec.kernels)) + ")"
    stages = "-".join(map(str, spec.blocks))
    uniform = len(set(spec.blocks)) == 1
    wrn_family = spec.block == "basic" and spec.preact and spec.shortcut == "B" and spec.stem == "cifar" \
        and spec.widths == (16, 32, 64) and uniform
    if wrn_family:  # the WRN paper counts 6N+4 layers for B(3,3): the branch convs plus stem, head and 2 more
        text = f"WRN-{spec.depth + 2}-{spec.k} {kern}"
    else:
        kind = "Plain" if spec.shortcut == "none" else "ResNet"
        text = f"{kind}-{spec.depth} {spec.block if spec.block == 'bottleneck' else kern} blocks {stages}"
        text += f" k={spec.k}" if spec.k != 1 else ""
        text += f" ({spec.shortcut if spec.shortcut != 'none' else 'no'} shortcut, "
        text += "pre-act)" if spec.preact else "post-act)"
    if spec.dropout:
        text += f" dropout {spec.dropout:g}"
    if spec.gates:
        text += " gated"
    return text
