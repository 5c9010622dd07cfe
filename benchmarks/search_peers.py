"""Syne Tune 0.16 peers for search_replay.py: MOASHA as shipped, MOASHA with its ranking bug corrected, and
MO-REA, each driven by a sequential one-worker replay loop on a recorded table (pip install -r requirements.txt).

Objectives: Syne Tune 0.16 takes one `do_minimize` for all metrics, so each epoch reports `val_error` =
1 - (that epoch's recorded val_acc) and `mflops` (constant for an architecture), both minimised.

Seeding: the schedulers' `random_seed` does not seed their sampling. MOASHA only stores it
(optimizer/scheduler.py, TrialScheduler.__init__, lines 115-118) and draws configs and brackets from numpy's
global generator (moasha.py, MOASHA.suggest lines 110-115 call `Domain.sample()` without a generator;
on_trial_add line 121 `np.random.choice`); MO-REA's random configs too (searchers/regularized_evolution.py,
sample_random_config lines 46-51 ignore `rng`). So every search runs with numpy's global generator seeded to
`seed`, restored afterwards.

The MOASHA ranking bug (syne-tune 0.16.0, files under syne_tune/optimizer/schedulers/):
  - MOASHA.__init__ (multiobjective/moasha.py lines 81-84, 93-98) gives each Bracket a NonDominatedPriority.
  - MOPriority.__call__ promises "a vector with shape (num_samples,) that gives priority for the different
    elements (lower elements are picked first)" (multiobjective/multiobjective_priority.py lines 15-20), but
    NonDominatedPriority.priority_unsafe (same file, lines 97-102) returns `nondominated_sort(...)`
    (multiobjective/non_dominated_priority.py lines 91-147), which is the list of point indices best first:
    entry k is the index of the k-th best point, not point k's priority.
  - Bracket.on_result (asha.py lines 257-267) takes that list as per-point priorities:
    `ranks = np.searchsorted(sorted(priorities), priorities) / len(priorities)` (262-264) is then
    `order / n`, and `new_priority_rank = ranks[-1]` (265) is (index of the WORST point) / n, not the new
    point's rank; the trial stops if it exceeds 1 / reduction_factor (266-267). Whether a new result continues
    depends on when the worst recorded result was recorded. Hand check (rung 1, rf 3, minimising
    (error, MFLOPs), the new point last): recorded (.4,4) (.1,1) (.2,2), new (.3,3), 3rd of 4: the sort gives
    [1, 2, 3, 0], rank 0/4, shipped CONTINUES (fixed: 2/4, STOP); recorded (.1,1) (.2,2) (.3,3), new
    (.05,.5), best of 4: [3, 0, 1, 2], rank 2/4, shipped STOPS the best point (fixed: 0/4, CONTINUE).
Fix (synetune-moasha-fixed): `RankPriority`, a NonDominatedPriority whose priority_unsafe inverts that
permutation (priority[order[k]] = k, each point's own 0-based rank), passed as MOASHA's
`multiobjective_priority`; nothing else changes, and site-packages is untouched.

Found while reading, left as shipped (the peers are "as shipped" apart from the fix above):
  - compute_epsilon_net (non_dominated_priority.py lines 84-88) returns each item's rank, but nondominated_sort
    uses it as an order (`pareto_front[pareto_order]`, lines 129-132), so within one Pareto front the points
    come in the inverse permutation of the epsilon-net order (e.g. front (0,10) (1,9) (5,5) (9,1) (10,0):
    epsilon-net order [0, 4, 2, 1, 3], returned [0, 3, 2, 4, 1]). The fix above keeps this within-front order.
  - MO-REA has the MOASHA bug too: MultiObjectiveRegularizedEvolution.on_trial_complete
    (multiobjective/multi_objective_regularized_evolution.py lines 99-101) sets `pi.score = priorities[i]`
    from the same best-first list, so a parent's "score" is the index of the i-th best member.
  - The epsilon net measures raw Euclidean distance, so with MFLOPs in the hundreds and errors below 1 the
    order within a front is driven by MFLOPs; fronts themselves do not depend on scale.

MO-REA: Syne Tune 0.16 ships it as a searcher, MultiObjectiveRegularizedEvolution (no scheduler or baseline),
run here inside SingleFidelityScheduler, every trial trained for all the table's epochs. Its defaults,
population 100 and sample 10, would make the first 100 trials (900 epochs, nearly all of the benchmark's 1000-
epoch budget) random search over a 256-architecture space; we use population 20 and sample 5 (Real et al.'s
1:4 sample-to-population ratio), so evolution starts after 180 epochs; `synetune-morea-defaults` runs 100 / 10.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from syne_tune.backend.trial_status import Trial
from syne_tune.config_space import choice
from syne_tune.optimizer.scheduler import SchedulerDecision, TrialScheduler
from syne_tune.optimizer.schedulers.multiobjective import MultiObjectiveRegularizedEvolution
from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
from syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority import NonDominatedPriority
from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

from resnas.replay import Row, Table

if TYPE_CHECKING:
    from search_replay import Event, Meter, Point

METRICS = ["val_error", "mflops"]  # both minimised
TIME_ATTR = "epoch"
POPULATION, SAMPLE = 20, 5  # MO-REA; see the module docstring


class RankPriority(NonDominatedPriority):
    """NonDominatedPriority returning each point's own rank in the non-dominated sort, as MOPriority promises
    and Bracket.on_result expects, instead of the best-first list of indices."""

    def priority_unsafe(self, objectives: np.ndarray) -> np.ndarray:
        order = np.asarray(super().priority_unsafe(objectives), dtype=int)
        ranks = np.empty(len(order), dtype=int)
        ranks[order] = np.arange(len(order))
        return ranks


# ---- the table as a Syne Tune configuration space -----------------------------------------------------------

def _encode(value: Any) -> str:
    """Values as JSON strings: lists become hashable and one choice() never mixes types (Categorical asserts)."""
    return json.dumps(value, sort_keys=True)


def _key(config: dict[str, Any]) -> str:
    return json.dumps({k: config[k] for k in sorted(config)})


def config_space(table: Table) -> dict[str, Any]:
    """A choice() per parameter over the distinct values in the rows; a parameter with one value is a constant."""
    values: dict[str, set[str]] = {}
    for row in table.rows:
        for name, value in row.params.items():
            values.setdefault(name, set()).add(_encode(value))
    return {name: choice(sorted(vs)) if len(vs) > 1 else next(iter(vs)) for name, vs in values.items()}


def rows_by_config(table: Table) -> dict[str, Row]:
    return {_key({k: _encode(v) for k, v in row.params.items()}): row for row in table.rows}


# ---- the replay loop: one worker, as Syne Tune's Tuner drives a scheduler -----------------------------------

@dataclass
class _Run:
    trial: Trial
    row: Row
    epoch: int = 0  # epochs trained so far: a paused run resumes after it


@contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _next_run(scheduler: TrialScheduler, runs: dict[int, _Run], rows: dict[str, Row]) -> _Run | None:
    """The scheduler's next trial: a new one (on_trial_add, as the Tuner does) or a paused one to resume."""
    suggestion = scheduler.suggest()
    if suggestion is None:
        return None
    if not suggestion.spawn_new_trial_id:
        run = runs[suggestion.checkpoint_trial_id]
        if suggestion.config is not None and _key(suggestion.config) != _key(run.trial.config):
            raise NotImplementedError("resuming a trial with a new configuration")
        return run
    if suggestion.checkpoint_trial_id is not None:
        raise NotImplementedError("starting a trial from another trial's checkpoint")
    trial = Trial(trial_id=len(runs), config=dict(suggestion.config), creation_time=datetime.now())
    runs[trial.trial_id] = run = _Run(trial, rows[_key(suggestion.config)])
    scheduler.on_trial_add(trial)
    return run


