"""What a study's trials say about each candidate of the EHVI sampler's pool (search.ehvi), kept up to date the way
search.ledger keeps its account: a finished trial is read once, only running ones again. Reading every trial each
time cost O(trials) per proposal, the one part of the sampler that still grew with the study."""

from __future__ import annotations

import bisect
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
    gives them, so the surrogate sees its observations in the same order however the reads fell.

    What finished trials say is kept as it arrives (each candidate's furthest trial, its curve read once, its place
    in that order); a proposal then takes only the running trials into account. Rebuilt from every trial at each
    proposal, the evidence cost O(trials) Python work a trial, the last part of the sampler that grew with the
    study."""

    def __init__(self, index: dict[tuple[str, str], int], chosen: dict[str, int]) -> None:
        self.index, self.chosen = index, chosen
        self._watch = Watch()
        self._done: dict[int, FrozenTrial] = {}  # the furthest finished counting trial of each candidate
        self._first: dict[int, int] = {}  # the first number among those finished trials
        self._order: list[int] = []  # candidates by their first number (which `_firsts` holds, ascending)
        self._firsts: list[int] = []
        self._full: dict[int, tuple[float, list[float]]] = {}  # what the furthest trials say, as in Evidence
        self._partial: dict[int, list[float]] = {}
        self._resumable: set[int] = set()
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
        if t.state not in COUNTED or not R.counts(t):  # records.furthest's rule: counting trials stand
            return
        self._place(i, min(self._first.get(i, t.number), t.number))
        if R.further(t, self._done.get(i)):
            self._done[i] = t
            self._read_trial(i, t)

    def _place(self, i: int, first: int) -> None:
        """Candidate `i` at its place in the order of first trials."""
        old = self._first.get(i)
        if old == first:
            return
        if old is not None:
            at = bisect.bisect_left(self._firsts, old)
            del self._firsts[at], self._order[at]
        at = bisect.bisect_left(self._firsts, first)
        self._firsts.insert(at, first)
        self._order.insert(at, i)
        self._first[i] = first

    def _read_trial(self, i: int, t: FrozenTrial) -> None:
        """What candidate `i`'s furthest trial `t` says: trained to the end, or a partial curve (resumable where its
        training state was kept), or nothing."""
        curve = list(t.user_attrs.get(R.CURVE, []))
        self._full.pop(i, None)
        self._partial.pop(i, None)
        self._resumable.discard(i)
        if R.fully_trained(t):
            self._full[i] = (t.user_attrs[R.VAL_ACC], curve)
        elif curve:
            self._partial[i] = curve
            if R.PAUSED in t.user_attrs:
                self._resumable.add(i)

    def _evidence(self, me: int) -> Evidence:
        running, blocked = set(), set(self._blocked)
        for t in self._watch.live.values():
            if t.number == me:
                continue
            i = self._candidate(t)
            if R.REJECTED in t.user_attrs and i is not None:
                blocked.add(i)
            elif t.state == TrialState.RUNNING:  # a resumed one is running before its curve grows
                marked = t.system_attrs.get(CHOSEN) or params_id(t.system_attrs.get("fixed_params") or {})
                j = i if i is not None else self.chosen.get(marked)
                if j is not None:
                    running.add(j)
        full, partial = self._full, self._partial
        return Evidence(full={i: full[i] for i in self._order if i in full and i not in running},
                        partial={i: partial[i] for i in self._order if i in partial and i not in running},
                        resumable=self._resumable - running, running=running, blocked=blocked)
