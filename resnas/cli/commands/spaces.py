"""`resnas spaces`: the shipped search spaces, their choices and sizes, and the preset names."""

from __future__ import annotations

import argparse
from typing import Any

from ...presets import PRESET_PATTERNS
from ...spaces import load_space, shipped
from .. import text


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="spaces to show (names or .toml paths); default all shipped")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> dict[str, Any]:
    found = [load_space(n) for n in (args.names or shipped())]
    out = {"spaces": [{"name": s.name, "path": str(s.path), "description": s.description, "size": s.size(),
                       "fixed": s.fixed, "choices": dict(s.describe_choices())} for s in found],
           "presets": PRESET_PATTERNS}
    if not args.json:
        print(text.spaces_listing(out["spaces"], PRESET_PATTERNS))
    return out
