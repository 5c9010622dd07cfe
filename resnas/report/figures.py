"""The report's figures: plotly figures drawn from `ReportData`, nothing computed that `collect` did not."""

from __future__ import annotations

import html
import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .data import ReportData

_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def log_error(acc, images: int | None) -> pd.Series:
    """1 - accuracy for a log axis. A perfect score has no logarithm, so it is drawn half an image below the
    smallest possible error (at 1e-4 when the split's size is unknown); its hover says 0 wrong."""
    floor = 0.5 / images if images else 1e-4
    return (1 - pd.Series(acc, dtype=float)).clip(lower=floor)


def log_range(values) -> list[float]:
    """A log axis range (decades) that just holds `values`, so that they fill the plot."""
    v = [float(x) for x in values if pd.notna(x) and x > 0]
    lo, hi = math.log10(min(v)), math.log10(max(v))
    pad = max(0.05 * (hi - lo), 0.08)
    return [lo - pad, hi + pad]


def log_axis(values) -> dict:
    """Axis settings for a log error axis fitted to `values`, ticked at 1-2-5 steps and labelled as plain fractions
    (plotly's default log ticks label 2-9 with lone digits)."""
    lo, hi = log_range(values)
    ticks = []
    for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9)):  # finer steps when the range is under a decade
        ticks = [m * 10.0 ** e for e in range(math.floor(lo), math.ceil(hi) + 1) for m in mantissas
                 if lo <= math.log10(m * 10.0 ** e) <= hi]
        if len(ticks) >= 3:
            break
    return dict(type="log", range=[lo, hi], tickvals=ticks, ticktext=[f"{v:.4g}" for v in ticks])


def acc_text(label: str, acc: float, images: int | None) -> str:
    """`val 0.9907 (2 of 216 wrong)`: four decimals tell one image from another on splits up to ~5,000 images."""
    if pd.isna(acc):
        return f"{label} ?"
    return f"{label} {acc:.4f}".strip() + (f" ({round((1 - acc) * images)} of {images} wrong)" if images else "")


def error_title(what: str, images: int | None, *, log: bool = True) -> str:
    scale = ", log scale" if log else ""
    step = f"<br>1 of {images} validation images = {1 / images:.4f}" if images else ""
    return f"{what} (1 - accuracy){scale}{step}"


def _hover(r: pd.Series, data: ReportData) -> str:
    if r["kind"] == "complete":
        acc = f"{acc_text('val', r['val_acc'], data.val_images)}, {acc_text('test', r['test_acc'], data.test_images)}"
    elif pd.notna(r["last_val_acc"]):
        acc = f"{acc_text('val', r['last_val_acc'], data.val_images)} at epoch {r['epochs']}, where it stopped"
    else:
        acc = "not trained"
    extra = f"<br>{r['rejected']}" if r["kind"] == "rejected" else (
        f"<br>{html.escape(str(r['error']))}" if r["kind"] == "failed" and r["error"] else "")
    params = f"{int(r['params']):,}" if pd.notna(r["params"]) else "?"
    front = ", on the Pareto front" if r["on_front"] else ""
    return (f"trial {r['trial']} ({r['kind']}{front})<br>{html.escape(str(r['arch']))}<br>{acc}<br>"
            f"{r['mflops']:.3f} MFLOPs, {params} params{extra}")


def plotted(data: ReportData) -> pd.DataFrame:
    """The trials drawn in the cost figures: every evaluated architecture with a known cost."""
    t = data.trials[~data.trials["kind"].isin(["duplicate", "surplus", "running"]) & data.trials["mflops"].notna()]
    t = t.copy()
    t["y"] = t["val_acc"].where(t["kind"] == "complete", t["last_val_acc"]).fillna(0.0)
    return t


_ASIDE = {"stopped early": ("circle-open", "#7f7f7f"), "failed": ("x", "#d62728"),
          "rejected": ("x-thin-open", "#000000")}


