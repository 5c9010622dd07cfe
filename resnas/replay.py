"""Recorded tables of a space, and a `Fit` that replays them: the real search code runs on a table with no
training, so a whole search takes about a second and search methods can be compared over many seeds.

A table holds, for every architecture of a space trained once to the end (a grid study without early stopping),
its choices, costs, latency and the validation accuracy after each epoch. `ReplayFit` stands in for `fit.fit`:
it calls `on_epoch` with the recorded accuracies, stops where the callback says, and resumes where a paused run
stopped, exactly as training would; `replay_latency` stands in for the latency measurement.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from . import records as R
from .data import Data
from .errors import UserError
from .files import atomic_write_bytes
from .fit import Fitted
from .measure import Cost, Latency, analytic_cost
from .models import build
from .spaces import Space, load_space
from .spec import ArchSpec
from .train import EpochRecord, OnEpoch, TrainConfig, TrainResult, TrainState

FORMAT = "resnas-table-1"


@dataclass(frozen=True)
class Row:
    params: dict[str, Any]  # the space's choices (Optuna trial params), as FixedTrial takes them
    mflops: float
    n_params: int
    latency_ms: float
    curve: tuple[float, ...]  # validation accuracy after each epoch (a recorded table: all of them)
    test_acc: float
    seconds: float  # training steps, all epochs
    spec: str = ""  # its ArchSpec JSON where the table holds it (synthetic tables): found without sampling the space

    @property
    def val_acc(self) -> float:
        """The best epoch's validation accuracy, as a fully trained trial records it."""
        return max(self.curve)


@dataclass
class Table:
    space: str
    seed: int  # the training seed
    epochs: int
    data: dict[str, Any]  # the DataConfig it was recorded with
    rows: list[Row]
    _by_spec: dict[str, Row] = field(default_factory=dict, repr=False)

    @classmethod
    def from_study(cls, study: optuna.Study) -> Table:
        """The table of a finished grid study without early stopping (every trial trained to the end)."""
        ident = R.study_identity(study) or {}
        epochs = ident.get("train", {}).get("epochs")
        rows = [Row(dict(t.params), t.user_attrs[R.MFLOPS], t.user_attrs[R.PARAMS], t.user_attrs[R.LATENCY_MS],
                    tuple(t.user_attrs[R.CURVE]), t.user_attrs[R.TEST_ACC], t.user_attrs[R.SECONDS])
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if R.fully_trained(t)]
        if not rows or any(len(r.curve) != epochs for r in rows):
            raise UserError(f"study {study.study_name!r} is not a finished grid study without early stopping")
        space = study.user_attrs.get(R.SEARCH_CONFIG, {}).get("space", study.study_name)
        return cls(Path(space).stem, ident["train"]["seed"], epochs, ident["data"],
                   sorted(rows, key=lambda r: json.dumps(r.params, sort_keys=True)))

    @classmethod
    def synthetic(cls, space_name: str, *, seed: int = 0, epochs: int = 9, data: dict[str, Any] | None = None
                  ) -> Table:
        """A made-up table of every grid point of a space, for measuring the search's own cost at scale where no
        recorded table exists: costs are the specs' own (analytic); each architecture's curve rises to a final
        accuracy that grows with its MFLOPs (0.80 + 0.19 (1 - e^(-MFLOPs/3)), less up to 0.03 of noise) at a rate
        of its own, and its seconds per epoch are 0.05 + 0.02 MFLOPs; the noise and rate come from a hash of the
        choices and `seed`, so the table is the same on every machine."""
        space = load_space(space_name)
        grid = space.grid()
        data = data if data is not None else {"dataset": "digits"}
        rows = []
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values, strict=True))
            spec = space.sample(optuna.trial.FixedTrial(params), in_channels=1, num_classes=10)
            cost = analytic_cost(spec, 8)
            u, v, w = _uniforms(json.dumps(params, sort_keys=True), seed)
            final = 0.80 + 0.19 * (1 - math.exp(-cost.mflops / 3)) - 0.03 * u
            rate = 0.3 + 1.2 * v
            curve = tuple(round(final * (1 - math.exp(-rate * e)), 6) for e in range(1, epochs + 1))
            rows.append(Row(params, cost.mflops, cost.params, 0.05 + 0.01 * cost.mflops, curve,
                            round(final - 0.01 * w, 6), epochs * (0.05 + 0.02 * cost.mflops), spec.to_json()))
        return cls(space.name, seed, epochs, data, rows)

    def save(self, path: str | Path) -> Path:
        doc = {"format": FORMAT, "space": self.space, "seed": self.seed, "epochs": self.epochs, "data": self.data,
               "rows": [{**r.__dict__, "curve": list(r.curve)} for r in self.rows]}
        return atomic_write_bytes(path, gzip.compress(json.dumps(doc, separators=(",", ":")).encode(), mtime=0))

    @classmethod
    def load(cls, path: str | Path) -> Table:
        try:
            doc = json.loads(gzip.decompress(Path(path).read_bytes()))
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read table {path}: {e}; give a .json.gz written by Table.save") from None
        if doc.get("format") != FORMAT:
            raise UserError(f"{path} is not a resnas table (format {doc.get('format')!r}, expected {FORMAT})")
        rows = [Row(**{**r, "curve": tuple(r["curve"])}) for r in doc["rows"]]  # tables before `spec` still load
        return cls(doc["space"], doc["seed"], doc["epochs"], doc["data"], rows)

    def row(self, spec: ArchSpec) -> Row:
        if not self._by_spec:
            space = load_space(self.space)
            for r in self.rows:  # a stored spec holds the table's channels and classes: digits' 1 and 10
                key = r.spec if r.spec and (spec.in_channels, spec.num_classes) == (1, 10) else \
                    _key(_spec(space, r.params, spec))
                self._by_spec[key] = r
        try:
            return self._by_spec[_key(spec)]
        except KeyError:
            raise UserError(f"architecture not in the {self.space} table: {spec.to_json()[:200]}") from None

    def true_front_points(self) -> list[tuple[float, float]]:
        """(val_acc, mflops) of every architecture: the front an exhaustive search would find."""
        return [(r.val_acc, r.mflops) for r in self.rows]


