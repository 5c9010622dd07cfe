"""What a study's trials say about each candidate of the EHVI sampler's pool (search.ehvi), kept up to date the way
search.ledger keeps its account: a finished trial is read once, only running ones again. Reading every trial each
time cost O(trials) per proposal, the one part of the sampler that still grew with the study."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from .. import records as R
from .ledger import Watch

CHOSEN = "ehvi_params"  # trial system attribute: the params the sampler chose for it
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)  # what records.furthest(running=True) reads


def params_id(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


@dataclass
class Evidence:
    """What the trials so far say about each pool candidate (by index)."""
    full: dict[int, tuple[float, list[float]]] = field(default_factory=dict)  # trained to the end: (val_acc, curve)
    partial: dict[int, list[float]] = field(default_factory=dict)  # stopped early: its curve so far
    resumable: set[int] = field(default_factory=set)  # partial ones whose training state was kept
    running: set[int] = field(default_factory=set)
    blocked: set[int] = field(default_factory=set)  # rejected by a limit or the size guard, or failed


class Reader:
    """Evidence from a study's trials (Optuna's `get_trials(deepcopy=False)`, numbered 0..n-1). `index`: pool index
    by records.arch_key; `chosen`: pool index by the params CHOSEN stores, for running trials that have not
    recorded their architecture yet. Candidates come in the order of their first trial, as records.furthest
    gives them, so the surrogate sees its observations in the same order however the reads fell."""

    def __init__(self, index: dict[tuple[str, str], int], chosen: dict[str, int]) -> None:
        self.index, self.chosen = index, chosen
        self._watch = Watch()
        self._done: dict[int, FrozenTrial] = {}  # the furthest finished counting trial of each candidate
        self._first: dict[int, int] = {}  # the first number among those finished trials
        self._blocked: set[int] = set()

    def read(self, trials: list[FrozenTrial], me: int) -> Evidence:
        """The evidence for proposing trial `me` (itself left out)."""
        for t in self._watch.finished(trials):
            self._finish(t)
        return self._evidence(me)

    def _candidate(self, t: FrozenTrial) -> int | None:
        return self.index.get(R.arch_key(t)) if R.SPEC in t.user_attrs else None

    def _finish(self, t: FrozenTrial) -> None:
        i = self._candidate(t)
        if i is None:
            return
        if R.REJECTED in t.user_attrs or t.state == TrialState.FAIL:
            self._blocked.add(i)
        _stand(t, i, self._done, self._first)

    def _evidence(self, me: int) -> Evidence:
        ev = Evidence(blocked=set(self._blocked))
        furthest, first = dict(self._done), dict(self._first)
        for t in self._watch.live.values():
            if t.number == me:
                continue
            i = self._candidate(t)
            if R.REJECTED in t.user_attrs and i is not None:
                ev.blocked.add(i)
                continue
            if t.state == TrialState.RUNNING:  # a resumed one is running before its curve grows
                marked = t.system_attrs.get(CHOSEN) or params_id(t.system_attrs.get("fixed_params") or {})
                running = i if i is not None else self.chosen.get(marked)
                if running is not None:
                    ev.running.add(running)
            if i is not None:
                _stand(t, i, furthest, first)
        for i in sorted(furthest, key=first.__getitem__):
            if i in ev.running:
                continue
            t = furthest[i]
            curve = list(t.user_attrs.get(R.CURVE, []))
            if R.fully_trained(t):
                ev.full[i] = (t.user_attrs[R.VAL_ACC], curve)
            elif curve:
                ev.partial[i] = curve
                if R.PAUSED in t.user_attrs:
                    ev.resumable.add(i)
        return ev


def _stand(t: FrozenTrial, i: int, furthest: dict[int, FrozenTrial], first: dict[int, int]) -> None:
    """Let counting trial `t` of candidate `i` stand for it if it trained further (records.furthest's rule), and
    keep the candidate's first trial number (its place in records.furthest's order)."""
    if t.state in COUNTED and R.counts(t):
        first[i] = min(first.get(i, t.number), t.number)
        if R.further(t, furthest.get(i)):
            furthest[i] = t