def cost_figure(data: ReportData, x: str, title: str, x_title: str, color_by: str | None):
    """Error of the fully trained trials against cost on log-log axes, fitted to them, the pruning arrows and the
    baselines; the trials that stopped before the last epoch sit in a small panel below at the accuracy they had
    then, so their 0.1-0.9 rung accuracies do not squeeze the front into the top of the plot."""
    t = plotted(data)
    t = t[t[x].notna()]
    done, aside = t[t["kind"] == "complete"], t[t["kind"].isin(list(_ASIDE))]
    two = len(done) > 0 and len(aside) > 0
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.07,
                        subplot_titles=("", "not trained to the end: validation accuracy when stopped")) \
        if two else go.Figure()
    main, low = (dict(row=1, col=1), dict(row=2, col=1)) if two else ({}, {})
    _add_done(fig, data, done, x, color_by, main)
    for kind, (symbol, colour) in _ASIDE.items():
        g = aside[aside["kind"] == kind]
        if len(g):
            fig.add_trace(go.Scatter(x=g[x], y=g["y"], mode="markers", name=kind, hoverinfo="text",
                                     text=[_hover(r, data) for _, r in g.iterrows()],
                                     marker=dict(size=8, symbol=symbol, color=colour, line=dict(width=1.5))), **low)
    if x == "mflops" and len(done):
        _add_pruning(fig, data, main)
        _add_baselines(fig, data, main)
    fig.update_layout(title=title, height=640 if two else 520, legend=dict(orientation="v"), margin=dict(t=60, r=20))
    fig.update_annotations(font_size=12)
    fig.update_xaxes(type="log")
    fig.update_xaxes(title_text=x_title, **(low if two else {}))
    if len(done):
        main_ys = [v for tr in fig.data if tr.yaxis in (None, "y") for v in tr.y]
        fig.update_yaxes(**log_axis(main_ys), title_text=error_title("validation error", data.val_images), **main)
    if len(aside):
        fig.update_yaxes(range=[-0.04, 1.04], title_text="val acc" if two else "validation accuracy when stopped",
                         **low)
    return fig


def _add_done(fig, data: ReportData, done: pd.DataFrame, x: str, color_by: str | None, where: dict) -> None:
    """Completed trials coloured by a choice, the front's members ringed, and the front's staircase where the
    study's objectives are exactly this figure's two axes (on other axes the front is not a staircase)."""
    groups = [(f"{color_by} = {v}", g) for v, g in done.groupby(f"choice_{color_by}", dropna=False)] \
        if color_by and f"choice_{color_by}" in done and len(done) else [("complete", done)]
    for i, (name, g) in enumerate(groups):
        if not len(g):
            continue
        ring = g["on_front"].astype(bool).map({True: 2.0, False: 0.0})
        fig.add_trace(go.Scatter(x=g[x], y=log_error(g["val_acc"], data.val_images), mode="markers", name=name,
                                 text=[_hover(r, data) for _, r in g.iterrows()], hoverinfo="text",
                                 marker=dict(size=9, color=_COLOURS[i % len(_COLOURS)],
                                             line=dict(color="#222", width=list(ring)))), **where)
    front = data.front
    front = front[front[x].notna()].sort_values(x)
    if len(front) > 1 and set(data.objectives) == {"val_acc", x}:
        fig.add_trace(go.Scatter(x=front[x], y=log_error(front["val_acc"], data.val_images), mode="lines",
                                 line_shape="hv", name="Pareto front", hoverinfo="skip",
                                 line=dict(color="#222", width=1.5)), **where)


