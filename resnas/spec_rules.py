"""What an ArchSpec may hold: the allowed values of each field, which fields each block family uses, and the
checks that turn a wrong value into one line naming the field, the value and the rule.

A field that does not apply to a spec's family (or head) must hold its default: `ArchSpec.from_dict` rejects it
when it is written at all, and `to_dict` never writes it, so a spec file says only what its network uses.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import UserError

FAMILIES = ("residual", "dense", "osa")
BLOCK_TYPES = ("basic", "bottleneck")
SHORTCUTS = ("A", "B", "C", "none")
STEMS = ("cifar", "imagenet", "vovnet")
HEADS = ("gap", "flatten")
BOTTLENECK_EXPANSION = 4
BOTTLENECK_KERNELS = (1, 3, 1)
DENSE_BOTTLENECK = 4  # DenseNet-B: the 1x1 convolution produces 4 x growth channels (Huang et al. 2017)
# Sizes past these are typing mistakes or attacks, not networks: refused as spec errors before any memory guard
# (ResNet-1202, the deepest in the papers, has 200 blocks a stage; WRN-28-10's widest layer 640 channels).
MAX_BLOCKS, MAX_WIDTH, MAX_STAGES, MAX_KERNEL, MAX_CLASSES = 10_000, 100_000, 64, 31, 1_000_000

# Fields every family uses (input_size only with the flatten head), then each family's own.
SHARED_FIELDS = ("blocks", "widths", "k", "stem", "stem_width", "in_channels", "num_classes", "family", "head",
                 "input_size")
FAMILY_FIELDS = {
    "residual": ("block", "kernels", "shortcut", "preact", "dropout", "gates", "zero_init_residual"),
    "dense": ("dropout", "compression", "dense_bottleneck"),
    "osa": ("osa_convs", "inner_widths", "identity", "ese"),
}


class SpecError(UserError, ValueError):
    """An architecture description names a field or value that is not allowed."""


def applies(field: str, family: str, head: str) -> bool:
    """Whether `field` means anything for a network of `family` with `head`."""
    if field == "input_size":
        return head == "flatten"
    return field in SHARED_FIELDS or field in FAMILY_FIELDS.get(family, ())


def not_applicable(field: str, value: Any, family: str, head: str) -> str:
    """The message for a field given where it does not apply."""
    if field == "input_size":
        return f"input_size = {value!r} applies to head flatten only (head is {head}); leave it out"
    owners = [f for f, names in FAMILY_FIELDS.items() if field in names]
    return f"{field} = {value!r} does not apply to family {family} (only to {', '.join(owners)}); leave it out"


# ---- types: JSON and TOML carry lists and numbers loosely ------------------------------------------------------

TUPLE_FIELDS = {"blocks", "widths", "kernels", "inner_widths"}
INT_FIELDS = {"k", "stem_width", "in_channels", "num_classes", "osa_convs"}
BOOL_FIELDS = {"preact", "gates", "zero_init_residual", "dense_bottleneck", "identity", "ese"}
STR_FIELDS = {"block", "shortcut", "stem", "family", "head"}
FLOAT_FIELDS = {"dropout": "a number in [0, 1)", "compression": "a number in (0, 1]"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def coerce(name: str, value: Any, source: str) -> Any:
    """`value` as field `name`'s type, or a SpecError saying what is wrong."""
    if name in TUPLE_FIELDS:
        if not isinstance(value, list | tuple) or not all(_is_int(v) for v in value):
            raise SpecError(f"{source}: {name} must be a list of integers, got {value!r}")
        return tuple(value)
    if name in INT_FIELDS and not _is_int(value):
        raise SpecError(f"{source}: {name} must be an integer, got {value!r}")
    if name == "input_size" and value is not None and not _is_int(value):
        raise SpecError(f"{source}: input_size must be an integer (the side of square inputs), got {value!r}")
    if name in BOOL_FIELDS and not isinstance(value, bool):
        raise SpecError(f"{source}: {name} must be true or false, got {value!r}")
    if name in STR_FIELDS and not isinstance(value, str):
        raise SpecError(f"{source}: {name} must be a string, got {value!r}")
    if name in FLOAT_FIELDS:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SpecError(f"{source}: {name} must be {FLOAT_FIELDS[name]}, got {value!r}")
        return float(value)
    return value


# ---- validation --------------------------------------------------------------------------------------------------

