"""The report page: every figure and table in one self-contained HTML string (plotly.js embedded once)."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import plotly.io as pio

from ..records import KINDS
from . import grid
from .data import ReportData
from .figures import acc_text, cost_figure, curves_figure, importance_figure, parallel_figure, plotted


def front_table(data: ReportData) -> str:
    front = data.front
    if front.empty:
        return "<p>The Pareto front is empty: no trial has completed.</p>"
    head = ("<tr><th>trial</th><th>architecture</th><th>val acc</th><th>test acc</th><th>MFLOPs</th><th>params</th>"
            "<th>latency ms</th><th>checkpoint</th></tr>")
    rows = "".join(
        f"<tr><td>{r.trial}</td><td>{html.escape(str(r.arch))}</td>"
        f"<td>{acc_text('', r.val_acc, data.val_images)}</td><td>{acc_text('', r.test_acc, data.test_images)}</td>"
        f"<td>{r.mflops:.3f}</td><td>{int(r.params):,}</td>"
        f"<td>{'' if pd.isna(r.latency_ms) else f'{r.latency_ms:.3f}'}</td><td>{html.escape(str(r.checkpoint))}</td>"
        "</tr>" for r in front.itertuples())
    return f"<table class='front'>{head}{rows}</table>"


def _split_sizes(data: ReportData) -> str:
    said = [f"{name} {n} images, so one image is {1 / n:.4f} of accuracy" for name, n in
            (("validation", data.val_images), ("test", data.test_images)) if n]
    return f" Splits: {'; '.join(said)}." if said else ""


def render(data: ReportData, *, color_by: str | None = None) -> str:
    """The whole page as one string; plotly.js is embedded once, so the file works offline."""
    color_by = color_by or (data.choices[0] if data.choices else None)
    figures = []
    cells = grid.cell_table(data) if data.grid else pd.DataFrame()
    if not cells.empty:
        figures += grid.figures(data, cells)
    figures += cost_figures(data, color_by)
    if not data.curves.empty:
        figures.append(("fig-curves", curves_figure(data)))
    if (data.trials["kind"] == "complete").sum() >= 2:
        figures.append(("fig-parallel", parallel_figure(data)))
    if data.importances:
        figures.append(("fig-importance", importance_figure(data)))
    parts = [_grid_intro(data, cells)] if data.grid else []
    for i, (div_id, fig) in enumerate(figures):
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=i == 0, div_id=div_id,
                                 config={"displaylogo": False}))
    counts = data.trials["kind"].value_counts().to_dict() if not data.trials.empty else {}
    summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in KINDS if counts.get(k))
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in data.notes)
    return _PAGE.format(title=html.escape(f"resnas study {data.study}"), study=html.escape(data.study),
                        summary=html.escape(summary or "no trials"), objectives=html.escape(", ".join(data.objectives)),
                        sizes=html.escape(_split_sizes(data)), notes=notes, figures="\n".join(parts),
                        table=front_table(data), n_figures=len(figures))


def cost_figures(data: ReportData, color_by: str | None) -> list[tuple[str, Any]]:
    if plotted(data).empty:
        return []
    ringed = f"ringed: the Pareto front of {', '.join(data.objectives)}"
    out = [("fig-acc-mflops", cost_figure(data, "mflops", f"Validation error vs MFLOPs ({ringed})",
                                          "MFLOPs (conv + linear multiply-accumulates), log scale", color_by))]
    if data.latency_device:
        out.append(("fig-acc-latency", cost_figure(data, "latency_ms", f"Validation error vs latency ({ringed})",
                                                   f"latency, ms (median, batch 1) on {data.latency_device}",
                                                   color_by)))
    return out


def _grid_intro(data: ReportData, cells: pd.DataFrame) -> str:
    info = data.info
    parts = [f"<p>{html.escape(info['description'])}</p>"] if info.get("description") else []
    if info.get("claim"):
        parts.append(f"<p><b>The paper's claim</b> (on its data, not ours): {html.escape(info['claim'])}</p>")
    parts.append("<h2>Cells: mean ± std over seeds</h2>")
    parts.append(grid.table_html(data, cells) if not cells.empty else
                 "<p class='note'>No cell has a fully trained trial yet.</p>")
    if info.get("paper"):
        parts.append("<p>The last column quotes the paper's published numbers for the matching setting; they were "
                     "measured on the paper's dataset and budget, not on this study's, and are not plotted.</p>")
    return "\n".join(parts)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<script>window.addEventListener('error', function () {{
  document.documentElement.dataset.errors = (+(document.documentElement.dataset.errors || 0)) + 1; }});</script>
<style>body{{font-family:system-ui,sans-serif;margin:24px;max-width:1200px}} table.front{{border-collapse:collapse}}
table.front td,table.front th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}} .note{{color:#a33}}</style>
</head><body data-expected-figures="{n_figures}">
<h1>Study {study}</h1>
<p>Trials: {summary}. Objectives: {objectives}. Accuracies are fractions of the validation split (model selection);
test accuracy is reported, never searched on.{sizes}</p>
{notes}
{figures}
<h2>Pareto front</h2>
{table}
<script>window.addEventListener('load', function () {{
  document.body.dataset.renderedFigures = document.querySelectorAll('.js-plotly-plot .main-svg').length > 0 ?
    document.querySelectorAll('.js-plotly-plot').length : 0; }});</script>
</body></html>
"""
