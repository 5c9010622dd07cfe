"""The EHVI sampler (search.ehvi) and its surrogate (search.surrogate): the hypervolume it expects, the posterior it
draws from the trials, and what it proposes inside a real Optuna study."""

import math

import numpy as np
import optuna
import pytest

from resnas import records as R
from resnas.measure import analytic_cost
from resnas.pareto import hypervolume_2d
from resnas.search import SearchConfig, ehvi, surrogate
from resnas.search.ehvi import EHVISampler, Evidence, Planner, Shape, build_pool
from resnas.search.study import sampler
from resnas.spaces import load_space

SHAPE = Shape(in_channels=1, num_classes=10, image_size=8)


@pytest.fixture
def space(tmp_path, tiny_space_text):
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_space_text)
    return load_space(str(path))


def test_a_known_point_improves_the_front_by_exactly_its_hypervolume():
    front, reference = [(0.9, 0.0), (0.95, 1.0)], (0.5, 2.0)
    cost = np.array([0.5, 1.5, -1.0])
    post = surrogate.Posterior(surrogate.log_error(np.array([0.97, 0.93, 0.6])), np.full(3, 1e-6))
    got = surrogate.expected_improvement(post, cost, front, reference, steps=20_000)

    def hv(points):
        return hypervolume_2d([(-a, c) for a, c in points], (-reference[0], reference[1]))
    for i, acc in enumerate([0.97, 0.93, 0.6]):
        assert got[i] == pytest.approx(hv([*front, (acc, cost[i])]) - hv(front), abs=1e-4)
    assert got[1] == pytest.approx(0.0, abs=1e-4)  # (0.93, 1.5) is dominated by (0.95, 1.0)


def test_uncertainty_is_worth_something_and_cheapness_more():
    front, reference = [(0.95, 0.0)], (0.5, 3.0)
    mean = surrogate.log_error(np.array([0.94, 0.94, 0.94]))
    post = surrogate.Posterior(mean, np.array([1e-6, 0.5, 0.5]))
    gain = surrogate.expected_improvement(post, np.array([0.5, 0.5, 1.5]), front, reference)
    assert gain[0] < 1e-4 < gain[2] < gain[1]  # below the front: only a chance of beating it is worth anything


def _features(codes):
    return surrogate.Features(np.asarray(codes, dtype=float), np.array([True, False]), np.array([2.0, 2.0]))


def test_the_posterior_knows_what_trained_and_generalises_along_what_matters():
    rng = np.random.default_rng(0)
    codes = np.array([(a, b) for a in range(3) for b in range(3)] * 2)
    y = -2.0 - 0.8 * codes[:, 0] + rng.normal(0, 0.05, len(codes))  # only the first (ordinal) choice matters
    obs = _features(codes[:6])
    h = surrogate.fit(obs, y[:6], np.zeros(6), surrogate.Hyper.default(2))
    assert h.log_weights[0] > h.log_weights[1]
    cand = _features(codes[:9])
    own = np.array([0, 1, 2, 3, 4, 5, -1, -1, -1])
    post = surrogate.predict(obs, y[:6], np.zeros(6), own, cand, h)
    assert np.allclose(post.mean[:6], y[:6], atol=1e-3) and np.all(post.sd[:6] < 1e-2)  # trained: known
    assert post.mean[6] < post.mean[0]  # first choice at 2, never seen: extrapolated downwards (better)
    assert np.all(post.sd[6:] > 0.05)


def test_a_partial_curve_pulls_its_network_more_the_later_it_was_cut():
    full = [[0.3 + 0.07 * e + 0.01 * i for e in range(9)] for i in range(6)]
    curves = surrogate.CurveModel.from_curves(full)
    assert surrogate.CurveModel.from_curves(full[:3]) is None
    assert np.all(curves.gap <= 1e-12) and curves.gap[-1] == pytest.approx(0.0)
    (early, late), (early_var, late_var) = curves.estimate([full[0][:2], full[0][:8]])
    assert late_var < early_var
    assert late == pytest.approx(float(surrogate.log_error(full[0][-1])), abs=0.1)


def test_the_pool_holds_every_architecture_once_within_the_limits(space):
    pool = build_pool(space, SHAPE, "mflops", (), {}, np.random.default_rng(0))
    assert len(pool.keys) == len(set(pool.keys)) == space.size() == 12
    for params, cost in zip(pool.params, pool.cost, strict=True):
        spec = space.sample(optuna.trial.FixedTrial(params), in_channels=1, num_classes=10)
        assert cost == pytest.approx(math.log10(analytic_cost(spec, 8).mflops))
    limit = float(10 ** np.median(pool.cost))
    capped = build_pool(space, SHAPE, "mflops", (), {"mflops": limit}, np.random.default_rng(0))
    assert 0 < len(capped.keys) < 12 and np.all(capped.cost <= math.log10(limit) + 1e-12)


