"""The recorded tables of the wrn space (benchmarks/tables, made by benchmarks/record_table.py) and searches replayed
on them: nothing is trained or enumerated here."""

import itertools
from pathlib import Path

import optuna
import pytest

from resnas.measure import analytic_cost
from resnas.replay import Table
from resnas.spaces import load_space

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture(scope="module", params=[0, 1])
def table(request):
    return Table.load(BENCHMARKS / "tables" / f"wrn-seed{request.param}.json.gz")


def test_a_table_holds_every_architecture_of_its_space_trained_to_the_end(table):
    space = load_space("wrn")
    assert table.space == "wrn" and table.epochs == 9 and len(table.rows) == space.size() == 256
    assert len({tuple(sorted(r.params.items())) for r in table.rows}) == 256
    assert all(len(r.curve) == 9 and all(0 <= a <= 1 for a in r.curve) and 0 <= r.test_acc <= 1 for r in table.rows)
    for row in table.rows[::37]:  # the recorded costs are the spec's
        spec = space.sample(optuna.trial.FixedTrial(row.params), in_channels=1, num_classes=10)
        assert table.row(spec) is row
        assert analytic_cost(spec, 8).mflops == pytest.approx(row.mflops)


def test_the_two_training_seeds_are_different_runs_of_the_same_architectures():
    a, b = (Table.load(BENCHMARKS / "tables" / f"wrn-seed{s}.json.gz") for s in (0, 1))
    assert (a.seed, b.seed) == (0, 1)
    curves = {tuple(sorted(r.params.items())): r.curve for r in a.rows}
    differ = sum(curves[tuple(sorted(r.params.items()))] != r.curve for r in b.rows)
    assert differ > 200  # another seed: other initial weights and data order, so (nearly) every curve moves


def test_hypervolume_fractions_are_bounded_by_the_true_front(table, harness):
    points = table.true_front_points()
    assert harness.hv(points) > 0
    assert harness.trajectory([(9, 0.0, p) for p in points], table)[-1][1] == pytest.approx(1.0)
    worst = min(points)
    assert harness.trajectory([(9, 0.0, worst)], table)[-1][1] < 0.5


def test_the_default_search_replayed_on_the_held_out_table(harness):
    """The default search on the table it was not tuned on (training seed 1), sampler seed 0, to 200 epochs: the
    real search code, training replayed. Deterministic, so two replays agree; the thresholds are the issue's targets
    (0.99 of the true front by 182 epochs, within 10x the oracle's 18 epochs), which the benchmark's 10 seeds met
    (median 0.996 at 182 epochs, 97 epochs to 0.99: benchmarks/results/replay-wrn-seed1.md)."""
    table = Table.load(BENCHMARKS / "tables" / "wrn-seed1.json.gz")
    events = harness.resnas_events(table, 0, 200)
    assert events == harness.resnas_events(table, 0, 200)
    traj = harness.trajectory(events, table)
    assert traj[-1][0] <= 200 and all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(traj))
    assert harness.at(traj, 182) >= MIN_AT_182
    assert harness.reach(traj, 0.99) <= MAX_TO_099 == 10 * harness.oracle(table, 0.99)


MIN_AT_182 = 0.99  # sampler seed 0 measured 0.9958 (benchmarks/results/replay-wrn-seed1.md: 10 seeds, median 0.996)
MAX_TO_099 = 180  # epochs; sampler seed 0 measured 97
