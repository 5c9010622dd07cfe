"""Flags several commands share. Flags that set a config field have that field's name as their destination and no
argparse default (SUPPRESS), so the namespace holds exactly the flags the user gave; defaults, choices and ranges
are read from the config dataclasses, where they are stated once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from ..data import DATASETS, DataConfig
from ..presets import PRESET_PATTERNS
from ..train import COMPILE_MODES, SCHEDULES, TrainConfig

GIVEN = argparse.SUPPRESS  # a config flag the user did not give is absent from the namespace


def given(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of config dataclass `cls` that the command line set."""
    return {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}


def comma_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(","))


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a comma list of integers such as 0,1,2; got {text!r}") from None


def default(cls: type, name: str) -> str:
    return f"default {getattr(cls, name)}"


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else there")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")


def add_data(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=GIVEN, help=f"one of {DATASETS} ({default(DataConfig, 'dataset')}, "
                   "embedded)")
    g.add_argument("--data-dir", default=GIVEN, help="folder holding (or receiving, with --download) CIFAR's "
                   "python batches")
    g.add_argument("--download", action="store_true", default=GIVEN, help="download CIFAR if it is not there")
    g.add_argument("--val-fraction", type=float, default=GIVEN, help="share of training data held out for "
                   f"validation (model selection); {default(DataConfig, 'val_fraction')}")
    g.add_argument("--resize", type=int, default=GIVEN, help="imagefolder: side in pixels images are resized to "
                   "(default 32)")


def add_train(p: argparse.ArgumentParser, epochs: int) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=GIVEN, help=f"(maximum) epochs per model; default {epochs}")
    g.add_argument("--batch-size", type=int, default=GIVEN, help=default(TrainConfig, "batch_size"))
    g.add_argument("--lr", type=float, default=GIVEN, help=f"peak SGD learning rate; {default(TrainConfig, 'lr')}")
    g.add_argument("--weight-decay", type=float, default=GIVEN, help=default(TrainConfig, "weight_decay"))
    g.add_argument("--schedule", choices=SCHEDULES, default=GIVEN, help=default(TrainConfig, "schedule"))
    g.add_argument("--label-smoothing", type=float, default=GIVEN, help=default(TrainConfig, "label_smoothing"))
    g.add_argument("--seed", type=int, default=GIVEN, help=default(TrainConfig, "seed"))
    g.add_argument("--compile", nargs="?", const="default", metavar="MODE", default=GIVEN,
                   help=f"torch.compile the model; MODE one of {', '.join(m for m in COMPILE_MODES if m)}")
    g.add_argument("--quiet", action="store_true", help="no progress output")


def add_arch(p: argparse.ArgumentParser, positional: bool) -> None:
    if positional:
        p.add_argument("arch", nargs="?", help=f"a preset ({PRESET_PATTERNS}), an ArchSpec .json file or a "
                       "checkpoint")
    p.add_argument("--preset", help="a preset name, e.g. wrn-16-2 (adapted to the dataset's channels and classes)")
    p.add_argument("--spec", help="ArchSpec JSON file")


def arch_text(args: argparse.Namespace) -> str:
    return args.spec or getattr(args, "arch", None) or args.preset or ""


def log(args: argparse.Namespace) -> Callable[[str], None] | None:
    """Where progress lines go: stderr, unless --json or --quiet."""
    return None if args.json or args.quiet else (lambda line: print(line, file=sys.stderr))
