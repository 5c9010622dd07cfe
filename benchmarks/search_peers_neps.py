"""NePS 0.17 peers for search_replay.py: MOASHA, MO-Hyperband and PriMO (pip install -r requirements-neps.txt, in
a venv of its own: NePS pins versions the Syne Tune peers' venv does not share).

Each is driven through NePS's AskAndTell (neps/optimizers/ask_and_tell.py), one worker, sequentially: ask for a
trial, replay its epochs from the table, tell its result, ask again. The space is the table's: a categorical per
parameter over the distinct values in the rows (HPOCategorical; a parameter with one value is a constant), plus the
fidelity `epochs`, an integer 1..table.epochs (9), eta 3, so the rungs are 1, 3 and 9 epochs.

Charging: a trial asks for its architecture at a fidelity f. A trial NePS promotes names the trial it continues
(`metadata.previous_trial_id`, the same configuration at the rung below): it resumes from that trial's epochs and
pays only the epochs from there to f. Any other trial trains from scratch and pays f epochs, a configuration NePS
samples again included (nothing in NePS says it continues). Each epoch is charged as it is trained, in epochs and
at the architecture's recorded seconds per epoch (search_replay.Meter), and a search stops inside a trial when the
meter is spent. Told objectives, both minimised: 1 - (the recorded val_acc after epoch f) and log10 MFLOPs. A
trial at the top fidelity is fully trained: it adds (its best epoch's val_acc, MFLOPs) to the found front, as a
fully trained resnas trial does.

  - neps-moasha: `algorithms.moasha(space, eta=3, mo_selector="epsnet")`: one asynchronous bracket; a rung promotes
    the first of the epsilon-net ranking's top len(rung) // eta configurations not yet promoted, else a new
    configuration is sampled uniformly at rung 0 (1 epoch).
  - neps-mo-hyperband: `algorithms.mo_hyperband(space, eta=3, mo_selector="epsnet")`: synchronous successive-
    halving brackets starting at 1, 3 and 9 epochs (9/3/1, 5/1 and 3 configurations), repeated; the same selector.
  - neps-primo: `algorithms.primo(space, eta=3, mo_selector="epsnet", prior_centers={})`: MOASHA as above until
    the reported fidelities sum to `initial_design_size` ("ndim": the number of searchable parameters, 4 here)
    top-fidelity units, then Bayesian optimisation over top-fidelity configurations (a GP on the trials at the top
    fidelity, qLogNoisyExpectedImprovement of one random scalarisation of the two objectives, drawn once per
    search). We give no priors (the table has none to give), so PriMO's prior-weighted acquisition is off.
`mo_selector="nsga2"` raises NotImplementedError in 0.17 (neps/optimizers/utils/brackets.py, Rung.mo_selector).

Seeding: NePS takes no seed; its samplers draw from torch's global generator (Uniform, BoTorch's acquisition
optimisation) and numpy's (the epsilon net's first point, PriMO's scalarisation weights). Every search runs with
random, numpy and torch seeded to `seed` and their states restored afterwards.

Found while reading, left as shipped: neps/optimizers/utils/multiobjective/epsnet.py is Syne Tune's epsilon net,
with its within-front inversion (compute_epsilon_net returns ranks that nondominated_sort uses as an order; see
search_peers.py); NePS reads nondominated_sort's result as an order (Rung.epsnet_selector), so the whole-front
ranking bug of Syne Tune 0.16's MOASHA is not there.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import neps
import numpy as np
import torch
from neps.optimizers import algorithms

from resnas.replay import Row, Table

if TYPE_CHECKING:
    from search_replay import Event, Meter, Point

FIDELITY = "epochs"
ETA = 3


def search_space(table: Table) -> neps.SearchSpace:
    values: dict[str, list[Any]] = {}
    for row in table.rows:
        for name, value in row.params.items():
            if value not in values.setdefault(name, []):
                values[name].append(value)
    elements: dict[str, Any] = {name: neps.HPOCategorical(choices=sorted(vs)) if len(vs) > 1
                                else neps.HPOConstant(vs[0]) for name, vs in values.items()}
    elements[FIDELITY] = neps.HPOInteger(lower=1, upper=table.epochs, is_fidelity=True)
    return neps.SearchSpace(elements)


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((k, v) for k, v in params.items() if k != FIDELITY))


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


def _train(row: Row, start: int, stop: int, meter: Meter) -> bool:
    """Charges epochs start+1..stop one at a time; False if the meter was spent before the last of them."""
    for _ in range(start, stop):
        if meter.spent:
            return False
        meter.charge(row)
    return True


def replay(optimizer: Any, table: Table, seed: int, meter: Meter) -> list[Event]:
    """One Event per trial that ended; a trial cut by the budget adds none."""
    rows = {_key(r.params): r for r in table.rows}
    driver = neps.AskAndTell(optimizer)
    trained: dict[str, int] = {}  # trial id -> the epochs its configuration has trained when it ended
    with _seeded(seed):
        while not meter.spent:
            trial = driver.ask()
            fidelity, row = int(trial.config[FIDELITY]), rows[_key(trial.config)]
            previous = trial.metadata.previous_trial_id
            if previous is not None and _key(driver.trials[previous].config) != _key(trial.config):
                raise NotImplementedError(f"trial {trial.id} continues {previous}, another configuration")
            start = trained.get(previous, 0) if previous is not None else 0
            if not _train(row, start, fidelity, meter):
                break
            trained[trial.id] = fidelity
            driver.tell(trial, {"objective_to_minimize": [1.0 - row.curve[fidelity - 1], math.log10(row.mflops)]})
            point: Point | None = (row.val_acc, row.mflops) if fidelity == table.epochs else None
            meter.record(point)
    return meter.events


def moasha_events(table: Table, seed: int, meter: Meter) -> list[Event]:
    return replay(algorithms.moasha(search_space(table), eta=ETA, mo_selector="epsnet"), table, seed, meter)


def mo_hyperband_events(table: Table, seed: int, meter: Meter) -> list[Event]:
    return replay(algorithms.mo_hyperband(search_space(table), eta=ETA, mo_selector="epsnet"), table, seed, meter)


def primo_events(table: Table, seed: int, meter: Meter) -> list[Event]:
    optimizer = algorithms.primo(search_space(table), eta=ETA, mo_selector="epsnet", prior_centers={})
    return replay(optimizer, table, seed, meter)


PEERS: dict[str, Callable[[Table, int, Meter], list[Event]]] = {
    "neps-moasha": moasha_events,
    "neps-mo-hyperband": mo_hyperband_events,
    "neps-primo": primo_events,
}