def _add_pruning(fig, data: ReportData, where: dict) -> None:
    stages = ("before", "after_recalibration", "after")
    for i, r in data.pruning.iterrows():
        accs = [r[f"{s}_val_acc"] for s in stages]
        tests = [r.get(f"{s}_test_acc") for s in stages]
        said = [f"trial {r['trial']} before pruning", f"pruned ({r['removed']} blocks removed), BN recalibrated",
                f"pruned{' and fine-tuned' if r['finetuned'] else ', not fine-tuned'}: "
                f"{html.escape(str(r['checkpoint']))}"]
        fig.add_trace(go.Scatter(
            x=[r[f"{s}_mflops"] for s in stages], y=log_error(accs, data.val_images), mode="lines+markers",
            name="pruned: before -> recalibrated -> fine-tuned", showlegend=i == 0, legendgroup="pruned",
            line=dict(color="#9467bd"), marker=dict(symbol=["circle", "arrow", "star"], angleref="previous",
                                                    size=[7, 13, 12]),
            hoverinfo="text", text=[f"{s}<br>{acc_text('val', a, data.val_images)}, "
                                    f"{acc_text('test', b, data.test_images)}<br>{r[f'{st}_mflops']:.3f} MFLOPs"
                                    for s, a, b, st in zip(said, accs, tests, stages, strict=True)]), **where)


def _add_baselines(fig, data: ReportData, where: dict) -> None:
    if data.baselines.empty:
        return
    b = data.baselines
    fig.add_trace(go.Scatter(x=b["mflops"], y=log_error(b["val_acc"], data.val_images), mode="markers+text",
                             name="hand-designed baselines", text=b["name"], textposition="top center",
                             hovertext=[f"{n}<br>{acc_text('val', a, data.val_images)}, {m:.3f} MFLOPs"
                                        for n, a, m in zip(b["name"], b["val_acc"], b["mflops"], strict=True)],
                             hoverinfo="text", marker=dict(symbol="star-diamond", size=13, color="#000")), **where)


def curves_figure(data: ReportData):
    fig = go.Figure()
    arch = data.trials.set_index("trial")["arch"].to_dict()
    for trial, g in data.curves[data.curves["kind"].isin(["complete", "stopped early", "failed"])].groupby("trial"):
        kind = g["kind"].iloc[0]
        fig.add_trace(go.Scatter(x=g["epoch"], y=g["val_acc"], mode="lines+markers", showlegend=False,
                                 line=dict(width=1.2, color="#1f77b4" if kind == "complete" else "#9a9a9a"),
                                 marker=dict(size=4), hoverinfo="text",
                                 text=[f"trial {trial} ({kind})<br>{html.escape(str(arch.get(trial)))}<br>epoch {e}: "
                                       f"{v:.4f}" for e, v in zip(g["epoch"], g["val_acc"], strict=True)]))
    fig.update_layout(title="Learning curves (grey: stopped early at a rung)", xaxis_title="epoch",
                      yaxis_title="validation accuracy", height=460)
    return fig


def parallel_figure(data: ReportData):
    done = data.trials[(data.trials["kind"] == "complete")]
    dims = []
    for c in data.choices:
        col = done[f"choice_{c}"]
        if col.isna().all():
            continue
        labels = sorted(col.dropna().astype(str).unique())
        codes = col.astype(str).map({v: i for i, v in enumerate(labels)}).fillna(-1)
        dims.append(dict(label=c, values=codes, tickvals=list(range(len(labels))), ticktext=labels))
    dims.append(dict(label="log10 MFLOPs", values=done["mflops"].map(math.log10)))
    dims.append(dict(label="val acc", values=done["val_acc"]))
    fig = go.Figure(go.Parcoords(dimensions=dims, line=dict(color=done["val_acc"], colorscale="Viridis",
                                                               showscale=True)))
    fig.update_layout(title="Choices against accuracy (completed trials)", height=460, margin=dict(l=80, r=80))
    return fig


def importance_figure(data: ReportData):
    names = list(data.importances)[::-1]
    fig = go.Figure(go.Bar(x=[data.importances[n] for n in names], y=names, orientation="h"))
    fig.update_layout(title="Choice importance for validation accuracy (fANOVA, completed trials)",
                      xaxis_title="importance", height=120 + 40 * len(names))
    return fig
