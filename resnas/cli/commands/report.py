"""`resnas report`: a study's interactive HTML report (plotly, self-contained) and CSV."""

from __future__ import annotations

import argparse
from typing import Any

from ...errors import UserError
from ...report import write_report
from ...search import SearchConfig
from ..flags import add_common


def arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("study_name", nargs="?", metavar="STUDY", help="a study under --out-dir")
    s.add_argument("--study", help="the study's name in --storage")
    s.add_argument("--storage", help="Optuna RDB URL; default the study's sqlite file under --out-dir")
    s.add_argument("--out-dir", default=SearchConfig.out_dir)
    s.add_argument("--reports-dir", default="reports")
    s.add_argument("--color-by", help="colour points by this choice (default the space's first)")
    s.add_argument("--format", choices=["html", "png"], default="html",
                   help="png: also a screenshot of the page (needs Chromium)")
    s.add_argument("--baselines", action="store_true",
                   help="train (or reuse) WRN-16-4 and ResNet-20 with the study's recipe as reference points")
    add_common(s)


def run(args: argparse.Namespace) -> dict[str, Any]:
    name = args.study_name or args.study
    if not name:
        raise UserError("name a study: resnas report STUDY (or --storage URL --study NAME)")
    result = write_report(name, out_dir=args.out_dir, storage=args.storage, reports_dir=args.reports_dir,
                          color_by=args.color_by, png=args.format == "png", baselines=args.baselines,
                          device=args.device)
    if not args.json:
        print(result["markdown"])
        for note in result["notes"]:
            print(f"note: {note}")
        print("wrote " + ", ".join(result[k] for k in ("html", "csv", "cells_csv", "png") if k in result))
    return {k: result[k] for k in ("html", "csv", "cells_csv", "n_trials", "pareto_size", "png") if k in result}
