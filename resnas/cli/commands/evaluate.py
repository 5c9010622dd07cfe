"""`resnas eval`: a checkpoint (or a search trial's) evaluated on the validation and test splits it was trained with."""

from __future__ import annotations

import argparse
from typing import Any

from ...fit import evaluate_file
from ..flags import add_common
from ..trial_ref import add_trial_ref, checkpoint_path


def arguments(p: argparse.ArgumentParser) -> None:
    add_trial_ref(p)
    add_common(p)


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = evaluate_file(checkpoint_path(args), device=args.device)
    if not args.json:
        print(f"val acc {out['val_acc']:.4f}  test acc {out['test_acc']:.4f}  params {out['params']:,}  "
              f"MFLOPs {out['mflops']:.2f}")
    return out
