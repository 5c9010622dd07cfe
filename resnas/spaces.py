"""Search spaces: TOML files people edit, validated on load, mapping an Optuna trial to an ArchSpec.

This is the only module that calls `trial.suggest_*`. Sampling works with `optuna.trial.FixedTrial(params)`, so
any trial's architecture can be replayed without its study.

File format (see search_spaces/*.toml):
    description = "..."
    [fixed]      ArchSpec fields every architecture in the space shares
    [choices]    a list of candidate values per key; each key is one categorical choice
    [[cells]]    optional: named architectures (`name` plus ArchSpec fields), one categorical choice `cell`,
                 crossed with [choices]; for comparisons whose variants differ in several fields at once
Choice keys are ArchSpec fields, plus `blocks_per_stage` / `widths_per_stage` (a list of candidate lists, one
per stage, sampled independently), plus `block_sparsity` (a training setting: the L1 weight on gated branches).
An integer candidate for `blocks` or `widths` means "the same in every stage". `in_channels` and `num_classes`
come from the dataset, never from the space.

Block families: a space may build several (`family` fixed, chosen, or set per cell). A [fixed] or [choices] key
that does not apply to the family (or head) of the architecture being sampled is left out of it, and a choice is
not asked at all there (as `kernels` is not for bottleneck blocks); a key that applies to no architecture of the
space is an error on load. Cells are single architectures: a key a cell sets must apply to it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .shipped import names, read_toml, resolve_file
from .spec import BOTTLENECK_KERNELS, ArchSpec, SpecError
from .spec_rules import BOOL_FIELDS, FLOAT_FIELDS, STR_FIELDS, applies, coerce

_FIELDS = [f.name for f in dataclasses.fields(ArchSpec) if f.name not in ("in_channels", "num_classes")]
_PER_STAGE = {"blocks_per_stage": "blocks", "widths_per_stage": "widths"}
TRAIN_CHOICES = ("block_sparsity",)  # TrainConfig fields a space may vary
_DECIDING = ("family", "head", "block")  # sampled first: whether the other choices apply depends on them


class SpaceError(UserError):
    """A space file or name is wrong."""


@dataclass(frozen=True)
class Space:
    name: str
    path: Path
    description: str
    fixed: dict[str, Any]
    choices: dict[str, list[Any]]  # key -> candidates, in file order
    cells: tuple[dict[str, Any], ...] = ()  # named partial specs: {"name": ..., field: value, ...}

    @property
    def n_stages(self) -> int:
        for source in (self.fixed.get("widths"), self.fixed.get("blocks")):
            if isinstance(source, list):
                return len(source)
        for key in _PER_STAGE:
            if key in self.choices:
                return len(self.choices[key])
        return 3

    def size(self) -> int:
        """Number of grid points: an upper bound on distinct architectures where a choice does not apply to some
        of them (`kernels` to bottleneck blocks, a family's own settings to the other families)."""
        return math.prod(len(v) for v in self.grid().values())

    def grid(self, seeds: tuple[int, ...] = ()) -> dict[str, list[Any]]:
        """Every parameter `sample` and `training` may suggest, with its candidates' labels: Optuna's GridSampler
        takes this as its search space. With `seeds`, each architecture is repeated once per seed."""
        out: dict[str, list[Any]] = {}
        if self.cells:
            out["cell"] = [c["name"] for c in self.cells]
        for key, values in self.choices.items():
            if key in _PER_STAGE:
                out.update({f"{_PER_STAGE[key]}_{i}": [_label(v) for v in per] for i, per in enumerate(values)})
            else:
                out[key] = [_label(v) for v in values]
        if seeds:
            out["seed"] = list(seeds)
        return out

    def sample(self, trial: Any, *, in_channels: int, num_classes: int, image_size: int | None = None) -> ArchSpec:
        """Ask `trial` (an optuna Trial or FixedTrial) for one value of each choice that applies and build the spec.
        `image_size` fills a flatten head's `input_size` where the space leaves it out."""
        fields: dict[str, Any] = dict(self.fixed)
        cell: dict[str, Any] = {}
        if self.cells:
            name = trial.suggest_categorical("cell", [c["name"] for c in self.cells])
            cell = {k: v for c in self.cells if c["name"] == name for k, v in c.items() if k != "name"}
            fields.update(cell)
        for key, values in sorted(self.choices.items(), key=lambda kv: kv[0] not in _DECIDING):
            if key in TRAIN_CHOICES or not _applies(_PER_STAGE.get(key, key), fields):
                continue  # a choice that does not apply is not asked (Optuna allows this)
            if key in _PER_STAGE:
                fields[_PER_STAGE[key]] = [_suggest(trial, f"{_PER_STAGE[key]}_{i}", v) for i, v in enumerate(values)]
            else:
                fields[key] = _suggest(trial, key, values)
        if fields.get("head") == "flatten" and "input_size" not in fields and image_size is not None:
            fields["input_size"] = image_size
        return self._spec(fields, keep=set(cell), in_channels=in_channels, num_classes=num_classes)

    def training(self, trial: Any) -> dict[str, Any]:
        """The training settings this space varies (TrainConfig fields), asked of the same trial."""
        return {key: _suggest(trial, key, values) for key, values in self.choices.items() if key in TRAIN_CHOICES}

    def _spec(self, fields: dict[str, Any], *, keep: set[str], in_channels: int, num_classes: int) -> ArchSpec:
        """The spec of `fields`, less the space-wide keys (all but those in `keep`) that do not apply to it."""
        fields = {k: v for k, v in fields.items() if k in keep or _applies(k, fields)}
        for key in ("blocks", "widths"):
            if isinstance(fields.get(key), int):
                fields[key] = [fields[key]] * self.n_stages
        if fields.get("family", "residual") == "residual" and fields.get("block") == "bottleneck":
            fields["kernels"] = list(BOTTLENECK_KERNELS)
        fields.update(in_channels=in_channels, num_classes=num_classes)
        return ArchSpec.from_dict(fields, source=f"space {self.name}")

    def describe_choices(self) -> list[tuple[str, str]]:
        rows = [("cell", " | ".join(c["name"] for c in self.cells))] if self.cells else []
        rows += [(k, " | ".join(str(_label(v)) for v in vals))
                 for k, vals in self.choices.items() if k not in _PER_STAGE]
        for key, per in self.choices.items():
            if key in _PER_STAGE:
                rows += [(f"{_PER_STAGE[key]}_{i}", " | ".join(map(str, v))) for i, v in enumerate(per)]
        return rows


def _applies(field: str, fields: dict[str, Any]) -> bool:
    """Whether space key `field` applies to the architecture `fields` describe so far."""
    if field == "kernels" and fields.get("block") == "bottleneck":
        return False  # bottleneck blocks have fixed kernels
    return applies(field, fields.get("family", "residual"), fields.get("head", "gap"))


def _label(value: Any) -> Any:
    """Optuna's categorical choices must be scalars: a list candidate is named by its items joined with ','."""
    return ",".join(map(str, value)) if isinstance(value, list) else value


def _suggest(trial: Any, name: str, values: list[Any]) -> Any:
    labels = [_label(v) for v in values]
    picked = trial.suggest_categorical(name, labels)
    return values[labels.index(picked)]


# ---- loading ---------------------------------------------------------------------------------------------

def shipped() -> list[str]:
    return names("spaces")


def resolve(name_or_path: str) -> Path:
    """A shipped space's name (`wrn`) or the path of a user's file."""
    return resolve_file(name_or_path, "spaces", "space file", SpaceError)


SPACE_KEYS = ("description", "fixed", "choices", "cells")


def load_space(name_or_path: str) -> Space:
    path = resolve(name_or_path)
    doc = read_toml(path, "space file", SpaceError)
    unknown = sorted(set(doc) - set(SPACE_KEYS))
    if unknown and "search" not in doc:  # a study config (see studies.py) carries its grid as a space
        raise SpaceError(f"space file {path}: unknown key {unknown[0]!r}; top-level keys are description, "
                         "[fixed], [choices] and [[cells]]")
    return space_from_doc({k: v for k, v in doc.items() if k in SPACE_KEYS}, path,
                          "study config" if "search" in doc else "space file")


def space_from_doc(doc: dict[str, Any], path: Path, what: str = "space file") -> Space:
    """Validate a space's tables (from a space file or a study config) and build the Space."""
    where = f"{what} {path}"
    fixed, choices, cells = doc.get("fixed", {}), doc.get("choices", {}), doc.get("cells", [])
    if not isinstance(fixed, dict) or not isinstance(choices, dict):
        raise SpaceError(f"{where}: [fixed] and [choices] must be tables")
    if not choices and not cells:
        raise SpaceError(f"{where}: [choices] is empty; a space needs at least one choice (or [[cells]])")
    for key, value in fixed.items():
        if key not in _FIELDS:
            raise SpaceError(f"{where}: unknown key fixed.{key}; allowed: {', '.join(_FIELDS)}")
        _check_value(where, f"fixed.{key}", key, value)
    _check_cells(where, cells, fixed, choices)
    for key, values in choices.items():
        if key in TRAIN_CHOICES:
            if not isinstance(values, list) or not values or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in values):
                raise SpaceError(f"{where}: choices.{key} must be a non-empty list of numbers >= 0")
            if any(values) and fixed.get("gates") is not True:
                raise SpaceError(f"{where}: choices.{key} trains gated branches; set fixed.gates = true")
            continue
        if key not in _FIELDS and key not in _PER_STAGE:
            allowed = ", ".join([*_FIELDS, *_PER_STAGE, *TRAIN_CHOICES])
            raise SpaceError(f"{where}: unknown key choices.{key}; allowed: {allowed}")
        target = _PER_STAGE.get(key, key)
        if target in fixed or sum(_PER_STAGE.get(c, c) == target for c in choices) > 1:
            raise SpaceError(f"{where}: {target} is both fixed and chosen, or chosen twice; keep one")
        per_stage = values if key in _PER_STAGE else [values]
        if not isinstance(values, list) or not values or not all(isinstance(v, list) and v for v in per_stage):
            raise SpaceError(f"{where}: choices.{key} must be a non-empty list of candidate values"
                             + (" per stage (a list of non-empty lists)" if key in _PER_STAGE else ""))
        for i, candidates in enumerate(per_stage):
            for v in candidates:
                if key in _PER_STAGE:
                    _check_value(where, f"choices.{key}[{i}]", "k", v)  # an integer, like k
                else:
                    _check_value(where, f"choices.{key}", key, v)
            labels = [_label(v) for v in candidates]
            if len(set(labels)) != len(labels):
                raise SpaceError(f"{where}: choices.{key} lists a candidate twice")
    _check_applicable(where, fixed, choices, cells)
    space = Space(name=path.stem, path=path, description=str(doc.get("description", "")), fixed=fixed,
                  choices=choices, cells=tuple(cells))
    first = {k: (v[0] if k not in _PER_STAGE else None) for k, v in choices.items() if k not in TRAIN_CHOICES}
    first = {**fixed, **{k: v for k, v in first.items() if v is not None}}
    for key, per in choices.items():
        if key in _PER_STAGE:
            first[_PER_STAGE[key]] = [c[0] for c in per]
    for cell in cells or [{"name": ""}]:  # every named cell, with the first candidates of each choice
        own = {k: v for k, v in cell.items() if k != "name"}
        try:
            space._spec({**first, **own}, keep=set(own), in_channels=3, num_classes=10)
        except SpecError as e:
            what = f"cell {cell['name']!r} makes" if cell["name"] else "its first candidates make"
            raise SpaceError(f"{where}: {what} an invalid architecture ({e})") from None
    return space


