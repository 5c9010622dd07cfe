"""Plain Optuna 5 peers for search_replay.py: what a user writes without resnas, replayed on a recorded table.

optuna-default / -nsga2 / -tpe / -random: multi-objective (val_acc, MFLOPs) ask-and-tell loops, every trial trained
for all the table's epochs and charged them (a repeated architecture is paid again): Optuna has no
multi-objective pruner. optuna-scalar-sha / -hyperband: single objective, MnasNet's reward acc x (MFLOPs/10)^-0.07
reported after each epoch, Optuna's pruner stopping a trial, which is charged the epochs it trained. Seconds are
charged per epoch at the architecture's recorded seconds per epoch (search_replay.Meter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from resnas.replay import Table
from resnas.spaces import load_space

if TYPE_CHECKING:
    from search_replay import Event, Meter


def _objective_rows(table: Table):
    space = load_space(table.space)
    spec = space.sample(optuna.trial.FixedTrial(table.rows[0].params), in_channels=1, num_classes=10)

    def row(trial: optuna.Trial):
        s = space.sample(trial, in_channels=spec.in_channels, num_classes=spec.num_classes)
        return table.row(s)
    return row


def optuna_events(table: Table, seed: int, meter: Meter, sampler: str) -> list[Event]:
    """Multi-objective (val_acc, MFLOPs), every trial trained to the end: Optuna has no multi-objective pruner."""
    directions = ["maximize", "minimize"]
    cls = {"default": type(optuna.create_study(directions=directions).sampler),  # Optuna's own choice
           "nsga2": optuna.samplers.NSGAIISampler, "tpe": optuna.samplers.TPESampler,
           "random": optuna.samplers.RandomSampler}[sampler]
    study_ = optuna.create_study(directions=directions, sampler=cls(seed=seed))
    row_of = _objective_rows(table)
    while not meter.spent:
        trial = study_.ask()
        row = row_of(trial)
        meter.charge(row, table.epochs)
        study_.tell(trial, [row.val_acc, row.mflops])
        meter.record((row.val_acc, row.mflops))
    return meter.events


def optuna_scalar_events(table: Table, seed: int, meter: Meter, pruner: str, eta: int = 3,
                         target: float = 10.0, w: float = -0.07) -> list[Event]:
    """Single objective, MnasNet's reward acc * (MFLOPs/target)^w reported each epoch, Optuna's pruner stopping."""
    pruners = {"sha": optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=eta),
               "hyperband": optuna.pruners.HyperbandPruner(min_resource=1, max_resource=table.epochs,
                                                           reduction_factor=eta)}
    # HyperbandPruner assigns a trial's bracket by hashing the study name with the trial number: a fixed name
    # makes the search a function of the seed (a generated name drew other brackets on every run).
    study_ = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                 pruner=pruners[pruner], study_name=f"scalar-{pruner}-seed{seed}")
    row_of = _objective_rows(table)
    while not meter.spent:
        trial = study_.ask()
        row = row_of(trial)
        reward = [a * (row.mflops / target) ** w for a in row.curve]
        for e, r in enumerate(reward, 1):
            meter.charge(row)
            trial.report(r, e)
            if e < table.epochs and trial.should_prune():
                study_.tell(trial, state=TrialState.PRUNED)
                meter.record(None)
                break
        else:
            study_.tell(trial, max(reward))
            meter.record((row.val_acc, row.mflops))
    return meter.events


PEERS = {f"optuna-{s}": (lambda table, seed, meter, s=s: optuna_events(table, seed, meter, s))
         for s in ("default", "nsga2", "tpe", "random")}
PEERS |= {f"optuna-scalar-{p}": (lambda table, seed, meter, p=p: optuna_scalar_events(table, seed, meter, p))
          for p in ("sha", "hyperband")}