def test_the_planner_starts_cheapest_and_never_repeats_a_finished_or_running_network(space):
    pool = build_pool(space, SHAPE, "mflops", (), {}, np.random.default_rng(0))
    planner, rng = Planner(pool, epochs=4), np.random.default_rng(0)
    first = planner.propose(Evidence(), rng)
    assert pool.cost[first] == pool.cost.min()
    ev = Evidence(full={first: (0.9, [0.5, 0.7, 0.8, 0.9])}, running={int(np.argsort(pool.cost)[1])})
    for _ in range(5):
        assert planner.propose(ev, rng) not in ev.full.keys() | ev.running
    ev.partial = {int(np.argsort(pool.cost)[2]): [0.4]}  # stopped for good (no state kept): not proposed
    scores = planner.scores(ev)
    assert np.isneginf(scores[list(ev.partial)]).all()
    ev.resumable = set(ev.partial)
    assert np.isfinite(planner.scores(ev)[list(ev.partial)]).all()


def test_auto_means_ehvi_where_costs_are_known_before_training(space):
    def built(**kw):
        return sampler(SearchConfig(space="wrn", **kw), 0, 2, space, 4, SHAPE)
    assert isinstance(built(), EHVISampler)
    assert isinstance(built(objectives=("val_acc", "params")), EHVISampler)
    assert isinstance(built(objectives=("val_acc", "latency_ms")), optuna.samplers.NSGAIISampler)
    assert isinstance(sampler(SearchConfig(), 0, 2, space, 4, None), optuna.samplers.NSGAIISampler)  # no data shape
    with pytest.raises(Exception, match="sampler ehvi needs"):
        SearchConfig(sampler="ehvi", objectives=("val_acc", "mflops", "latency_ms"))


def test_in_a_study_the_sampler_asks_for_one_architecture_at_a_time(space):
    ehvi = EHVISampler(space, SHAPE, cost_objective="mflops", epochs=4, seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=ehvi)
    seen = []
    for acc in (0.8, 0.85, 0.9):
        trial = study.ask()
        spec = space.sample(trial, in_channels=1, num_classes=10)
        mflops = analytic_cost(spec, 8).mflops
        for k, v in {R.SPEC: spec.to_json(), R.TRAINING: {}, R.MFLOPS: mflops, R.CURVE: [acc] * 4,
                     R.VAL_ACC: acc}.items():
            trial.set_user_attr(k, v)
        study.tell(trial, [acc, mflops])
        seen.append(spec.to_json())
    assert len(set(seen)) == 3  # a trained architecture is not proposed again
    costs = sorted(analytic_cost(space.sample(optuna.trial.FixedTrial(p), in_channels=1, num_classes=10), 8).mflops
                   for p in ehvi.planner.pool.params)
    first = space.sample(optuna.trial.FixedTrial(study.trials[0].params), in_channels=1, num_classes=10)
    assert analytic_cost(first, 8).mflops == costs[0]  # nothing known yet: the cheapest comes first


def test_another_workers_trial_counts_as_running_from_the_moment_it_was_proposed(space):
    """A second worker proposing while the first's trial has not yet recorded its architecture (or is resuming a
    paused one, whose curve has not grown yet) does not pick the same network."""
    first = EHVISampler(space, SHAPE, cost_objective="mflops", epochs=4, seed=0)
    second = EHVISampler(space, SHAPE, cost_objective="mflops", epochs=4, seed=0)  # same seed: same tie-breaks
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=first)
    a = study.ask()  # running, nothing recorded yet
    study.sampler = second
    b = study.ask()
    assert first._chosen[a.number] != second._chosen[b.number]


def test_the_covariance_product_equals_the_kernel_of_per_choice_distances():
    """surrogate.covariance (one-hot slots and a block-diagonal table) is the same kernel as kernel(distances):
    ordinal and categorical choices, and choices that do not apply (-1)."""
    rng = np.random.default_rng(0)
    for _ in range(30):
        k = int(rng.integers(1, 6))
        span, ordinal = rng.integers(1, 5, k).astype(float), rng.random(k) < 0.5

        a, b = (surrogate.Features(np.stack([rng.integers(-1, int(s) + 1, n) for s in span], 1).astype(float),
                                   ordinal, span) for n in (7, 9))
        h = surrogate.Hyper(0.1, float(rng.normal()), tuple(rng.normal(size=k)), -1.0)
        np.testing.assert_allclose(surrogate.covariance(a, b, h), surrogate.kernel(a.distances(b), h), rtol=1e-12)


def test_a_proposal_scores_at_most_max_scored_candidates_and_conditions_on_at_most_max_observed(space, monkeypatch):
    pool = build_pool(space, SHAPE, "mflops", (), {}, np.random.default_rng(0))
    monkeypatch.setattr(ehvi, "MAX_SCORED", 5)
    monkeypatch.setattr(ehvi, "MAX_OBSERVED", 4)
    planner, rng = Planner(pool, epochs=4), np.random.default_rng(0)
    ev = Evidence(full={i: (0.9, [0.5, 0.7, 0.8, 0.9]) for i in range(6)})
    scores = planner.scores(ev, rng)
    assert np.isfinite(scores).sum() == min(5, len(pool.keys) - 6) and np.isneginf(scores[:6]).all()
    seen = []
    monkeypatch.setattr(surrogate, "predict", lambda obs, y, *a: seen.append(len(y)) or surrogate.Posterior(
        np.zeros(len(a[-2].codes)), np.ones(len(a[-2].codes))))
    planner.scores(ev, rng)
    assert seen == [4]
