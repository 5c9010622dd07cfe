import numpy as np
import pytest

from resnas import pareto
from resnas.asha import MOASHA
from resnas.errors import UserError
from resnas.pareto import crowding, dominates, fronts, hypervolume_2d, pareto_front, rank, to_minimise


def test_fronts_and_dominance():
    pts = [(1, 5), (2, 2), (5, 1), (3, 3), (6, 6), (2, 2)]
    assert dominates((1, 1), (1, 2)) and not dominates((1, 2), (2, 1)) and not dominates((2, 2), (2, 2))
    f = fronts(pts)
    assert sorted(f[0]) == [0, 1, 2, 5] and f[1] == [3] and f[2] == [4]
    assert pareto_front(pts) == f[0]


def test_crowding_prefers_boundaries_and_sparse_regions():
    pts = [(0, 10), (1, 9), (1.1, 8.9), (5, 5), (10, 0)]
    d = crowding(pts, [0, 1, 2, 3, 4])
    assert d[0] == d[4] == float("inf") and d[3] > d[1] and d[3] > d[2]
    assert rank(pts)[:2] in ([0, 4], [4, 0])


def test_hypervolume_2d():
    assert hypervolume_2d([(0.5, 0.5)], (1, 1)) == pytest.approx(0.25)
    assert hypervolume_2d([(0.0, 0.5), (0.5, 0.0)], (1, 1)) == pytest.approx(0.75)
    assert hypervolume_2d([(2, 2)], (1, 1)) == 0


def test_to_minimise():
    assert to_minimise([0.9, 10], [True, False]) == [-0.9, 10]


def test_moasha_rungs_and_decisions():
    asha = MOASHA(max_epochs=9, eta=3, min_epochs=1)
    assert asha.rungs() == [1, 3]
    assert MOASHA(max_epochs=27, eta=3).rungs() == [1, 3, 9]
    # alone at a rung: the best so far goes on
    assert asha.continues([-0.5, 10], [])
    # dominated by both others of three: top 1/3 is one trial, not this one
    assert not asha.continues([-0.5, 10], [[-0.9, 5], [-0.8, 8]])
    # a cheap trial on the front survives against an accurate expensive one (multi-objective, not accuracy alone)
    assert asha.continues([-0.6, 1], [[-0.9, 50], [-0.5, 2], [-0.4, 3], [-0.3, 5], [-0.2, 8]])
    with pytest.raises(UserError, match="eta must be"):
        MOASHA(max_epochs=9, eta=1)


def test_the_first_candidate_in_the_top_is_the_first_the_ranking_gives():
    """pareto.first_in_top (ASHA's promotion: the best paused trial within the top k) is the first of `top` that is
    a candidate, on random points with ties in both objectives and random tie orders."""
    rng = np.random.default_rng(0)
    for case in range(300):
        n = int(rng.integers(1, 60))
        p = np.c_[rng.integers(0, 8, n), rng.integers(0, 8, n)].astype(float) if case % 2 else rng.random((n, 2))
        candidates, order = rng.random(n) < rng.random(), list(rng.permutation(n))
        k = int(rng.integers(0, n + 1))
        want = next((i for i in pareto.top(p, k, order) if candidates[i]), None)
        assert pareto.first_in_top(p, candidates, k, order) == want, case
