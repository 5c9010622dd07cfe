"""The registry of `resnas` commands: each name maps to its module in this package and its one-line help. A command
module defines `arguments(parser)`, which adds its flags, and `run(args) -> dict`, which calls the library, prints a
human summary unless `--json` and returns the command's JSON record.

A command's module is imported by name, and only for the command being run: what the commands import between them
(optuna, scikit-learn, torchvision, pandas, plotly) costs several times torch's own start-up, which `resnas
--version`, `resnas spaces` and a bad spec should not pay. This is the one place a resnas module is imported other
than at the top of a file (tests/test_architecture.py holds that), and it imports nothing but its own commands.
"""

from __future__ import annotations

import importlib
from types import ModuleType

COMMANDS: dict[str, tuple[str, str]] = {
    "spaces": ("spaces", "list the shipped search spaces, their choices and sizes"),
    "measure": ("measure", "params, MFLOPs and latency of a preset, a spec JSON file or a checkpoint"),
    "train": ("train", "train one architecture and write a checkpoint"),
    "eval": ("evaluate", "evaluate a checkpoint on its dataset's validation and test splits"),
    "search": ("search", "multi-objective architecture search with early stopping"),
    "prune": ("prune", "remove residual blocks whose learned branches are near zero"),
    "import": ("import_", "a torchvision/timm ResNet state_dict (.pth, .pt, .safetensors) as a resnas checkpoint"),
    "export": ("export", "a checkpoint as a torchvision state_dict, ONNX or TorchScript file"),
    "report": ("report", "HTML report (plotly, self-contained) and CSV of a study"),
}


def load(name: str) -> ModuleType:
    """The module of command `name` (a key of COMMANDS)."""
    return importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
