"""The EHVI sampler: each new trial trains the architecture, or resumes the paused one, that promises the largest
expected hypervolume improvement of the accuracy-cost front per epoch it still needs.

A space is a finite grid, and an architecture's cost (MFLOPs or parameters) is known from its spec before anything
trains, so the sampler scores every candidate of the space (a random subset of very large ones). What it does not
know, the final validation accuracy, comes from a surrogate (search.surrogate): a Gaussian process over the
space's choices fed by the fully trained architectures and by the learning curves MO-ASHA paused. With nothing
trained yet the improvement is largest for the cheapest architectures, which are always on the front: the search
starts there, and turns to costlier ones as the cheap end of the front fills. Running trials (other workers') are
taken to reach their predicted accuracy (the kriging believer), so parallel workers do not all chase one
architecture. The sampler reads only what trials recorded; proposing a paused architecture resumes it
(search.trial), so it also decides which paused trials go on.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState
from threadpoolctl import threadpool_limits

from .. import records as R
from ..data import Data
from ..measure import analytic_cost
from ..spaces import Space
from ..spec import SpecError
from . import surrogate as S

MAX_POOL = 20_000  # candidates scored per proposal; a larger space is represented by a random subset of this size
REFERENCE_ACC = 0.5  # the front's hypervolume is counted from this accuracy (and from 10x the dearest cost)
CHOSEN = "ehvi_params"  # trial system attribute: the params the sampler chose for it
SLOW_STARTERS = 0.05  # the chance that a paused curve belongs to a slow starter (see Planner.scores)


@dataclass(frozen=True)
class Shape:
    in_channels: int
    num_classes: int
    image_size: int

    @classmethod
    def of(cls, data: Data) -> Shape:
        return cls(data.in_channels, data.num_classes, data.image_size)


@dataclass(frozen=True)
class Pool:
    params: list[dict[str, Any]]
    keys: list[tuple[str, str]]  # records.arch_key of each candidate
    features: S.Features  # what the surrogate's kernel compares
    cost: np.ndarray  # log10 of the cost objective


def build_pool(space: Space, shape: Shape, cost_objective: str, seeds: tuple[int, ...], limits: dict[str, float],
               rng: np.random.Generator) -> Pool:
    """Every distinct architecture of the space (times the training seeds) within the cost limits."""
    grid = space.grid(seeds)
    names = [k for k in grid if k != "seed"]  # a training seed is no feature: the same network, another run
    points: Any = itertools.product(*grid.values())
    if space.size() * max(1, len(seeds)) > MAX_POOL:
        points = ([values[rng.integers(len(values))] for values in grid.values()] for _ in range(MAX_POOL))
    params, keys, codes, cost, seen = [], [], [], [], set()
    for values in points:
        p = dict(zip(grid, values, strict=True))
        trial = optuna.trial.FixedTrial(p)
        try:
            spec = space.sample(trial, in_channels=shape.in_channels, num_classes=shape.num_classes,
                                image_size=shape.image_size)
            c = analytic_cost(spec, shape.image_size)
        except SpecError:
            continue
        training = space.training(trial)
        if seeds:
            training["seed"] = p["seed"]
        key = (spec.to_json(), json.dumps(training, sort_keys=True))
        value = {R.MFLOPS: c.mflops, R.PARAMS: c.params}
        if key in seen or any(value[name] > limit for name, limit in limits.items()):
            continue
        seen.add(key)
        asked = {**trial.params, **({"seed": p["seed"]} if seeds else {})}
        params.append(asked)
        keys.append(key)
        codes.append([_code(grid[n], p[n]) if n in asked else -1 for n in names])
        cost.append(math.log10(max(value[cost_objective], 1e-12)))
    ordinal = np.array([_numeric(grid[n]) for n in names], dtype=bool)
    features = S.Features(np.array(codes, dtype=float).reshape(len(keys), len(names)), ordinal,
                          np.array([max(1, len(grid[n]) - 1) for n in names], dtype=float))
    return Pool(params, keys, features, np.array(cost))


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _code(values: list[Any], value: Any) -> int:
    """The index of `value` among `values`, sorted where they are numbers (so that index differences are ordinal)."""
    if _numeric(values):
        return sorted(values).index(value)
    return values.index(value)


def _params_id(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


@dataclass
class Evidence:
    """What the trials so far say about each pool candidate (by index)."""
    full: dict[int, tuple[float, list[float]]] = field(default_factory=dict)  # trained to the end: (val_acc, curve)
    partial: dict[int, list[float]] = field(default_factory=dict)  # stopped early: its curve so far
    resumable: set[int] = field(default_factory=set)  # partial ones whose training state was kept
    running: set[int] = field(default_factory=set)
    blocked: set[int] = field(default_factory=set)  # rejected by a limit or the size guard, or failed


def evidence(trials: list[FrozenTrial], index: dict[tuple[str, str], int], chosen: dict[str, int],
             me: int) -> Evidence:
    """`chosen`: pool index by params (as CHOSEN stores them), for running trials that have not recorded their
    architecture yet."""
    ev = Evidence()
    for t in trials:
        if (R.REJECTED in t.user_attrs or t.state == TrialState.FAIL) and R.arch_key(t) in index:
            ev.blocked.add(index[R.arch_key(t)])
        elif t.state == TrialState.RUNNING and t.number != me:  # a resumed one is running before its curve grows
            marked = t.system_attrs.get(CHOSEN) or _params_id(t.system_attrs.get("fixed_params") or {})
            i = index.get(R.arch_key(t)) if R.SPEC in t.user_attrs else chosen.get(marked)
            if i is not None:
                ev.running.add(i)
    for key, t in R.furthest([t for t in trials if t.number != me], running=True).items():
        if key not in index or index[key] in ev.running:
            continue
        i, curve = index[key], list(t.user_attrs.get(R.CURVE, []))
        if R.fully_trained(t):
            ev.full[i] = (t.user_attrs[R.VAL_ACC], curve)
        elif curve:
            ev.partial[i] = curve
            if R.PAUSED in t.user_attrs:
                ev.resumable.add(i)
    return ev


class Planner:
    """The sampler's decisions, apart from Optuna: scores every pool candidate from the evidence."""

    def __init__(self, pool: Pool, epochs: int, resume: bool = True, slow: float | None = None) -> None:
        self.pool, self.epochs, self.resume = pool, epochs, resume
        self.slow = SLOW_STARTERS if slow is None else slow
        self.hyper = S.Hyper.default(pool.features.codes.shape[1])
        self._fitted_on = 0

    def propose(self, ev: Evidence, rng: np.random.Generator) -> int | None:
        """The candidate with the largest expected improvement per remaining epoch (ties drawn at random)."""
        if not self.pool.keys:
            return None
        score = self.scores(ev)
        top = score.max()
        if not np.isfinite(top):
            return None
        best = np.flatnonzero(score >= top - 1e-12 * max(1.0, abs(top)))
        return int(rng.choice(best))

    def scores(self, ev: Evidence) -> np.ndarray:
        """Expected improvement per remaining epoch; -inf where there is nothing to do (trained to the end,
        running, stopped for good, blocked)."""
        pool = self.pool
        remaining = np.full(len(pool.keys), float(self.epochs))
        for i, curve in ev.partial.items():
            remaining[i] = self.epochs - len(curve)
        post = self.posterior(ev)
        front = [(acc, pool.cost[i]) for i, (acc, _) in ev.full.items()]
        front += [(1 - math.exp(post.mean[i]), pool.cost[i]) for i in ev.running]  # believed, not yet known
        reference = (REFERENCE_ACC, float(pool.cost.max()) + 1.0)  # 10x the dearest candidate
        gain = S.expected_improvement(post, pool.cost, front, reference)
        if ev.partial and self.slow > 0:
            # A paused curve may be a slow starter's, which says nothing of its end but that the end is at least
            # as good as the best epoch so far: with probability `slow`, its improvement is the features' alone.
            part = np.array(sorted(ev.partial), dtype=int)
            bound = S.log_error(np.array([max(ev.partial[i]) for i in part]))
            unread = S.at_least(self.posterior(ev, curves=False), part, bound)
            mixed = S.expected_improvement(S.Posterior(unread.mean[part], unread.sd[part]), pool.cost[part], front,
                                           reference)
            gain[part] = (1 - self.slow) * gain[part] + self.slow * mixed
        score = gain / np.maximum(remaining, 1.0)
        dead = set(ev.full) | ev.running | ev.blocked
        if not self.resume:
            dead |= set(ev.partial)
        else:
            dead |= set(ev.partial) - ev.resumable
        score[list(dead)] = -np.inf
        return score

    def posterior(self, ev: Evidence, curves: bool = True) -> S.Posterior:
        """The surrogate's belief about every candidate's final log error, from the fully trained ones and (with
        `curves`, once enough full curves say how networks go on) the paused ones' curves."""
        pool = self.pool
        model = S.CurveModel.from_curves([c for _, c in ev.full.values() if len(c) == self.epochs])
        obs = [(i, float(S.log_error(acc)), 0.0) for i, (acc, _) in ev.full.items()]
        if model is not None and curves:
            obs += [(i, *model.estimate(c)) for i, c in ev.partial.items()]
        idx = np.array([i for i, _, _ in obs], dtype=int)
        y = np.array([z for _, z, _ in obs])
        extra = np.array([v for _, _, v in obs])
        if curves and len(y) >= 3 and len(y) >= 1.25 * self._fitted_on:  # refit as the evidence grows by a quarter
            start = self.hyper if self._fitted_on else S.Hyper.default(len(self.hyper.log_weights), float(y.mean()))
            self.hyper, self._fitted_on = S.fit(pool.features.take(idx), y, extra, start), len(y)
        own = np.full(len(pool.keys), -1)
        own[idx] = np.arange(len(idx))
        return S.predict(pool.features.take(idx), y, extra, own, pool.features, self.hyper)


