"""Grid studies read as the papers print them: one row per cell (one setting of every swept choice), the mean and
spread over seeds, the cell's size and cost, and the paper's published number beside ours where the study config
names one (marked as the paper's, on the paper's data).

Pure pandas on `ReportData`; `sweep_figure` and `prune_figure` draw the same numbers.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from .. import records as R
from .data import ReportData
from .figures import acc_text, error_title, log_axis, log_error

METRICS = ("val_acc", "test_acc", "train_acc")


def metrics(data: ReportData) -> tuple[str, ...]:
    """The accuracies a cell averages: validation, test, training, and test on resized images where recorded."""
    return METRICS + tuple(c for c in data.trials.columns if c.startswith(R.at_size_column("")))


def cell_keys(choices: list[str]) -> list[str]:
    """The columns that name a cell: every sampled choice except the training seed."""
    return [f"choice_{c}" for c in choices if c != "seed"]


def cell_table(data: ReportData) -> pd.DataFrame:
    """One row per cell of the fully trained trials: n (seeds), mean and std of each accuracy, params, MFLOPs, depth;
    with pruning curves, the mean FLOPs cut and accuracies at each ratio; with published numbers, a `paper` column."""
    keys = cell_keys(data.choices)
    done = data.trials[data.trials["kind"] == "complete"]
    if done.empty or not keys:
        return pd.DataFrame()
    stats = {"n": ("trial", "count"), "params": ("params", "first"), "mflops": ("mflops", "first"),
             "depth": ("depth", "first")}
    for m in metrics(data):
        stats[f"{m}_mean"] = (m, "mean")
        stats[f"{m}_std"] = (m, "std")
    table = done.groupby(keys, sort=False, dropna=False).agg(**stats).reset_index()
    levels = {k: data.levels.get(k.removeprefix("choice_")) or _order(table[k]) for k in keys}
    ranks = {k: {str(v): i for i, v in enumerate(vals)} for k, vals in levels.items()}  # the grid's order
    table = table.sort_values(keys, key=lambda col: col.astype(str).map(ranks[col.name])).reset_index(drop=True)
    curves = data.prune_curves
    if not curves.empty:
        merged = curves.merge(done[["trial", *keys]], on="trial")
        per = merged.groupby([*keys, "ratio"], sort=False).agg(
            cut=("mflops_cut", "mean"), pruned=("val_acc", "mean"), random=("random_val_acc", "mean")).reset_index()
        wide = per.pivot_table(index=keys, columns="ratio", values=["cut", "pruned", "random"], sort=False)
        wide.columns = [f"{what}@{ratio:g}" for what, ratio in wide.columns]
        table = table.merge(wide.reset_index(), on=keys, how="left")
    entries = data.info.get("paper", [])
    if entries:
        table["paper"] = [paper_for(row, entries) for row in table.to_dict("records")]
    return table


def paper_for(row: dict[str, Any], entries: list[dict[str, Any]]) -> str:
    """The published numbers whose `where` matches this cell, each with its metric, data and source."""
    hits = [e for e in entries if all(_same(row.get(f"choice_{k}"), v) for k, v in e["where"].items())]
    return "; ".join(f"{e['value']:g} {e['metric']} ({e['data']}; {e['source']})" for e in hits)


def _same(ours: Any, theirs: Any) -> bool:
    label = ",".join(map(str, theirs)) if isinstance(theirs, list) else theirs
    return ours is not None and str(ours) == str(label)


def _pm(mean: float, std: float) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.4f}" + ("" if pd.isna(std) else f" ± {std:.4f}")


def _rows(data: ReportData, table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    keys = cell_keys(data.choices)
    head = [k.removeprefix("choice_") for k in keys] + ["seeds", "depth", "params", "MFLOPs", "val acc", "test acc",
                                                         "train acc (eval mode)"]
    head += [f"test acc at {m.rsplit('_', 1)[1]}x{m.rsplit('_', 1)[1]} px" for m in metrics(data)[len(METRICS):]]
    ratios = sorted({c.split("@")[1] for c in table.columns if c.startswith("cut@")}, key=float)
    head += [f"{what} @ {float(r):.0%} target" for r in ratios for what in ("FLOPs cut", "val acc pruned",
                                                                             "random removal")]
    has_paper = "paper" in table
    if has_paper:
        head.append("paper's published number (their data, not ours)")
    rows = []
    for r in table.to_dict("records"):  # per-column types: iterrows would turn ints into floats beside a float
        cells = [str(r[k]) for k in keys] + [str(int(r["n"])), "" if pd.isna(r["depth"]) else str(int(r["depth"])),
                                             f"{int(r['params']):,}", f"{r['mflops']:.3f}"]
        cells += [_pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics(data)]
        for ratio in ratios:
            cells += [f"{r[f'cut@{ratio}']:.1%}", f"{r[f'pruned@{ratio}']:.4f}", f"{r[f'random@{ratio}']:.4f}"]
        if has_paper:
            cells.append(r["paper"])
        rows.append(cells)
    return head, rows


def table_html(data: ReportData, table: pd.DataFrame) -> str:
    head, rows = _rows(data, table)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return ("<table class='front grid'><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + body + "</table>")


def table_markdown(data: ReportData, table: pd.DataFrame) -> str:
    head, rows = _rows(data, table)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _order(values: pd.Series) -> list[Any]:
    """Numbers numerically, anything else in first-seen order (the grid's own order)."""
    unique = list(dict.fromkeys(values.dropna()))
    try:
        return sorted(unique, key=float)
    except (TypeError, ValueError):
        return unique


def sweep_figure(data: ReportData, table: pd.DataFrame):
    """Error against the swept variable (`[report] x`), one line per `series` value; whiskers are one std over
    seeds. Training error (eval mode) is drawn dashed where it was measured, as in the ResNet paper's figures.
    The axis is linear (a training error of 0 has no logarithm) and autoscaled to the cells, which are fully
    trained trials only."""
    report = data.info.get("report", {})
    x = report.get("x") or (data.choices[0] if data.choices else "depth")
    x_col = x if x in table else f"choice_{x}"
    series = report.get("series")
    s_cols = [k for k in cell_keys(data.choices) if k != x_col] if series is None else \
        [f"choice_{c}" for c in ([series] if isinstance(series, str) else series)]
    groups = [(", ".join(f"{c.removeprefix('choice_')} = {v}" for c, v in zip(s_cols, key, strict=True)), g)
              for key, g in table.groupby(s_cols, sort=False)] if s_cols else [("", table)]
    fig = go.Figure()
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    for i, (name, g) in enumerate(groups):
        g = g.set_index(x_col).loc[_order(g[x_col])].reset_index()
        colour = colours[i % len(colours)]
        hover = [f"{name + '<br>' if name else ''}{x} = {r[x_col]}, {int(r['n'])} seeds<br>"
                 f"{_cell_accuracies(r, data)}" for r in g.to_dict("records")]
        for metric, dash, label in (("val_acc", "solid", "validation error"), ("train_acc", "dash", "training error")):
            if g[f"{metric}_mean"].isna().all():
                continue
            fig.add_trace(go.Scatter(
                x=g[x_col].astype(str), y=1 - g[f"{metric}_mean"], mode="lines+markers",
                name=f"{name} {label}".strip(), line=dict(color=colour, dash=dash), hoverinfo="text", text=hover,
                error_y=dict(type="data", array=g[f"{metric}_std"].fillna(0), visible=True)))
    fig.update_layout(title=f"Error vs {x} (mean over seeds, whiskers: one std)", xaxis_title=x,
                      yaxis_title=error_title("error", data.val_images, log=False), height=480)
    fig.update_xaxes(type="category")
    return fig


def _cell_accuracies(r: dict[str, Any], data: ReportData) -> str:
    """Mean ± std over seeds, with the mean's error in images where the split's size is known."""
    out = []
    for metric, images in (("val_acc", data.val_images), ("test_acc", data.test_images), ("train_acc", None)):
        mean, std = r[f"{metric}_mean"], r[f"{metric}_std"]
        if pd.notna(mean):
            wrong = f" ({(1 - mean) * images:.1f} of {images} wrong)" if images else ""
            out.append(f"{metric.removesuffix('_acc')} acc {_pm(mean, std)}{wrong}")
    return "<br>".join(out)


def prune_figure(data: ReportData, table: pd.DataFrame):
    """Error against FLOPs removed per cell: the criterion (solid) against random removal (dotted). The error axis
    is log and fitted to the points, so that a drop of a few images near the top shows beside random removal's
    collapse."""
    keys = cell_keys(data.choices)
    ratios = sorted({c.split("@")[1] for c in table.columns if c.startswith("cut@")}, key=float)
    fig = go.Figure()
    for i, r in enumerate(table.to_dict("records")):
        name = ", ".join(f"{k.removeprefix('choice_')} = {r[k]}" for k in keys)
        cuts = [0.0] + [r[f"cut@{q}"] for q in ratios]
        colour = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"][i % 4]
        for what, dash, label in (("pruned", "solid", "pruned by importance"), ("random", "dot", "random removal")):
            accs = [r["val_acc_mean"]] + [r[f"{what}@{q}"] for q in ratios]
            said = ["unpruned"] + [f"{float(q):.0%} target" for q in ratios]
            fig.add_trace(go.Scatter(
                x=cuts, y=log_error(accs, data.val_images), mode="lines+markers", name=f"{name}: {label}",
                line=dict(color=colour, dash=dash), hoverinfo="text",
                text=[f"{name}: {label}, {s}<br>{c:.1%} of MFLOPs removed<br>{acc_text('val', a, None)} (mean over "
                      f"seeds)" for s, c, a in zip(said, cuts, accs, strict=True)]))
    ys = [v for tr in fig.data for v in tr.y]
    fig.update_layout(title="Validation error vs FLOPs removed (BN recalibrated, no fine-tuning)",
                      xaxis_title="fraction of MFLOPs removed", height=480)
    if ys:
        fig.update_yaxes(**log_axis(ys), title_text=error_title("validation error", data.val_images))
    return fig


def figures(data: ReportData, table: pd.DataFrame) -> list[tuple[str, Any]]:
    out = [("fig-grid-sweep", sweep_figure(data, table))]
    if any(c.startswith("cut@") for c in table.columns):
        out.append(("fig-grid-prune", prune_figure(data, table)))
    return out
