"""A search trial's checkpoint named instead of a file (`--study NAME --trial N`), for the commands that read one."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..artifacts import trial_checkpoint
from ..errors import UserError
from ..search import SearchConfig


def add_trial_ref(p: argparse.ArgumentParser) -> None:
    """--study/--trial: a search trial's checkpoint, fetched from the study's artifact store if it is elsewhere."""
    p.add_argument("checkpoint", nargs="?", help="a checkpoint file (or name a study's trial instead)")
    g = p.add_argument_group("a search trial's checkpoint instead of a file")
    g.add_argument("--study", help="the study's name")
    g.add_argument("--trial", type=int, help="the trial's number")
    g.add_argument("--out-dir", default=SearchConfig.out_dir, help="folder of study folders (and of the download "
                   "cache)")
    g.add_argument("--storage", help="Optuna RDB URL; default the study's sqlite file under --out-dir")


def checkpoint_path(args: argparse.Namespace) -> str | Path:
    """The CHECKPOINT argument, or the checkpoint of --study NAME --trial N."""
    if (args.study is None) != (args.trial is None) or bool(args.checkpoint) == (args.study is not None):
        raise UserError("name a CHECKPOINT file, or a search trial with --study NAME --trial N (not both)")
    if args.checkpoint:
        return args.checkpoint
    return trial_checkpoint(args.study, args.trial, out_dir=args.out_dir, storage=args.storage)
