"""`resnas prune`: residual blocks whose learned branches are near zero removed from a checkpoint, or from every
checkpoint of a study's Pareto front."""

from __future__ import annotations

import argparse
from typing import Any

from ...errors import UserError
from ...importance import CRITERIA
from ...prune import PruneConfig, prune_checkpoint, prune_pareto
from ...search import SearchConfig
from .. import text
from ..flags import add_common


def arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("checkpoint", nargs="?", help="a checkpoint from resnas train or search")
    s.add_argument("--criterion", default="norm", choices=list(CRITERIA),
                   help="norm (||F(x)||/||x||, default), bn (last BN scale of the branch), gate (learned gate)")
    g = s.add_argument_group("how much to remove (exactly one)")
    g.add_argument("--threshold", type=float, help="remove blocks whose importance is below this")
    g.add_argument("--target-mflops", type=float, help="remove least important first until MFLOPs <= this")
    g.add_argument("--target-ratio", type=float, help="... until MFLOPs fell by at least this fraction (0.3)")
    g.add_argument("--max-acc-drop", type=float, help="... while val accuracy stays within this fraction")
    s.add_argument("--finetune", type=int, default=0, metavar="EPOCHS", help="fine-tune the pruned model")
    s.add_argument("--random-draws", type=int, default=5, help="random-removal baseline draws; default 5")
    s.add_argument("--out", help="pruned checkpoint path; default <input>-pruned.pt")
    s.add_argument("--study", help="with --pareto: prune every Pareto-front checkpoint of this study")
    s.add_argument("--pareto", action="store_true")
    s.add_argument("--out-dir", default=SearchConfig.out_dir)
    s.add_argument("--storage")
    add_common(s)


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = PruneConfig(criterion=args.criterion, threshold=args.threshold, target_mflops=args.target_mflops,
                         target_ratio=args.target_ratio, max_acc_drop=args.max_acc_drop,
                         finetune_epochs=args.finetune, random_draws=args.random_draws)
    if args.study or args.pareto:
        if not (args.study and args.pareto) or args.checkpoint:
            raise UserError("prune a study's front with --study NAME --pareto (and no CHECKPOINT)")
        records = prune_pareto(args.study, config, out_dir=args.out_dir, storage=args.storage, device=args.device)
        if not args.json:
            for r in records:
                print(f"trial {r['trial']}: " + (f"error: {r['error']}" if "error" in r else text.prune_line(r)))
        return {"study": args.study, "results": records}
    if not args.checkpoint:
        raise UserError("name a CHECKPOINT to prune, or --study NAME --pareto")
    record = prune_checkpoint(args.checkpoint, config, out=args.out, device=args.device)
    if not args.json:
        print(text.block_table(record))
        print(text.prune_line(record))
    return record
