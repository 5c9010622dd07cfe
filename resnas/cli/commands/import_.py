"""`resnas import`: a torchvision/timm ResNet state_dict as a resnas checkpoint (the architecture inferred)."""

from __future__ import annotations

import argparse
from typing import Any

from ...data import DataConfig
from ...importer import import_file
from .. import text
from ..flags import add_data, given


def arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("file", help="a state_dict in torchvision's ResNet layout (conv1, bn1, layer1.0.conv1, ..., fc)")
    s.add_argument("--out", required=True, help="the resnas checkpoint to write")
    s.add_argument("--arch", help="a preset or ArchSpec .json file the inferred architecture must match")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else there")
    add_data(s)


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = given(DataConfig, args)
    out = import_file(args.file, out=args.out, arch=args.arch, data_config=DataConfig(**data) if data else None)
    if not args.json:
        print(text.import_line(out))
    return out
