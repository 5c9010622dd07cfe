"""What the EHVI sampler believes about architectures it has not trained to the end: a Gaussian process over the
space's choices (ordinal where they are numbers, categorical otherwise) predicting the final validation accuracy,
fed by fully trained architectures and by the partial learning curves of paused ones (CurveModel); and the expected
hypervolume improvement a candidate brings to a 2-D front (accuracy up, log10 cost down).

Accuracies are modelled as log validation error: errors span orders of magnitude (0.4 for a broken network, 0.005
for the best), and a Gaussian there puts no mass above accuracy 1. Pure functions of arrays (numpy, scipy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import block_diag, cho_factor, cho_solve, solve_triangular
from scipy.optimize import minimize
from scipy.special import ndtr

ERROR_FLOOR = 1e-3  # a validation error of 0 (every image right) is read as this, so its log stays finite
MIN_FULL_FOR_CURVES = 4  # fully trained curves needed before partial curves are read as evidence of the final
GAP_FLOOR = 0.05  # the least spread assumed in what a network gains after an epoch (log error)


def log_error(acc: np.ndarray | float) -> np.ndarray:
    return np.log(np.clip(1.0 - np.asarray(acc, dtype=float), ERROR_FLOOR, 1.0))


@dataclass(frozen=True)
class Features:
    """Candidates as the kernel sees them: per choice, a code (the value's index) and whether the choice is ordinal
    (numbers: distance is the index difference over the range) or categorical (distance 1 between any two values).
    A choice that does not apply to an architecture has code -1: distance 1 from any value, 0 from another -1."""
    codes: np.ndarray  # (n, choices)
    ordinal: np.ndarray  # (choices,) bool
    span: np.ndarray  # (choices,) number of values - 1 (at least 1)
    hot: np.ndarray | None = None  # onehot(), where computed once (a pool's, taken from at every proposal)

    def take(self, idx: np.ndarray) -> Features:
        return Features(self.codes[idx], self.ordinal, self.span, None if self.hot is None else self.hot[idx])

    def with_onehot(self) -> Features:
        return Features(self.codes, self.ordinal, self.span, self.onehot())

    def distances(self, other: Features) -> np.ndarray:
        """(choices, n_self, n_other) distances in [0, 1] per choice."""
        a, b = self.codes.T[:, :, None], other.codes.T[:, None, :]
        missing = (a < 0) | (b < 0)
        ordinal = np.abs(a - b) / self.span[:, None, None]
        d = np.where(self.ordinal[:, None, None], ordinal, (a != b).astype(float))
        return np.where(missing, (a != b).astype(float), d)

    def onehot(self) -> np.ndarray:
        """(n, slots): per choice, a slot for each value and one for "does not apply" (see covariance)."""
        if self.hot is not None:
            return self.hot
        slots = (self.span + 2).astype(int)
        column = np.where(self.codes < 0, slots - 1, self.codes).astype(int) + np.cumsum(slots) - slots
        out = np.zeros((len(self.codes), int(slots.sum())))
        np.put_along_axis(out, column, 1.0, axis=1)
        return out

    def weighted_tables(self, weights: np.ndarray) -> np.ndarray:
        """(slots, slots), block-diagonal: weight times `distances` between the slots of each choice."""
        blocks = []
        for ordinal, span, w in zip(self.ordinal, self.span, weights, strict=True):
            i = np.arange(int(span) + 2)
            d = np.abs(i[:, None] - i[None, :]) / span if ordinal else (i[:, None] != i[None, :]).astype(float)
            d[-1, :] = d[:, -1] = 1.0
            d[-1, -1] = 0.0
            blocks.append(w * d)
        return block_diag(*blocks)


@dataclass(frozen=True)
class Hyper:
    """GP hyperparameters, all in log space except the mean (log error)."""
    mean: float
    log_signal: float  # log variance of the architecture effect
    log_weights: tuple[float, ...]  # per choice: covariance falls by e^-w across that choice's whole range
    log_noise: float  # log variance of what a network's features do not tell (its own training run)

    def vector(self) -> np.ndarray:
        return np.array([self.mean, self.log_signal, *self.log_weights, self.log_noise])

    @classmethod
    def from_vector(cls, v: np.ndarray) -> Hyper:
        return cls(float(v[0]), float(v[1]), tuple(float(x) for x in v[2:-1]), float(v[-1]))

    @classmethod
    def default(cls, n_choices: int, mean: float = math.log(0.05)) -> Hyper:
        return cls(mean, PRIOR["signal"][0], (PRIOR["weight"][0],) * n_choices, PRIOR["noise"][0])


# Log-normal priors (centre, sd in log space) that keep a fit on a few points away from degenerate corners: log
# error differing by a factor of about 2 between architectures and 1.4 between runs of one, each choice able to
# decorrelate its values; the data move them.
PRIOR = {"signal": (math.log(0.5), 1.5), "weight": (math.log(1.0), 1.5), "noise": (math.log(0.1), 1.5)}


def kernel(dist: np.ndarray, h: Hyper) -> np.ndarray:
    """Covariance of the architecture effect from per-choice distances: exp(log_signal - sum_d w_d dist_d)."""
    weights = np.exp(np.asarray(h.log_weights))
    return np.exp(h.log_signal - np.tensordot(weights, dist, axes=1))


def covariance(a: Features, b: Features, h: Hyper) -> np.ndarray:
    """kernel(a.distances(b), h) as one matrix product: the weighted sum of per-choice distances is
    onehot(a) @ tables @ onehot(b).T, where distances would build a (choices, n_a, n_b) array (a proposal over
    thousands of candidates spent most of its time there)."""
    return _covariance(_weighted(a, h), b, h)


def _weighted(a: Features, h: Hyper) -> np.ndarray:
    """The left half of covariance's product, onehot(a) @ tables: computed once where `a` is paired with several."""
    return a.onehot() @ a.weighted_tables(np.exp(np.asarray(h.log_weights)))


def _covariance(weighted: np.ndarray, b: Features, h: Hyper) -> np.ndarray:
    return np.exp(h.log_signal - weighted @ b.onehot().T)


def _objective(v: np.ndarray, dist: np.ndarray, y: np.ndarray, extra: np.ndarray) -> tuple[float, np.ndarray]:
    """Negative log posterior of the hyperparameters (marginal likelihood times PRIOR) and its gradient."""
    h = Hyper.from_vector(v)
    kg = kernel(dist, h)
    noise = math.exp(h.log_noise)
    try:
        c = cho_factor(kg + np.diag(noise + extra + 1e-8), lower=True)
    except np.linalg.LinAlgError:
        return 1e10, np.zeros_like(v)
    r = y - h.mean
    alpha = cho_solve(c, r)
    w = cho_solve(c, np.eye(len(y))) - np.outer(alpha, alpha)  # d nll / dK = w / 2
    weights = np.exp(np.asarray(h.log_weights))
    grad = [-alpha.sum(), 0.5 * (w * kg).sum(),
            *[-0.5 * (w * kg * dist[d]).sum() * weights[d] for d in range(len(weights))],
            0.5 * np.trace(w) * noise]
    value = 0.5 * r @ alpha + np.log(np.diag(c[0])).sum()
    for i, (name, x) in enumerate([("signal", v[1]), *[("weight", x) for x in v[2:-1]], ("noise", v[-1])], 1):
        centre, sd = PRIOR[name]
        value += 0.5 * ((x - centre) / sd) ** 2
        grad[i] += (x - centre) / sd ** 2
    return float(value), np.asarray(grad, dtype=float)


def fit(features: Features, y: np.ndarray, extra: np.ndarray, start: Hyper) -> Hyper:
    """Maximum a posteriori hyperparameters, from `start` (the previous fit)."""
    dist = features.distances(features)
    best = minimize(_objective, start.vector(), args=(dist, y, extra), jac=True, method="L-BFGS-B",
                    options={"maxiter": 50})
    return Hyper.from_vector(best.x) if np.isfinite(best.fun) and best.fun < 1e9 else start


@dataclass(frozen=True)
class Posterior:
    mean: np.ndarray  # log error of each candidate's final accuracy
    sd: np.ndarray


def predict(obs: Features, y: np.ndarray, extra: np.ndarray, own: np.ndarray, candidates: Features,
            h: Hyper) -> Posterior:
    """The posterior of each candidate's final log error. `own[j]` is the observation of candidate j's own training
    run (-1: none): the run-specific part (noise) is shared with it, so a fully trained candidate (extra 0) is
    known exactly and a partially trained one is pulled towards what its curve says."""
    noise = math.exp(h.log_noise)
    prior_var = math.exp(h.log_signal) + noise
    if len(y) == 0:
        return Posterior(np.full(len(candidates.codes), h.mean), np.full(len(candidates.codes), math.sqrt(prior_var)))
    weighted = _weighted(obs, h)
    c = cho_factor(_covariance(weighted, obs, h) + np.diag(noise + extra + 1e-8), lower=True)
    cross = _covariance(weighted, candidates, h)
    mine = own >= 0
    cross[own[mine], np.flatnonzero(mine)] += noise
    mean = h.mean + cross.T @ cho_solve(c, y - h.mean)
    v = solve_triangular(c[0], cross, lower=True, check_finite=False)  # one solve, not cho_solve's two
    var = prior_var - np.einsum("ij,ij->j", v, v)
    return Posterior(mean, np.sqrt(np.clip(var, 1e-10, None)))


@dataclass(frozen=True)
class CurveModel:
    """How much a network still gains after epoch e: the final log error is the best log error seen by epoch e plus
    a gap (<= 0: the final accuracy is the best epoch's) whose mean and variance per epoch come from fully trained
    curves. Early gaps vary widely, so an early epoch says little and a late one much, without fitting a slope
    that a handful of curves could not pin down."""
    gap: np.ndarray
    var: np.ndarray

    @classmethod
    def from_curves(cls, curves: list[list[float]]) -> CurveModel | None:
        """None while fewer than MIN_FULL_FOR_CURVES fully trained curves are known (partial curves then count for
        nothing: how far networks still climb is not known yet)."""
        if len(curves) < MIN_FULL_FOR_CURVES:
            return None
        z = log_error(np.maximum.accumulate(np.asarray(curves, dtype=float), axis=1))
        gaps, n = z[:, -1:] - z, len(curves)
        var = np.maximum(gaps.var(axis=0, ddof=1), GAP_FLOOR ** 2) * (1 + 1 / n)  # the mean's own uncertainty
        return cls(gaps.mean(axis=0), var)

    def estimate(self, curves: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
        """(estimated final log error, its variance) of each curve, cut at epoch len(curve)."""
        e = np.array([len(c) - 1 for c in curves], dtype=int)
        return log_error(np.array([max(c) for c in curves], dtype=float)) + self.gap[e], self.var[e]


def at_least(post: Posterior, idx: np.ndarray, bound: np.ndarray) -> Posterior:
    """The posterior given that candidates `idx` already reached log error `bound` (a network's final accuracy is
    its best epoch's, so it is at least as good as any epoch seen): each Gaussian truncated above at its bound."""
    mean, sd = post.mean.copy(), post.sd.copy()
    m, s = mean[idx], sd[idx]
    a = (bound - m) / s
    cdf = np.clip(ndtr(a), 1e-300, None)
    lam = np.exp(-0.5 * a ** 2) / math.sqrt(2 * math.pi) / cdf
    mean[idx] = m - s * lam
    sd[idx] = s * np.sqrt(np.clip(1 - a * lam - lam ** 2, 1e-6, None))
    return Posterior(mean, sd)


def expected_improvement(post: Posterior, cost: np.ndarray, front: list[tuple[float, float]],
                         reference: tuple[float, float], steps: int = 600) -> np.ndarray:
    """Expected hypervolume improvement of adding each candidate (final accuracy ~ post, known log10 cost) to
    `front` [(accuracy, log10 cost)], bounded by `reference` (accuracy, log10 cost): the integral over accuracy
    levels y of P(accuracy > y) times the cost range the candidate would newly cover at level y."""
    lo = reference[0]
    ys = lo + (np.arange(steps) + 0.5) * (1.0 - lo) / steps
    covered = np.full(steps, reference[1])  # at level y, the cheapest known cost reaching y
    if front:  # sorted by accuracy, the cheapest cost from each point up: O(front log front), not a pass a point
        acc, cost_of = np.asarray(front, dtype=float).T
        order = np.argsort(acc)
        acc, cheapest = acc[order], np.minimum.accumulate(cost_of[order][::-1])[::-1]
        first = np.searchsorted(acc, ys, side="left")  # the first point with accuracy >= y
        reached = first < len(acc)
        covered[reached] = np.minimum(covered[reached], cheapest[first[reached]])
    open_ = covered > cost.min(initial=np.inf)  # levels where some candidate would cover new cost (the rest add 0)
    ys, covered = ys[open_], covered[open_]
    width = np.clip(covered[None, :] - cost[:, None], 0.0, None)
    p = ndtr((log_error(ys)[None, :] - post.mean[:, None]) / post.sd[:, None])
    return (p * width).sum(1) * (1.0 - lo) / steps
