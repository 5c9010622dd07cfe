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
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState
from threadpoolctl import ThreadpoolController

from .. import records as R
from ..data import Data
from ..measure import analytic_cost
from ..spaces import Space
from ..spec import SpecError
from ..writes import set_params
from . import surrogate as S
from .evidence import CHOSEN, Evidence, Reader, params_id
from .ledger import Ledger

MAX_POOL = 20_000  # candidates scored per proposal; a larger space is represented by a random subset of this size
REFERENCE_ACC = 0.5  # the front's hypervolume is counted from this accuracy (and from 10x the dearest cost)
# A proposal's cost grows with candidates x observations^2 (the GP's variances), so both are bounded: a search of
# a space of 10^4 architectures then costs the same per trial at trial 10,000 as at trial 300. A space of 256
# (wrn) never reaches either bound.
MAX_SCORED = 1_024  # candidates scored per proposal: beyond this, a random subset of those still open
MAX_OBSERVED = 256  # observations the GP conditions on: the fully trained first, the latest first
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
                          np.array([max(1, len(grid[n]) - 1) for n in names], dtype=float)).with_onehot()
    return Pool(params, keys, features, np.array(cost))


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _code(values: list[Any], value: Any) -> int:
    """The index of `value` among `values`, sorted where they are numbers (so that index differences are ordinal)."""
    if _numeric(values):
        return sorted(values).index(value)
    return values.index(value)


class Planner:
    """The sampler's decisions, apart from Optuna: scores every pool candidate from the evidence."""

    def __init__(self, pool: Pool, epochs: int, resume: bool = True, slow: float | None = None) -> None:
        self.pool, self.epochs, self.resume = pool, epochs, resume
        self.slow = SLOW_STARTERS if slow is None else slow
        self.hyper = S.Hyper.default(pool.features.codes.shape[1])
        self._fitted_on = 0
        self.index = {k: i for i, k in enumerate(pool.keys)}  # pool index by records.arch_key
        self.by_params = {params_id(p): i for i, p in enumerate(pool.params)}  # and by the params CHOSEN stores

    def propose(self, ev: Evidence, rng: np.random.Generator) -> int | None:
        """The candidate with the largest expected improvement per remaining epoch (ties drawn at random)."""
        if not self.pool.keys:
            return None
        score = self.scores(ev, rng)
        top = score.max()
        if not np.isfinite(top):
            return None
        best = np.flatnonzero(score >= top - 1e-12 * max(1.0, abs(top)))
        return int(rng.choice(best))

    def scores(self, ev: Evidence, rng: np.random.Generator | None = None) -> np.ndarray:
        """Expected improvement per remaining epoch; -inf where there is nothing to do (trained to the end,
        running, stopped for good, blocked) and, with `rng`, outside a random MAX_SCORED of the open candidates."""
        pool = self.pool
        # nothing to do for those trained to the end, running, blocked, or stopped for good
        open_ = np.ones(len(pool.keys), dtype=bool)
        for dead in (ev.full, ev.running, ev.blocked, set(ev.partial) - (ev.resumable if self.resume else set())):
            open_[np.fromiter(dead, dtype=int, count=len(dead))] = False
        live = np.flatnonzero(open_)
        if rng is not None and len(live) > MAX_SCORED:
            live = np.sort(rng.choice(live, MAX_SCORED, replace=False))
        running = np.array(sorted(ev.running), dtype=int)
        post = self.posterior(ev, np.concatenate([live, running]))
        remaining = np.array([self.epochs - len(ev.partial.get(int(i), ())) for i in live], dtype=float)
        front = [(acc, pool.cost[i]) for i, (acc, _) in ev.full.items()]
        front += [(1 - math.exp(m), pool.cost[i]) for i, m in zip(running, post.mean[len(live):], strict=True)]
        reference = (REFERENCE_ACC, float(pool.cost.max()) + 1.0)  # 10x the dearest candidate
        gain = S.expected_improvement(S.Posterior(post.mean[:len(live)], post.sd[:len(live)]), pool.cost[live],
                                      front, reference)
        part = np.flatnonzero(np.isin(live, np.array(sorted(ev.partial), dtype=int)))  # positions within live
        if len(part) and self.slow > 0:
            # A paused curve may be a slow starter's, which says nothing of its end but that the end is at least
            # as good as the best epoch so far: with probability `slow`, its improvement is the features' alone.
            bound = S.log_error(np.array([max(ev.partial[int(i)]) for i in live[part]]))
            unread = S.at_least(self.posterior(ev, live[part], curves=False), np.arange(len(part)), bound)
            mixed = S.expected_improvement(unread, pool.cost[live[part]], front, reference)
            gain[part] = (1 - self.slow) * gain[part] + self.slow * mixed
        score = np.full(len(pool.keys), -np.inf)
        score[live] = gain / np.maximum(remaining, 1.0)
        return score

    def posterior(self, ev: Evidence, targets: np.ndarray, curves: bool = True) -> S.Posterior:
        """The surrogate's belief about the final log error of candidates `targets` (pool indices), from the fully
        trained ones and (with `curves`, once enough full curves say how networks go on) the paused ones' curves:
        at most MAX_OBSERVED of them, the fully trained first, the latest first."""
        pool = self.pool
        full = list(ev.full.items())[-MAX_OBSERVED:]
        model = S.CurveModel.from_curves([c for _, (_, c) in full if len(c) == self.epochs])
        idx = np.array([i for i, _ in full], dtype=int)
        y = S.log_error(np.array([acc for _, (acc, _) in full], dtype=float))
        extra = np.zeros(len(full))
        if model is not None and curves and len(full) < MAX_OBSERVED and ev.partial:
            partial = list(ev.partial.items())[len(full) - MAX_OBSERVED:]
            z, v = model.estimate([c for _, c in partial])
            idx, y, extra = np.concatenate([idx, [i for i, _ in partial]]), np.concatenate([y, z]), \
                np.concatenate([extra, v])
        if curves and len(y) >= 3 and len(y) >= 1.25 * self._fitted_on:  # refit as the evidence grows by a quarter
            start = self.hyper if self._fitted_on else S.Hyper.default(len(self.hyper.log_weights), float(y.mean()))
            self.hyper, self._fitted_on = S.fit(pool.features.take(idx), y, extra, start), len(y)
        where = {int(i): k for k, i in enumerate(idx)}
        own = np.array([where.get(int(i), -1) for i in targets], dtype=int)
        return S.predict(pool.features.take(idx), y, extra, own, pool.features.take(targets), self.hyper)


