"""Non-dominated sorting and crowding distance (Deb et al. 2002), on plain lists of objective vectors.

Every vector is to be *minimised*; callers negate what they maximise (see `to_minimise`).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Sequence

import numpy as np

Vector = Sequence[float]


def dominates(a: Vector, b: Vector) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def fronts(points: Sequence[Vector]) -> list[list[int]]:
    """Indices of `points` grouped into successive non-dominated fronts (front 0 is the Pareto front), each in
    ascending order. Vectorised: a search asks this of every rung's trials at every step."""
    if not len(points):
        return []
    p = np.asarray(points, dtype=float)
    dominated_by = ((p[:, None] <= p[None]).all(-1) & (p[:, None] < p[None]).any(-1))  # [i, j]: i dominates j
    count = dominated_by.sum(0)
    remaining = np.ones(len(p), dtype=bool)
    out: list[list[int]] = []
    while remaining.any():
        front = np.flatnonzero(remaining & (count == 0))
        out.append(front.tolist())
        remaining[front] = False
        count = count - dominated_by[front].sum(0)
    return out


def crowding(points: Sequence[Vector], front: list[int]) -> dict[int, float]:
    """Crowding distance of each member of one front: boundary points get infinity."""
    dist = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: float("inf") for i in front}
    for m in range(len(points[front[0]])):
        ordered = sorted(front, key=lambda i: points[i][m])
        lo, hi = points[ordered[0]][m], points[ordered[-1]][m]
        dist[ordered[0]] = dist[ordered[-1]] = float("inf")
        if hi == lo:
            continue
        for prev, cur, nxt in zip(ordered, ordered[1:], ordered[2:], strict=False):
            dist[cur] += (points[nxt][m] - points[prev][m]) / (hi - lo)
    return dist


def rank(points: Sequence[Vector]) -> list[int]:
    """Indices from best to worst: by front, then by crowding distance (larger first) within a front."""
    order: list[int] = []
    for front in fronts(points):
        dist = crowding(points, front)
        order += sorted(front, key=lambda i: (-dist[i], i))
    return order


def ranked(points: Sequence[Vector] | np.ndarray, order: Sequence[int] | None = None) -> Iterator[int]:
    """The indices of `rank(points)` one at a time (ties broken by `order` instead of the index, where given),
    sorting each front by crowding only when the one before it is used up: a search asks for the top 1/eta of every
    rung's trials at every step, and at 10^4 trials the full sort of `rank` took seconds and gigabytes."""
    p = np.asarray(points, dtype=float)
    tie = np.arange(len(p)) if order is None else np.asarray(order)
    ids = front_ids(p)
    for f in range(int(ids.max()) + 1 if len(p) else 0):
        members = sorted(np.flatnonzero(ids == f).tolist(), key=lambda i: tie[i])  # ties in index order, as rank
        dist = crowding(p[members].tolist(), list(range(len(members))))
        yield from (members[j] for j in sorted(dist, key=lambda j: (-dist[j], tie[members[j]])))


def top(points: Sequence[Vector] | np.ndarray, k: int, order: Sequence[int] | None = None) -> list[int]:
    """`rank(points)[:k]`, sorting no front past the k-th point (see `ranked`)."""
    return list(itertools.islice(ranked(points, order), max(0, k)))


def in_top(points: Sequence[Vector] | np.ndarray, i: int, k: int, order: Sequence[int] | None = None) -> bool:
    """`i in top(points, k, order)`, sorting by crowding only the front where the top k ends."""
    p = np.asarray(points, dtype=float)
    tie = np.arange(len(p)) if order is None else np.asarray(order)
    ids = front_ids(p)
    better = int((ids < ids[i]).sum())
    members = sorted(np.flatnonzero(ids == ids[i]).tolist(), key=lambda j: tie[j])  # ties in index order, as rank
    if better + len(members) <= k or better >= k:
        return better < k
    dist = crowding(p[members].tolist(), list(range(len(members))))
    ordered = sorted(dist, key=lambda j: (-dist[j], tie[members[j]]))
    return better + ordered.index(members.index(i)) < k


def first_in_top(points: Sequence[Vector] | np.ndarray, candidates: np.ndarray, k: int,
                 order: Sequence[int] | None = None) -> int | None:
    """The first index of `top(points, k, order)` where `candidates` (a mask) holds, or None: sorting by crowding
    only the best front that holds a candidate (ASHA's promotion asks this of a rung's paused trials at every step,
    and sorting each front of its top 1/eta cost as much as finding the fronts)."""
    p = np.asarray(points, dtype=float)
    if k <= 0 or not candidates.any():
        return None
    tie = np.arange(len(p)) if order is None else np.asarray(order)
    ids = front_ids(p)
    f = int(ids[candidates].min())
    better = int((ids < f).sum())
    if better >= k:
        return None
    members = sorted(np.flatnonzero(ids == f).tolist(), key=lambda j: tie[j])  # ties in index order, as rank
    dist = crowding(p[members].tolist(), list(range(len(members))))
    ordered = sorted(dist, key=lambda j: (-dist[j], tie[members[j]]))
    return next((members[j] for j in ordered[:k - better] if candidates[members[j]]), None)


def front_ids(p: np.ndarray) -> np.ndarray:
    """The front (0: non-dominated) of each point, as `fronts` numbers them. For two objectives in O(n log n):
    over the points sorted by the first objective, a point joins the first front whose least second objective so far
    is greater than its own (Jensen 2003); points equal in both share a front. Otherwise peeling with all pairs."""
    if not len(p):
        return np.zeros(0, dtype=int)
    if p.shape[1] != 2:
        ids = np.empty(len(p), dtype=int)
        for f, members in enumerate(fronts(p.tolist())):
            ids[members] = f
        return ids
    s = np.lexsort((p[:, 1], p[:, 0]))  # by x, then y
    least: list[float] = []  # least y of each front so far: non-decreasing with the front
    out, right, f, previous = [0] * len(p), bisect.bisect_right, 0, None
    for j, point in enumerate(zip(p[s, 0].tolist(), p[s, 1].tolist(), strict=True)):  # a Python loop: in lists,
        if point != previous:  # not numpy scalars (equal in both to the one before: not dominated by its twin)
            f = right(least, point[1])
            if f == len(least):
                least.append(point[1])
            else:
                least[f] = point[1]
            previous = point
        out[j] = f
    ids = np.empty(len(p), dtype=int)
    ids[s] = out
    return ids


def pareto_front(points: Sequence[Vector]) -> list[int]:
    return fronts(points)[0] if points else []


def to_minimise(values: Sequence[float], maximise: Sequence[bool]) -> list[float]:
    return [-v if up else v for v, up in zip(values, maximise, strict=True)]


def hypervolume_2d(points: Sequence[Vector], reference: Vector) -> float:
    """Area dominated by `points` (minimised, 2 objectives) and bounded by `reference`."""
    inside = sorted({(x, y) for x, y in points if x < reference[0] and y < reference[1]})
    area, best_y = 0.0, reference[1]
    for x, y in inside:
        if y < best_y:
            area += (reference[0] - x) * (best_y - y)
            best_y = y
    return area