def _check_cells(where: str, cells: Any, fixed: dict[str, Any], choices: dict[str, Any]) -> None:
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise SpaceError(f"{where}: cells must be an array of tables ([[cells]])")
    names = []
    for i, cell in enumerate(cells):
        name = cell.get("name")
        if not isinstance(name, str) or not name:
            raise SpaceError(f"{where}: cells[{i}] needs a name (a non-empty string)")
        names.append(name)
        for key, value in cell.items():
            if key == "name":
                continue
            if key not in _FIELDS:
                raise SpaceError(f"{where}: unknown key {key!r} in cell {name!r}; allowed: name, "
                                 f"{', '.join(_FIELDS)}")
            if key in fixed or _PER_STAGE.get(key, key) in {_PER_STAGE.get(c, c) for c in choices}:
                raise SpaceError(f"{where}: cell {name!r} sets {key}, which [fixed] or [choices] also "
                                 "sets; keep one")
            _check_value(where, f"cell {name!r} {key}", key, value)
    if len(set(names)) != len(names):
        raise SpaceError(f"{where}: two cells share a name; names must be unique")


def _check_applicable(where: str, fixed: dict[str, Any], choices: dict[str, Any], cells: list[dict[str, Any]]) -> None:
    """Every space-wide key must apply to some architecture the space builds."""
    def reachable(key: str, default: str) -> set[str]:
        found = {fixed[key]} if key in fixed else set(choices.get(key, []))
        found |= {c[key] for c in cells if key in c}
        return {v for v in found if isinstance(v, str)} or {default}

    families, heads = reachable("family", "residual"), reachable("head", "gap")
    for section, keys in (("fixed", fixed), ("choices", choices)):
        for key in keys:
            field = _PER_STAGE.get(key, key)
            if key not in TRAIN_CHOICES and not any(applies(field, f, h) for f in families for h in heads):
                raise SpaceError(f"{where}: {section}.{key} applies to no architecture of this space (family "
                                 f"{' or '.join(sorted(families))}, head {' or '.join(sorted(heads))}); leave it out")


def _check_value(where: str, label: str, field: str, value: Any) -> None:
    if field in ("blocks", "widths") and isinstance(value, int) and not isinstance(value, bool):
        value = [value]  # "the same in every stage"
    try:
        coerce(field, value, where)
    except SpecError:
        kind = {"blocks": "a list of integers or one integer", "widths": "a list of integers or one integer",
                "kernels": "a list of odd integers", "inner_widths": "a list of integers", **FLOAT_FIELDS,
                **{f: "true or false" for f in BOOL_FIELDS}, **{f: "a string" for f in STR_FIELDS}}
        raise SpaceError(f"{where}: {label} = {value!r} has the wrong type; expected "
                         f"{kind.get(field, 'an integer')}") from None
