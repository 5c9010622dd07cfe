"""`resnas export`: a checkpoint (or a search trial's) as a torchvision state_dict, ONNX or TorchScript file."""

from __future__ import annotations

import argparse
from typing import Any

from ...export import FORMATS, export_checkpoint
from .. import text
from ..trial_ref import add_trial_ref, checkpoint_path


def arguments(s: argparse.ArgumentParser) -> None:
    add_trial_ref(s)
    s.add_argument("--format", required=True, choices=FORMATS)
    s.add_argument("--out", required=True, help="the file to write (.pth or .safetensors for torchvision)")
    s.add_argument("--opset", type=int, help="onnx: the ONNX opset to target; default the exporter's")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else there")


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = export_checkpoint(checkpoint_path(args), format=args.format, out=args.out, opset=args.opset)
    if not args.json:
        print(text.export_line(out))
    return out
