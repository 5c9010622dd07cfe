"""Reports: collect a study into DataFrames (`data`), then render one self-contained HTML page (`figures`,
`page`, `grid`) and CSV files; `browser` takes a PNG of the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UserError
from ..files import atomic_write_text
from ..storage import open_study
from . import grid
from .baselines import baseline_frame
from .browser import screenshot
from .data import ReportData, collect, pareto_markdown
from .page import render

__all__ = ["ReportData", "baseline_frame", "collect", "render", "write_report"]


def write_report(study_name: str, *, out_dir: str = "studies", storage: str | None = None,
                 reports_dir: str = "reports", color_by: str | None = None, png: bool = False,
                 baselines: bool = False, device: str = "auto") -> dict[str, Any]:
    """Write `<reports_dir>/<study>.html` and `.csv` (and `.png` with `png`); return paths and the front."""
    study = open_study(study_name, out_dir=out_dir, storage=storage)
    data = collect(study)
    if color_by and color_by not in data.choices:
        raise UserError(f"--color-by {color_by!r} is not a choice of this study; choices: {', '.join(data.choices)}")
    if baselines:
        data.baselines = baseline_frame(study, Path(out_dir) / study_name / "baselines", device=device)
    out = Path(reports_dir)
    html_path = atomic_write_text(out / f"{study_name}.html", render(data, color_by=color_by))
    csv_cols = [c for c in data.trials.columns if c not in ("last_val_acc",)]
    csv_path = atomic_write_text(out / f"{study_name}.csv", data.trials[csv_cols].to_csv(index=False))
    result = {"html": str(html_path), "csv": str(csv_path), "n_trials": len(data.trials),
              "pareto_size": int(data.trials["on_front"].sum()) if len(data.trials) else 0,
              "notes": data.notes, "markdown": pareto_markdown(data)}
    cells = grid.cell_table(data) if data.grid else pd.DataFrame()
    if not cells.empty:
        result["cells_csv"] = str(atomic_write_text(out / f"{study_name}-cells.csv", cells.to_csv(index=False)))
        result["markdown"] = grid.table_markdown(data, cells)
    if png:
        result["png"] = str(screenshot(html_path, out / f"{study_name}.png"))
    return result
