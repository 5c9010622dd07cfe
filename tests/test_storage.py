"""A trial's records in one transaction (the same rows Optuna's own calls write), SQLite transactions that cannot
interleave a read and a write, and a study at its budget that resumes without data or worker processes."""

import subprocess
import sys

import numpy as np
import optuna
import pytest
import sqlalchemy
import sqlalchemy.event
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from resnas import records as R
from resnas.data import DataConfig
from resnas.search import SearchConfig, loop, run_search
from resnas.storage import cached, open_storage
from resnas.train import TrainConfig
from resnas.writes import set_attrs, set_params

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
ATTRS = {R.SPEC: "{}", R.CURVE: [0.5, 0.6], R.TIMING: {"total": 1.0, "train": 0.5, "steps": 0.4}}
CONSTRAINTS = {"mflops": 0.0, "params": 2.5, "latency_ms": 0.0, "memory": 0.0}


def _study(storage):
    return optuna.create_study(storage=storage, directions=["maximize", "minimize"])


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_batched_records_are_the_rows_optunas_calls_write(tmp_path, kind):
    storage = open_storage(f"sqlite:///{tmp_path}/s.db") if kind == "sqlite" else optuna.storages.InMemoryStorage()
    study = _study(storage)
    batched, one_by_one = study.ask(), study.ask()
    set_attrs(batched, ATTRS, CONSTRAINTS)
    for k, v in ATTRS.items():
        one_by_one.set_user_attr(k, v)
    for k, v in CONSTRAINTS.items():
        one_by_one.set_constraint(k, v)
    assert batched.user_attrs == one_by_one.user_attrs == ATTRS
    for t in (batched, one_by_one):
        study.tell(t, [0.9, 1.0])
    a, b = study.get_trials()
    assert a.user_attrs == b.user_attrs and a.system_attrs == b.system_attrs
    assert a.constraints == b.constraints == CONSTRAINTS  # what the samplers read


def test_batched_records_are_one_commit_and_refused_on_a_finished_trial(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    study = _study(storage)
    trial = study.ask()
    commits = []
    sqlalchemy.event.listen(storage.engine, "commit", lambda conn: commits.append(1))
    set_attrs(trial, ATTRS, CONSTRAINTS)
    assert len(commits) == 1
    study.tell(trial, [0.9, 1.0])
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_attrs(trial, {R.ERROR: "late"})


DISTRIBUTIONS = {"depth": CategoricalDistribution([10, 16, 22]),
                 "block": CategoricalDistribution(["basic", "bottleneck"])}


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_a_new_trials_parameters_in_one_write_are_the_rows_suggest_writes(tmp_path, kind):
    """The EHVI sampler writes a whole architecture's parameters with its mark in one commit; the suggest_* calls
    then read them back, write nothing, and every reader sees what one-by-one suggestions would have written."""
    storage = open_storage(f"sqlite:///{tmp_path}/s.db") if kind == "sqlite" else optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=cached(storage), directions=["maximize", "minimize"])
    batched, one_by_one = study.ask(), study.ask()
    commits = []
    if kind == "sqlite":
        sqlalchemy.event.listen(storage.engine, "commit", lambda conn: commits.append(1))
    set_params(study._storage, batched._cached_frozen_trial, {"depth": 16, "block": "bottleneck"}, DISTRIBUTIONS,
               {"mark": "chosen"})
    assert commits == ([1] if kind == "sqlite" else [])
    assert batched.suggest_categorical("depth", [10, 16, 22]) == 16
    assert batched.suggest_categorical("block", ["basic", "bottleneck"]) == "bottleneck"
    assert len(commits) == (1 if kind == "sqlite" else 0)  # read back, not written again
    one_by_one.suggest_categorical("depth", [10, 16, 22])  # whatever the random sampler picks: rows compared below
    one_by_one.suggest_categorical("block", ["basic", "bottleneck"])
    for t in (batched, one_by_one):
        study.tell(t, [0.9, 1.0])
    a, b = optuna.load_study(study_name=study.study_name, storage=open_storage(f"sqlite:///{tmp_path}/s.db")) \
        .get_trials() if kind == "sqlite" else study.get_trials()
    assert a.params == {"depth": 16, "block": "bottleneck"} and a.distributions == b.distributions
    assert a.system_attrs["mark"] == "chosen"
    late = study.ask()
    with pytest.raises(ValueError, match="dynamic value space"):  # Optuna's check of a name's distribution
        set_params(study._storage, late._cached_frozen_trial, {"depth": 10}, {"depth": CategoricalDistribution([10])},
                   {})


