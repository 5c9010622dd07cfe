"""The search's ledger answers what `records` answers over the whole list of trials, as the study grows, with
trials finishing out of order, pausing, resuming, failing and being retried; and the fast ranking agrees with
non-dominated sorting with crowding, ties included."""

import random

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from resnas import records as R
from resnas.asha import MOASHA
from resnas.pareto import in_top, rank, to_minimise, top
from resnas.search.ledger import Ledger

COSTS = ("mflops",)


def _trial(number, state, key, curve, **attrs):
    values = [curve[-1] if curve else 0.0, 1.0] if state == TrialState.COMPLETE else None
    t = optuna.trial.create_trial(state=state, values=values, user_attrs={R.SPEC: key, R.TRAINING: {}, R.CURVE: curve,
                                                                          R.MFLOPS: float(len(key)), **attrs})
    t.number = number
    return t


def _history(rng: random.Random, n: int):
    """n trials, each with the step it starts and the step it finishes, and how it looks running and finished."""
    out = []
    for number in range(n):
        key = f"a{rng.randrange(12)}" + "x" * rng.randrange(3)
        start = number
        end = start + rng.randrange(1, 6)
        epochs = rng.choice([1, 1, 3, 9])
        curve = [round(rng.choice([0.5, 0.6, 0.7, 0.8]) + 0.01 * e, 2) for e in range(epochs)]
        attrs = {}
        state = rng.choice([TrialState.COMPLETE] * 6 + [TrialState.PRUNED, TrialState.FAIL])
        if epochs < 9 and state == TrialState.COMPLETE:
            attrs.update(stopped_at=epochs, paused=f"/p/{number}")
        if rng.random() < 0.1:
            attrs["duplicate_of"] = 0
        if rng.random() < 0.1:
            attrs["promoted"] = rng.randrange(max(1, number))
        running = _trial(number, TrialState.RUNNING, key, curve[:rng.randrange(len(curve) + 1)],
                         **{k: v for k, v in attrs.items() if k == "promoted"})
        final = _trial(number, state, key, curve, **attrs)
        if out and rng.random() < 0.1:  # this trial re-runs an earlier one that failed (a worker died)
            failed = [f for _, _, _, f in out if f.state == TrialState.FAIL]
            if failed:
                final.system_attrs["retry_history"] = [rng.choice(failed).number]
        out.append((start, end, running, final))
    return out


def _snapshot(history, step):
    return [final if end <= step else running for start, end, running, final in history if start <= step]


def _batch_budget(trials, excluding=None):
    counted = R.budget_trials(trials)
    finished = sum(t.state in R.FINISHED for t in counted)
    running = sum(t.state == TrialState.RUNNING and t.number != excluding for t in counted)
    return finished, running


@pytest.mark.parametrize("seed", range(8))
def test_the_ledger_answers_as_records_does_over_the_whole_list(seed):
    rng = random.Random(seed)
    history = _history(rng, 60)
    ledger = Ledger(COSTS)
    asha = MOASHA(9, 3, 1)
    for step in range(0, 70, rng.choice([1, 2, 3])):
        trials = _snapshot(history, step)
        ledger.update(trials)
        assert ledger.budget() == _batch_budget(trials)
        furthest = R.furthest(trials)
        assert {k: t.number for k, t in ledger.done.items()} == {k: t.number for k, t in furthest.items()}
        assert ledger.n_stopped == sum(R.stopped_early(t) for t in furthest.values())
        with_running = R.furthest(trials, running=True)
        for rung in asha.rungs():
            pool = [t for t in with_running.values() if len(t.user_attrs[R.CURVE]) >= rung]
            points = [to_minimise([t.user_attrs[R.CURVE][rung - 1], t.user_attrs[R.MFLOPS]], [True, False])
                      for t in pool]
            got, stand, order = ledger.rung(rung)
            assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, points))
            expected = [pool[i].number for i in asha.top(points)] if pool else []
            assert [stand[i].number for i in asha.top(got, order)] == expected
            if pool:  # MO-ASHA's question for a new arrival with each of these points
                skip = R.arch_key(pool[0])
                others, _, o_order = ledger.rung(rung, skip=skip)
                batch_others = [p for t, p in zip(pool, points, strict=True) if R.arch_key(t) != skip]
                for mine in ([-0.65, 1.0], [-0.8, 3.0], points[0]):
                    assert asha.continues(mine, others, o_order) == asha.continues(mine, batch_others)


def test_fast_ranking_matches_rank_with_ties_and_any_tie_order():
    rng = random.Random(0)
    for _ in range(2000):
        n, m = rng.randint(1, 30), rng.choice([2, 2, 3])
        pts = [[rng.choice([0.0, 0.5, 1.0]) if rng.random() < 0.5 else rng.random() for _ in range(m)]
               for _ in range(n)]
        k, i = rng.randint(1, n), rng.randrange(n)
        perm = rng.sample(range(n), n)
        position = [perm.index(j) for j in range(n)]  # where each point sits in the permuted list
        expected = [perm[j] for j in rank([pts[p] for p in perm])[:k]]
        assert top(pts, k, order=position) == expected
        assert in_top(pts, i, k, order=position) == (i in expected)
        assert top(np.asarray(pts), k) == rank(pts)[:k]
