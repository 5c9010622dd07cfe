"""Reports: collect a study into DataFrames, then render one self-contained HTML page (plotly) and a CSV.

The data step (`collect`) is pure pandas and is what the tests check in detail; the render step only draws it.
"""

from __future__ import annotations

import html
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from . import grid
from .errors import UserError
from .files import atomic_write_bytes, atomic_write_text
from .search import constraint_values, pareto_trials, stopped_early, study_objectives
from .spaces import Space
from .spec import ArchSpec
from .storage import open_study

KINDS = ("complete", "stopped early", "failed", "rejected", "duplicate", "surplus", "running")


def trial_kind(t: optuna.trial.FrozenTrial) -> str:
    if "surplus" in t.user_attrs:
        return "surplus"
    if "duplicate_of" in t.user_attrs:
        return "duplicate"
    if "rejected" in t.user_attrs:
        return "rejected"
    if stopped_early(t):
        return "stopped early"
    return {TrialState.COMPLETE: "complete", TrialState.PRUNED: "stopped early", TrialState.FAIL: "failed"}.get(
        t.state, "running")


@dataclass
class ReportData:
    study: str
    objectives: tuple[str, ...]
    trials: pd.DataFrame  # one row per trial
    curves: pd.DataFrame  # long: trial, epoch, val_acc
    pruning: pd.DataFrame  # one row per pruned Pareto checkpoint
    importances: dict[str, float]
    choices: list[str]  # the sampled parameters, in first-seen order
    baselines: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)  # what the page must say instead of a figure
    prune_curves: pd.DataFrame = field(default_factory=pd.DataFrame)  # long: trial, ratio, mflops_cut, val_acc, ...
    info: dict[str, Any] = field(default_factory=dict)  # a study config's description, claim, report, paper
    grid: bool = False  # a grid study: the report shows it cell by cell
    levels: dict[str, list[Any]] = field(default_factory=dict)  # each choice's candidates, in the space's order

    @property
    def front(self) -> pd.DataFrame:
        return self.trials[self.trials["on_front"].astype(bool)].sort_values("mflops")

    @property
    def latency_device(self) -> str | None:
        devices = self.trials["latency_device"].dropna().unique() if "latency_device" in self.trials else []
        return ", ".join(sorted(devices)) or None


# ---- data step ----------------------------------------------------------------------------------------------

def collect(study: optuna.Study) -> ReportData:
    trials = study.get_trials(deepcopy=False)
    objectives = study_objectives(study)
    front = {p["trial"] for p in pareto_trials(trials, objectives)}
    choices: list[str] = []
    for t in trials:
        choices += [k for k in t.params if k not in choices]
    rows, curves = [], []
    for t in trials:
        a = t.user_attrs
        curve = a.get("curve", [])
        row = {"trial": t.number, "state": t.state.name, "kind": trial_kind(t), "arch": a.get("arch"),
               **{f"choice_{k}": _plain(t.params.get(k)) for k in choices},
               "depth": ArchSpec.from_json(a["spec"]).depth if "spec" in a else None,
               "val_acc": a.get("val_acc"), "test_acc": a.get("test_acc"), "train_acc": a.get("train_acc"),
               "last_val_acc": curve[-1] if curve else None, "mflops": a.get("mflops"), "params": a.get("params"),
               "latency_ms": a.get("latency_ms"), "latency_device": a.get("latency_device"),
               "epochs": len(curve), "stopped_at": a.get("stopped_at"), "seconds": a.get("seconds"),
               "checkpoint": a.get("checkpoint"), "duplicate_of": a.get("duplicate_of"),
               "rejected": a.get("rejected"), "error": a.get("error"),
               "feasible": all(v <= 0 for v in constraint_values(t)), "on_front": t.number in front}
        rows.append(row)
        curves += [{"trial": t.number, "epoch": e + 1, "val_acc": v, "kind": row["kind"]}
                   for e, v in enumerate(curve)]
    frame = pd.DataFrame(rows, columns=_columns(choices))
    pruning = pd.DataFrame([{"trial": int(k.split(":", 1)[1]), **_flat_prune(v)}
                            for k, v in study.user_attrs.items() if k.startswith("prune:") and not v.get("error")])
    data = ReportData(study.study_name, objectives, frame, pd.DataFrame(curves, columns=["trial", "epoch", "val_acc",
                                                                                        "kind"]),
                      pruning, {}, choices)
    data.importances = importances(trials)
    data.notes = _notes(data)
    data.prune_curves = pd.DataFrame(
        [{"trial": t.number, **p} for t in trials if trial_kind(t) == "complete"
         for p in t.user_attrs.get("prune", []) if "error" not in p],
        columns=["trial", "ratio", "removed", "mflops_cut", "val_acc_before", "val_acc", "test_acc", "random_val_acc"])
    data.info = study.user_attrs.get("study_config", {})
    data.grid = study.user_attrs.get("search_config", {}).get("sampler") == "grid"
    stored = study.user_attrs.get("resnas", {})
    if "space" in stored:
        space = stored["space"]
        data.levels = Space(study.study_name, Path(), "", space["fixed"], space["choices"],
                            tuple(space.get("cells", ()))).grid(tuple(stored.get("seeds", ())))
    return data


