"""`resnas train`: one architecture trained, and its checkpoint written."""

from __future__ import annotations

import argparse
from typing import Any

from ...data import DataConfig
from ...fit import train_file
from ...train import TrainConfig
from ..flags import GIVEN, add_arch, add_common, add_data, add_train, arch_text, given, log


def arguments(p: argparse.ArgumentParser) -> None:
    add_arch(p, positional=False)
    p.add_argument("--out", default="model.pt", help="checkpoint path (default model.pt)")
    p.add_argument("--block-sparsity", type=float, default=GIVEN,
                   help="L1 weight on a learnable gate per residual branch (SSS), for pruning later")
    add_common(p)
    add_data(p)
    add_train(p, epochs=TrainConfig.epochs)


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = train_file(arch_text(args), TrainConfig(**given(TrainConfig, args)), DataConfig(**given(DataConfig, args)),
                     out=args.out, device=args.device, progress=log(args))
    if not args.json:
        print(f"val acc {out['val_acc']:.4f} (epoch {out['best_epoch']})  test acc {out['test_acc']:.4f}  "
              f"{out['seconds']:.1f}s  -> {out['checkpoint']}")
    return out
