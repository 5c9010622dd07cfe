"""ASHA's promotion of paused trials (asynchronous successive halving, Li et al. 2020).

MO-ASHA decides at each rung whether a trial goes on, against the trials that reached the rung before it. One
that was stopped because early arrivals were strong (or because it starts slowly) is paused, not dropped: once
it ranks in the top 1/eta of everything that has reached its rung, the search proposes its architecture again
and the trial resumes from its saved state. Higher rungs are served first, as in ASHA.
"""

from __future__ import annotations

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from .. import records as R
from ..asha import MOASHA
from .ledger import Ledger


def next_promotion(ledger: Ledger, asha: MOASHA) -> FrozenTrial | None:
    """The paused trial to promote now, or None (the ledger up to date)."""
    running = ledger.running()
    busy = {R.arch_key(t) for t in running}
    # each paused trial is promoted once: a promotion that failed, or found the state unreadable and paused again
    # lower down, is not retried (its architecture has newer trials, which may be promoted in their turn)
    promoted = ledger.promoted | {t.user_attrs[R.PROMOTED] for t in ledger.unfinished()
                                  if R.PROMOTED in t.user_attrs and R.SURPLUS not in t.user_attrs}
    specs = {key[0] for key in busy}
    for rung in reversed(asha.rungs()):
        points, pool, order = ledger.rung(rung)
        paused = np.fromiter((t.state != TrialState.RUNNING and t.user_attrs.get(R.STOPPED_AT) == rung
                              and R.PAUSED in t.user_attrs and t.number not in promoted
                              and not (t.user_attrs[R.SPEC] in specs and R.arch_key(t) in busy) for t in pool),
                             dtype=bool, count=len(pool))
        if (i := asha.first_in_top(points, paused, order)) is not None:
            return pool[i]
    return None
