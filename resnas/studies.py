"""Study configs: one TOML file fixes what a `resnas search` command line would, so an experiment reruns with one
command (`resnas search --config studies/NAME.toml`; flags given on the command line override the file).

File format (see studies/*.toml):
    description = "..."            what the study asks
    claim = "..."                  what the paper found, in a sentence (shown in the report)
    [search]  SearchConfig fields: space (a space name or file, when the grid is not given here), sampler, seeds,
              objectives, budget, early_stopping, ... With sampler = "grid" the budget defaults to the whole grid
              times the seeds.
    [train]   TrainConfig fields (epochs, lr, ...)
    [data]    DataConfig fields (dataset, val_fraction, ...)
    [fixed], [choices], [[cells]]   the grid, exactly as in a space file (see spaces.py), instead of search.space
    [prune]   ratios = [...], criterion = "norm": prune every fully trained model at these FLOPs cuts
    [report]  x (the swept choice or depth, the chart's axis), series (choices drawn as separate lines)
    [[paper]] published numbers: where = {choice = value, ...}, value, metric, data, source
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .config import from_table
from .data import DataConfig
from .errors import UserError
from .search import SearchConfig
from .shipped import names, read_toml, resolve_file
from .spaces import SPACE_KEYS, Space, load_space, space_from_doc
from .train import TrainConfig

SECTIONS = {"description": str, "claim": str, "search": dict, "train": dict, "data": dict, "prune": dict,
            "report": dict, "paper": list, "fixed": dict, "choices": dict, "cells": list}
REPORT_KEYS = ("x", "series")
PAPER_KEYS = ("where", "value", "metric", "data", "source")
PRUNE_KEYS = {"ratios": "prune_ratios", "criterion": "prune_criterion"}


T = TypeVar("T")


class StudyConfigError(UserError):
    """A study config file is wrong."""


@dataclass(frozen=True)
class StudyConfig:
    path: Path
    search: SearchConfig
    train: TrainConfig
    data: DataConfig
    info: dict[str, Any] = field(default_factory=dict)  # description, claim, report, paper: kept with the study
    whole_grid: bool = False  # a grid study without a budget of its own: the budget follows the grid and seeds

    def space(self) -> Space:
        return load_space(self.search.space)

    def overridden(self, *, search: dict[str, Any] | None = None, train: dict[str, Any] | None = None,
                   data: dict[str, Any] | None = None) -> StudyConfig:
        """The same study with some settings replaced (the command line's explicit flags)."""
        search = dict(search or {})
        whole_grid = self.whole_grid and "budget" not in search
        config = dataclasses.replace(self.search, **search)
        if whole_grid and config.sampler == "grid":  # e.g. more --seeds: more trials
            config = dataclasses.replace(config, budget=_grid_budget(config))
        return dataclasses.replace(self, search=config, train=dataclasses.replace(self.train, **(train or {})),
                                   data=dataclasses.replace(self.data, **(data or {})), whole_grid=whole_grid)


def shipped_studies() -> list[str]:
    return names("studies")


def load_study_config(name_or_path: str) -> StudyConfig:
    """Read and validate a study config: every key is checked against the dataclass it fills."""
    path = resolve_file(name_or_path, "studies", "study config", StudyConfigError)
    where = f"study config {path}"
    doc = read_toml(path, "study config", StudyConfigError)
    for key, value in doc.items():
        if key not in SECTIONS:
            raise StudyConfigError(f"{where}: unknown key {key!r}; allowed: {', '.join(SECTIONS)}")
        if not isinstance(value, SECTIONS[key]):
            kind = {dict: "a table", list: "an array of tables", str: "a string"}[SECTIONS[key]]
            raise StudyConfigError(f"{where}: {key} must be {kind}")
    if "search" not in doc:
        raise StudyConfigError(f"{where}: a [search] table is required (at least the sampler)")
    search = dict(doc["search"])
    has_grid = any(k in doc for k in ("fixed", "choices", "cells"))
    if has_grid == ("space" in search):
        raise StudyConfigError(f"{where}: give the architectures either as search.space or as [fixed]/[choices]/"
                               "[[cells]] in this file, exactly one of the two")
    if has_grid:
        space_from_doc({k: v for k, v in doc.items() if k in SPACE_KEYS}, path, "study config")
        search["space"] = str(path)
    for key, value in doc.get("prune", {}).items():
        if key not in PRUNE_KEYS:
            raise StudyConfigError(f"{where}: unknown key prune.{key}; allowed: {', '.join(PRUNE_KEYS)}")
        search[PRUNE_KEYS[key]] = value
    search_config = _fill(SearchConfig, search, "search", where)
    whole_grid = search_config.sampler == "grid" and "budget" not in search
    if whole_grid:
        search_config = dataclasses.replace(search_config, budget=_grid_budget(search_config))
    report = _checked(doc.get("report", {}), REPORT_KEYS, "report", where)
    if has_grid:
        _check_axes(report, load_space(search_config.space).grid(search_config.seeds or (0,)), where)
    info = {"description": doc.get("description", ""), "claim": doc.get("claim", ""), "report": report,
            "paper": [_paper(entry, i, where) for i, entry in enumerate(doc.get("paper", []))]}
    return StudyConfig(path=path, search=search_config, train=_fill(TrainConfig, doc.get("train", {}), "train", where),
                       data=_fill(DataConfig, doc.get("data", {}), "data", where), info=info, whole_grid=whole_grid)


def _fill(cls: type[T], table: dict[str, Any], section: str, where: str) -> T:
    return from_table(cls, table, where=where, section=section, error=StudyConfigError)


def _grid_budget(config: SearchConfig) -> int:
    return load_space(config.space).size() * max(1, len(config.seeds))


def _check_axes(report: dict[str, Any], grid: dict[str, list[Any]], where: str) -> None:
    """The chart's axis and series must name something every trial records."""
    allowed = [*grid, "depth", "params", "mflops"]
    series = report.get("series", [])
    for key, name in [("x", report.get("x"))] + [("series", s) for s in ([series] if isinstance(series, str) else
                                                                         series)]:
        if name is not None and name not in allowed:
            raise StudyConfigError(f"{where}: report.{key} = {name!r} is not a choice of this grid; choose from "
                                   f"{', '.join(allowed)}")


def _checked(table: dict[str, Any], allowed: tuple[str, ...], section: str, where: str) -> dict[str, Any]:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise StudyConfigError(f"{where}: unknown key {section}.{unknown[0]}; allowed: {', '.join(allowed)}")
    return dict(table)


def _paper(entry: Any, i: int, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise StudyConfigError(f"{where}: paper[{i}] must be a table ([[paper]])")
    entry = _checked(entry, PAPER_KEYS, f"paper[{i}]", where)
    if not isinstance(entry.get("where"), dict) or not isinstance(entry.get("value"), int | float):
        raise StudyConfigError(f"{where}: paper[{i}] needs where = {{choice = value, ...}} and a numeric value")
    if not all(isinstance(entry.get(k), str) for k in ("metric", "data", "source")):
        raise StudyConfigError(f"{where}: paper[{i}] needs metric, data and source strings (say which dataset the "
                               "published number is on, and where it was published)")
    return entry