def _columns(choices: list[str]) -> list[str]:
    return ["trial", "state", "kind", "arch", *[f"choice_{c}" for c in choices], "depth", "val_acc", "test_acc",
            "train_acc",
            "last_val_acc", "mflops", "params", "latency_ms", "latency_device", "epochs", "stopped_at", "seconds",
            "checkpoint", "duplicate_of", "rejected", "error", "feasible", "on_front"]


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, int | float | str) else str(value)


def _flat_prune(record: dict) -> dict:
    out = {"checkpoint": record.get("checkpoint"), "removed": len(record.get("removed") or [])}
    for stage in ("before", "after_recalibration", "after"):
        for key in ("val_acc", "mflops", "latency_ms"):
            out[f"{stage}_{key}"] = (record.get(stage) or {}).get(key)
    return out


def importances(trials: list[optuna.trial.FrozenTrial]) -> dict[str, float]:
    """fANOVA importance of each choice for validation accuracy, over the trials that trained to the end
    (duplicates and rejections left out, so that they do not weigh twice or as zeros)."""
    done = [t for t in trials if trial_kind(t) == "complete" and "val_acc" in t.user_attrs]
    if len(done) < 3:
        return {}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created in memory" line
    copy = optuna.create_study(direction="maximize")
    optuna.logging.set_verbosity(verbosity)
    copy.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                               value=t.user_attrs["val_acc"]) for t in done])
    try:
        return dict(optuna.importance.get_param_importances(copy))
    except (RuntimeError, ValueError):  # e.g. no parameter varies across the completed trials
        return {}


def _notes(data: ReportData) -> list[str]:
    t = data.trials
    notes = []
    if t.empty:
        notes.append("This study has no trials yet.")
    elif not (t["kind"] == "complete").any():
        counts = t["kind"].value_counts().to_dict()
        notes.append("No trial has completed yet (" + ", ".join(f"{v} {k}" for k, v in counts.items()) + ").")
        errors = t["error"].dropna()
        if not errors.empty:
            notes.append(f"First error: {errors.iloc[0]}")
    if not t.empty and t["latency_ms"].isna().all():
        notes.append("No latency was measured in this study, so the latency figure is left out.")
    return notes


# ---- render step ----------------------------------------------------------------------------------------------

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
    import plotly.graph_objects as go

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
    import plotly.graph_objects as go

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
    import plotly.graph_objects as go

    if data.baselines.empty:
        return
    b = data.baselines
    fig.add_trace(go.Scatter(x=b["mflops"], y=b["val_acc"], mode="markers+text", name="hand-designed baselines",
                             text=b["name"], textposition="top center", hoverinfo="text+x+y",
                             marker=dict(symbol="star-diamond", size=13, color="#000")))


def curves_figure(data: ReportData):
    import plotly.graph_objects as go

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
    import plotly.graph_objects as go

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
    import plotly.graph_objects as go

    names = list(data.importances)[::-1]
    fig = go.Figure(go.Bar(x=[data.importances[n] for n in names], y=names, orientation="h"))
    fig.update_layout(title="Choice importance for validation accuracy (fANOVA, completed trials)",
                      xaxis_title="importance", height=120 + 40 * len(names))
    return fig


def front_table(data: ReportData) -> str:
    front = data.front
    if front.empty:
        return "<p>The Pareto front is empty: no trial has completed.</p>"
    head = ("<tr><th>trial</th><th>architecture</th><th>val acc</th><th>test acc</th><th>MFLOPs</th><th>params</th>"
            "<th>latency ms</th><th>checkpoint</th></tr>")
    rows = "".join(
        f"<tr><td>{r.trial}</td><td>{html.escape(str(r.arch))}</td><td>{r.val_acc:.4f}</td><td>{r.test_acc:.4f}</td>"
        f"<td>{r.mflops:.3f}</td><td>{int(r.params):,}</td>"
        f"<td>{'' if pd.isna(r.latency_ms) else f'{r.latency_ms:.3f}'}</td><td>{html.escape(str(r.checkpoint))}</td>"
        "</tr>" for r in front.itertuples())
    return f"<table class='front'>{head}{rows}</table>"