class EHVISampler(BaseSampler):
    """The Optuna face of the Planner: before each trial it picks the whole architecture; the space's
    suggest_* calls then read it back (sample_independent), as Optuna's GridSampler does."""

    def __init__(self, space: Space, shape: Shape, *, cost_objective: str, epochs: int, seed: int,
                 seeds: tuple[int, ...] = (), limits: dict[str, float] | None = None, resume: bool = True,
                 ledger: Ledger | None = None) -> None:
        """`ledger`: the worker's, which its search loop brings up to date just before each trial; the sampler
        proposes from that read of the study instead of reading it again (without one, it reads)."""
        self.space, self.shape, self.cost_objective, self.epochs = space, shape, cost_objective, epochs
        self.seeds, self.limits, self.resume, self.ledger = seeds, limits or {}, resume, ledger
        self._rng = np.random.default_rng(seed)
        self._planner: Planner | None = None
        self._reader: Reader | None = None
        self._threads: ThreadpoolController | None = None  # the libraries found once: a lookup cost 3 ms a trial
        self._distributions = {k: CategoricalDistribution(v) for k, v in space.grid(seeds).items()}
        self._chosen: dict[int, dict[str, Any]] = {}

    @property
    def planner(self) -> Planner:
        if self._planner is None:
            pool = build_pool(self.space, self.shape, self.cost_objective, self.seeds, self.limits, self._rng)
            self._planner = Planner(pool, self.epochs, self.resume)
            self._reader = Reader(self._planner.index, self._planner.by_params)
            self._threads = ThreadpoolController()
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
        assert self._reader is not None and self._threads is not None
        trials = self.ledger.trials if self.ledger is not None else study.get_trials(deepcopy=False)
        ev = self._reader.read(trials, trial.number)
        with self._threads.limit(limits=1, user_api="blas"):  # small matrices: threads only contend (and with training)
            i = planner.propose(ev, self._rng)
        if i is not None:
            chosen = self._chosen[trial.number] = dict(planner.pool.params[i])
            # the whole architecture's parameters in one write, and marked as this trial's, so that other workers
            # see what it will train before it records its architecture (as GridSampler marks its grid points)
            set_params(study._storage, trial, chosen, self._distributions, {CHOSEN: params_id(chosen)})

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        chosen = self._chosen.get(trial.number, {})
        if param_name in chosen:
            return chosen[param_name]
        assert isinstance(param_distribution, CategoricalDistribution), param_distribution
        return param_distribution.choices[self._rng.integers(len(param_distribution.choices))]

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._chosen.pop(trial.number, None)