def test_the_trial_cache_lists_what_optunas_lists(tmp_path):
    """resnas's cache (trials kept in number order as they arrive, unfinished ones looked up among the unfinished)
    lists the same trials in the same order as Optuna's own cache, for every filter, while another process's
    storage adds, enqueues and finishes trials."""
    url = f"sqlite:///{tmp_path}/s.db"
    mine = optuna.create_study(study_name="s", storage=cached(open_storage(url)), directions=["maximize"])
    other = optuna.load_study(study_name="s", storage=open_storage(url))
    rng, open_trials = np.random.default_rng(0), []
    filters = [None, (TrialState.WAITING,), (TrialState.RUNNING,), (TrialState.RUNNING, TrialState.WAITING),
               (TrialState.COMPLETE,), (TrialState.COMPLETE, TrialState.RUNNING)]
    for step in range(120):
        study = mine if rng.random() < 0.5 else other
        action = rng.integers(4)
        if action == 0:
            open_trials.append((study, study.ask()))
        elif action == 1:
            study.enqueue_trial({"x": float(step)})
        elif open_trials:
            owner, trial = open_trials.pop(int(rng.integers(len(open_trials))))
            owner.tell(trial, float(step) if action == 2 else None, state=None if action == 2 else TrialState.FAIL)
        reference = optuna.storages._CachedStorage(open_storage(url))  # Optuna's, read afresh
        for states in filters:
            got = mine._storage.get_all_trials(mine._study_id, deepcopy=False, states=states)
            want = reference.get_all_trials(mine._study_id, deepcopy=False, states=states)
            assert [(t.number, t.state) for t in got] == [(t.number, t.state) for t in want], (step, states)


def test_sqlite_transactions_take_the_write_lock_when_they_begin(tmp_path):
    """A second process's transaction waits for the first's whole read-then-write (an enqueued trial is popped once)."""
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    _study(storage)
    other = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/s.db", connect_args={"timeout": 0.2})
    with storage.engine.connect() as mine:
        mine.exec_driver_sql("SELECT 1")  # only a read, but the transaction holds the write lock
        with pytest.raises(sqlalchemy.exc.OperationalError, match="locked"), other.begin() as theirs:
            theirs.exec_driver_sql("UPDATE studies SET study_name = study_name")
    other.dispose()


def test_a_study_at_its_budget_resumes_without_data_or_workers(tmp_path, monkeypatch, tiny_space_text):
    space = tmp_path / "tiny.toml"
    space.write_text(tiny_space_text)
    config = SearchConfig(space=str(space), budget=2, out_dir=str(tmp_path), sampler="random", workers=1)
    first = run_search(config, TrainConfig(epochs=1), DataConfig(), device="cpu")

    def refuse(*args, **kwargs):
        raise AssertionError("a finished study started work")

    monkeypatch.setattr(loop, "_start_workers", refuse)
    monkeypatch.setattr(loop, "TrialRunner", refuse)
    again = run_search(SearchConfig(space=str(space), budget=2, out_dir=str(tmp_path), sampler="random", workers=4),
                       TrainConfig(epochs=1), DataConfig(), device="cpu")
    assert (again.n_complete, again.n_pruned, again.pareto) == (first.n_complete, first.n_pruned, first.pareto)
    assert again.overhead_share == first.overhead_share is not None and 0 < first.overhead_share < 1


def test_opening_a_study_again_keeps_the_locks_this_process_holds_on_it(tmp_path):
    """SQLite's locks are POSIX locks, which a process drops when it closes any descriptor of the file: opening the
    storage a second time (the search reopens its study once the data is loaded) must not touch the database file,
    or another process writes under an open transaction and the file is corrupt."""
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    first = open_storage(url)
    with first.engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x)")
        conn.commit()
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")  # inside BEGIN IMMEDIATE: this process holds the write lock
        open_storage(url)
        other = subprocess.run([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], "
                                "timeout=0, isolation_level=None); c.execute('BEGIN IMMEDIATE')", str(db)],
                               capture_output=True, text=True)
        assert other.returncode != 0 and "database is locked" in other.stderr, other.stderr