def render(data: ReportData, *, color_by: str | None = None) -> str:
    """The whole page as one string; plotly.js is embedded once, so the file works offline."""
    import plotly.io as pio

    color_by = color_by or (data.choices[0] if data.choices else None)
    figures = []
    cells = grid.cell_table(data) if data.grid else pd.DataFrame()
    if not cells.empty:
        figures += grid.figures(data, cells)
    has_points = not plotted(data).empty
    if has_points:
        figures.append(("fig-acc-mflops", cost_figure(data, "mflops", "Validation accuracy vs MFLOPs",
                                                      "MFLOPs (conv + linear multiply-accumulates), log scale",
                                                      color_by)))
        if data.latency_device:
            figures.append(("fig-acc-latency", cost_figure(data, "latency_ms", "Validation accuracy vs latency",
                                                           f"latency, ms (median, batch 1) on {data.latency_device}",
                                                           color_by)))
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
                        notes=notes, figures="\n".join(parts), table=front_table(data), n_figures=len(figures))


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
test accuracy is reported, never searched on.</p>
{notes}
{figures}
<h2>Pareto front</h2>
{table}
<script>window.addEventListener('load', function () {{
  document.body.dataset.renderedFigures = document.querySelectorAll('.js-plotly-plot .main-svg').length > 0 ?
    document.querySelectorAll('.js-plotly-plot').length : 0; }});</script>
</body></html>
"""


# ---- outputs -------------------------------------------------------------------------------------------------

def pareto_markdown(data: ReportData) -> str:
    lines = ["| trial | architecture | val acc | test acc | MFLOPs | params | latency ms |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in data.front.itertuples():
        lat = "" if pd.isna(r.latency_ms) else f"{r.latency_ms:.3f}"
        lines.append(f"| {r.trial} | {r.arch} | {r.val_acc:.4f} | {r.test_acc:.4f} | {r.mflops:.3f} | "
                     f"{int(r.params):,} | {lat} |")
    return "\n".join(lines) if len(lines) > 2 else "(the Pareto front is empty)"


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def screenshot(html_path: Path, png_path: Path, *, width: int = 1300, height: int = 2600) -> Path:
    """A PNG of the rendered page, taken by headless Chromium (plotly's own PNG export needs Chrome too)."""
    chromium = find_chromium()
    if chromium is None:
        raise UserError("PNG export needs Chromium on the PATH (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "page.png"
        subprocess.run([chromium, *headless_flags(tmp), f"--window-size={width},{height}",
                        f"--screenshot={shot}", "--virtual-time-budget=15000", html_path.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
        return atomic_write_bytes(png_path, shot.read_bytes())


def headless_flags(profile_dir: str) -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile_dir}"]


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


BASELINES = ("wrn-16-4", "resnet-20")


def baseline_frame(study: optuna.Study, folder: Path, *, device: str = "auto") -> pd.DataFrame:
    """Hand-designed reference points trained with the study's own recipe and data (reused once trained)."""
    import torch

    from . import checkpoint
    from .data import DataConfig, load_data
    from .measure import analytic_cost
    from .models import build
    from .spec import preset
    from .train import TrainConfig, evaluate, pick_device, train

    stored = study.user_attrs.get("resnas")
    if not stored:
        raise UserError(f"study {study.study_name!r} records no training recipe, so baselines cannot match it")
    data_config, train_config = DataConfig.from_dict(stored["data"]), TrainConfig.from_dict(stored["train"])
    data = None
    rows = []
    for name in BASELINES:
        path = folder / f"{name}.pt"
        if path.is_file():
            ckpt = checkpoint.load(path)
            metrics = ckpt.metrics
        else:
            data = data or load_data(data_config, pick_device(device))
            spec = preset(name).replace(in_channels=data.in_channels, num_classes=data.num_classes)
            torch.manual_seed(train_config.seed)
            model = build(spec)
            result = train(model, data, train_config)
            metrics = {"val_acc": result.best_val_acc, "test_acc": evaluate(model, data, "test")[0],
                       "mflops": analytic_cost(spec, data.image_size).mflops,
                       "params": analytic_cost(spec, data.image_size).params}
            checkpoint.save(checkpoint.from_model(model, train_config=train_config, data_config=data_config,
                                                  history=[r.to_dict() for r in result.history], metrics=metrics),
                            path)
        rows.append({"name": name, "checkpoint": str(path), **{k: metrics[k] for k in
                                                             ("val_acc", "test_acc", "mflops", "params")}})
    return pd.DataFrame(rows)
