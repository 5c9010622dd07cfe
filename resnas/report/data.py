"""The report's data step: a study collected into DataFrames (pure pandas, what the tests check in detail).

The render step (`figures`, `page`) only draws what `collect` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from math import lcm
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from .. import records as R
from ..spaces import Space
from ..spec import ArchSpec


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
    val_images: int | None = None  # the validation split's size, inferred by `split_size`; None when unknown
    test_images: int | None = None

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
    objectives = R.study_objectives(study)
    front = {p["trial"] for p in R.pareto_trials(trials, objectives)}
    choices: list[str] = []
    for t in trials:
        choices += [k for k in t.params if k not in choices]
    rows, curves = [], []
    for t in trials:
        a = t.user_attrs
        curve = a.get(R.CURVE, [])
        row = {"trial": t.number, "state": t.state.name, "kind": R.trial_kind(t), "arch": a.get(R.ARCH),
               **{f"choice_{k}": _plain(t.params.get(k)) for k in choices},
               "depth": ArchSpec.from_json(a[R.SPEC]).depth if R.SPEC in a else None,
               **{k: a.get(k) for k in (R.VAL_ACC, R.TEST_ACC, R.TRAIN_ACC)},
               "last_val_acc": curve[-1] if curve else None,
               **{k: a.get(k) for k in (R.MFLOPS, R.PARAMS, R.LATENCY_MS, R.LATENCY_DEVICE)},
               "epochs": len(curve),
               **{k: a.get(k) for k in (R.STOPPED_AT, R.SECONDS, R.CHECKPOINT, R.DUPLICATE_OF, R.REJECTED, R.ERROR)},
               "feasible": R.feasible(t), "on_front": t.number in front,
               **{R.at_size_column(s): v for s, v in a.get(R.ACC_AT_SIZE, {}).items()}}
        rows.append(row)
        curves += [{"trial": t.number, "epoch": e + 1, "val_acc": v, "kind": row["kind"]}
                   for e, v in enumerate(curve)]
    sizes = sorted({int(s) for t in trials for s in t.user_attrs.get(R.ACC_AT_SIZE, {})})
    frame = pd.DataFrame(rows, columns=_columns(choices) + [R.at_size_column(s) for s in sizes])
    pruning = pd.DataFrame([{"trial": trial, **_flat_prune(v)} for trial, v in R.prune_records(study).items()
                            if not v.get("error")])
    data = ReportData(study.study_name, objectives, frame, pd.DataFrame(curves, columns=["trial", "epoch", "val_acc",
                                                                                        "kind"]),
                      pruning, {}, choices)
    data.importances = importances(trials)
    data.notes = _notes(data)
    data.prune_curves = pd.DataFrame(
        [{"trial": t.number, **p} for t in trials if R.trial_kind(t) == "complete"
         for p in t.user_attrs.get(R.PRUNE, []) if "error" not in p],
        columns=["trial", "ratio", "removed", "mflops_cut", "val_acc_before", "val_acc", "test_acc", "random_val_acc"])
    recorded = R.split_sizes(study)  # studies made before resnas recorded them: read the sizes off the accuracies
    stages = ("before", "after_recalibration", "after")
    data.val_images = recorded.get("val") or split_size(
        [*frame["val_acc"], *data.curves["val_acc"], *(v for s in stages for v in pruning.get(f"{s}_val_acc", []))])
    data.test_images = recorded.get("test") or split_size(
        [*frame["test_acc"], *(v for s in stages for v in pruning.get(f"{s}_test_acc", []))])
    data.info = study.user_attrs.get(R.STUDY_CONFIG, {})
    data.grid = R.is_grid(study)
    stored = R.study_identity(study) or {}
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
    out = {"checkpoint": record.get("checkpoint"), "removed": len(record.get("removed") or []),
           "finetuned": record.get("after_finetune") is not None}
    for stage in ("before", "after_recalibration", "after"):
        for key in ("val_acc", "test_acc", "mflops", "latency_ms"):
            out[f"{stage}_{key}"] = (record.get(stage) or {}).get(key)
    return out


def split_size(accuracies: list[Any], *, limit: int = 100_000) -> int | None:
    """The number of images behind a set of accuracies, read from the accuracies themselves: each is correct/n, so
    n is the least common denominator. The report does not load the dataset to count it. That is the split's size
    unless every count shares a factor with it, which the many epochs of the learning curves make unlikely; None
    when the accuracies are not such fractions (e.g. averages) or too few to tell."""
    values = {float(v) for v in accuracies if v is not None and not pd.isna(v)}
    n = 1
    for v in values:
        f = Fraction(v).limit_denominator(limit)
        if abs(float(f) - v) > 1e-12:  # correct/n is exact to a few ulps; an average is not a small fraction
            return None
        n = lcm(n, f.denominator)
        if n > limit:
            return None
    return n if len(values) >= 3 and n > 1 else None


def importances(trials: list[optuna.trial.FrozenTrial]) -> dict[str, float]:
    """fANOVA importance of each choice for validation accuracy, over the trials that trained to the end
    (duplicates and rejections left out, so that they do not weigh twice or as zeros)."""
    done = [t for t in trials if R.trial_kind(t) == "complete" and R.VAL_ACC in t.user_attrs]
    if len(done) < 3:
        return {}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created in memory" line
    copy = optuna.create_study(direction="maximize")
    optuna.logging.set_verbosity(verbosity)
    copy.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                               value=t.user_attrs[R.VAL_ACC]) for t in done])
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


def pareto_markdown(data: ReportData) -> str:
    lines = ["| trial | architecture | val acc | test acc | MFLOPs | params | latency ms |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in data.front.itertuples():
        lat = "" if pd.isna(r.latency_ms) else f"{r.latency_ms:.3f}"
        lines.append(f"| {r.trial} | {r.arch} | {r.val_acc:.4f} | {r.test_acc:.4f} | {r.mflops:.3f} | "
                     f"{int(r.params):,} | {lat} |")
    return "\n".join(lines) if len(lines) > 2 else "(the Pareto front is empty)"
