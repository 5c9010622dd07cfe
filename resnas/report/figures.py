"""The report's figures: plotly figures drawn from `ReportData`, nothing computed that `collect` did not."""

from __future__ import annotations

import html
import math

import pandas as pd
import plotly.graph_objects as go

from .data import ReportData

_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def _hover(r: pd.Series) -> str:
    acc = f"val {r['val_acc']:.4f}, test {r['test_acc']:.4f}" if pd.notna(r["val_acc"]) else (
        f"val {r['last_val_acc']:.4f} at epoch {r['epochs']}" if pd.notna(r["last_val_acc"]) else "not trained")
    extra = f"<br>{r['rejected']}" if r["kind"] == "rejected" else (
        f"<br>{html.escape(str(r['error']))}" if r["kind"] == "failed" and r["error"] else "")
    params = f"{int(r['params']):,}" if pd.notna(r["params"]) else "?"
    return (f"trial {r['trial']} ({r['kind']})<br>{html.escape(str(r['arch']))}<br>{acc}<br>"
            f"{r['mflops']:.3f} MFLOPs, {params} params{extra}")


def plotted(data: ReportData) -> pd.DataFrame:
    """The trials drawn in the cost figures: every evaluated architecture with a known cost."""
    t = data.trials[~data.trials["kind"].isin(["duplicate", "surplus", "running"]) & data.trials["mflops"].notna()]
    t = t.copy()
    t["y"] = t["val_acc"].where(t["kind"] == "complete", t["last_val_acc"]).fillna(0.0)
    return t


def cost_figure(data: ReportData, x: str, title: str, x_title: str, color_by: str | None):
    t = plotted(data)
    t = t[t[x].notna()]
    fig = go.Figure()
    done = t[t["kind"] == "complete"]
    groups = [(f"{color_by} = {v}", g) for v, g in done.groupby(f"choice_{color_by}", dropna=False)] \
        if color_by and f"choice_{color_by}" in done and len(done) else [("complete", done)]
    for i, (name, g) in enumerate(groups):
        fig.add_trace(go.Scatter(x=g[x], y=g["y"], mode="markers", name=name, text=[_hover(r) for _, r in g.iterrows()],
                                 hoverinfo="text", marker=dict(size=9, color=_COLOURS[i % len(_COLOURS)])))
    styles = {"stopped early": ("circle-open", "#7f7f7f"), "failed": ("x", "#d62728"),
              "rejected": ("x-thin-open", "#000000")}
    for kind, (symbol, colour) in styles.items():
        g = t[t["kind"] == kind]
        if len(g):
            fig.add_trace(go.Scatter(x=g[x], y=g["y"], mode="markers", name=kind, hoverinfo="text",
                                     text=[_hover(r) for _, r in g.iterrows()],
                                     marker=dict(size=9, symbol=symbol, color=colour, line=dict(width=1.5))))
    front = data.front
    front = front[front[x].notna()].sort_values(x)
    if len(front):
        fig.add_trace(go.Scatter(x=front[x], y=front["val_acc"], mode="lines", line_shape="hv", name="Pareto front",
                                 hoverinfo="skip", line=dict(color="#444", dash="dot")))
    if x == "mflops":
        _add_pruning(fig, data)
        _add_baselines(fig, data)
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title="validation accuracy", height=520,
                      legend=dict(orientation="v"), margin=dict(t=60, r=20))
    fig.update_xaxes(type="log")
    return fig


def _add_pruning(fig, data: ReportData) -> None:
    for i, r in data.pruning.iterrows():
        xs = [r["before_mflops"], r["after_recalibration_mflops"], r["after_mflops"]]
        ys = [r["before_val_acc"], r["after_recalibration_val_acc"], r["after_val_acc"]]
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines+markers", name="pruned" if i == 0 else None, showlegend=i == 0,
            legendgroup="pruned", line=dict(color="#9467bd"),
            marker=dict(symbol=["circle", "arrow", "star"], angleref="previous", size=[6, 12, 11]),
            hoverinfo="text", text=[f"trial {r['trial']} before pruning", f"pruned, BN recalibrated: "
                                    f"{r['removed']} blocks removed", f"pruned and fine-tuned: {r['checkpoint']}"]))


def _add_baselines(fig, data: ReportData) -> None:
    if data.baselines.empty:
        return
    b = data.baselines
    fig.add_trace(go.Scatter(x=b["mflops"], y=b["val_acc"], mode="markers+text", name="hand-designed baselines",
                             text=b["name"], textposition="top center", hoverinfo="text+x+y",
                             marker=dict(symbol="star-diamond", size=13, color="#000")))


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
