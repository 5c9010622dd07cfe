"""Multi-objective asynchronous successive halving (MO-ASHA, Schmucker et al. 2021).

Optuna's pruners do not run in multi-objective studies, so this decides from the learning curves stored with
the trials. Rungs sit at geometrically spaced epochs (min_epochs * eta^i). A trial reaching a rung continues
only if it ranks in the top 1/eta of all trials that reached that rung, by non-dominated sorting of
(validation accuracy at that epoch, costs) with NSGA-II's crowding distance breaking ties. As in Optuna's
SuccessiveHalvingPruner, while fewer than eta trials have reached a rung the best one is let through.

A trial stopped at a rung is paused, not dropped: as in asynchronous SHA (Li et al. 2020), when later arrivals push
it into the top 1/eta of its rung, it is promoted and goes on from where it stopped (see search.promotion).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import UserError
from .pareto import first_in_top, in_top, top


@dataclass(frozen=True)
class MOASHA:
    max_epochs: int
    eta: int = 3
    min_epochs: int = 1

    def __post_init__(self) -> None:
        if self.eta < 2:
            raise UserError(f"eta must be an integer >= 2, got {self.eta}")
        if not 1 <= self.min_epochs <= self.max_epochs:
            raise UserError(f"min epochs must be in [1, epochs={self.max_epochs}], got {self.min_epochs}")

    def rungs(self) -> list[int]:
        """Epochs at which trials are compared; the last epoch is no rung (the trial simply finishes)."""
        out, epoch = [], self.min_epochs
        while epoch < self.max_epochs:
            out.append(epoch)
            epoch *= self.eta
        return out

    def top(self, points: Sequence[Sequence[float]] | np.ndarray, order: Sequence[int] | None = None) -> list[int]:
        """Indices of the top 1/eta of `points` (objective vectors to minimise, accuracy negated), best first; ties
        go to the lower `order` (default: the index)."""
        return top(points, max(1, len(points) // self.eta), order)

    def first_in_top(self, points: np.ndarray, candidates: np.ndarray,
                     order: Sequence[int] | None = None) -> int | None:
        """The best of `candidates` (a mask over `points`) among `top(points, order)`, or None."""
        return first_in_top(points, candidates, max(1, len(points) // self.eta), order)

    def continues(self, mine: Sequence[float], others: Sequence[Sequence[float]] | np.ndarray,
                  order: Sequence[int] | None = None) -> bool:
        """`mine` and each of `others`: objective vectors to minimise (accuracy negated) at this rung; `order`: the
        others' order for ties (mine comes first)."""
        others = np.asarray(others, dtype=float).reshape(-1, len(mine))
        ties = None if order is None else [-1, *order]
        return in_top(np.vstack([np.asarray(mine, dtype=float)[None], others]), 0,
                      max(1, (1 + len(others)) // self.eta), ties)
