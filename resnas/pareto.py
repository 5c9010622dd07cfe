"""Non-dominated sorting and crowding distance (Deb et al. 2002), on plain lists of objective vectors.

Every vector is to be *minimised*; callers negate what they maximise (see `to_minimise`).
"""

from __future__ import annotations

from collections.abc import Sequence

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
