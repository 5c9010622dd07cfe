"""A worker's running account of its study: what the loop, the trial and MO-ASHA ask of all trials (budget counts,
the furthest trial of each architecture, every architecture's point at a rung), kept up to date from the trials
that are new or still running since the last look.

A finished trial never changes, so each is read once; only the running ones are read again. Asked of the whole list
each time, these questions cost O(trials) Python work per question, several times a trial: at 10^4 trials that
was most of a trial's own cost. The answers are those of the functions in `records` over the same trials (the
tests compare them), in the same order, so the search takes the same decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from .. import records as R
from ..pareto import to_minimise

Key = tuple[str, str]
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def trial_at(trials: list[FrozenTrial], number: int) -> FrozenTrial:
    """Trial `number` of a study's trials (Optuna numbers them 0..n-1, so it sits at its number)."""
    if number < len(trials) and trials[number].number == number:
        return trials[number]
    return next(t for t in trials if t.number == number)


class Watch:
    """Which of a study's trials finished since the last look: a finished trial never changes, so each is handed
    out once, and only those still running are looked at again."""

    def __init__(self) -> None:
        self.seen = 0  # trials[:seen] have been looked at
        self.live: dict[int, FrozenTrial] = {}  # not finished when last seen

    def finished(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """The trials finished since the last call (those then live first), the live ones brought up to date."""
        done = []
        for number in list(self.live):
            t = trial_at(trials, number)
            if t.state.is_finished():
                del self.live[number]
                done.append(t)
            else:
                self.live[number] = t
        for t in trials[self.seen:]:
            if t.state.is_finished():
                done.append(t)
            else:
                self.live[t.number] = t
        self.seen = len(trials)
        return done


@dataclass
class _Rung:
    """The finished architectures that reached one rung: their points (to minimise) and who stands for each."""

    width: int  # accuracy and the costs
    keys: list[Key] = field(default_factory=list)
    rows: dict[Key, int] = field(default_factory=dict)
    stand: list[FrozenTrial] = field(default_factory=list)
    order: list[int] = field(default_factory=list)  # the first number of each architecture's trials
    buffer: np.ndarray | None = None  # the points, a row each, in an array that doubles when full (rebuilt from a
    # list at every new point, the array cost O(architectures) a trial)

    def points(self) -> np.ndarray:
        """The rows so far (a view: read it before the next change)."""
        return np.zeros((0, self.width)) if self.buffer is None else self.buffer[:len(self.keys)]

    def put(self, row: int, p: list[float]) -> None:
        if self.buffer is None or row >= len(self.buffer):
            grown = np.zeros((max(64, 2 * row), self.width))
            if self.buffer is not None:
                grown[:len(self.buffer)] = self.buffer
            self.buffer = grown
        self.buffer[row] = p


class Ledger:
    def __init__(self, costs: tuple[str, ...] = ()) -> None:
        self.costs = costs  # the cost objectives a rung point holds after the accuracy
        self.trials: list[FrozenTrial] = []
        self._watch = Watch()
        self.done: dict[Key, FrozenTrial] = {}  # the furthest finished (complete or stopped) trial of each arch
        self.first: dict[Key, int] = {}  # the first number of each architecture's counting trials
        self.finished = 0  # finished counting trials (records.budget_trials), before retries are taken off
        self._failed: set[int] = set()  # counting trials that failed
        self.retried: set[int] = set()
        self.promoted: set[int] = set()  # paused trials already promoted
        self.n_stopped = 0  # architectures whose furthest trial stopped early
        self.kinds: dict[str, int] = {}  # finished trials of each `records.trial_kind`
        self.best: float | None = None  # the best validation accuracy a counting trial recorded
        self._rungs: dict[int, _Rung] = {}

    # ---- keeping up ------------------------------------------------------------------------------------------

    def update(self, trials: list[FrozenTrial]) -> Ledger:
        """Take in the study's trials (Optuna's `get_trials(deepcopy=False)`, numbered 0..n-1)."""
        self.trials = trials
        for t in self._watch.finished(trials):
            self._finish(t)
        return self

    def _finish(self, t: FrozenTrial) -> None:
        self.retried |= R.retried([t])
        kind = R.trial_kind(t)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if R.counts(t) and R.VAL_ACC in t.user_attrs:
            self.best = max(self.best or 0.0, t.user_attrs[R.VAL_ACC])
        if R.PROMOTED in t.user_attrs and R.SURPLUS not in t.user_attrs:
            self.promoted.add(t.user_attrs[R.PROMOTED])
        if not R.counts(t):
            return
        self.finished += 1
        if t.state == TrialState.FAIL:
            self._failed.add(t.number)
        if t.state not in DONE or R.SPEC not in t.user_attrs:
            return
        k = R.arch_key(t)
        self.first[k] = min(self.first.get(k, t.number), t.number)
        for r in self._rungs.values():  # it may have finished after a later trial of its architecture
            if (row := r.rows.get(k)) is not None:
                r.order[row] = self.first[k]
        old = self.done.get(k)
        if not R.further(t, old):
            return
        self.n_stopped += R.stopped_early(t) - (old is not None and R.stopped_early(old))
        self.done[k] = t
        for rung, r in self._rungs.items():
            self._place(r, k, t, rung)

    # ---- what the loop and the trial ask ---------------------------------------------------------------------

    def budget(self, *, excluding: int | None = None) -> tuple[int, int]:
        """(finished, running) trials that count against the budget (`records.budget_trials`)."""
        retried = self.retried | R.retried(list(self._watch.live.values()))
        finished = self.finished - len(self._failed & retried)
        running = sum(t.state == TrialState.RUNNING and R.counts(t) and t.number != excluding
                      for t in self._watch.live.values())
        return finished, running

    def waiting(self) -> bool:
        return any(t.state == TrialState.WAITING for t in self._watch.live.values())

    def running(self) -> list[FrozenTrial]:
        return [t for t in self._watch.live.values() if t.state == TrialState.RUNNING]

    def trial(self, number: int) -> FrozenTrial | None:
        """Trial `number` as last seen (None: not yet seen)."""
        return trial_at(self.trials, number) if number < len(self.trials) else None

    def unfinished(self) -> list[FrozenTrial]:
        """Running and waiting (enqueued) trials."""
        return list(self._watch.live.values())

    def furthest(self, key: Key, *, running: bool = False) -> FrozenTrial | None:
        """`records.furthest(trials, running=...)[key]`."""
        best = self.done.get(key)
        for t in self.running() if running else []:
            if R.counts(t) and R.SPEC in t.user_attrs and R.arch_key(t) == key and R.further(t, best):
                best = t
        return best

    def architectures(self) -> int:
        return len(self.done)

    # ---- rungs -----------------------------------------------------------------------------------------------

    def rung(self, rung: int, *, skip: Key | None = None) -> tuple[np.ndarray, list[FrozenTrial], list[int]]:
        """Every architecture's point at `rung` (accuracy at that epoch, then the costs; to minimise), the trial
        that stands for it, and its first trial's number (the order of `records.furthest`), running trials
        included: what MO-ASHA ranks a trial against and what ASHA promotes from. `skip`: leave one out."""
        r = self._rungs.get(rung)
        if r is None:
            r = self._rungs[rung] = _Rung(1 + len(self.costs))
            for k, t in self.done.items():
                self._place(r, k, t, rung)
        ahead: dict[Key, FrozenTrial] = {}  # running trials that stand for their architecture
        earliest: dict[Key, int] = {}  # running trials numbered before their architecture's first finished one
        for t in self.running():
            if R.counts(t) and R.SPEC in t.user_attrs:
                k = R.arch_key(t)
                if R.further(t, ahead.get(k, self.done.get(k))):
                    ahead[k] = t
                if t.number < earliest.get(k, self.first.get(k, t.number + 1)):
                    earliest[k] = t.number
        points, stand, order = r.points(), r.stand, r.order
        copied = False
        if any(k in r.rows for k in earliest):
            order = list(order)
            for k, n in earliest.items():
                if (row := r.rows.get(k)) is not None:
                    order[row] = n
        extra, drop = [], []
        for k, t in ahead.items():
            p, row = self._point(t, rung), r.rows.get(k)
            if row is not None:  # it trained further than the finished trial: it stands in that row (or in none)
                if not copied:
                    points, stand, copied = points.copy(), list(stand), True
                if p is None:
                    drop.append(row)
                else:
                    points[row], stand[row] = p, t
            elif p is not None:
                extra.append((p, t, earliest.get(k, self.first.get(k, t.number))))
        if extra:
            points = np.concatenate([points, np.asarray([p for p, _, _ in extra], dtype=float)])
            stand, order = [*stand, *(t for _, t, _ in extra)], [*order, *(o for _, _, o in extra)]
        if skip is not None:
            drop += [row] if (row := r.rows.get(skip)) is not None else []
            drop += [len(r.keys) + i for i, (_, t, _) in enumerate(extra) if R.arch_key(t) == skip]
        if drop:
            keep = np.setdiff1d(np.arange(len(points)), drop)
            points, stand, order = points[keep], [stand[i] for i in keep], [order[i] for i in keep]
        return points, stand, order

    def _point(self, t: FrozenTrial, rung: int) -> list[float] | None:
        curve = t.user_attrs.get(R.CURVE, [])
        if len(curve) < rung or not all(o in t.user_attrs for o in self.costs):
            return None
        return to_minimise([curve[rung - 1]] + [t.user_attrs[o] for o in self.costs],
                           [True] + [False] * len(self.costs))

    def _place(self, r: _Rung, k: Key, t: FrozenTrial, rung: int) -> None:
        p = self._point(t, rung)
        if p is None:
            return
        if k in r.rows:
            row = r.rows[k]
            r.stand[row], r.order[row] = t, self.first[k]
        else:
            row = r.rows[k] = len(r.keys)
            r.keys.append(k)
            r.stand.append(t)
            r.order.append(self.first[k])
        r.put(row, p)
