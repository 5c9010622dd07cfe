"""The NePS peers of the replay benchmark (benchmarks/search_peers_neps.py): how a NePS search is charged. Needs
neural-pipeline-search (benchmarks/requirements-neps.txt, a venv of its own), so it is skipped without it."""

import importlib.util
from pathlib import Path

import pytest

from resnas.replay import Table

neps = pytest.importorskip("neps")
BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("search_replay", BENCHMARKS / "search_replay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def peers(harness):
    import search_peers_neps  # beside search_replay.py, importable once the harness is loaded

    return search_peers_neps


@pytest.fixture(scope="module")
def table():
    return Table.load(BENCHMARKS / "tables" / "wrn-seed1.json.gz")


def _asked(monkeypatch, peers) -> list:
    asked = []
    ask = peers.neps.AskAndTell.ask

    def logged(self, **kwargs):
        trial = ask(self, **kwargs)
        asked.append(trial)
        return trial
    monkeypatch.setattr(peers.neps.AskAndTell, "ask", logged)
    return asked


@pytest.mark.parametrize("method", ["neps-moasha", "neps-mo-hyperband"])
def test_a_promoted_trial_pays_only_its_new_epochs(harness, peers, table, monkeypatch, method):
    asked = _asked(monkeypatch, peers)
    meter = harness.Meter(table, 150)
    events = harness.methods()[method](table, 0, meter)
    fidelity = {t.id: t.config["epochs"] for t in asked}
    promoted = [t for t in asked if t.metadata.previous_trial_id is not None]
    assert promoted and all(peers._key(t.config) == peers._key(next(a for a in asked
                                                                     if a.id == t.metadata.previous_trial_id).config)
                            for t in promoted)
    new = [fidelity[t.id] - fidelity.get(t.metadata.previous_trial_id, 0) for t in asked]
    assert meter.epochs == 150 and sum(new) >= 150 > sum(new[:-1])  # the last trial asked is the one the budget cut
    paid = sum(new)
    assert sum(fidelity.values()) > paid  # without continuing, promotions would have cost more
    full = [e for e in events if e[2] is not None]
    assert len(full) == sum(f == table.epochs for f in list(fidelity.values())[:len(events)])


def test_a_search_is_a_function_of_its_seed(harness, table):
    run = harness.methods()["neps-moasha"]
    first = run(table, 3, harness.Meter(table, 120))
    assert first == run(table, 3, harness.Meter(table, 120)) != run(table, 4, harness.Meter(table, 120))


def test_primo_turns_to_bayesian_optimisation_at_the_top_fidelity(harness, peers, table, monkeypatch):
    asked = _asked(monkeypatch, peers)
    peers.primo_events(table, 0, harness.Meter(table, 60))
    bo = [t for t in asked if "_rung_" not in t.id]  # PriMO's own samples: after MOASHA's initial design
    assert bo and all(t.config["epochs"] == table.epochs and t.metadata.previous_trial_id is None for t in bo)
    assert all("_rung_" in t.id for t in asked[:asked.index(bo[0])])
