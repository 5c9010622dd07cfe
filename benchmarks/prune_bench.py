"""Pruning on digits: a WRN trained normally and one trained with block sparsity (SSS gates), pruned at several
FLOPs targets by the criterion and by random removal of as many blocks, before and after fine-tuning.

    python benchmarks/prune_bench.py --preset wrn-40-2 --epochs 15 --ratios 0.2,0.3,0.4
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from resnas.data import DataConfig, load_data
from resnas.fit import fit, save
from resnas.presets import preset
from resnas.prune import PruneConfig, prune_checkpoint
from resnas.spec import ArchSpec
from resnas.train import TrainConfig


def trained(path: Path, spec: ArchSpec, epochs: int, sparsity: float) -> Path:
    config = TrainConfig(epochs=epochs, block_sparsity=sparsity)
    return save(fit(spec, load_data(DataConfig()), config), path, train_config=config, data_config=DataConfig())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="wrn-40-2")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--sparsity", type=float, default=0.2)
    p.add_argument("--ratios", default="0.2,0.3,0.4")
    p.add_argument("--finetune", type=int, default=3)
    args = p.parse_args()
    base = preset(args.preset).replace(in_channels=1)
    with tempfile.TemporaryDirectory() as tmp:
        models = {"normal": (trained(Path(tmp) / "normal.pt", base, args.epochs, 0.0), "norm"),
                  "sparsity": (trained(Path(tmp) / "sss.pt", base.replace(gates=True), args.epochs, args.sparsity),
                               "gate")}
        print(f"{args.preset} on digits, {args.epochs} epochs; block sparsity {args.sparsity}; fine-tune "
              f"{args.finetune} epochs. Accuracies are validation fractions (216 images: 1 image = 0.0046).")
        print(f"{'model':<9} {'criterion':<9} {'target':>6} {'removed':>7} {'MFLOPs cut':>10} {'val before':>10} "
              f"{'criterion':>9} {'random':>7} {'fine-tuned':>10}")
        for name, (path, crit) in models.items():
            for ratio in (float(r) for r in args.ratios.split(",")):
                r = prune_checkpoint(path, PruneConfig(criterion=crit, target_ratio=ratio, random_draws=5,
                                                       finetune_epochs=args.finetune),
                                     out=Path(tmp) / f"{name}-{ratio}.pt", device="cpu")
                b, recal, tuned = r["before"], r["after_recalibration"], r["after_finetune"]
                rnd = r["random_baseline"]["val_acc_mean"]
                print(f"{name:<9} {crit:<9} {ratio:>6.2f} {len(r['removed']):>7} "
                      f"{1 - recal['mflops'] / b['mflops']:>10.1%} {b['val_acc']:>10.4f} {recal['val_acc']:>9.4f} "
                      f"{rnd:>7.4f} {tuned['val_acc']:>10.4f}", flush=True)


if __name__ == "__main__":
    main()
