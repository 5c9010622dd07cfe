"""The replay benchmark's second currency (benchmarks/search_replay.py): each epoch a method trains is charged at its
architecture's recorded seconds per epoch, budgets are fractions of what enumerating the table cost, and a search
runs until it has spent both its epoch and its seconds limit."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

from resnas.replay import Table

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("search_replay", BENCHMARKS / "search_replay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table():
    return Table.load(BENCHMARKS / "tables" / "wrn-seed1.json.gz")


def test_an_epoch_costs_its_architectures_recorded_seconds_per_epoch(harness, table):
    cheap, dear = min(table.rows, key=lambda r: r.seconds), max(table.rows, key=lambda r: r.seconds)
    meter = harness.Meter(table, max_epochs=10**6)
    meter.charge(cheap, table.epochs)
    assert meter.seconds == pytest.approx(cheap.seconds)
    meter.charge(dear)
    assert (meter.epochs, meter.seconds) == (table.epochs + 1, pytest.approx(cheap.seconds + dear.seconds / 9))
    assert dear.seconds > 50 * cheap.seconds  # why epochs alone mislead: the table's dearest net vs its cheapest


def test_enumerating_the_table_costs_all_of_its_seconds(harness, table):
    meter = harness.Meter(table, max_epochs=0)
    for row in sorted(table.rows, key=lambda r: -r.seconds):  # dearest first: the cheap front comes last
        meter.charge(row, table.epochs)
        meter.record((row.val_acc, row.mflops))
    traj = harness.trajectory(meter.events, table, "seconds")
    assert traj[-1] == (pytest.approx(1.0), pytest.approx(1.0))
    assert harness.at(traj, 0.5) < 1.0 and 0.5 < harness.reach(traj, 1.0) <= 1.0
    assert harness.reach(traj, 1.0, limit=0.5) == math.inf  # not within the limit: never


def test_a_search_runs_until_both_limits_are_spent(harness, table):
    total = harness.enumeration_seconds(table)
    by_epochs = harness.methods()["optuna-random"](table, 0, harness.Meter(table, 90, 0.0))
    assert by_epochs[-1][0] == 90  # ten 9-epoch trials, whatever they cost
    by_seconds = harness.methods()["optuna-random"](table, 0, harness.Meter(table, 90, 0.2 * total))
    assert by_seconds[-1][0] > 90 and by_seconds[:10] == by_epochs  # the same search, run on for the seconds
    dearest = max(r.seconds for r in table.rows)
    assert 0.2 * total <= by_seconds[-1][1] < 0.2 * total + dearest
    assert by_seconds[-2][1] < 0.2 * total or by_seconds[-2][0] < 90


def test_the_resnas_search_stops_once_both_limits_are_spent(harness, table):
    total = harness.enumeration_seconds(table)
    meter = harness.Meter(table, 20, 0.03 * total)
    events = harness.resnas_events(table, 0, meter)
    assert meter.spent and meter.epochs > 20  # the seconds limit held it past 20 epochs
    assert meter.seconds - 0.03 * total <= max(r.seconds for r in table.rows) / table.epochs  # at most one epoch over
    epochs = [e for e, _, _ in events]
    assert epochs == sorted(epochs) and events[-1][1] <= meter.seconds + 1e-9  # the trial it interrupted is not counted
    assert any(p is None for *_, p in events) and any(p is not None for *_, p in events)  # stopped and finished


def test_a_budget_past_the_run_is_left_blank_not_carried(harness, table, tmp_path):
    import replay_markdown  # beside search_replay.py, importable once the harness is loaded

    r = harness.run("optuna-random", table, seeds=2, max_epochs=182, max_seconds=0.025)
    assert set(r["hv"]) == {100, 182} and set(r["hv_seconds"]) == {0.01, 0.025}
    saved = tmp_path / "rows.jsonl"
    saved.write_text(json.dumps(r) + "\n")
    (back,) = replay_markdown.load_rows(saved)
    assert back["hv"] == r["hv"] and back["hv_seconds"] == r["hv_seconds"]
    epochs_row, seconds_row = (replay_markdown.row_markdown(back, c) for c in ("epochs", "seconds"))
    assert epochs_row.startswith("| optuna-random | ") and epochs_row.count("—") == 2
    assert seconds_row.count("—") == 3  # @5%, @12% and the worst seed at 5%
    assert "cost in seconds" in replay_markdown.markdown([back], "t")


def test_the_oracle_trains_only_the_cheapest_sufficient_part_of_the_true_front(harness, table):
    from resnas.pareto import pareto_front

    front = [table.rows[i] for i in pareto_front([(-r.val_acc, r.mflops) for r in table.rows])]
    points = {(r.val_acc, r.mflops) for r in front}  # two architectures can score alike: one of them is enough
    assert harness.oracle(table, 1.0) == table.epochs * len(points)  # every other point of the front adds area
    total = harness.enumeration_seconds(table)
    cheapest = [min((r for r in front if (r.val_acc, r.mflops) == p), key=lambda r: r.seconds) for p in points]
    assert harness.oracle(table, 1.0, "seconds") == pytest.approx(sum(r.seconds for r in cheapest) / total)
    costs = [harness.oracle(table, f) for f in (0.5, *harness.TARGETS, 1.0)]
    assert costs == sorted(costs) and all(c % table.epochs == 0 for c in costs)
    assert harness.oracle(table, 0.99, "seconds") < harness.oracle(table, 1.0, "seconds")