def _spec(space: Space, params: dict[str, Any], like: ArchSpec) -> ArchSpec:
    return space.sample(optuna.trial.FixedTrial(params), in_channels=like.in_channels,
                        num_classes=like.num_classes)


def _uniforms(key: str, seed: int) -> tuple[float, float, float]:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return tuple(int.from_bytes(digest[i:i + 4], "big") / 2**32 for i in (0, 4, 8))  # type: ignore[return-value]


def _key(spec: ArchSpec) -> str:
    return spec.to_json()


_MODELS: dict[str, torch.nn.Module] = {}  # spec -> its model on the meta device, shared by every replay


class ReplayFit:
    """A `Fit` that returns a table's recorded curve instead of training. `epochs_run` counts the epochs it
    replayed (the cost a real search would have paid); past `max_epochs` it interrupts the search, as Ctrl-C does."""

    def __init__(self, table: Table, max_epochs: int | None = None) -> None:
        self.table, self.max_epochs, self.epochs_run = table, max_epochs, 0

    def __call__(self, spec: ArchSpec, data: Data, config: TrainConfig, *, on_epoch: OnEpoch | None = None,
                 train_acc: bool = False, resume: TrainState | None = None) -> Fitted:
        if config.epochs != self.table.epochs:
            raise UserError(f"the table was recorded with {self.table.epochs} epochs, the search asks {config.epochs}")
        row = self.table.row(spec)
        history = list(resume.history) if resume else []
        stopped = False
        for epoch in range(len(history) + 1, config.epochs + 1):
            if self.max_epochs is not None and self.epochs_run >= self.max_epochs:
                raise KeyboardInterrupt(f"replayed {self.epochs_run} epochs")
            if epoch > len(row.curve):
                raise UserError(f"the table records {len(row.curve)} epochs of this architecture, the search asks for "
                                f"epoch {epoch}")
            self.epochs_run += 1
            history.append(EpochRecord(epoch, math.nan, row.curve[epoch - 1], math.nan, config.lr, 0.0, 0.0))
            if on_epoch is not None and on_epoch(history[-1]) and epoch < config.epochs:
                stopped = True
                break
        best = max(range(len(history)), key=lambda i: (history[i].val_acc, -i)) + 1
        state = TrainState(0, {}, {}, torch.zeros(0), torch.zeros(0), list(history), best, {}) if stopped else None
        if (key := _key(spec)) not in _MODELS:
            with torch.device("meta"):  # a model without weights: checkpoints stay tiny, nothing is computed
                _MODELS[key] = build(spec)
        result = TrainResult(history, best, stopped, state)
        return Fitted(spec, _MODELS[key], result, Cost(row.n_params, row.mflops),
                      test_acc=None if stopped else row.test_acc, train_acc=None)

    def latency(self, spec: ArchSpec, *, input_size: int, batch_size: int, device: torch.device) -> Latency:
        """The recorded latency, in place of `measure.spec_latency`."""
        row = self.table.row(spec)
        return Latency(row.latency_ms, row.latency_ms, "replay", batch_size, input_size, "float32", "replay")