class EHVISampler(BaseSampler):
    """The Optuna face of the Planner: before each trial it picks the whole architecture; the space's
    suggest_* calls then read it back (sample_independent), as Optuna's GridSampler does."""

    def __init__(self, space: Space, shape: Shape, *, cost_objective: str, epochs: int, seed: int,
                 seeds: tuple[int, ...] = (), limits: dict[str, float] | None = None, resume: bool = True) -> None:
        self.space, self.shape, self.cost_objective, self.epochs = space, shape, cost_objective, epochs
        self.seeds, self.limits, self.resume = seeds, limits or {}, resume
        self._rng = np.random.default_rng(seed)
        self._planner: Planner | None = None
        self._chosen: dict[int, dict[str, Any]] = {}

    @property
    def planner(self) -> Planner:
        if self._planner is None:
            pool = build_pool(self.space, self.shape, self.cost_objective, self.seeds, self.limits, self._rng)
            self._planner = Planner(pool, self.epochs, self.resume)
        return self._planner

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if "fixed_params" in trial.system_attrs:  # an enqueued trial (a promotion, a retry) keeps its own
            return
        planner = self.planner
        index = {k: i for i, k in enumerate(planner.pool.keys)}
        chosen = {_params_id(p): i for i, p in enumerate(planner.pool.params)}
        with threadpool_limits(limits=1, user_api="blas"):  # small matrices: threads only contend (and with training)
            i = planner.propose(evidence(study.get_trials(deepcopy=False), index, chosen, trial.number), self._rng)
        if i is not None:
            self._chosen[trial.number] = dict(planner.pool.params[i])
            # other workers see what this trial will train before it records its architecture (as GridSampler
            # marks its grid points)
            study._storage.set_trial_system_attr(trial._trial_id, CHOSEN, _params_id(planner.pool.params[i]))

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        chosen = self._chosen.get(trial.number, {})
        if param_name in chosen:
            return chosen[param_name]
        assert isinstance(param_distribution, CategoricalDistribution), param_distribution
        return param_distribution.choices[self._rng.integers(len(param_distribution.choices))]

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._chosen.pop(trial.number, None)