def _train(scheduler: TrialScheduler, run: _Run, epochs: int, meter: Meter) -> Point | None:
    """Replays `run` epoch by epoch, each charged to the meter, until the scheduler stops or pauses it, it completes,
    or the meter is spent. Like the Tuner: a trial stopped or paused (MOASHA's STOP at max_t included) gets
    on_trial_remove, one that completes while told to continue gets on_trial_complete. Returns the point a
    completed trial adds."""
    while not meter.spent:
        run.epoch += 1
        meter.charge(run.row)
        result = {TIME_ATTR: run.epoch, "val_error": 1.0 - run.row.curve[run.epoch - 1], "mflops": run.row.mflops}
        decision = scheduler.on_trial_result(run.trial, result)
        finished = run.epoch == epochs
        if decision == SchedulerDecision.CONTINUE and not finished:
            continue
        if decision == SchedulerDecision.CONTINUE:
            scheduler.on_trial_complete(run.trial, result)
        else:
            scheduler.on_trial_remove(run.trial)
        return (run.row.val_acc, run.row.mflops) if finished else None
    return None  # the budget ended inside this trial


def replay(scheduler: TrialScheduler, table: Table, seed: int, meter: Meter) -> list[Event]:
    """One Event per trial evaluation that ended; stops when the meter is spent or the scheduler suggests nothing."""
    rows, runs = rows_by_config(table), {}
    with _numpy_seed(seed):
        while not meter.spent and (run := _next_run(scheduler, runs, rows)) is not None:
            meter.record(_train(scheduler, run, table.epochs, meter))
    return meter.events


# ---- the peers -----------------------------------------------------------------------------------------------

def moasha_events(table: Table, seed: int, meter: Meter, fixed: bool = False) -> list[Event]:
    scheduler = MOASHA(config_space(table), metrics=METRICS, do_minimize=True, time_attr=TIME_ATTR,
                       multiobjective_priority=RankPriority() if fixed else None, max_t=table.epochs,
                       grace_period=1, reduction_factor=3, random_seed=seed)
    return replay(scheduler, table, seed, meter)


def morea_events(table: Table, seed: int, meter: Meter, population: int = POPULATION,
                 sample: int = SAMPLE) -> list[Event]:
    space = config_space(table)
    searcher = MultiObjectiveRegularizedEvolution(space, population_size=population, sample_size=sample,
                                                  random_seed=seed)
    scheduler = SingleFidelityScheduler(space, metrics=METRICS, do_minimize=True, searcher=searcher,
                                        random_seed=seed)
    return replay(scheduler, table, seed, meter)


PEERS: dict[str, Callable[[Table, int, Meter], list[Event]]] = {
    "synetune-moasha": moasha_events,
    "synetune-moasha-fixed": lambda table, seed, meter: moasha_events(table, seed, meter, fixed=True),
    "synetune-morea": morea_events,
    "synetune-morea-defaults": lambda table, seed, meter: morea_events(table, seed, meter, 100, 10),
}
