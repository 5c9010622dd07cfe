"""ASHA's promotion of paused trials (asynchronous successive halving, Li et al. 2020).

MO-ASHA decides at each rung whether a trial goes on, against the trials that reached the rung before it. One
that was stopped because early arrivals were strong (or because it starts slowly) is paused, not dropped: once
it ranks in the top 1/eta of everything that has reached its rung, the search proposes its architecture again
and the trial resumes from its saved state. Higher rungs are served first, as in ASHA.
"""

from __future__ import annotations

from optuna.trial import FrozenTrial, TrialState

from .. import records as R
from ..asha import MOASHA
from ..pareto import to_minimise


def next_promotion(trials: list[FrozenTrial], asha: MOASHA, objectives: tuple[str, ...]) -> FrozenTrial | None:
    """The paused trial to promote now, or None."""
    costs = [o for o in objectives if o != R.VAL_ACC]
    maximise = [True] + [False] * len(costs)
    furthest = R.furthest(trials, running=True)
    busy = {R.arch_key(t) for t in trials if t.state == TrialState.RUNNING}
    # each paused trial is promoted once: a promotion that failed, or found the state unreadable and paused again
    # lower down, is not retried (its architecture has newer trials, which may be promoted in their turn)
    promoted = {t.user_attrs[R.PROMOTED] for t in trials
                if R.PROMOTED in t.user_attrs and R.SURPLUS not in t.user_attrs}
    for rung in reversed(asha.rungs()):
        pool = [t for t in furthest.values()
                if len(t.user_attrs.get(R.CURVE, [])) >= rung and all(o in t.user_attrs for o in costs)]
        points = [to_minimise([t.user_attrs[R.CURVE][rung - 1]] + [t.user_attrs[o] for o in costs], maximise)
                  for t in pool]
        for i in asha.top(points) if pool else []:
            t = pool[i]
            if (t.state != TrialState.RUNNING and t.user_attrs.get(R.STOPPED_AT) == rung and R.PAUSED in t.user_attrs
                    and t.number not in promoted and R.arch_key(t) not in busy):
                return t
    return None