def validate(s: Any) -> None:
    """Raise SpecError on the first field of ArchSpec `s` that is not allowed."""
    _check_choice("family", s.family, FAMILIES)
    _check_choice("head", s.head, HEADS)
    for f in dataclasses.fields(s):
        value = getattr(s, f.name)
        if not applies(f.name, s.family, s.head) and value != f.default:
            raise SpecError(not_applicable(f.name, value, s.family, s.head))
    _check_stages(s)
    if not _is_int(s.k) or s.k < 1:
        raise SpecError(f"k (widening factor) must be an integer >= 1, got {s.k!r}")
    _check_choice("stem", s.stem, STEMS)
    for name in ("stem_width", "in_channels"):
        v = getattr(s, name)
        if not _is_int(v) or not 1 <= v <= MAX_WIDTH:
            raise SpecError(f"{name} must be an integer >= 1 and <= {MAX_WIDTH:,}, got {v!r}")
    if s.stem == "vovnet" and s.stem_width < 2:
        raise SpecError(f"stem_width must be >= 2 for the vovnet stem (its first convs have half), got {s.stem_width}")
    if not _is_int(s.num_classes) or not 2 <= s.num_classes <= MAX_CLASSES:
        raise SpecError(f"num_classes must be an integer >= 2 and <= {MAX_CLASSES:,}, got {s.num_classes!r}")
    if not isinstance(s.dropout, int | float) or not 0.0 <= s.dropout < 1.0:
        raise SpecError(f"dropout must be in [0, 1), got {s.dropout!r}")
    {"residual": _check_residual, "dense": _check_dense, "osa": _check_osa}[s.family](s)
    if s.head == "flatten":
        if not _is_int(s.input_size) or s.input_size < 1:
            raise SpecError(f"input_size must be an integer >= 1 with head flatten (the side of the square inputs "
                            f"its linear layer is built for), got {s.input_size!r}")
        s.feature_sizes(s.input_size)


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SpecError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _check_stages(s: Any) -> None:
    if not isinstance(s.blocks, tuple) or not s.blocks:
        raise SpecError(f"blocks must be a non-empty tuple of block counts per stage, got {s.blocks!r}")
    if len(s.blocks) > MAX_STAGES:
        raise SpecError(f"blocks: {len(s.blocks)} stages; at most {MAX_STAGES} are allowed")
    for i, n in enumerate(s.blocks):
        if not _is_int(n) or n < 1:
            raise SpecError(f"blocks: stage {i} has {n!r} blocks; every stage needs an integer >= 1")
        if n > MAX_BLOCKS:
            raise SpecError(f"blocks: stage {i} has {n:,} blocks; at most {MAX_BLOCKS:,} a stage are allowed")
    if not isinstance(s.widths, tuple) or len(s.widths) != len(s.blocks):
        raise SpecError(f"widths must give one width per stage ({len(s.blocks)} stages), got {s.widths!r}")
    what = {"residual": "width", "dense": "growth rate", "osa": "output width"}[s.family]
    for i, w in enumerate(s.widths):
        if not _is_int(w) or w < 1:
            hint = " (a dense network's widths are its growth rates)" if s.family == "dense" else ""
            raise SpecError(f"widths: stage {i} has {what} {w!r}; widths must be integers >= 1{hint}")
        if _is_int(s.k) and w * s.k > MAX_WIDTH:
            raise SpecError(f"widths: stage {i} has {what} {w:,} x k {s.k} = {w * s.k:,} channels; at most "
                            f"{MAX_WIDTH:,} are allowed")


def _check_residual(s: Any) -> None:
    _check_choice("block", s.block, BLOCK_TYPES)
    if not isinstance(s.kernels, tuple) or not s.kernels:
        raise SpecError(f"kernels must be a non-empty tuple of kernel sizes, got {s.kernels!r}")
    for kern in s.kernels:
        if not _is_int(kern) or kern < 1 or kern % 2 == 0 or kern > MAX_KERNEL:
            raise SpecError(f"kernels: {kern!r} is not allowed; kernel sizes are odd integers >= 1 and <= {MAX_KERNEL}")
    if s.block == "bottleneck" and s.kernels != BOTTLENECK_KERNELS:
        raise SpecError(f"kernels must be {list(BOTTLENECK_KERNELS)} for bottleneck blocks, got {list(s.kernels)}")
    _check_choice("shortcut", s.shortcut, SHORTCUTS)
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


def _check_dense(s: Any) -> None:
    if not isinstance(s.compression, int | float) or not 0.0 < s.compression <= 1.0:
        raise SpecError(f"compression must be in (0, 1] (the fraction of channels a transition keeps), "
                        f"got {s.compression!r}")
    for stage in range(1, len(s.blocks)):
        if s.stage_in_channels(stage) < 1:
            raise SpecError(f"compression {s.compression:g} leaves stage {stage} with no channels "
                            f"(from {s.out_channels(stage - 1)}); raise it")


def _check_osa(s: Any) -> None:
    if not _is_int(s.osa_convs) or s.osa_convs < 1:
        raise SpecError(f"osa_convs must be an integer >= 1 (the 3x3 convolutions of an OSA module), "
                        f"got {s.osa_convs!r}")
    if not isinstance(s.inner_widths, tuple) or len(s.inner_widths) not in (0, len(s.blocks)):
        raise SpecError(f"inner_widths must give one width per stage ({len(s.blocks)} stages) or be empty (half "
                        f"of each stage's width), got {s.inner_widths!r}")
    for i, w in enumerate(s.inner_widths):
        if not _is_int(w) or w < 1:
            raise SpecError(f"inner_widths: stage {i} has width {w!r}; widths must be integers >= 1")
